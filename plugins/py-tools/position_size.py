# colony: name = position-size
# colony: version = 1.0.0
# colony: description = Fixed-fractional position sizing: the quantity to trade so that a stop-out
# colony: description = loses a chosen percentage of equity, rounded down to the lot size and
# colony: description = optionally capped by a maximum leverage.
# colony: cpu_ms = 1000
"""position-size: a Colony tool written in Python (pure computation, no imports but log).

Build it into a component of the `tool` world and register it:

    colony tools build plugins/py-tools/position_size.py --register
    colony tools invoke position-size '{"equity": 10000, "risk_pct": 1, "entry": 42000, "stop": 41000}'

The host checks the arguments against INPUT_SCHEMA before this code runs, and the result
against OUTPUT_SCHEMA after; the first of INPUT_SCHEMA's `examples` is the smoke call made at
registration.
"""

import json
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.tool_handler import ToolSpec
from wit_world.imports import log

INPUT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "equity": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Account equity, in the quote currency.",
        },
        "risk_pct": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 100,
            "description": "Percent of equity lost if the stop is hit.",
        },
        "entry": {"type": "number", "exclusiveMinimum": 0, "description": "Entry price."},
        "stop": {"type": "number", "exclusiveMinimum": 0, "description": "Stop-loss price."},
        "lot_size": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Quantity step; the size is rounded down to a multiple of it.",
        },
        "max_leverage": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Largest notional as a multiple of equity.",
        },
    },
    "required": ["equity", "risk_pct", "entry", "stop"],
    "additionalProperties": False,
    "examples": [
        {"equity": 10000, "risk_pct": 1, "entry": 42000, "stop": 41000, "lot_size": 0.001},
        {"equity": 2500, "risk_pct": 2, "entry": 100, "stop": 104, "max_leverage": 3},
    ],
}

OUTPUT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "side": {"enum": ["buy", "sell"]},
        "qty": {"type": "number", "minimum": 0},
        "notional": {"type": "number", "minimum": 0},
        "risk_amount": {"type": "number", "minimum": 0},
        "leverage": {"type": "number", "minimum": 0},
        "capped_by_leverage": {"type": "boolean"},
    },
    "required": ["side", "qty", "notional", "risk_amount", "leverage", "capped_by_leverage"],
    "additionalProperties": False,
}


def dec(value) -> Decimal:
    """A JSON number as an exact decimal (through its shortest text, so 0.1 is 0.1)."""
    return Decimal(str(value))


def size(args: dict) -> dict:
    equity = dec(args["equity"])
    entry = dec(args["entry"])
    stop = dec(args["stop"])
    per_unit = abs(entry - stop)
    if per_unit == 0:
        raise ValueError("entry and stop are equal, so the risk per unit is zero")
    risk_budget = equity * dec(args["risk_pct"]) / 100
    qty = risk_budget / per_unit
    capped = False
    if "max_leverage" in args:
        cap = equity * dec(args["max_leverage"]) / entry
        if qty > cap:
            qty, capped = cap, True
    if "lot_size" in args:
        lot = dec(args["lot_size"])
        qty = (qty / lot).to_integral_value(rounding=ROUND_FLOOR) * lot
    notional = qty * entry
    return {
        "side": "buy" if stop < entry else "sell",
        "qty": float(qty),
        "notional": float(notional),
        "risk_amount": float(qty * per_unit),
        "leverage": float(notional / equity),
        "capped_by_leverage": capped,
    }


class ToolHandler(exports.ToolHandler):
    def describe(self) -> ToolSpec:
        return ToolSpec(
            name="position-size",
            description=(
                "Fixed-fractional position sizing: given equity, the percent of it to risk, an "
                "entry and a stop price, the quantity to trade (rounded down to lot_size, capped "
                "by max_leverage), its side, notional, the amount actually at risk and leverage."
            ),
            input_schema=json.dumps(INPUT_SCHEMA),
            output_schema=json.dumps(OUTPUT_SCHEMA),
        )

    def invoke(self, args_json: str) -> str:
        # An exception escaping an export traps the instance; answer an error instead.
        try:
            result = size(json.loads(args_json))
        except (ValueError, KeyError, TypeError, ArithmeticError, InvalidOperation) as e:
            raise Err(f"cannot size the position: {e}")
        log.log(log.Level.DEBUG, f"sized {result['side']} {result['qty']}")
        return json.dumps(result)
