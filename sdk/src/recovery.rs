//! Recovery after a restart (agents only): the host's records are the truth an agent rebuilds
//! from, and the host says what a new instance did not see.
//!
//! When a handler traps or exceeds a limit, the host ends that instance and makes a new one
//! after a backoff: `init`, then `restore` with the latest **recovery snapshot** (the host
//! calls [`Agent::snapshot`](crate::Agent::snapshot) after every successful `on-order` event
//! and every few other events), then a [`Recovery`] notice on
//! [`Agent::on_message`](crate::Agent::on_message), then, once, the `on-order` event whose
//! handler failed. Events handled after the snapshot are not replayed: their effects on the
//! agent's memory are lost, while their effects on the host (orders placed, fills) are not.
//! So after `init` and after `restore`, an agent that trades should:
//!
//! 1. read the host's view with [`Account::read`] (positions and working orders, read so that
//!    no fill falls between the two reads);
//! 2. take its positions and working orders from it, over whatever it kept itself;
//! 3. count fills from then on through a [`FillTracker`] made from that view: an order event
//!    for an order that was already final when the view was read, or the part of a fill the
//!    view already holds, is not counted twice (order events queued before the restart, and
//!    the redelivered one, arrive after `init`).
//!
//! ```
//! use colony_sdk::recovery::{Account, FillTracker};
//! use colony_sdk::{Error, OrderEvent};
//! use colony_sdk::rust_decimal::Decimal;
//!
//! struct Book {
//!     qty: Decimal,
//!     fills: FillTracker,
//! }
//!
//! impl Book {
//!     /// At `init` and after `restore`: the host's position and working orders win.
//!     fn rebuild(&mut self) -> Result<(), Error> {
//!         let account = Account::read(&["BTC-PERP"])?;
//!         self.qty = account.position_qty("BTC-PERP")?;
//!         self.fills = FillTracker::from_account(&account)?;
//!         Ok(())
//!     }
//!
//!     /// `on-order`: only what the host's view did not hold yet.
//!     fn on_order(&mut self, e: &OrderEvent) -> Result<(), Error> {
//!         if let Some(fill) = self.fills.unseen(e)? {
//!             let qty = Decimal::try_from(fill.qty)?;
//!             self.qty += if e.side == colony_sdk::Side::Buy { qty } else { -qty };
//!         }
//!         Ok(())
//!     }
//! }
//! # let mut b = Book { qty: Decimal::ZERO, fills: FillTracker::default() };
//! # b.rebuild().unwrap();
//! ```
//!
//! Every order the instance places goes into the tracker with [`FillTracker::placed`] (before
//! its events can arrive: right after `place` answers).
//!
//! Off `wasm32` the reads answer what [`orders::stub_account`] set (empty by default), so
//! this path can be unit-tested natively.

#[cfg(feature = "decimal")]
use std::collections::BTreeMap;

use crate::orders::{self, OpenOrder, PositionInfo};
use crate::{Error, Message, Timestamp};
#[cfg(feature = "decimal")]
use crate::{Fill, OrderEvent, OrderStatus};

/// What the host tells a new instance after a restart, as the first event after `init` and
/// `restore`: a message on `agent.<name>.recovery` from `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The agent's restart count (1 after the first failure).
    pub restart: u64,
    /// Events since the restored snapshot (or, without one, since the previous instance
    /// started) whose effects the new instance does not hold: handled after the snapshot, or
    /// failed and not redelivered.
    pub missed_events: u64,
    /// Host-clock time of the restored snapshot (or of the previous instance's start).
    pub missed_since: Timestamp,
    /// The export that failed (`on-order`, `on-market`, …; `snapshot` or `restore` when the
    /// host's own call failed; `instantiate` when the instance could not be made).
    pub failed_call: String,
    /// Whether the failed event is an order event delivered again right after this notice.
    pub redelivered: bool,
    /// Bytes of snapshot restored (0: the instance runs from its `init` state).
    pub restored_bytes: u64,
}

impl Recovery {
    /// The notice in `msg`, or `None` when `msg` is not one (another subject, or not sent by
    /// the host).
    pub fn from_message(msg: &Message) -> Option<Recovery> {
        if msg.sender != "host"
            || !msg.subject.starts_with("agent.")
            || !msg.subject.ends_with(".recovery")
        {
            return None;
        }
        let header = |name: &str| {
            msg.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let number = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
        Some(Recovery {
            restart: number("x-restart")?,
            missed_events: number("x-missed-events")?,
            missed_since: number("x-missed-since")?,
            failed_call: header("x-failed-call")?.to_string(),
            redelivered: header("x-redelivered")? == "true",
            restored_bytes: number("x-restored-bytes")?,
        })
    }
}

/// The agent's own account as the host keeps it: positions and working orders.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    /// One per symbol asked for (a flat one when the agent holds nothing).
    pub positions: Vec<PositionInfo>,
    /// Working orders, oldest first.
    pub open_orders: Vec<OpenOrder>,
}

/// Reads of a consistent view before [`Account::read`] gives up.
const CONSISTENT_READS: usize = 4;

