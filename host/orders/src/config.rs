//! The `[orders]` section of `colony.toml`: the venue, the journal, the paper exchange's fees,
//! the global risk limits, and approvals. Money is written as a string (`"0.5"`), never a
//! float: TOML floats are binary and a limit must mean exactly what the operator wrote.
//!
//! ```toml
//! [orders]
//! venue = "paper"                  # paper (default) | okx | alpaca | none
//! journal = "sqlite:///srv/orders.db"  # default DATA_DIR/orders.db; or postgres://…
//! approval_notional = "50000"      # orders at or above this notional wait for approval
//! approval_timeout_ms = 60000      # unapproved by then: rejected (approval.timeout)
//! venue_url = "https://www.okx.com" # okx/alpaca REST base URL (default: the venue's own)
//! okx_demo = true                  # OKX demo trading (x-simulated-trading: 1)
//! venue_timeout_ms = 5000          # per venue request
//! venue_poll_ms = 2000             # how often working live orders are looked up (0: never)
//! credentials = "/etc/colony/venues.toml"  # mode 0600; default: COLONY_OKX_* / COLONY_ALPACA_*
//! instruments = ["BTC-USDT"]       # symbols orders may name besides those the feed publishes
//!
//! [orders.paper]
//! maker_fee_bps = "2"
//! taker_fee_bps = "5"
//! initial_balance = "100000"
//! quote_currency = "USDT"
//!
//! [orders.risk]                    # for every agent; grants can only tighten them
//! defaults = true                  # false: no built-in limit; only the keys written here
//! instruments = ["BTC-*"]
//! tick_size = "0.1"
//! qty_step = "0.001"
//! min_qty = "0.001"
//! max_qty = "5"
//! max_notional = "250000"
//! price_collar_bps = 500
//! max_orders_per_sec = 20
//! max_orders_per_min = 600
//! max_cancels_per_sec = 20
//! max_cancels_per_min = 600
//! max_open_orders = 50
//! max_open_notional = "1000000"
//! max_position = "10"
//! max_daily_loss = "5000"
//! max_quote_age_ms = 300000
//!
//! [orders.consensus]               # N of M risk agents approve instead of an operator
//! subject = "risk.approve"
//! quorum = 2
//! voters = 3
//! timeout_ms = 500
//! ```

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::paper::PaperConfig;
use super::risk::{Instruments, RiskLimits};
use super::service::{Consensus, OrdersConfig};

/// Where orders go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenueChoice {
    /// No venue: agents' `orders` calls are `unavailable`.
    None,
    /// The in-process paper exchange.
    Paper,
    /// OKX v5 REST (credentials from the environment).
    Okx {
        /// REST base URL.
        url: String,
        /// Demo trading.
        demo: bool,
    },
    /// Alpaca (credentials from the environment).
    Alpaca {
        /// REST base URL.
        url: String,
    },
}

/// The resolved `[orders]` section.
#[derive(Debug, Clone)]
pub struct OrdersSettings {
    /// Where orders go.
    pub venue: VenueChoice,
    /// Journal URL; `None`: `DATA_DIR/orders.db`.
    pub journal: Option<String>,
    /// Per venue request.
    pub venue_timeout: Duration,
    /// How often working orders at a live venue are looked up (fills, cancels); zero: never.
    pub venue_poll: Duration,
    /// A credentials file (TOML, mode 0600); `None`: the environment.
    pub credentials: Option<std::path::PathBuf>,
    /// The router's configuration.
    pub router: OrdersConfig,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        OrdersSettings {
            venue: VenueChoice::Paper,
            journal: None,
            venue_timeout: Duration::from_secs(5),
            venue_poll: Duration::from_secs(2),
            credentials: None,
            router: OrdersConfig::default(),
        }
    }
}

