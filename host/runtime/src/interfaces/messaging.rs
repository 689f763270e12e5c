//! `colony:plugin/messaging`: publish, subscribe, request, gather and reply through the
//! host's bus (`crate::bus::Bus`), each checked against the agent's `messaging.*` grants
//! before anything is sent (a denial is audited and returned as `error::denied`).
//!
//! Limits (a guest controls all of these): a message's payload and headers together at most
//! the plugin's payload limit (1 MiB by default); at most [`MAX_HEADERS`] headers of at most
//! [`MAX_HEADER_BYTES`] (names and values together), names of 1 to [`MAX_HEADER_NAME`] bytes of
//! printable ASCII without `:`, none with a host-reserved prefix
//! ([`crate::bus::RESERVED_HEADER_PREFIXES`]); at most [`MAX_SUBSCRIPTIONS`] subscriptions per
//! instance; a request or gather waits for its own timeout, which costs the guest no CPU
//! budget, and at most until the event's wall-clock hang guard (its timeout is cut to what is
//! left, so the guest gets `error::timeout` rather than being ended). A publish
//! that any subscriber's mailbox refused (full, or already holding this sender's share) is
//! `error::limit-exceeded`, and counted in the agent's `bus_sent_refused`.
//!
//! The host stamps `id`, `sender` and `timestamp`. Subjects the host gives meaning to
//! ([`crate::bus::reserved_for_host`]: `_…`, `md.…`, `agent.<name>.…` but the inbox) cannot be
//! sent on, whatever the grants say. A `reply` needs no grant, and goes only to the reply-to of
//! a request this instance received as its addressee ([`crate::bus::may_answer`]), once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use super::{Fault, Gate, HostResult, answer};
use crate::bindings::messaging::{self, Host, SendOptions};
use crate::bindings::types::{Error, Message, Priority as WitPriority};
use crate::bus::{
    Bus, BusError, Envelope, INBOX_PREFIX, Mailbox, Priority, PublishReport, SubscriptionId, Wait,
};
use crate::clock::Clock;
use crate::limits::Limits;
use colony_caps::Request;

/// Most subscriptions one agent instance may hold.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 64;

/// Most headers on one message.
pub(crate) const MAX_HEADERS: usize = 32;
/// Most bytes of header names and values together on one message.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Longest header name, in bytes.
pub(crate) const MAX_HEADER_NAME: usize = 128;

/// Most requests an instance remembers having received, for `reply`; the oldest is forgotten
/// first (by then its requester has long timed out).
pub(crate) const MAX_ANSWERABLE: usize = 1024;

/// One agent instance's link to the bus: its actor's mailbox and its own subscriptions,
/// which end with the instance (a re-instantiated agent subscribes again in `init`).
///
/// Across a sleep or a restart the actor keeps the old instance's subscriptions
/// ([`BusLink::take_subscriptions`]), so what arrives meanwhile waits in the mailbox; the next
/// instance adopts each one it asks for again with the same pattern
/// ([`BusLink::adopt`]), so nothing is missed or delivered twice in between.
pub struct BusLink {
    bus: Bus,
    mailbox: Mailbox,
    owner: Arc<str>,
    subscriptions: Vec<(SubscriptionId, String)>,
    /// A predecessor's subscriptions, waiting to be asked for again.
    held: Vec<(SubscriptionId, String)>,
    /// The reply-to subjects of requests delivered to this instance as their addressee, not
    /// yet answered (at most [`MAX_ANSWERABLE`], oldest first).
    answerable: VecDeque<String>,
}

/// Subscriptions an actor keeps between instances ([`BusLink::take_subscriptions`]); ended on
/// drop unless adopted.
pub struct HeldSubscriptions {
    bus: Bus,
    subscriptions: Vec<(SubscriptionId, String)>,
}

impl HeldSubscriptions {
    /// How many are held.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }
}

impl Drop for HeldSubscriptions {
    fn drop(&mut self) {
        for (id, _) in self.subscriptions.drain(..) {
            self.bus.unsubscribe(id);
        }
    }
}

impl BusLink {
    /// A link for an instance whose actor receives through `mailbox`; `owner` names the
    /// actor's subscriptions on the bus.
    pub fn new(bus: Bus, mailbox: Mailbox, owner: Arc<str>) -> BusLink {
        BusLink {
            bus,
            mailbox,
            owner,
            subscriptions: Vec::new(),
            held: Vec::new(),
            answerable: VecDeque::new(),
        }
    }

