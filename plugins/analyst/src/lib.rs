//! analyst: turns the BTC-PERP bars into trade signals. It folds the one-minute bars into bars of
//! `bar_minutes` (default 15, aligned to UTC), and on each closed bar updates, incrementally and
//! in exact decimals, a fast and a slow EMA (default 12/48 bars), a 14-bar RSI and a 14-bar ATR
//! (Wilder smoothing). When the fast EMA crosses the slow one it publishes a [`Signal`] on
//! `swarm.signals`, with a confidence from 0.05 to 0.99:
//!
//! ```text
//! 0.50 + 0.10 × min(|close − slow EMA| / ATR, 3)           how far the move already went
//!      + clamp((RSI − 50) / 100, −0.2, 0.2)                momentum agrees (sell: 50 − RSI)
//!      − 0.15 if RSI > 75 (sell: RSI < 25)                 overbought: late to the move
//! ```
//!
//! A signal below `min_confidence` is not published. Parameter updates from the learner
//! (`swarm.params.analyst`: `fast`, `slow`, `min_confidence`) are checked, applied and kept in
//! state (key `params`), so they survive restarts. After a `stale` or `spike` alert on
//! `swarm.alerts` it holds signals back for `suppress_ms` (default 30 min) of host time.
//!
//! **Guardrail demonstration.** The manifest asks for no `orders.place`. On its first signal
//! each instance tries once to place a small market order itself; the host refuses it
//! (`denied`, audited), the analyst logs the blocked shortcut and publishes the signal as usual.
//!
//! The indicators travel in the snapshot; the counts of crosses and signals are in state (key
//! `stats`).

use colony_sdk::market::{self, Kinds};
use colony_sdk::orders::{self, OrderRequest};
use colony_sdk::{Agent, Error, Manifest, MarketEvent, Message, messaging, state};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use swarm_protocol::{
    ALERTS, ANALYST_PARAMS, Alert, AlertKind, AnalystParams, Bar, NS_PER_MIN, ParamsUpdate,
    SIGNALS, SYMBOL, Signal, TradeSide, dec, decode, encode,
};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    .capabilities(&[
        "market.read:BTC-PERP",
        "messaging.publish:swarm.signals",
        "messaging.subscribe:swarm.params.analyst",
        "messaging.subscribe:swarm.alerts",
    ])
    .fuel(10_000_000)
    .memory_bytes(16 << 20);

/// State key of the parameters ([`AnalystParams`]).
const PARAMS: &str = "params";
/// State key of the counters ([`Stats`]).
const STATS: &str = "stats";
/// RSI and ATR length, in bars.
const WILDER: u32 = 14;
/// Decimal places kept in the indicators: plenty for prices, and it keeps the snapshot short
/// and every step's cost flat.
const DP: u32 = 8;
/// The size of the one direct order attempt (never meant to go through).
const SHORTCUT_QTY: colony_sdk::Decimal = colony_sdk::Decimal::new(1, 3);

/// The operator's configuration; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Length of the analyst's bars in minutes (1 to 1440).
    bar_minutes: u32,
    /// How long signals are held back after a `stale` or `spike` alert, in ms of host time.
    suppress_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bar_minutes: 15,
            suppress_ms: 30 * 60_000,
        }
    }
}

impl Config {
    fn parse(config: &str) -> Result<Config, Error> {
        let parsed: Config = swarm_protocol::config("analyst", config)?;
        if !(1..=1440).contains(&parsed.bar_minutes) {
            return Err(Error::InvalidArgument(
                "analyst config: bar_minutes must be in 1..=1440".into(),
            ));
        }
        Ok(parsed)
    }

    fn bar_ns(&self) -> u64 {
        u64::from(self.bar_minutes) * NS_PER_MIN
    }
}

/// Counters kept in state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stats {
    /// EMA crossovers seen.
    crosses: u64,
    /// Signals published.
    published: u64,
    /// Crossovers below `min_confidence`.
    weak: u64,
    /// Crossovers held back after a data alert.
    held_back: u64,
}

/// The analyst's bar being built from one-minute bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Building {
    /// Which bar: start time / bar length.
    bucket: u64,
    #[serde(with = "rust_decimal::serde::str")]
    open: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    high: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    low: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    close: Decimal,
    /// Close time of its last one-minute bar.
    end: u64,
}