/// `[orders]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersSection {
    venue: Option<String>,
    journal: Option<String>,
    approval_notional: Option<String>,
    approval_timeout_ms: Option<u64>,
    venue_url: Option<String>,
    okx_demo: Option<bool>,
    venue_timeout_ms: Option<u64>,
    venue_poll_ms: Option<u64>,
    credentials: Option<std::path::PathBuf>,
    instruments: Option<Vec<String>>,
    #[serde(default)]
    paper: PaperSection,
    #[serde(default)]
    risk: RiskSection,
    consensus: Option<ConsensusSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaperSection {
    maker_fee_bps: Option<String>,
    taker_fee_bps: Option<String>,
    initial_balance: Option<String>,
    quote_currency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RiskSection {
    defaults: Option<bool>,
    instruments: Option<Vec<String>>,
    tick_size: Option<String>,
    qty_step: Option<String>,
    min_qty: Option<String>,
    max_qty: Option<String>,
    max_notional: Option<String>,
    price_collar_bps: Option<u32>,
    max_orders_per_sec: Option<u32>,
    max_orders_per_min: Option<u32>,
    max_cancels_per_sec: Option<u32>,
    max_cancels_per_min: Option<u32>,
    max_open_orders: Option<u32>,
    max_open_notional: Option<String>,
    max_position: Option<String>,
    max_daily_loss: Option<String>,
    max_quote_age_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsensusSection {
    subject: String,
    quorum: u32,
    voters: u32,
    timeout_ms: u64,
}

/// A decimal written as a string; `positive`: must be above zero.
fn money(key: &str, v: &Option<String>, positive: bool) -> Result<Option<Decimal>, String> {
    let Some(s) = v else { return Ok(None) };
    let d = Decimal::from_str(s.trim()).map_err(|_| {
        format!("orders.{key} {s:?}: not a decimal (write it as a string: \"0.5\")")
    })?;
    if positive && d <= Decimal::ZERO {
        return Err(format!("orders.{key} {s:?}: must be greater than zero"));
    }
    Ok(Some(d))
}

impl OrdersSection {
    /// Checks every value and resolves the section; errors name the key. A relative
    /// credentials path is taken from `base` (the configuration file's folder).
    pub fn resolve_in(self, base: &std::path::Path) -> Result<OrdersSettings, String> {
        let credentials = self.credentials.as_ref().map(|p| base.join(p));
        let mut s = self.resolve()?;
        s.credentials = credentials;
        Ok(s)
    }

    /// Checks every value and resolves the section; errors name the key.
    pub fn resolve(self) -> Result<OrdersSettings, String> {
        let mut s = OrdersSettings::default();
        let url = self.venue_url.clone();
        if let Some(u) = &url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!(
                "orders.venue_url {u:?}: expected http:// or https://"
            ));
        }
        s.venue = match self.venue.as_deref().unwrap_or("paper") {
            "paper" => VenueChoice::Paper,
            "none" => VenueChoice::None,
            "okx" => VenueChoice::Okx {
                url: url.unwrap_or_else(|| "https://www.okx.com".into()),
                demo: self.okx_demo.unwrap_or(true),
            },
            "alpaca" => VenueChoice::Alpaca {
                url: url.unwrap_or_else(|| "https://paper-api.alpaca.markets".into()),
            },
            other => {
                return Err(format!(
                    "orders.venue {other:?}: expected paper, okx, alpaca or none"
                ));
            }
        };
        s.journal = self.journal;
        if let Some(ms) = self.venue_timeout_ms {
            if ms == 0 {
                return Err("orders.venue_timeout_ms must be greater than zero".into());
            }
            s.venue_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.venue_poll_ms {
            s.venue_poll = Duration::from_millis(ms);
        }
        let r = &mut s.router;
        r.approval_notional = money("approval_notional", &self.approval_notional, true)?;
        if let Some(ms) = self.approval_timeout_ms {
            r.approval_timeout = Duration::from_millis(ms);
        }
        let p = &self.paper;
        let mut paper = PaperConfig::default();
        if let Some(d) = money("paper.maker_fee_bps", &p.maker_fee_bps, false)? {
            paper.maker_fee_bps = d;
        }
        if let Some(d) = money("paper.taker_fee_bps", &p.taker_fee_bps, false)? {
            paper.taker_fee_bps = d;
        }
        if let Some(d) = money("paper.initial_balance", &p.initial_balance, false)? {
            paper.initial_balance = d;
        }
        if let Some(c) = &p.quote_currency {
            if c.is_empty() || c.len() > 12 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!(
                    "orders.paper.quote_currency {c:?}: expected 1 to 12 capital letters"
                ));
            }
            paper.quote_currency = c.as_str().into();
        }
        r.paper = paper;
        if let Some(symbols) = &self.instruments {
            r.instruments = Vec::with_capacity(symbols.len());
            for sym in symbols {
                if sym.is_empty() || sym.len() > 64 || sym.contains(char::is_whitespace) {
                    return Err(format!(
                        "orders.instruments {sym:?}: expected a symbol of 1 to 64 characters \
                         without spaces"
                    ));
                }
                r.instruments.push(sym.as_str().into());
            }
        }
        let k = &self.risk;
        let configured = RiskLimits {
            instruments: k.instruments.as_ref().map(Instruments::new),
            tick_size: money("risk.tick_size", &k.tick_size, true)?,
            qty_step: money("risk.qty_step", &k.qty_step, true)?,
            min_qty: money("risk.min_qty", &k.min_qty, true)?,
            max_qty: money("risk.max_qty", &k.max_qty, true)?,
            max_notional: money("risk.max_notional", &k.max_notional, true)?,
            price_collar_bps: k.price_collar_bps,
            max_orders_per_sec: k.max_orders_per_sec,
            max_orders_per_min: k.max_orders_per_min,
            max_cancels_per_sec: k.max_cancels_per_sec,
            max_cancels_per_min: k.max_cancels_per_min,
            max_open_orders: k.max_open_orders,
            max_open_notional: money("risk.max_open_notional", &k.max_open_notional, true)?,
            max_position: money("risk.max_position", &k.max_position, true)?,
            max_daily_loss: money("risk.max_daily_loss", &k.max_daily_loss, true)?,
            max_quote_age_ms: k.max_quote_age_ms,
        };
        let base = if k.defaults.unwrap_or(true) {
            RiskLimits::defaults()
        } else {
            RiskLimits::default()
        };
        (r.risk, r.risk_defaults) = base.overridden_by(configured);
        if let Some(c) = self.consensus {
            colony_caps::check_subject(&c.subject, false)
                .map_err(|e| format!("orders.consensus.subject {:?}: {e}", c.subject))?;
            if c.quorum == 0 || c.voters < c.quorum {
                return Err(format!(
                    "orders.consensus: quorum {} of {} voters: need 1 ≤ quorum ≤ voters",
                    c.quorum, c.voters
                ));
            }
            r.consensus = Some(Consensus {
                subject: c.subject,
                quorum: c.quorum,
                voters: c.voters,
                timeout: Duration::from_millis(c.timeout_ms.max(1)),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OrdersSettings, String> {
        let section: OrdersSection = toml::from_str(text).map_err(|e| e.to_string())?;
        section.resolve()
    }

    #[test]
    fn orders_config_defaults_to_the_paper_venue_with_the_default_limits() {
        let s = parse("").unwrap();
        assert_eq!(s.venue, VenueChoice::Paper);
        assert_eq!(s.router.risk, RiskLimits::defaults());
        assert_eq!(s.router.risk, OrdersSettings::default().router.risk);
        assert!(s.router.require_known_instruments);
        assert!(s.router.approval_notional.is_none());
        // A key written replaces its default only; `defaults = false` drops the rest.
        let s = parse("[risk]\nmax_qty = \"2\"").unwrap();
        assert_eq!(s.router.risk.max_qty, Some(Decimal::TWO));
        assert_eq!(s.router.risk.price_collar_bps, Some(1_000));
        assert!(!s.router.risk_defaults.contains(&"max_qty"));
        assert!(s.router.risk_defaults.contains(&"price_collar_bps"));
        let s = parse("instruments = [\"BTC-USDT\"]\n[risk]\ndefaults = false\nmax_qty = \"2\"")
            .unwrap();
        assert_eq!(
            s.router.risk,
            RiskLimits {
                max_qty: Some(Decimal::TWO),
                ..RiskLimits::default()
            }
        );
        assert!(s.router.risk_defaults.is_empty());
        assert_eq!(
            s.router.instruments,
            [std::sync::Arc::<str>::from("BTC-USDT")]
        );
    }

    #[test]
    fn orders_config_reads_exact_limits() {
        let s = parse(
            "approval_notional = \"50000.5\"\n[risk]\nmax_qty = \"0.5\"\nprice_collar_bps = 50\n\
             instruments = [\"BTC-*\"]\n[paper]\ntaker_fee_bps = \"-1.5\"\n\
             [consensus]\nsubject = \"risk.approve\"\nquorum = 2\nvoters = 3\ntimeout_ms = 200",
        )
        .unwrap();
        assert_eq!(s.router.risk.max_qty, Some(Decimal::new(5, 1)));
        assert_eq!(s.router.risk.price_collar_bps, Some(50));
        assert_eq!(s.router.approval_notional, Some(Decimal::new(500_005, 1)));
        assert_eq!(s.router.paper.taker_fee_bps, Decimal::new(-15, 1));
        let c = s.router.consensus.unwrap();
        assert_eq!((c.quorum, c.voters), (2, 3));
    }

    #[test]
    fn orders_config_refuses_floats_bad_values_and_unknown_keys_by_name() {
        let cases = [
            ("[risk]\nmax_qty = 0.5", "max_qty"),
            (
                "[risk]\nmax_qty = \"abc\"",
                "orders.risk.max_qty \"abc\": not a decimal",
            ),
            ("[risk]\nmax_notional = \"0\"", "must be greater than zero"),
            ("venue = \"ftx\"", "orders.venue \"ftx\""),
            ("[risk]\nmax_qtty = \"1\"", "max_qtty"),
            (
                "[consensus]\nsubject = \"risk.approve\"\nquorum = 3\nvoters = 2\ntimeout_ms = 1",
                "quorum 3 of 2",
            ),
            ("venue_url = \"ftp://x\"", "expected http:// or https://"),
            (
                "instruments = [\"BTC USDT\"]",
                "orders.instruments \"BTC USDT\"",
            ),
            ("[risk]\ndefaults = \"no\"", "defaults"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