    /// Notes that a request with reply-to `reply_to` was delivered to this instance as its
    /// addressee, so it may `reply` to it (once).
    pub(crate) fn note_request(&mut self, reply_to: &str) {
        if self.answerable.len() >= MAX_ANSWERABLE {
            self.answerable.pop_front();
        }
        self.answerable.push_back(reply_to.to_owned());
    }

    /// Takes `reply_to` from the requests this instance may answer; false if it holds none.
    fn take_answerable(&mut self, reply_to: &str) -> bool {
        match self.answerable.iter().rposition(|r| r == reply_to) {
            Some(i) => {
                self.answerable.remove(i);
                true
            }
            None => false,
        }
    }

    /// Takes this instance's subscriptions (they stay on the bus) for its successor.
    pub(crate) fn take_subscriptions(&mut self) -> HeldSubscriptions {
        let mut subscriptions = std::mem::take(&mut self.subscriptions);
        subscriptions.append(&mut self.held);
        HeldSubscriptions {
            bus: self.bus.clone(),
            subscriptions,
        }
    }

    /// Offers a predecessor's subscriptions: a subscription to the same pattern is taken
    /// over instead of made anew. Call [`BusLink::end_unadopted`] once the instance is set up.
    pub(crate) fn adopt(&mut self, mut held: HeldSubscriptions) {
        self.held.append(&mut held.subscriptions);
    }

    /// Ends the offered subscriptions the instance did not ask for again.
    pub(crate) fn end_unadopted(&mut self) {
        for (id, _) in self.held.drain(..) {
            self.bus.unsubscribe(id);
        }
    }

    /// Subscribes this instance's mailbox to `pattern` (or takes over a held subscription
    /// to it), within the per-instance limit.
    fn subscribe_pattern(&mut self, pattern: &str) -> Result<SubscriptionId, Error> {
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(Error::LimitExceeded(format!(
                "subscription limit of {MAX_SUBSCRIPTIONS} reached"
            )));
        }
        if let Some(i) = self.held.iter().position(|(_, p)| p == pattern) {
            let adopted = self.held.swap_remove(i);
            let id = adopted.0;
            self.subscriptions.push(adopted);
            return Ok(id);
        }
        let id = self
            .bus
            .subscribe(&self.owner, pattern, &self.mailbox)
            .map_err(|e| bus_error(e, pattern))?;
        self.subscriptions.push((id, pattern.to_string()));
        Ok(id)
    }

    /// Subscribes this instance's mailbox to `pattern` for another host interface (market
    /// data), within the same per-instance subscription limit; the subscription ends with
    /// the instance like the guest's own.
    pub(crate) fn subscribe_for_host(&mut self, pattern: &str) -> Result<SubscriptionId, String> {
        self.subscribe_pattern(pattern).map_err(|e| match e {
            Error::LimitExceeded(m) | Error::InvalidArgument(m) | Error::Unavailable(m) => m,
            other => crate::agent::describe_error(&other),
        })
    }

    /// Ends a subscription of this instance; whether it had it.
    pub(crate) fn unsubscribe_for_host(&mut self, id: SubscriptionId) -> bool {
        match self.subscriptions.iter().position(|(s, _)| *s == id) {
            Some(i) => {
                self.subscriptions.swap_remove(i);
                self.bus.unsubscribe(id);
                true
            }
            None => false,
        }
    }
}

impl Drop for BusLink {
    fn drop(&mut self) {
        for (id, _) in self.subscriptions.drain(..).chain(self.held.drain(..)) {
            self.bus.unsubscribe(id);
        }
    }
}

/// The guest-visible form of a bus envelope.
pub(crate) fn to_wit(env: &Envelope) -> Message {
    Message {
        id: env.id.clone(),
        subject: env.subject.clone(),
        sender: env.sender.to_string(),
        correlation_id: env.correlation_id.clone(),
        reply_to: env.reply_to.clone(),
        priority: match env.priority {
            Priority::Low => WitPriority::Low,
            Priority::Normal => WitPriority::Normal,
            Priority::High => WitPriority::High,
        },
        timestamp: env.timestamp_ns,
        headers: env.headers.clone(),
        payload: env.payload.to_vec(),
    }
}