/// One closed bar's indicator values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    close: Decimal,
    end: u64,
    slow: Decimal,
    rsi: Decimal,
    atr: Decimal,
    /// The fast EMA crossed the slow one on this bar: up is a buy.
    cross: Option<TradeSide>,
}

/// The incremental indicators. Every price that reaches them passed [`Bar::prices_ok`]
/// (at most 10^9), so the arithmetic below stays far inside `Decimal`'s range; divisions are
/// by non-zero constants or guarded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Indicators {
    building: Option<Building>,
    #[serde(with = "rust_decimal::serde::str_option")]
    prev_close: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    ema_fast: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    ema_slow: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    avg_gain: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    avg_loss: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    atr: Decimal,
    /// Closed bars folded in.
    bars: u64,
    /// Sign of fast − slow after the last bar: 1, −1, or 0 before it is known.
    last_sign: i8,
}

/// `x += (target − x) × 2 / (period + 1)`, the EMA step.
fn ema_step(x: Decimal, target: Decimal, period: u32) -> Decimal {
    let alpha = Decimal::TWO / Decimal::from(period + 1);
    (x + (target - x) * alpha).round_dp(DP)
}

/// `x += (target − x) / period`, Wilder's smoothing.
fn wilder_step(x: Decimal, target: Decimal) -> Decimal {
    (x + (target - x) / Decimal::from(WILDER)).round_dp(DP)
}

impl Indicators {
    /// Folds in a one-minute bar; returns the readings of the analyst's bars it closed (at
    /// most two: an unfinished one cut short by a gap, and this one).
    fn push_minute(&mut self, bar: &Bar, bar_ns: u64, params: &AnalystParams) -> Vec<Reading> {
        let mut out = Vec::new();
        let bucket = bar.start / bar_ns;
        if let Some(b) = self.building.filter(|b| b.bucket != bucket) {
            self.building = None;
            out.extend(self.close_bar(&b, params));
        }
        let b = self.building.get_or_insert(Building {
            bucket,
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            end: bar.end,
        });
        b.high = b.high.max(bar.high);
        b.low = b.low.min(bar.low);
        b.close = bar.close;
        b.end = bar.end;
        if bar.end.is_multiple_of(bar_ns) {
            let b = *b;
            self.building = None;
            out.extend(self.close_bar(&b, params));
        }
        out
    }

    /// Updates the indicators with a closed bar.
    fn close_bar(&mut self, b: &Building, params: &AnalystParams) -> Option<Reading> {
        let Some(prev) = self.prev_close else {
            self.prev_close = Some(b.close);
            self.ema_fast = b.close;
            self.ema_slow = b.close;
            self.atr = b.high - b.low;
            self.bars = 1;
            return None;
        };
        self.ema_fast = ema_step(self.ema_fast, b.close, params.fast);
        self.ema_slow = ema_step(self.ema_slow, b.close, params.slow);
        let range = (b.high - b.low)
            .max((b.high - prev).abs())
            .max((b.low - prev).abs());
        self.atr = wilder_step(self.atr, range);
        let change = b.close - prev;
        self.avg_gain = wilder_step(self.avg_gain, change.max(Decimal::ZERO));
        self.avg_loss = wilder_step(self.avg_loss, (-change).max(Decimal::ZERO));
        self.prev_close = Some(b.close);
        self.bars += 1;

        let sign: i8 = match self.ema_fast.cmp(&self.ema_slow) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
        };
        let warm = self.bars > u64::from(params.slow);
        let cross = match (self.last_sign, sign) {
            (1, -1) if warm => Some(TradeSide::Sell),
            (-1, 1) if warm => Some(TradeSide::Buy),
            _ => None,
        };
        if sign != 0 {
            self.last_sign = sign;
        }
        Some(Reading {
            close: b.close,
            end: b.end,
            slow: self.ema_slow,
            rsi: self.rsi(),
            atr: self.atr,
            cross,
        })
    }

    fn rsi(&self) -> Decimal {
        if self.avg_loss.is_zero() {
            return if self.avg_gain.is_zero() {
                dec(50, 0)
            } else {
                Decimal::ONE_HUNDRED
            };
        }
        let rs = self.avg_gain / self.avg_loss;
        (Decimal::ONE_HUNDRED - Decimal::ONE_HUNDRED / (Decimal::ONE + rs)).round_dp(2)
    }
}

