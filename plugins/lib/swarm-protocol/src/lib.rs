//! swarm-protocol: the bus subjects and JSON payloads of the demo trading swarm, shared by its
//! five agents so the protocol has one definition. A library, not a plugin: it lives in
//! `plugins/lib/`, where the host's build script (which embeds every `plugins/<dir>` crate)
//! does not look.
//!
//! | subject | payload | published by | received by |
//! |---|---|---|---|
//! | [`ALERTS`] | [`Alert`] | data-scout | analyst, risk-manager |
//! | [`SIGNALS`] | [`Signal`] | analyst | trader |
//! | [`PROPOSALS`] | [`Proposal`], answered with a [`Decision`] | trader (`gather`) | risk-manager (`reply`) |
//! | [`OUTCOMES`] | [`Outcome`] | trader | learner |
//! | [`ANALYST_PARAMS`] | [`ParamsUpdate`] | learner | analyst |
//!
//! Every payload is a JSON object. Prices, quantities, money and confidences are decimal
//! **strings** (`"46377.5"`, `"0.72"`) decoded with `rust_decimal`, never through a float: a
//! JSON number where a decimal belongs is refused. Times are ns since the Unix epoch (the
//! host's virtual clock during a replay). A payload that does not decode, or whose values are
//! out of range ([`Signal::validate`], …), is an [`Error::InvalidArgument`] for the receiver to
//! log and drop.

use colony_sdk::{Candle, Error, Side};
pub use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The one instrument the swarm trades: the shipped replay's BTC perpetual.
pub const SYMBOL: &str = "BTC-PERP";

/// Data-quality alerts from the data-scout.
pub const ALERTS: &str = "swarm.alerts";
/// Trade signals from the analyst.
pub const SIGNALS: &str = "swarm.signals";
/// The trader's proposals, gathered by the risk-manager's replies.
pub const PROPOSALS: &str = "swarm.risk.proposals";
/// Closed round trips from the trader.
pub const OUTCOMES: &str = "swarm.outcomes";
/// Parameter updates for the analyst from the learner.
pub const ANALYST_PARAMS: &str = "swarm.params.analyst";

/// Nanoseconds in a second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Nanoseconds in a minute.
pub const NS_PER_MIN: u64 = 60 * NS_PER_SEC;
/// Nanoseconds in an hour.
pub const NS_PER_HOUR: u64 = 60 * NS_PER_MIN;

/// `mantissa × 10^-scale` as a `rust_decimal` constant: `dec(15, 3)` is 0.015.
pub const fn dec(mantissa: u32, scale: u32) -> Decimal {
    Decimal::from_parts(mantissa, 0, 0, false, scale)
}

/// The largest price any agent accepts, 10^9. Bounding every price and quantity that enters
/// the swarm keeps all of its arithmetic (products of two bounded values, EMAs, PnL) far below
/// `Decimal`'s range, so no operator can overflow (which would panic).
pub const MAX_PRICE: Decimal = dec(1_000_000_000, 0);
/// The largest quantity any agent accepts, 10^6.
pub const MAX_QTY: Decimal = dec(1_000_000, 0);

/// Whether `p` is a usable price: `0 < p ≤ MAX_PRICE`.
pub fn price_ok(p: Decimal) -> bool {
    p > Decimal::ZERO && p <= MAX_PRICE
}

/// Whether `q` is a usable order quantity: `0 < q ≤ MAX_QTY`.
pub fn qty_ok(q: Decimal) -> bool {
    q > Decimal::ZERO && q <= MAX_QTY
}

/// Whether `c` is a confidence: `0 ≤ c ≤ 1`.
pub fn confidence_ok(c: Decimal) -> bool {
    c >= Decimal::ZERO && c <= Decimal::ONE
}

/// Encodes a payload as JSON.
pub fn encode<T: Serialize>(payload: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(payload).map_err(|e| Error::InvalidArgument(format!("cannot encode: {e}")))
}