fn bus_error(e: BusError, subject: &str) -> Error {
    match e {
        BusError::InvalidSubject(m) => Error::InvalidArgument(m),
        BusError::Reserved(s) => {
            Error::InvalidArgument(format!("subject {s:?} is reserved for the host"))
        }
        BusError::NoResponders => Error::Unavailable(format!("no subscriber for {subject}")),
        BusError::MailboxFull => {
            Error::LimitExceeded(format!("every responder's mailbox is full for {subject}"))
        }
        BusError::Timeout => Error::Timeout,
        BusError::NoReplyTo => Error::InvalidArgument("the message has no reply-to".into()),
        BusError::ForeignMailbox(m) => {
            Error::Unavailable(format!("mailbox of {m} belongs to another bus"))
        }
    }
}

/// What the `messaging` interface works on: the agent's name, grants, limits and clock, the
/// current event's hang guard, and its link to the bus, if it has one.
pub struct MessagingCtx<'a> {
    /// The agent, the sender of what it sends.
    pub plugin: &'a Arc<str>,
    /// The agent's grant checks.
    pub gate: Gate<'a>,
    /// The agent's limits (payload size, wait margin).
    pub limits: &'a Limits,
    /// When the current event's wall-clock hang guard fires: every wait ends before it.
    pub hang_guard_at: Instant,
    /// The clock envelopes are stamped with (virtual during a replay).
    pub clock: &'a Clock,
    /// The instance's link to the bus.
    pub link: Option<&'a mut BusLink>,
}

struct HasMessaging;

impl HasData for HasMessaging {
    type Data<'a> = MessagingCtx<'a>;
}

/// Links `colony:plugin/messaging`; `ctx` hands out the store's [`MessagingCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> MessagingCtx<'_>,
) -> wasmtime::Result<()> {
    messaging::add_to_linker::<T, HasMessaging>(linker, ctx)
}

const NO_BUS: &str = "messaging is not available to this plugin";