/// The confidence of a signal to `side` on `r` (see the crate docs), two decimals.
fn confidence(r: &Reading, side: TradeSide) -> Decimal {
    let stretch = if r.atr.is_zero() {
        Decimal::ZERO
    } else {
        ((r.close - r.slow).abs() / r.atr).min(dec(3, 0))
    };
    let fifty = dec(50, 0);
    let momentum = match side {
        TradeSide::Buy => r.rsi - fifty,
        TradeSide::Sell => fifty - r.rsi,
    } / Decimal::ONE_HUNDRED;
    let momentum = momentum.clamp(-dec(2, 1), dec(2, 1));
    let late = match side {
        TradeSide::Buy => r.rsi > dec(75, 0),
        TradeSide::Sell => r.rsi < dec(25, 0),
    };
    let penalty = if late { dec(15, 2) } else { Decimal::ZERO };
    (dec(5, 1) + dec(1, 1) * stretch + momentum - penalty)
        .clamp(dec(5, 2), dec(99, 2))
        .round_dp(2)
}

struct Analyst {
    config: Config,
    params: AnalystParams,
    ind: Indicators,
    stats: Stats,
    /// Signals are held back until this host time (ns).
    suppress_until: u64,
    /// This instance already tried its one direct order.
    shortcut_tried: bool,
}

/// What travels in the snapshot.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    ind: Indicators,
    suppress_until: u64,
}

impl Analyst {
    fn on_bar(&mut self, bar: &Bar) -> Result<(), Error> {
        let readings = self
            .ind
            .push_minute(bar, self.config.bar_ns(), &self.params);
        for r in readings {
            if let Some(side) = r.cross {
                self.on_cross(&r, side)?;
            }
        }
        Ok(())
    }

    fn on_cross(&mut self, r: &Reading, side: TradeSide) -> Result<(), Error> {
        self.stats.crosses += 1;
        let confidence = confidence(r, side);
        let direction = match side {
            TradeSide::Buy => "up",
            TradeSide::Sell => "down",
        };
        let reason = format!(
            "ema-cross {}/{} {direction}, rsi {}, atr {}",
            self.params.fast,
            self.params.slow,
            r.rsi,
            r.atr.round_dp(2)
        );
        if r.end < self.suppress_until {
            self.stats.held_back += 1;
            colony_sdk::info!(
                "{} signal at {} held back after a data alert ({reason}, confidence {confidence})",
                side.as_str(),
                r.close
            );
        } else if confidence < self.params.min_confidence {
            self.stats.weak += 1;
        } else {
            if !self.shortcut_tried {
                self.shortcut_tried = true;
                try_shortcut(side);
            }
            let signal = Signal {
                symbol: SYMBOL.into(),
                side,
                confidence,
                price: r.close,
                ts: r.end,
                reason,
            };
            messaging::publish(SIGNALS, &encode(&signal)?)?;
            self.stats.published += 1;
            colony_sdk::info!(
                "signal {} {} at {} confidence {} ({})",
                self.stats.published,
                side.as_str(),
                signal.price,
                signal.confidence,
                signal.reason
            );
        }
        state::set_json(STATS, &self.stats)
    }

    fn on_params(&mut self, update: &ParamsUpdate) -> Result<(), Error> {
        let next = self.params.apply(update)?;
        if next == self.params {
            return Ok(());
        }
        if (next.fast, next.slow) != (self.params.fast, self.params.slow) {
            // The EMAs carry on with their new lengths; the sign is learnt again first so
            // the change itself is never taken for a crossover.
            self.ind.last_sign = 0;
        }
        colony_sdk::info!(
            "parameters {}/{} min confidence {} -> {}/{} min confidence {}",
            self.params.fast,
            self.params.slow,
            self.params.min_confidence,
            next.fast,
            next.slow,
            next.min_confidence
        );
        self.params = next;
        state::set_json(PARAMS, &self.params)
    }

    fn on_alert(&mut self, alert: &Alert, now: u64) {
        if !matches!(alert.kind, AlertKind::Stale | AlertKind::Spike) || alert.symbol != SYMBOL {
            return;
        }
        let until = now.saturating_add(self.config.suppress_ms.saturating_mul(1_000_000));
        self.suppress_until = self.suppress_until.max(until);
        colony_sdk::info!(
            "{} alert ({}): signals held back until {}",
            alert.kind.as_str(),
            alert.detail,
            self.suppress_until
        );
    }
}