/// Decodes a payload received on `subject`; the error names the subject.
pub fn decode<T: DeserializeOwned>(subject: &str, payload: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(payload)
        .map_err(|e| Error::InvalidArgument(format!("{subject} payload: {e}")))
}

/// Reads agent `agent`'s `init` configuration: empty text means the defaults; the error names
/// the agent.
pub fn config<T: DeserializeOwned + Default>(agent: &str, text: &str) -> Result<T, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("{agent} config: {e}")))
}

/// Reads a snapshot handed to agent `agent`'s `restore`: empty means nothing was kept
/// (`None`); the error names the agent.
pub fn snapshot<T: DeserializeOwned>(agent: &str, bytes: &[u8]) -> Result<Option<T>, Error> {
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("{agent} snapshot: {e}")))
}

fn invalid(what: &str) -> Error {
    Error::InvalidArgument(what.to_string())
}

/// Buy or sell, as `"buy"` / `"sell"` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradeSide {
    /// Long.
    Buy,
    /// Short.
    Sell,
}

impl TradeSide {
    /// The other side.
    pub fn opposite(self) -> TradeSide {
        match self {
            TradeSide::Buy => TradeSide::Sell,
            TradeSide::Sell => TradeSide::Buy,
        }
    }

    /// +1 for a buy, −1 for a sell: the sign of the position it opens.
    pub fn sign(self) -> Decimal {
        match self {
            TradeSide::Buy => Decimal::ONE,
            TradeSide::Sell => Decimal::NEGATIVE_ONE,
        }
    }

    /// The side that opens a position of this sign (`None` for zero).
    pub fn of_position(qty: Decimal) -> Option<TradeSide> {
        if qty > Decimal::ZERO {
            Some(TradeSide::Buy)
        } else if qty < Decimal::ZERO {
            Some(TradeSide::Sell)
        } else {
            None
        }
    }

    /// The `"buy"` / `"sell"` name.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeSide::Buy => "buy",
            TradeSide::Sell => "sell",
        }
    }
}

impl From<TradeSide> for Side {
    fn from(s: TradeSide) -> Side {
        match s {
            TradeSide::Buy => Side::Buy,
            TradeSide::Sell => Side::Sell,
        }
    }
}

impl From<Side> for TradeSide {
    fn from(s: Side) -> TradeSide {
        match s {
            Side::Buy => TradeSide::Buy,
            Side::Sell => TradeSide::Sell,
        }
    }
}

/// What the data-scout saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// No bar for longer than the scout's threshold of host time.
    Stale,
    /// Consecutive bars further apart than the bar interval.
    Gap,
    /// A close-to-close move above the threshold, or a bar with a non-positive price or
    /// volume.
    Spike,
    /// Bars arrive again after a `stale` alert.
    Recovered,
}

impl AlertKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Stale => "stale",
            AlertKind::Gap => "gap",
            AlertKind::Spike => "spike",
            AlertKind::Recovered => "recovered",
        }
    }
}

/// `swarm.alerts`: `{"kind":"spike","symbol":"BTC-PERP","ts":…,"detail":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What was seen.
    pub kind: AlertKind,
    /// The instrument.
    pub symbol: String,
    /// When it was seen (the bar's close, or the timer's time for `stale`).
    pub ts: u64,
    /// Human-readable numbers.
    pub detail: String,
}

/// `swarm.signals`: `{"symbol","side","confidence":"0.72","price":"…","ts":…,"reason":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The instrument.
    pub symbol: String,
    /// Which way to trade.
    pub side: TradeSide,
    /// 0 to 1, two decimals.
    #[serde(with = "rust_decimal::serde::str")]
    pub confidence: Decimal,
    /// The close the signal was computed on.
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    /// The close time of that bar.
    pub ts: u64,
    /// Why, e.g. `ema-cross 12/48 up, rsi 58.2`.
    pub reason: String,
}

