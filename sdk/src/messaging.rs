//! Messaging with other agents through the host's bus (agents only).
//!
//! Every call is checked against the agent's grants (`messaging.publish:…`,
//! `messaging.subscribe:…`, `messaging.request:…`); a refusal is [`Error::Denied`] naming the
//! capability to ask the operator for. Messages you receive arrive in
//! [`Agent::on_message`](crate::Agent::on_message); your inbox `agent.<name>.inbox` needs no
//! grant. Answer a request with [`reply`], passing the `reply_to` of the message.
//!
//! Off `wasm32` (native unit tests) there is no bus: [`publish`] and [`reply`] record what was
//! sent (see [`sent`]), [`subscribe`] succeeds, and [`request`]/[`gather`] return
//! [`Error::Unavailable`].
//!
//! ```
//! use colony_sdk::messaging;
//!
//! messaging::publish("signals.btc", b"buy")?;
//! # #[cfg(not(target_arch = "wasm32"))]
//! assert_eq!(messaging::sent().last().map(|(s, _)| s.as_str()), Some("signals.btc"));
//! # Ok::<(), colony_sdk::Error>(())
//! ```

use crate::{Error, Message, Priority};

/// How to send a message: priority, headers and time to live (0: none).
pub use crate::__bindings::agent::colony::plugin::messaging::SendOptions;

/// Publishes `payload` on `subject` (no wildcards) at normal priority.
pub fn publish(subject: &str, payload: &[u8]) -> Result<(), Error> {
    imp::publish(subject, payload)
}

/// Publishes with a priority, headers and a time to live in milliseconds (0: none).
///
/// ```
/// use colony_sdk::{messaging, Priority};
/// messaging::publish_with("risk.halt", b"now", Priority::High, &[("reason", "drawdown")], 500)?;
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn publish_with(
    subject: &str,
    payload: &[u8],
    priority: Priority,
    headers: &[(&str, &str)],
    ttl_ms: u32,
) -> Result<(), Error> {
    let options = SendOptions {
        priority,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ttl_ms,
    };
    imp::publish_with(subject, payload, &options)
}

/// Subscribes to a subject pattern (`*` one token, `>` the rest); returns an id for
/// [`unsubscribe`].
pub fn subscribe(pattern: &str) -> Result<u64, Error> {
    imp::subscribe(pattern)
}

/// Ends a subscription.
pub fn unsubscribe(id: u64) -> Result<(), Error> {
    imp::unsubscribe(id)
}

/// Sends a request and waits for the first reply, at most `timeout_ms` (and never past the
/// event's deadline). No subscriber: [`Error::Unavailable`]; no reply in time: [`Error::Timeout`].
pub fn request(subject: &str, payload: &[u8], timeout_ms: u32) -> Result<Message, Error> {
    imp::request(subject, payload, timeout_ms)
}

/// Sends a request to every subscriber and returns the replies that arrived before
/// `quorum` was reached or `timeout_ms` passed.
///
/// ```no_run
/// // Approve if at least 2 of 3 risk agents answer "yes" within 50 ms.
/// let replies = colony_sdk::messaging::gather("risk.approve", b"order-17", 2, 50)?;
/// let yes = replies.iter().filter(|m| m.payload == b"yes").count();
/// let approved = yes >= 2;
/// # let _ = approved;
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn gather(
    subject: &str,
    payload: &[u8],
    quorum: u32,
    timeout_ms: u32,
) -> Result<Vec<Message>, Error> {
    imp::gather(subject, payload, quorum, timeout_ms)
}

/// Answers a request: `reply_to` is the [`Message::reply_to`] of the request.
///
/// ```
/// # use colony_sdk::{messaging, Message, Error};
/// fn on_message(msg: Message) -> Result<(), Error> {
///     if let Some(reply_to) = &msg.reply_to {
///         messaging::reply(reply_to, b"pong")?;
///     }
///     Ok(())
/// }
/// ```
pub fn reply(reply_to: &str, payload: &[u8]) -> Result<(), Error> {
    imp::reply(reply_to, payload)
}

/// Off `wasm32`: every (subject, payload) published or replied on this thread, oldest first.
#[cfg(not(target_arch = "wasm32"))]
pub fn sent() -> Vec<(String, Vec<u8>)> {
    imp::SENT.with_borrow(|s| s.clone())
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::__bindings::agent::colony::plugin::messaging as wit;
    use crate::{Error, Message};

    pub fn publish(subject: &str, payload: &[u8]) -> Result<(), Error> {
        wit::publish(subject, payload)
    }
    pub fn publish_with(
        subject: &str,
        payload: &[u8],
        options: &wit::SendOptions,
    ) -> Result<(), Error> {
        wit::publish_with(subject, payload, options)
    }
    pub fn subscribe(pattern: &str) -> Result<u64, Error> {
        wit::subscribe(pattern)
    }
    pub fn unsubscribe(id: u64) -> Result<(), Error> {
        wit::unsubscribe(id)
    }
    pub fn request(subject: &str, payload: &[u8], timeout_ms: u32) -> Result<Message, Error> {
        wit::request(subject, payload, timeout_ms)
    }
    pub fn gather(
        subject: &str,
        payload: &[u8],
        quorum: u32,
        timeout_ms: u32,
    ) -> Result<Vec<Message>, Error> {
        wit::gather(subject, payload, quorum, timeout_ms)
    }
    pub fn reply(reply_to: &str, payload: &[u8]) -> Result<(), Error> {
        wit::reply(reply_to, payload)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    //! A stand-in for native unit tests: records what is sent; there is no one to answer.

    use std::cell::{Cell, RefCell};

    use crate::__bindings::agent::colony::plugin::messaging::SendOptions;
    use crate::{Error, Message};

    thread_local! {
        pub static SENT: RefCell<Vec<(String, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
        static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    }

    pub fn publish(subject: &str, payload: &[u8]) -> Result<(), Error> {
        SENT.with_borrow_mut(|s| s.push((subject.to_string(), payload.to_vec())));
        Ok(())
    }
    pub fn publish_with(
        subject: &str,
        payload: &[u8],
        _options: &SendOptions,
    ) -> Result<(), Error> {
        publish(subject, payload)
    }
    pub fn subscribe(_pattern: &str) -> Result<u64, Error> {
        Ok(NEXT_ID.replace(NEXT_ID.get() + 1))
    }
    pub fn unsubscribe(_id: u64) -> Result<(), Error> {
        Ok(())
    }
    pub fn request(_subject: &str, _payload: &[u8], _timeout_ms: u32) -> Result<Message, Error> {
        Err(Error::Unavailable("no bus outside a Colony host".into()))
    }
    pub fn gather(
        _subject: &str,
        _payload: &[u8],
        _quorum: u32,
        _timeout_ms: u32,
    ) -> Result<Vec<Message>, Error> {
        Err(Error::Unavailable("no bus outside a Colony host".into()))
    }
    pub fn reply(reply_to: &str, payload: &[u8]) -> Result<(), Error> {
        publish(reply_to, payload)
    }
}