/// The guardrail demonstration: the analyst has no `orders.place` grant, so the host must
/// refuse this; anything else means its grants are broader than its manifest asks.
fn try_shortcut(side: TradeSide) {
    let order = OrderRequest::market("analystshortcut", SYMBOL, side.into(), SHORTCUT_QTY);
    match orders::place(&order) {
        Err(Error::Denied(needs)) => colony_sdk::warn!(
            "blocked shortcut: tried to place a {} order directly, the host refused ({needs}); \
             publishing the signal for the trader instead",
            side.as_str()
        ),
        Err(e) => colony_sdk::warn!("blocked shortcut: direct order failed: {e:?}"),
        Ok(ack) => colony_sdk::error!(
            "direct order {} was {:?}: the analyst's grants are broader than its manifest asks",
            ack.client_id,
            ack.status
        ),
    }
}

impl Agent for Analyst {
    fn init(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        let params = match state::get_json::<AnalystParams>(PARAMS)? {
            Some(p) if p.validate().is_ok() => p,
            Some(_) => {
                colony_sdk::warn!("stored parameters are out of range; using the defaults");
                AnalystParams::DEFAULT
            }
            None => AnalystParams::DEFAULT,
        };
        let stats: Stats = state::get_json(STATS)?.unwrap_or_default();
        market::subscribe(SYMBOL, Kinds::CANDLE)?;
        messaging::subscribe(ANALYST_PARAMS)?;
        messaging::subscribe(ALERTS)?;
        colony_sdk::info!(
            "analyst on {} min {SYMBOL} bars: EMA {}/{}, min confidence {}; {} signals published so far",
            config.bar_minutes,
            params.fast,
            params.slow,
            params.min_confidence,
            stats.published
        );
        Ok(Analyst {
            config,
            params,
            ind: Indicators::default(),
            stats,
            suppress_until: 0,
            shortcut_tried: false,
        })
    }

    fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
        let MarketEvent::Candle(candle) = event else {
            return Ok(());
        };
        if candle.symbol != SYMBOL {
            return Ok(());
        }
        let bar = Bar::from_candle(&candle)?;
        if !bar.prices_ok() {
            // The data-scout reports it; indicators never see it.
            return Ok(());
        }
        self.on_bar(&bar)
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        match msg.subject.as_str() {
            ANALYST_PARAMS => {
                let update: ParamsUpdate = decode(&msg.subject, &msg.payload)?;
                self.on_params(&update).inspect_err(|e| {
                    colony_sdk::warn!("parameter update from {} refused: {e:?}", msg.sender)
                })
            }
            ALERTS => {
                let alert: Alert = decode(&msg.subject, &msg.payload)?;
                self.on_alert(&alert, msg.timestamp);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn snapshot(&mut self) -> Vec<u8> {
        serde_json::to_vec(&Snapshot {
            ind: self.ind.clone(),
            suppress_until: self.suppress_until,
        })
        .unwrap_or_default()
    }

    fn restore(&mut self, snapshot: Vec<u8>) -> Result<(), Error> {
        if let Some(s) = swarm_protocol::snapshot::<Snapshot>("analyst", &snapshot)? {
            self.ind = s.ind;
            self.suppress_until = s.suppress_until;
        }
        Ok(())
    }
}

colony_sdk::export_agent!(Analyst, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;
    use colony_sdk::Priority;
    use std::str::FromStr;
    use swarm_protocol::test_candle;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// One-minute bars every minute from minute `from`, closes given.
    fn feed(a: &mut Analyst, from: u64, closes: &[Decimal]) {
        for (i, c) in closes.iter().enumerate() {
            let candle = test_candle(SYMBOL, (from + i as u64) * NS_PER_MIN, *c);
            a.on_market(MarketEvent::Candle(candle)).unwrap();
        }
    }

    fn msg(subject: &str, payload: &[u8], timestamp: u64) -> Message {
        Message {
            id: "m1".into(),
            subject: subject.into(),
            sender: "learner".into(),
            correlation_id: None,
            reply_to: None,
            priority: Priority::Normal,
            timestamp,
            headers: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    fn signals() -> Vec<Signal> {
        messaging::sent()
            .into_iter()
            .filter(|(s, _)| s == SIGNALS)
            .map(|(_, p)| serde_json::from_slice(&p).unwrap())
            .collect()
    }

    /// A fast analyst on one-minute bars: EMA 3/8.
    fn quick() -> Analyst {
        let mut a = Analyst::init(r#"{"bar_minutes":1}"#).unwrap();
        a.on_message(msg(
            ANALYST_PARAMS,
            br#"{"fast":3,"slow":8,"min_confidence":"0.5"}"#,
            0,
        ))
        .unwrap();
        a
    }

    /// 30 bars drifting down, then 12 rising: one up-cross.
    fn down_then_up() -> Vec<Decimal> {
        let mut closes: Vec<Decimal> = (0..30).map(|i| dec(1000 - i, 0)).collect();
        closes.extend((1..=12).map(|i| dec(970 + 4 * i, 0)));
        closes
    }

    #[test]
    fn an_up_trend_after_a_down_trend_gives_one_buy_signal() {
        let mut a = quick();
        feed(&mut a, 0, &down_then_up());
        let sent = signals();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let s = &sent[0];
        assert_eq!((s.side, s.symbol.as_str()), (TradeSide::Buy, SYMBOL));
        assert!(
            s.confidence >= d("0.5") && s.confidence <= d("0.99"),
            "{s:?}"
        );
        assert!(s.reason.starts_with("ema-cross 3/8 up"), "{}", s.reason);
        assert!(s.price > d("970"));
        assert_eq!(s.ts % NS_PER_MIN, 0);
        // The guardrail attempt was made once (natively the stand-in accepts it).
        assert_eq!(orders::placed().len(), 1);
        assert_eq!(orders::placed()[0].client_id, "analystshortcut");
        // Then the trend turns down again: a sell, and no second direct attempt.
        let down: Vec<Decimal> = (1..=15).map(|i| dec(1018 - 5 * i, 0)).collect();
        feed(&mut a, 42, &down);
        let sent = signals();
        assert_eq!(sent.last().map(|s| s.side), Some(TradeSide::Sell));
        assert_eq!(orders::placed().len(), 1);
        let stats: Stats = state::get_json(STATS).unwrap().unwrap();
        assert_eq!(stats.published, sent.len() as u64);
        assert_eq!(
            stats.crosses,
            stats.published + stats.weak + stats.held_back
        );
    }

    #[test]
    fn no_signal_before_the_slow_ema_is_warm() {
        let mut a = quick();
        // An up-cross at bar 6 (slow is 8 bars): too early.
        let mut closes: Vec<Decimal> = (0..4).map(|i| dec(1000 - i, 0)).collect();
        closes.extend((1..=4).map(|i| dec(996 + 4 * i, 0)));
        feed(&mut a, 0, &closes);
        assert!(signals().is_empty());
        assert_eq!(a.ind.bars, 8);
    }

    #[test]
    fn params_are_applied_kept_in_state_and_checked() {
        let mut a = quick();
        assert_eq!((a.params.fast, a.params.slow), (3, 8));
        let stored: AnalystParams = state::get_json(PARAMS).unwrap().unwrap();
        assert_eq!(stored, a.params);
        // A restarted instance starts from the stored parameters.
        let b = Analyst::init("{}").unwrap();
        assert_eq!(b.params.min_confidence, d("0.5"));
        // Out of range, or not decimals as strings: refused, nothing changes.
        assert!(
            a.on_message(msg(ANALYST_PARAMS, br#"{"fast":9}"#, 0))
                .is_err()
        );
        assert!(
            a.on_message(msg(ANALYST_PARAMS, br#"{"min_confidence":0.9}"#, 0))
                .is_err()
        );
        assert_eq!(
            state::get_json::<AnalystParams>(PARAMS).unwrap(),
            Some(stored)
        );
        // A high bar: the same trend publishes nothing.
        a.on_message(msg(ANALYST_PARAMS, br#"{"min_confidence":"0.99"}"#, 0))
            .unwrap();
        feed(&mut a, 0, &down_then_up());
        assert!(signals().is_empty());
        assert_eq!(a.stats.weak, 1);
    }

    #[test]
    fn a_spike_alert_holds_signals_back() {
        let mut a = quick();
        let alert = Alert {
            kind: AlertKind::Spike,
            symbol: SYMBOL.into(),
            ts: 30 * NS_PER_MIN,
            detail: "test".into(),
        };
        // Published at minute 30; the cross comes around minute 33, within 30 minutes.
        a.on_message(msg(ALERTS, &encode(&alert).unwrap(), 30 * NS_PER_MIN))
            .unwrap();
        feed(&mut a, 0, &down_then_up());
        assert!(signals().is_empty());
        assert_eq!(a.stats.held_back, 1);
        // A gap alert does not hold anything back.
        let gap = Alert {
            kind: AlertKind::Gap,
            ..alert
        };
        let mut b = quick();
        b.on_message(msg(ALERTS, &encode(&gap).unwrap(), 30 * NS_PER_MIN))
            .unwrap();
        feed(&mut b, 0, &down_then_up());
        assert_eq!(signals().len(), 1);
    }

    #[test]
    fn minutes_fold_into_aligned_bars() {
        let params = AnalystParams::DEFAULT;
        let mut ind = Indicators::default();
        let bar_ns = 15 * NS_PER_MIN;
        let mut closed = 0;
        // Minutes 1..=14 of the first quarter hour (a partial bar), then 15..=29.
        for m in 1..30u64 {
            let c = test_candle(SYMBOL, m * NS_PER_MIN, dec(100 + m as u32, 0));
            let bar = Bar::from_candle(&c).unwrap();
            ind.push_minute(&bar, bar_ns, &params);
            if ind.building.is_none() {
                closed += 1;
            }
        }
        assert_eq!(closed, 2);
        assert_eq!(ind.bars, 2);
        assert_eq!(ind.prev_close, Some(dec(129, 0)));
        // A gap closes the unfinished bar when the next bucket starts.
        for m in [31u64, 47] {
            let c = test_candle(SYMBOL, m * NS_PER_MIN, dec(200, 0));
            ind.push_minute(&Bar::from_candle(&c).unwrap(), bar_ns, &params);
        }
        assert_eq!(ind.bars, 3);
        assert_eq!(ind.building.map(|b| b.bucket), Some(3));
    }

    #[test]
    fn rsi_and_confidence() {
        let mut ind = Indicators {
            avg_gain: d("2"),
            avg_loss: d("1"),
            ..Indicators::default()
        };
        assert_eq!(ind.rsi(), d("66.67"));
        ind.avg_loss = Decimal::ZERO;
        assert_eq!(ind.rsi(), d("100"));
        ind.avg_gain = Decimal::ZERO;
        assert_eq!(ind.rsi(), d("50"));
        let r = Reading {
            close: d("110"),
            end: 0,
            slow: d("100"),
            rsi: d("60"),
            atr: d("5"),
            cross: None,
        };
        // 0.5 + 0.1 × 2 + 0.1
        assert_eq!(confidence(&r, TradeSide::Buy), d("0.80"));
        // 0.5 + 0.2 − 0.1
        assert_eq!(confidence(&r, TradeSide::Sell), d("0.60"));
        let hot = Reading {
            rsi: d("90"),
            atr: Decimal::ZERO,
            ..r
        };
        // 0.5 + 0 + 0.2 − 0.15
        assert_eq!(confidence(&hot, TradeSide::Buy), d("0.55"));
    }

    #[test]
    fn snapshot_carries_the_indicators() {
        let mut a = quick();
        feed(&mut a, 0, &down_then_up()[..30]);
        let snap = a.snapshot();
        let mut b = quick();
        b.restore(snap).unwrap();
        assert_eq!(b.ind, a.ind);
        assert_eq!(b.ind.bars, 30);
        // The restored instance sees the up-cross the first one would have.
        feed(&mut b, 30, &down_then_up()[30..]);
        assert_eq!(signals().len(), 1);
        assert!(b.restore(b"{}".to_vec()).is_err());
    }

    #[test]
    fn bad_payloads_and_bars_are_refused_without_panicking() {
        let mut a = quick();
        assert!(a.on_message(msg(ALERTS, b"not json", 0)).is_err());
        assert!(a.on_message(msg(ANALYST_PARAMS, b"\"fast\"", 0)).is_err());
        let mut c = test_candle(SYMBOL, 0, d("100"));
        c.close = colony_sdk::Decimal::new(1, 29);
        assert!(a.on_market(MarketEvent::Candle(c)).is_err());
        let c = test_candle(SYMBOL, 0, d("-100"));
        a.on_market(MarketEvent::Candle(c)).unwrap();
        assert_eq!(a.ind.bars, 0);
    }
}