impl Signal {
    /// Checks the ranges: a known symbol, a usable price, a confidence in `[0, 1]`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.symbol.is_empty() || self.symbol.len() > 64 {
            return Err(invalid("signal: symbol must be 1 to 64 bytes"));
        }
        if !price_ok(self.price) {
            return Err(invalid("signal: price out of range"));
        }
        if !confidence_ok(self.confidence) {
            return Err(invalid("signal: confidence must be in [0, 1]"));
        }
        Ok(())
    }
}

/// `swarm.risk.proposals` (sent with `gather`): an entry the trader wants to make, with its
/// own view of its account so the risk-manager can judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The instrument.
    pub symbol: String,
    /// Which way.
    pub side: TradeSide,
    /// Quantity asked for.
    #[serde(with = "rust_decimal::serde::str")]
    pub qty: Decimal,
    /// The signal's price.
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    /// The signal's confidence.
    #[serde(with = "rust_decimal::serde::str")]
    pub confidence: Decimal,
    /// The trader's equity (initial balance + realised PnL − fees + unrealised PnL).
    #[serde(with = "rust_decimal::serde::str")]
    pub equity: Decimal,
    /// The trader's signed position after any exit it is already making (negative: short).
    #[serde(with = "rust_decimal::serde::str")]
    pub position: Decimal,
    /// The signal's time.
    pub ts: u64,
    /// The signal's reason.
    pub reason: String,
}

impl Proposal {
    /// Checks the ranges: usable price and quantity, a confidence in `[0, 1]`, equity and
    /// position within the bounds.
    pub fn validate(&self) -> Result<(), Error> {
        if !price_ok(self.price) {
            return Err(invalid("proposal: price out of range"));
        }
        if !qty_ok(self.qty) {
            return Err(invalid("proposal: qty out of range"));
        }
        if !confidence_ok(self.confidence) {
            return Err(invalid("proposal: confidence must be in [0, 1]"));
        }
        if self.position.abs() > MAX_QTY {
            return Err(invalid("proposal: position out of range"));
        }
        if self.equity.abs() > MAX_PRICE * MAX_QTY {
            return Err(invalid("proposal: equity out of range"));
        }
        Ok(())
    }
}

/// Why the risk-manager decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Approved.
    Ok,
    /// The confidence is below the threshold.
    LowConfidence,
    /// No room left under the position limit.
    MaxPosition,
    /// The trader's equity is too far below its peak.
    Drawdown,
    /// A data alert arrived recently.
    DataAlert,
    /// Too soon after the last approval (the rate limit).
    Cooldown,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::LowConfidence => "low-confidence",
            Verdict::MaxPosition => "max-position",
            Verdict::Drawdown => "drawdown",
            Verdict::DataAlert => "data-alert",
            Verdict::Cooldown => "cooldown",
        }
    }
}

/// The risk-manager's reply to a [`Proposal`]: `{"approved":true,"reason":"ok","qty":"0.25"}`.
/// `qty` is what may be traded (at most what was asked; `0` when vetoed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the entry may be made.
    pub approved: bool,
    /// Why.
    pub reason: Verdict,
    /// The approved quantity.
    #[serde(with = "rust_decimal::serde::str")]
    pub qty: Decimal,
}

/// Why a position was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitReason {
    /// The price moved against the position by the stop distance.
    StopLoss,
    /// The price moved for the position by the target distance.
    TakeProfit,
    /// A signal the other way.
    Reverse,
    /// A fill the trader did not ask for as an exit (for example after a restart).
    Unknown,
}

impl ExitReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::StopLoss => "stop-loss",
            ExitReason::TakeProfit => "take-profit",
            ExitReason::Reverse => "reverse",
            ExitReason::Unknown => "unknown",
        }
    }
}