impl Account {
    /// Reads the positions in `symbols` and the working orders. The positions are read
    /// before and after the orders, again until both agree, so that no fill falls between
    /// the reads (a live venue can fill at any time); after a few tries the last read is
    /// taken as it is.
    pub fn read(symbols: &[&str]) -> Result<Account, Error> {
        let positions = |symbols: &[&str]| -> Result<Vec<PositionInfo>, Error> {
            symbols.iter().map(|s| orders::position(s)).collect()
        };
        let mut before = positions(symbols)?;
        let mut tries = 1;
        loop {
            let open_orders = orders::open_orders();
            let after = positions(symbols)?;
            if after == before || tries >= CONSISTENT_READS {
                return Ok(Account {
                    positions: after,
                    open_orders,
                });
            }
            before = after;
            tries += 1;
        }
    }

    /// The position in `symbol`, if it was read.
    pub fn position(&self, symbol: &str) -> Option<&PositionInfo> {
        self.positions.iter().find(|p| p.symbol == symbol)
    }

    /// The signed quantity held in `symbol` (zero when it was not read).
    #[cfg(feature = "decimal")]
    pub fn position_qty(&self, symbol: &str) -> Result<rust_decimal::Decimal, Error> {
        match self.position(symbol) {
            Some(p) => Ok(rust_decimal::Decimal::try_from(p.qty)?),
            None => Ok(rust_decimal::Decimal::ZERO),
        }
    }

    /// The working orders in `symbol`, oldest first.
    pub fn open_in<'a>(&'a self, symbol: &'a str) -> impl Iterator<Item = &'a OpenOrder> + 'a {
        self.open_orders.iter().filter(move |o| o.symbol == symbol)
    }
}

/// Which fills an agent has not counted yet, per order: made from an [`Account`] read at a
/// (re)start, it lets through only what that view does not hold.
///
/// - An order that was working when the view was read: the part of each fill beyond the
///   filled quantity the view showed.
/// - An order placed since (reported with [`FillTracker::placed`]): every fill.
/// - Any other order was final when the view was read: its fills are in the position
///   already, so none is let through.
///
/// A final event (filled, cancelled, rejected, expired) forgets the order.
#[cfg(feature = "decimal")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillTracker {
    /// Filled quantity already counted, by client id.
    counted: BTreeMap<String, rust_decimal::Decimal>,
}

#[cfg(feature = "decimal")]
impl FillTracker {
    /// Tracks the working orders of `account`, with their fills so far counted.
    pub fn from_account(account: &Account) -> Result<FillTracker, Error> {
        let mut counted = BTreeMap::new();
        for o in &account.open_orders {
            counted.insert(
                o.client_id.clone(),
                rust_decimal::Decimal::try_from(o.filled_qty)?,
            );
        }
        Ok(FillTracker { counted })
    }

    /// An order this instance placed: all its fills are new.
    pub fn placed(&mut self, client_id: &str) {
        self.counted
            .insert(client_id.to_string(), rust_decimal::Decimal::ZERO);
    }

    /// Whether the order is tracked (working at the last read, or placed since).
    pub fn tracks(&self, client_id: &str) -> bool {
        self.counted.contains_key(client_id)
    }

    /// The part of `event`'s fill not counted yet (`None`: no fill, or all of it is in the
    /// view already). A partly counted fill comes back with its quantity and fee cut to the
    /// uncounted part.
    pub fn unseen(&mut self, event: &OrderEvent) -> Result<Option<Fill>, Error> {
        let unseen = match (&event.last_fill, self.counted.get_mut(&event.client_id)) {
            (Some(fill), Some(counted)) => {
                let total = rust_decimal::Decimal::try_from(event.filled_qty)?;
                let qty = rust_decimal::Decimal::try_from(fill.qty)?;
                let before = total - qty;
                let new = total - before.max(*counted);
                *counted = (*counted).max(total);
                if new <= rust_decimal::Decimal::ZERO || qty <= rust_decimal::Decimal::ZERO {
                    None
                } else if new == qty {
                    Some(fill.clone())
                } else {
                    let fee = rust_decimal::Decimal::try_from(fill.fee)?;
                    Some(Fill {
                        qty: crate::Decimal::try_from(new)?,
                        fee: crate::Decimal::try_from(fee * new / qty)?,
                        ..fill.clone()
                    })
                }
            }
            _ => None,
        };
        if matches!(
            event.status,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        ) {
            self.counted.remove(&event.client_id);
        }
        Ok(unseen)
    }
}

#[cfg(all(test, feature = "decimal"))]
mod tests {
    use super::*;
    use crate::{Priority, Side};

    fn dec(s: &str) -> crate::Decimal {
        crate::Decimal::try_from(s.parse::<rust_decimal::Decimal>().unwrap()).unwrap()
    }

    fn open(id: &str, qty: &str, filled: &str) -> OpenOrder {
        OpenOrder {
            client_id: id.into(),
            venue_order_id: None,
            symbol: "BTC-PERP".into(),
            side: Side::Buy,
            order_type: orders::OrderType::Limit,
            price: Some(dec("40000")),
            qty: dec(qty),
            filled_qty: dec(filled),
            status: OrderStatus::PartiallyFilled,
            created: 0,
        }
    }

