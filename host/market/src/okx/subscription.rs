//! What the feed subscribes to: OKX channels, `channel:instId` subscriptions, and the
//! subscribe and unsubscribe requests.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// An OKX public channel this feed understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `tickers`: last trade and best bid/ask, pushed at most every 100 ms → [`Quote`].
    Tickers,
    /// `trades`: every trade (possibly aggregated, see `count`) → [`Trade`].
    Trades,
    /// `books`: 400 levels, a snapshot then incremental updates with `seqId`/`prevSeqId` →
    /// [`Book`] and [`Quote`].
    Books,
    /// `books5`: a five-level snapshot at most every 100 ms → [`Book`] and [`Quote`].
    Books5,
    /// `bbo-tbt`: best bid/ask on every change → [`Quote`].
    BboTbt,
}

impl Channel {
    /// Every channel, in a fixed order.
    pub const ALL: [Channel; 5] = [
        Channel::Tickers,
        Channel::Trades,
        Channel::Books,
        Channel::Books5,
        Channel::BboTbt,
    ];

    /// OKX's name for the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Tickers => "tickers",
            Channel::Trades => "trades",
            Channel::Books => "books",
            Channel::Books5 => "books5",
            Channel::BboTbt => "bbo-tbt",
        }
    }

    /// The channel OKX calls `name`.
    pub(crate) fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One channel of one instrument; written `CHANNEL:INSTID` (`books:BTC-USDT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subscription {
    /// The channel.
    pub channel: Channel,
    /// OKX's instrument id, which is also the symbol of the events (`BTC-USDT`).
    pub inst_id: Arc<str>,
}

impl Subscription {
    /// `channel` for `inst_id`.
    pub fn new(channel: Channel, inst_id: impl Into<Arc<str>>) -> Subscription {
        Subscription {
            channel,
            inst_id: inst_id.into(),
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.inst_id)
    }
}

/// A subscription string that is not `CHANNEL:INSTID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "okx subscription {0:?}: expected CHANNEL:INSTID with CHANNEL one of tickers, trades, books, books5, bbo-tbt"
)]
pub struct BadSubscription(pub String);

impl FromStr for Subscription {
    type Err = BadSubscription;

    fn from_str(s: &str) -> Result<Subscription, BadSubscription> {
        let bad = || BadSubscription(s.to_string());
        let (channel, inst_id) = s.split_once(':').ok_or_else(bad)?;
        let channel = Channel::from_name(channel).ok_or_else(bad)?;
        let valid = !inst_id.is_empty()
            && inst_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad());
        }
        Ok(Subscription::new(channel, inst_id))
    }
}

/// The `subscribe` request for these subscriptions.
pub fn subscribe_request(subs: &[Subscription]) -> String {
    op_request("subscribe", subs)
}

/// The `unsubscribe` request for these subscriptions.
pub fn unsubscribe_request(subs: &[Subscription]) -> String {
    op_request("unsubscribe", subs)
}

fn op_request(op: &str, subs: &[Subscription]) -> String {
    let args: Vec<serde_json::Value> = subs
        .iter()
        .map(|s| serde_json::json!({ "channel": s.channel.as_str(), "instId": &*s.inst_id }))
        .collect();
    serde_json::json!({ "op": op, "args": args }).to_string()
}
