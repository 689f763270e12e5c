# colony: name = raise-error
# colony: version = 1.0.0
# colony: description = Test tool: raises an exception that escapes invoke when asked to fail.
"""raise-error: the Python tool of tests/all/python_tools.rs whose exception escapes `invoke`.

invoke({"fail": false}) answers {"ok": true}; invoke({"fail": true}) raises a ValueError two
frames deep, which traps the instance: the caller must see the traceback's last lines
(the exception's type and message) in the error, not only "trapped".
"""

import json

from wit_world import exports
from wit_world.exports.tool_handler import ToolSpec

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"fail": {"type": "boolean"}},
    "required": ["fail"],
    "additionalProperties": False,
    "examples": [{"fail": False}],
}


def check(args: dict) -> None:
    if args["fail"]:
        raise ValueError("bad input on purpose")


class ToolHandler(exports.ToolHandler):
    def describe(self) -> ToolSpec:
        return ToolSpec(
            name="raise-error",
            description="Raises an exception that escapes invoke when asked to fail; test tool.",
            input_schema=json.dumps(INPUT_SCHEMA),
            output_schema=None,
        )

    def invoke(self, args_json: str) -> str:
        check(json.loads(args_json))
        return json.dumps({"ok": True})