/// `swarm.outcomes`: one closed round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The instrument.
    pub symbol: String,
    /// The entry's side (`buy`: it was a long).
    pub side: TradeSide,
    /// Average entry price.
    #[serde(with = "rust_decimal::serde::str")]
    pub entry: Decimal,
    /// Average exit price.
    #[serde(with = "rust_decimal::serde::str")]
    pub exit: Decimal,
    /// Quantity closed.
    #[serde(with = "rust_decimal::serde::str")]
    pub qty: Decimal,
    /// PnL net of the entry's and the exit's fees.
    #[serde(with = "rust_decimal::serde::str")]
    pub pnl: Decimal,
    /// The entry signal's confidence.
    #[serde(with = "rust_decimal::serde::str")]
    pub confidence: Decimal,
    /// Why it was closed.
    pub reason: ExitReason,
}

impl Outcome {
    /// Checks the ranges: usable prices and quantity, a bounded PnL, a confidence in `[0, 1]`.
    pub fn validate(&self) -> Result<(), Error> {
        if !price_ok(self.entry) || !price_ok(self.exit) {
            return Err(invalid("outcome: price out of range"));
        }
        if !qty_ok(self.qty) {
            return Err(invalid("outcome: qty out of range"));
        }
        if self.pnl.abs() > MAX_PRICE * MAX_QTY {
            return Err(invalid("outcome: pnl out of range"));
        }
        if !confidence_ok(self.confidence) {
            return Err(invalid("outcome: confidence must be in [0, 1]"));
        }
        Ok(())
    }
}

/// `swarm.params.analyst`: `{"fast":12,"slow":48,"min_confidence":"0.6"}`; every field is
/// optional and a missing one keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsUpdate {
    /// Fast EMA period, in the analyst's bars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast: Option<u32>,
    /// Slow EMA period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<u32>,
    /// Signals below this confidence are not published.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub min_confidence: Option<Decimal>,
}

/// The analyst's tunable parameters, as kept in its state and in the learner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalystParams {
    /// Fast EMA period, in bars.
    pub fast: u32,
    /// Slow EMA period, in bars.
    pub slow: u32,
    /// Least confidence of a published signal.
    #[serde(with = "rust_decimal::serde::str")]
    pub min_confidence: Decimal,
}

impl AnalystParams {
    /// Shortest EMA period.
    pub const MIN_PERIOD: u32 = 2;
    /// Longest EMA period.
    pub const MAX_PERIOD: u32 = 500;

    /// The analyst's starting point: EMA 12/48, confidence at least 0.60.
    pub const DEFAULT: AnalystParams = AnalystParams {
        fast: 12,
        slow: 48,
        min_confidence: dec(60, 2),
    };

    /// These parameters with `update` applied, if the result is valid: periods within
    /// [`Self::MIN_PERIOD`]..=[`Self::MAX_PERIOD`], `fast < slow`, a confidence in `[0, 1]`.
    pub fn apply(&self, update: &ParamsUpdate) -> Result<AnalystParams, Error> {
        let next = AnalystParams {
            fast: update.fast.unwrap_or(self.fast),
            slow: update.slow.unwrap_or(self.slow),
            min_confidence: update.min_confidence.unwrap_or(self.min_confidence),
        };
        next.validate()?;
        Ok(next)
    }

    /// Checks the ranges (see [`Self::apply`]).
    pub fn validate(&self) -> Result<(), Error> {
        let period = Self::MIN_PERIOD..=Self::MAX_PERIOD;
        if !period.contains(&self.fast) || !period.contains(&self.slow) {
            return Err(Error::InvalidArgument(format!(
                "params: periods must be in {}..={}",
                Self::MIN_PERIOD,
                Self::MAX_PERIOD
            )));
        }
        if self.fast >= self.slow {
            return Err(invalid("params: fast must be shorter than slow"));
        }
        if !confidence_ok(self.min_confidence) {
            return Err(invalid("params: min_confidence must be in [0, 1]"));
        }
        Ok(())
    }