    fn event(
        id: &str,
        status: OrderStatus,
        filled: &str,
        fill: Option<(&str, &str)>,
    ) -> OrderEvent {
        OrderEvent {
            client_id: id.into(),
            venue_order_id: None,
            symbol: "BTC-PERP".into(),
            side: Side::Buy,
            status,
            filled_qty: dec(filled),
            avg_price: None,
            last_fill: fill.map(|(qty, fee)| Fill {
                qty: dec(qty),
                price: dec("40000"),
                fee: dec(fee),
                fee_currency: "USDT".into(),
                ts: 0,
            }),
            reject_reason: None,
            ts: 0,
        }
    }

    #[test]
    fn fills_of_orders_final_before_the_read_are_not_counted_again() {
        let mut t = FillTracker::from_account(&Account::default()).unwrap();
        // Placed by the previous instance, filled before the read: queued event, ignored.
        let e = event("t1", OrderStatus::Filled, "0.25", Some(("0.25", "5")));
        assert_eq!(t.unseen(&e).unwrap(), None);
        // Placed by this instance: counted, once.
        t.placed("t2");
        let e = event("t2", OrderStatus::Filled, "0.25", Some(("0.25", "5")));
        assert_eq!(t.unseen(&e).unwrap().map(|f| f.qty), Some(dec("0.25")));
        assert!(!t.tracks("t2"), "a final event forgets the order");
        assert_eq!(t.unseen(&e).unwrap(), None, "the same event again");
    }

    #[test]
    fn a_working_order_counts_only_fills_beyond_the_read() {
        let account = Account {
            positions: Vec::new(),
            open_orders: vec![open("t1", "1", "0.4")],
        };
        let mut t = FillTracker::from_account(&account).unwrap();
        assert!(t.tracks("t1"));
        // A fill the read already held (0.1 → 0.4).
        let e = event(
            "t1",
            OrderStatus::PartiallyFilled,
            "0.4",
            Some(("0.3", "3")),
        );
        assert_eq!(t.unseen(&e).unwrap(), None);
        // One that straddles it: 0.4 → 0.6 counted as 0.2 of 0.3, with its fee cut alike.
        let mut t = FillTracker::from_account(&account).unwrap();
        let e = event(
            "t1",
            OrderStatus::PartiallyFilled,
            "0.6",
            Some(("0.3", "3")),
        );
        let f = t.unseen(&e).unwrap().unwrap();
        assert_eq!((f.qty, f.fee), (dec("0.2"), dec("2")));
        // The rest: all new.
        let e = event("t1", OrderStatus::Filled, "1", Some(("0.4", "4")));
        assert_eq!(t.unseen(&e).unwrap().map(|f| f.qty), Some(dec("0.4")));
        // Events without a fill count nothing.
        t.placed("t3");
        let e = event("t3", OrderStatus::Accepted, "0", None);
        assert_eq!(t.unseen(&e).unwrap(), None);
        assert!(t.tracks("t3"));
    }

    #[test]
    fn the_account_is_read_from_the_host() {
        orders::stub_account(
            vec![(String::from("BTC-PERP"), dec("-0.5"), dec("41000"))],
            vec![open("t7", "1", "0")],
        );
        let a = Account::read(&["BTC-PERP", "ETH-PERP"]).unwrap();
        assert_eq!(a.position_qty("BTC-PERP").unwrap().to_string(), "-0.5");
        assert_eq!(a.position("ETH-PERP").map(|p| p.qty), Some(dec("0")));
        assert_eq!(a.open_in("BTC-PERP").count(), 1);
        assert_eq!(a.open_in("ETH-PERP").count(), 0);
    }

    #[test]
    fn the_recovery_notice_is_recognised_by_subject_sender_and_headers() {
        let h = |n: &str, v: &str| (n.to_string(), v.to_string());
        let mut msg = Message {
            id: "1".into(),
            subject: "agent.trader.recovery".into(),
            sender: "host".into(),
            correlation_id: None,
            reply_to: None,
            priority: Priority::Normal,
            timestamp: 5,
            headers: vec![
                h("x-restart", "2"),
                h("x-missed-events", "3"),
                h("x-missed-since", "1700"),
                h("x-failed-call", "on-order"),
                h("x-redelivered", "true"),
                h("x-restored-bytes", "120"),
            ],
            payload: Vec::new(),
        };
        assert_eq!(
            Recovery::from_message(&msg),
            Some(Recovery {
                restart: 2,
                missed_events: 3,
                missed_since: 1700,
                failed_call: "on-order".into(),
                redelivered: true,
                restored_bytes: 120,
            })
        );
        msg.sender = "analyst".into();
        assert_eq!(Recovery::from_message(&msg), None, "only the host sends it");
        msg.sender = "host".into();
        msg.subject = "agent.trader.inbox".into();
        assert_eq!(Recovery::from_message(&msg), None);
    }
}
