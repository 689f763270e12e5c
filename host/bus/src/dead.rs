//! Dead letters: why a message was dead-lettered, and the copy on `_DEAD.<subject>`.

use super::*;

/// Why a message was dead-lettered (the `x-dead-reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// A subscriber's mailbox was full and the message is not market data.
    MailboxFull,
    /// It waited in a mailbox past its `expires_at`.
    Expired,
    /// A request matched no subscription.
    NoResponders,
    /// It was waiting in the mailbox of an agent that was quarantined.
    Quarantined,
    /// Its handler failed (trap or limit) on the instance it was delivered to and again on
    /// the new instance it was redelivered to (order events only; see `agent.rs`).
    HandlerFailed,
    /// The subscriber's mailbox already held its sender's share ([`SENDER_SHARE`]).
    SenderShare,
}

impl DeadReason {
    /// The header value: `mailbox-full`, `expired`, `no-responders`, `quarantined`,
    /// `handler-failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::MailboxFull => "mailbox-full",
            DeadReason::Expired => "expired",
            DeadReason::NoResponders => "no-responders",
            DeadReason::Quarantined => "quarantined",
            DeadReason::HandlerFailed => "handler-failed",
            DeadReason::SenderShare => "sender-share",
        }
    }
}

impl BusShared {
    /// Re-publishes a copy of `env` on `_DEAD.<subject>`; what no one takes is only counted.
    pub(crate) fn dead_letter(&self, env: &Envelope, reason: DeadReason, subscriber: Option<&str>) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        let table = self.read_table();
        if !table.has_dead {
            self.dead_letters_lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut dead = env.clone();
        dead.subject = format!("{DEAD_PREFIX}{}", env.subject);
        dead.expires_at = None;
        dead.headers
            .push((DEAD_REASON_HEADER.to_owned(), reason.as_str().to_owned()));
        if let Some(s) = subscriber {
            dead.headers
                .push((DEAD_SUBSCRIBER_HEADER.to_owned(), s.to_owned()));
        }
        let report = self.push_all(&table, &Arc::new(dead), true, |_, _| {});
        if report.delivered == 0 {
            self.dead_letters_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}