    /// The full update that sets these parameters.
    pub fn as_update(&self) -> ParamsUpdate {
        ParamsUpdate {
            fast: Some(self.fast),
            slow: Some(self.slow),
            min_confidence: Some(self.min_confidence),
        }
    }
}

/// One closed bar with `rust_decimal` prices, converted from a [`Candle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// Start of the bar, ns.
    pub start: u64,
    /// Close of the bar (`start + interval`), ns: when it became known.
    pub end: u64,
    /// First price.
    #[serde(with = "rust_decimal::serde::str")]
    pub open: Decimal,
    /// Highest price.
    #[serde(with = "rust_decimal::serde::str")]
    pub high: Decimal,
    /// Lowest price.
    #[serde(with = "rust_decimal::serde::str")]
    pub low: Decimal,
    /// Last price.
    #[serde(with = "rust_decimal::serde::str")]
    pub close: Decimal,
    /// Traded volume.
    #[serde(with = "rust_decimal::serde::str")]
    pub volume: Decimal,
}

impl Bar {
    /// Converts a candle; fails on a zero interval, a close time past the clock's range or a
    /// decimal the wire format allows but `rust_decimal` does not (scale above 28).
    pub fn from_candle(c: &Candle) -> Result<Bar, Error> {
        if c.interval_secs == 0 {
            return Err(invalid("candle: zero interval"));
        }
        let end = u64::from(c.interval_secs)
            .checked_mul(NS_PER_SEC)
            .and_then(|len| c.start.checked_add(len))
            .ok_or_else(|| invalid("candle: close time overflows"))?;
        Ok(Bar {
            start: c.start,
            end,
            open: Decimal::try_from(c.open)?,
            high: Decimal::try_from(c.high)?,
            low: Decimal::try_from(c.low)?,
            close: Decimal::try_from(c.close)?,
            volume: Decimal::try_from(c.volume)?,
        })
    }

    /// Whether every price is usable ([`price_ok`]) and `low ≤ open, close ≤ high`; a bar
    /// that is not is never used for arithmetic.
    pub fn prices_ok(&self) -> bool {
        [self.open, self.high, self.low, self.close]
            .iter()
            .all(|p| price_ok(*p))
            && self.low <= self.high
            && (self.low..=self.high).contains(&self.open)
            && (self.low..=self.high).contains(&self.close)
    }

    /// Whether the volume is usable: `0 < volume ≤ 10^18`.
    pub fn volume_ok(&self) -> bool {
        self.volume > Decimal::ZERO && self.volume <= MAX_PRICE * MAX_PRICE
    }
}