impl MessagingCtx<'_> {
    fn link(&mut self) -> HostResult<&mut BusLink> {
        self.link
            .as_deref_mut()
            .ok_or_else(|| Fault::unavailable(NO_BUS))
    }

    fn check_payload(&self, len: usize) -> Result<(), Error> {
        let limit = self.limits.payload_bytes;
        if len as u64 > limit {
            return Err(Error::LimitExceeded(format!(
                "payload limit of {limit} bytes exceeded ({len} given)"
            )));
        }
        Ok(())
    }

    /// Checks a message's headers and, with them, its size: returns nothing, or why not.
    fn check_headers(&self, headers: &[(String, String)], payload: usize) -> Result<(), Error> {
        if headers.len() > MAX_HEADERS {
            return Err(Error::LimitExceeded(format!(
                "header limit of {MAX_HEADERS} headers exceeded ({} given)",
                headers.len()
            )));
        }
        let bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_HEADER_BYTES {
            return Err(Error::LimitExceeded(format!(
                "header limit of {MAX_HEADER_BYTES} bytes exceeded ({bytes} given)"
            )));
        }
        // Headers travel with the payload: together they are one message's size.
        let limit = self.limits.payload_bytes;
        let total = payload.saturating_add(bytes);
        if total as u64 > limit {
            return Err(Error::LimitExceeded(format!(
                "payload limit of {limit} bytes exceeded ({total} given, headers included)"
            )));
        }
        for (name, _) in headers {
            if name.is_empty()
                || name.len() > MAX_HEADER_NAME
                || !name
                    .bytes()
                    .all(|b| (b'!'..=b'~').contains(&b) && b != b':')
            {
                return Err(Error::InvalidArgument(format!(
                    "header name {:?} is not 1 to {MAX_HEADER_NAME} bytes of printable ASCII without ':'",
                    crate::guest_text::cap(name, 64)
                )));
            }
            if crate::bus::is_reserved_header(name) {
                return Err(Error::InvalidArgument(format!(
                    "header {name:?} is reserved for the host (names starting with {})",
                    crate::bus::RESERVED_HEADER_PREFIXES.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The guest's own timeout for a wait, cut to what is left of the event's wall-clock hang
    /// guard less a margin (`Limits::wait_margin`, so the guest sees `timeout`, not the
    /// guard). Waiting costs the guest no CPU budget.
    fn wait_budget(&self, timeout_ms: u32) -> Duration {
        let left = self
            .hang_guard_at
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.limits.wait_margin());
        Duration::from_millis(timeout_ms.into()).min(left)
    }

    /// How a request or gather of this agent waits: its timeout in real time, or, on a
    /// virtual clock (a lockstep replay), until no reply can come (see [`Wait`]); either way
    /// it ends before the event's hang guard.
    fn wait(&self, timeout_ms: u32) -> Wait {
        if self.clock.is_virtual() {
            Wait::Replay {
                agent: self.plugin.clone(),
                // An event delivered through the mailbox keeps it busy while it is handled.
                counted: self.link.as_ref().is_some_and(|l| !l.mailbox.is_idle()),
                timeout_ns: u64::from(timeout_ms) * 1_000_000,
                cap: self.wait_budget(u32::MAX),
            }
        } else {
            Wait::Real(self.wait_budget(timeout_ms))
        }
    }

    /// An envelope stamped with this plugin and the host clock's time (the virtual time
    /// during a replay, so what agents see repeats).
    fn envelope(&self, subject: String, payload: Vec<u8>) -> Envelope {
        let mut env = Envelope::new(self.plugin.clone(), subject, payload);
        if self.clock.is_virtual() {
            env.timestamp_ns = self.clock.now_ns();
        }
        env
    }

    /// Everything a publish, request or gather checks before it sends, in order: the agent
    /// is on a bus, the payload is within its limit, and the grant (`publish` or `request`)
    /// covers the subject. Returns the bus and the stamped envelope.
    fn outgoing(
        &mut self,
        request: bool,
        subject: String,
        payload: Vec<u8>,
        headers: &[(String, String)],
    ) -> HostResult<(Bus, Envelope)> {
        let bus = self.link()?.bus.clone();
        self.check_payload(payload.len())?;
        self.check_headers(headers, payload.len())?;
        // No grant makes a host subject sendable: checked before the grants, so a broad
        // grant such as `messaging.publish:>` cannot reach them either.
        if let Some(why) = crate::bus::reserved_for_host(&subject) {
            return Err(Error::InvalidArgument(format!(
                "subject {:?} is reserved for the host: {why}",
                crate::guest_text::cap(&subject, 256)
            ))
            .into());
        }
        let req = match request {
            true => Request::Request { subject: &subject },
            false => Request::Publish { subject: &subject },
        };
        self.gate.check(&req)?;
        Ok((bus, self.envelope(subject, payload)))
    }

    fn send(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        options: Option<SendOptions>,
    ) -> HostResult<()> {
        let no_headers = Vec::new();
        let headers = options.as_ref().map_or(&no_headers, |o| &o.headers);
        let (bus, mut env) = self.outgoing(false, subject, payload, headers)?;
        if let Some(o) = options {
            env = env.with_priority(match o.priority {
                WitPriority::Low => Priority::Low,
                WitPriority::Normal => Priority::Normal,
                WitPriority::High => Priority::High,
            });
            for (k, v) in o.headers {
                env = env.with_header(k, v);
            }
            if o.ttl_ms > 0 {
                env = env.with_ttl(Duration::from_millis(o.ttl_ms.into()));
            }
        }
        let subject = env.subject.clone();
        match bus.publish(env) {
            Ok(r) if r.refused > 0 => Err(self.refused(&r, &subject).into()),
            Ok(_) => Ok(()),
            Err(e) => Err(bus_error(e, &subject).into()),
        }
    }

    /// The publisher's answer when some mailbox refused its message, counted for the operator.
    fn refused(&self, r: &PublishReport, subject: &str) -> Error {
        if let Some(link) = &self.link {
            link.mailbox.note_sent_refused(r.refused as u64);
        }
        Error::LimitExceeded(format!(
            "{} of {} subscribers' mailboxes refused the message on {subject} (full, or holding \
             this sender's share); it is dead-lettered there",
            r.refused,
            r.refused + r.delivered
        ))
    }

    fn subscribe_to(&mut self, pattern: &str) -> HostResult<u64> {
        self.link()?;
        self.gate.check(&Request::Subscribe { subject: pattern })?;
        Ok(self.link()?.subscribe_pattern(pattern)?.get())
    }

    fn unsubscribe_from(&mut self, id: u64) -> HostResult<()> {
        let link = self.link()?;
        let id = SubscriptionId::from_raw(id);
        if !link.unsubscribe_for_host(id) {
            return Err(Error::NotFound(format!("no subscription {}", id.get())).into());
        }
        Ok(())
    }

    async fn request_reply(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        timeout_ms: u32,
    ) -> HostResult<Message> {
        let wait = self.wait(timeout_ms);
        let (bus, env) = self.outgoing(true, subject.clone(), payload, &[])?;
        match bus.request_with(env, wait).await {
            Ok(reply) => Ok(to_wit(&reply)),
            Err(e) => Err(bus_error(e, &subject).into()),
        }
    }

    async fn gather_replies(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        quorum: u32,
        timeout_ms: u32,
    ) -> HostResult<Vec<Message>> {
        let wait = self.wait(timeout_ms);
        let (bus, env) = self.outgoing(true, subject.clone(), payload, &[])?;
        match bus.gather_with(env, quorum as usize, wait).await {
            Ok(replies) => Ok(replies.iter().map(|r| to_wit(r)).collect()),
            Err(e) => Err(bus_error(e, &subject).into()),
        }
    }

    fn reply_to(&mut self, reply_to: String, payload: Vec<u8>) -> HostResult<()> {
        self.link()?;
        self.check_payload(payload.len())?;
        if !reply_to.starts_with(INBOX_PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "{:?} is not a reply-to subject (replies go to {INBOX_PREFIX}…)",
                crate::guest_text::cap(&reply_to, 256)
            ))
            .into());
        }
        // Only the addressee of a request it received may answer it, once: seeing a request
        // (through a subscription to another agent's inbox) is not being asked.
        if !self.link()?.take_answerable(&reply_to) {
            return Err(Error::InvalidArgument(format!(
                "{:?} is not the reply-to of a request delivered to this agent as its \
                 addressee (or it was answered already)",
                crate::guest_text::cap(&reply_to, 256)
            ))
            .into());
        }
        let env = self.envelope(reply_to.clone(), payload);
        // A reply to a request that already timed out is dropped and counted by the bus.
        self.link()?
            .bus
            .publish(env)
            .map(|_| ())
            .map_err(|e| bus_error(e, &reply_to).into())
    }
}

impl Host for MessagingCtx<'_> {
    async fn publish(
        &mut self,
        subject: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        answer(self.send(subject, payload, None))
    }

    async fn publish_with(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        options: SendOptions,
    ) -> wasmtime::Result<Result<(), Error>> {
        answer(self.send(subject, payload, Some(options)))
    }

    async fn subscribe(&mut self, pattern: String) -> wasmtime::Result<Result<u64, Error>> {
        answer(self.subscribe_to(&pattern))
    }

    async fn unsubscribe(&mut self, id: u64) -> wasmtime::Result<Result<(), Error>> {
        answer(self.unsubscribe_from(id))
    }

    async fn request(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Message, Error>> {
        answer(self.request_reply(subject, payload, timeout_ms).await)
    }

    async fn gather(
        &mut self,
        subject: String,
        payload: Vec<u8>,
        quorum: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<Message>, Error>> {
        answer(
            self.gather_replies(subject, payload, quorum, timeout_ms)
                .await,
        )
    }

    async fn reply(
        &mut self,
        reply_to: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        answer(self.reply_to(reply_to, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;
    use crate::interfaces::testing::{audit_store, decisions, policy};
    use crate::policy::{CheckCache, Policy};

    struct Fixture {
        plugin: Arc<str>,
        policy: Policy,
        checks: CheckCache,
        limits: Limits,
        clock: Clock,
        bus: Bus,
        link: Option<BusLink>,
    }

    impl Fixture {
        fn new(policy: Policy, linked: bool) -> Fixture {
            let bus = Bus::new();
            let link = linked.then(|| BusLink::new(bus.clone(), bus.mailbox("p", 16), "p".into()));
            Fixture {
                plugin: "p".into(),
                policy,
                checks: CheckCache::default(),
                limits: Limits::agent_default(),
                clock: Clock::system(),
                bus,
                link,
            }
        }

        fn ctx(&mut self) -> MessagingCtx<'_> {
            MessagingCtx {
                plugin: &self.plugin,
                gate: Gate {
                    policy: &self.policy,
                    checks: &mut self.checks,
                },
                limits: &self.limits,
                hang_guard_at: Instant::now() + Duration::from_secs(10),
                clock: &self.clock,
                link: self.link.as_mut(),
            }
        }

        /// A mailbox of another agent subscribed to `pattern`.
        fn listener(&self, pattern: &str) -> Mailbox {
            let mailbox = self.bus.mailbox("other", 16);
            self.bus.subscribe("other", pattern, &mailbox).unwrap();
            mailbox
        }
    }

    #[tokio::test]
    async fn a_publish_without_a_grant_is_denied_audited_and_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let audit = audit_store(dir.path()).await;
        let mut f = Fixture::new(policy(&["messaging.publish:other.>"], Some(&audit)), true);
        let inbox = f.listener("news.>");
        let got = f
            .ctx()
            .publish("news.a".into(), b"x".to_vec())
            .await
            .unwrap();
        match got {
            Err(Error::Denied(m)) => assert_eq!(m, "needs messaging.publish:news.a"),
            other => panic!("expected denied, got {other:?}"),
        }
        assert!(inbox.try_recv().is_none(), "the message was sent");
        let recs = decisions(&audit, "messaging.publish").await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0].decision, Some(Decision::Deny));
    }

    #[tokio::test]
    async fn a_granted_publish_is_delivered_stamped_with_the_sender() {
        let mut f = Fixture::new(policy(&["messaging.publish:news.>"], None), true);
        let inbox = f.listener("news.>");
        let got = f
            .ctx()
            .publish("news.a".into(), b"x".to_vec())
            .await
            .unwrap();
        assert!(got.is_ok(), "{got:?}");
        let env = inbox.try_recv().expect("delivered");
        assert_eq!(env.subject, "news.a");
        assert_eq!(&*env.sender, "p");
        assert_eq!(&env.payload[..], b"x");
    }

    #[tokio::test]
    async fn subscribe_needs_its_grant_and_counts_against_the_instance() {
        let mut f = Fixture::new(policy(&["messaging.subscribe:news.>"], None), true);
        let mut ctx = f.ctx();
        let denied = ctx.subscribe("other.>".into()).await.unwrap();
        assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
        let id = ctx.subscribe("news.>".into()).await.unwrap().unwrap();
        assert!(ctx.unsubscribe(id).await.unwrap().is_ok());
        let again = ctx.unsubscribe(id).await.unwrap();
        assert!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
    }

    #[tokio::test]
    async fn host_subjects_stay_closed_whatever_the_grants_say() {
        let mut f = Fixture::new(policy(&["messaging.publish:>"], None), true);
        let got = f
            .ctx()
            .publish("md.x.BTC-USDT.quote".into(), Vec::new())
            .await
            .unwrap();
        match got {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("reserved for the host"), "{m}"),
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_bus_every_call_is_unavailable() {
        let mut f = Fixture::new(policy(&["messaging.publish:>"], None), false);
        let mut ctx = f.ctx();
        let unavailable = |e: &Error| matches!(e, Error::Unavailable(m) if m == "messaging is not available to this plugin");
        let published = ctx.publish("news.a".into(), Vec::new()).await.unwrap();
        assert!(published.as_ref().is_err_and(unavailable), "{published:?}");
        let subscribed = ctx.subscribe("news.>".into()).await.unwrap();
        assert!(
            subscribed.as_ref().is_err_and(unavailable),
            "{subscribed:?}"
        );
        let replied = ctx.reply("_INBOX.x".into(), Vec::new()).await.unwrap();
        assert!(replied.as_ref().is_err_and(unavailable), "{replied:?}");
    }

    #[tokio::test]
    async fn a_reply_goes_only_to_a_request_this_instance_received() {
        let mut f = Fixture::new(policy(&[], None), true);
        let inbox = format!("{INBOX_PREFIX}somebody.1");
        let refused = f.ctx().reply(inbox.clone(), Vec::new()).await.unwrap();
        assert!(
            matches!(refused, Err(Error::InvalidArgument(_))),
            "{refused:?}"
        );
        f.link.as_mut().unwrap().note_request(&inbox);
        let answered = f.ctx().reply(inbox.clone(), Vec::new()).await.unwrap();
        assert!(answered.is_ok(), "{answered:?}");
        let twice = f.ctx().reply(inbox, Vec::new()).await.unwrap();
        assert!(matches!(twice, Err(Error::InvalidArgument(_))), "{twice:?}");
    }
}