/// A candle for tests and examples: every price `close`, volume 1, starting at `start`.
pub fn test_candle(symbol: &str, start: u64, close: Decimal) -> Candle {
    let wire = colony_sdk::Decimal::try_from(close).unwrap_or(colony_sdk::Decimal::ZERO);
    Candle {
        symbol: symbol.to_string(),
        interval_secs: 60,
        start,
        open: wire,
        high: wire,
        low: wire,
        close: wire,
        volume: colony_sdk::Decimal::new(1, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decimals_travel_as_strings_and_numbers_are_refused() {
        let s = Signal {
            symbol: SYMBOL.into(),
            side: TradeSide::Buy,
            confidence: d("0.72"),
            price: d("46377.5"),
            ts: 7,
            reason: "ema-cross".into(),
        };
        let json = String::from_utf8(encode(&s).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"symbol":"BTC-PERP","side":"buy","confidence":"0.72","price":"46377.5","ts":7,"reason":"ema-cross"}"#
        );
        assert_eq!(decode::<Signal>(SIGNALS, json.as_bytes()).unwrap(), s);
        let float = json.replace(r#""46377.5""#, "46377.5");
        let err = decode::<Signal>(SIGNALS, float.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.starts_with("swarm.signals payload")),
            "{err:?}"
        );
    }

    #[test]
    fn wire_names() {
        let dec = Decision {
            approved: false,
            reason: Verdict::LowConfidence,
            qty: Decimal::ZERO,
        };
        assert_eq!(
            String::from_utf8(encode(&dec).unwrap()).unwrap(),
            r#"{"approved":false,"reason":"low-confidence","qty":"0"}"#
        );
        for v in [
            Verdict::Ok,
            Verdict::LowConfidence,
            Verdict::MaxPosition,
            Verdict::Drawdown,
            Verdict::DataAlert,
            Verdict::Cooldown,
        ] {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
        for k in [
            AlertKind::Stale,
            AlertKind::Gap,
            AlertKind::Spike,
            AlertKind::Recovered,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for r in [
            ExitReason::StopLoss,
            ExitReason::TakeProfit,
            ExitReason::Reverse,
            ExitReason::Unknown,
        ] {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert!(
            decode::<Alert>(
                ALERTS,
                br#"{"kind":"boom","symbol":"X","ts":1,"detail":""}"#
            )
            .is_err()
        );
    }

    #[test]
    fn params_updates_are_partial_and_checked() {
        let p = AnalystParams::DEFAULT;
        let up: ParamsUpdate = decode(ANALYST_PARAMS, br#"{"min_confidence":"0.7"}"#).unwrap();
        let q = p.apply(&up).unwrap();
        assert_eq!((q.fast, q.slow, q.min_confidence), (12, 48, d("0.7")));
        for bad in [
            &br#"{"fast":48,"slow":12}"#[..],
            br#"{"fast":1}"#,
            br#"{"slow":501}"#,
            br#"{"min_confidence":"1.5"}"#,
        ] {
            let up: ParamsUpdate = decode(ANALYST_PARAMS, bad).unwrap();
            assert!(p.apply(&up).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(decode::<ParamsUpdate>(ANALYST_PARAMS, br#"{"min_confidence":0.7}"#).is_err());
        assert!(decode::<ParamsUpdate>(ANALYST_PARAMS, br#"{"fastt":3}"#).is_err());
        assert_eq!(p.apply(&p.as_update()).unwrap(), p);
    }

    #[test]
    fn validation_bounds_what_enters_the_arithmetic() {
        let ok = Proposal {
            symbol: SYMBOL.into(),
            side: TradeSide::Sell,
            qty: d("0.25"),
            price: d("40000"),
            confidence: d("0.7"),
            equity: d("100000"),
            position: d("-0.25"),
            ts: 1,
            reason: String::new(),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            Proposal {
                qty: Decimal::ZERO,
                ..ok.clone()
            },
            Proposal {
                price: d("-1"),
                ..ok.clone()
            },
            Proposal {
                confidence: d("1.01"),
                ..ok.clone()
            },
            Proposal {
                position: d("2000000"),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let candle = test_candle(SYMBOL, 60 * NS_PER_SEC, d("100"));
        let bar = Bar::from_candle(&candle).unwrap();
        assert_eq!(bar.end, 120 * NS_PER_SEC);
        assert!(bar.prices_ok() && bar.volume_ok());
        let crossed = Bar {
            low: d("101"),
            ..bar
        };
        assert!(!crossed.prices_ok());
        let zero = Candle {
            interval_secs: 0,
            ..candle
        };
        assert!(Bar::from_candle(&zero).is_err());
    }

    #[test]
    fn sides() {
        assert_eq!(TradeSide::Buy.opposite(), TradeSide::Sell);
        assert_eq!(TradeSide::Sell.sign(), Decimal::NEGATIVE_ONE);
        assert_eq!(TradeSide::of_position(d("-0.1")), Some(TradeSide::Sell));
        assert_eq!(TradeSide::of_position(Decimal::ZERO), None);
        assert_eq!(Side::from(TradeSide::Buy), Side::Buy);
        assert_eq!(TradeSide::from(Side::Sell), TradeSide::Sell);
    }
}
