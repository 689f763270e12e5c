//! Request/reply and gather: the inbox a request waits on, the replies routed to it, and the
//! exchange that removes the inbox when the requester stops waiting.

use super::*;

/// A request waiting on its inbox.
pub(super) struct Waiting {
    correlation_id: String,
    replies: mpsc::Sender<Arc<Envelope>>,
    /// Some local mailbox took the request, so "no responders" from the remote link does not
    /// end it.
    pub(super) local: bool,
    /// Set when the remote link reported no responders and no local mailbox took it.
    pub(super) no_responders: Arc<AtomicBool>,
}

/// Whether the inbox token (after `_INBOX.`) is one of bus `id`'s.
pub(super) fn is_own_inbox(id: &str, token: &str) -> bool {
    token
        .strip_prefix(id)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// A request waiting for replies on one inbox; dropping it (on return, timeout or
/// cancellation) removes the inbox and counts replies that arrived but were not taken.
pub(super) struct Exchange {
    bus: Arc<BusShared>,
    inbox: Box<str>,
    replies: mpsc::Receiver<Arc<Envelope>>,
    no_responders: Arc<AtomicBool>,
}

impl Exchange {
    /// Why no (further) reply came: the remote link found no responders, or time ran out.
    pub(super) fn ended(&self) -> BusError {
        if self.no_responders.load(Ordering::Relaxed) {
            BusError::NoResponders
        } else {
            BusError::Timeout
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.bus.lock_pending().remove(&self.inbox);
        self.replies.close();
        let mut unread = 0;
        while self.replies.try_recv().is_ok() {
            unread += 1;
        }
        if unread > 0 {
            self.bus.late_replies.fetch_add(unread, Ordering::Relaxed);
        }
    }
}

impl Bus {
    /// Publishes `envelope` as a request (with a fresh, unguessable `_INBOX.` reply subject, and
    /// its id as correlation id unless it has one) and waits up to `timeout` for the first
    /// reply. A reply without a correlation id is given the request's.
    pub async fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Arc<Envelope>, BusError> {
        self.request_with(envelope, Wait::Real(timeout)).await
    }

    /// [`Bus::request`], waiting as `wait` says (in a lockstep replay: until no reply can
    /// come, see [`Wait`]).
    pub async fn request_with(
        &self,
        envelope: Envelope,
        wait: Wait,
    ) -> Result<Arc<Envelope>, BusError> {
        let mut exchange = self.0.start_exchange(envelope, 1)?;
        let deadline = Instant::now() + wait.cap();
        let ticket = self.ticket(&wait);
        match self
            .next_reply(&mut exchange, ticket.as_ref(), deadline)
            .await
        {
            Some(reply) => Ok(reply),
            None => Err(exchange.ended()),
        }
    }

    /// Publishes `envelope` as a request and collects replies until `quorum` arrived or
    /// `timeout` passed; returns what arrived, in arrival order.
    pub async fn gather(
        &self,
        envelope: Envelope,
        quorum: usize,
        timeout: Duration,
    ) -> Result<Vec<Arc<Envelope>>, BusError> {
        self.gather_with(envelope, quorum, Wait::Real(timeout))
            .await
    }

    /// [`Bus::gather`], waiting as `wait` says.
    pub async fn gather_with(
        &self,
        envelope: Envelope,
        quorum: usize,
        wait: Wait,
    ) -> Result<Vec<Arc<Envelope>>, BusError> {
        let deadline = Instant::now() + wait.cap();
        let mut exchange = self
            .0
            .start_exchange(envelope, quorum.clamp(1, MAX_GATHER))?;
        let ticket = self.ticket(&wait);
        let mut out = Vec::new();
        while out.len() < quorum {
            match self
                .next_reply(&mut exchange, ticket.as_ref(), deadline)
                .await
            {
                Some(reply) => out.push(reply),
                None => break,
            }
        }
        if out.is_empty() && exchange.ended() == BusError::NoResponders {
            return Err(BusError::NoResponders);
        }
        Ok(out)
    }

    /// A replayed wait's place in line; none for a real-time wait, or on a bus joined to
    /// other hosts (whose responders this bus cannot see).
    pub(super) fn ticket(&self, wait: &Wait) -> Option<waits::WaitTicket<'_>> {
        match wait {
            Wait::Replay {
                agent,
                timeout_ns,
                counted,
                ..
            } if !self.is_joined() => Some(self.0.waits.register(
                Arc::clone(agent),
                *timeout_ns,
                *counted,
            )),
            _ => None,
        }
    }

    /// The next reply of `exchange`, or `None` when the wait is over: at `deadline`, or, for a
    /// replayed wait, when no reply can come any more.
    pub(super) async fn next_reply(
        &self,
        exchange: &mut Exchange,
        ticket: Option<&waits::WaitTicket<'_>>,
        deadline: Instant,
    ) -> Option<Arc<Envelope>> {
        let Some(ticket) = ticket else {
            return tokio::time::timeout_at(deadline, exchange.replies.recv())
                .await
                .ok()
                .flatten();
        };
        loop {
            let changed = self.0.waits.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Ok(reply) = exchange.replies.try_recv() {
                return Some(reply);
            }
            if ticket.stalled(self.0.busy.load(Ordering::SeqCst)) {
                return None;
            }
            tokio::select! {
                biased;
                reply = exchange.replies.recv() => return reply,
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }
}

impl BusShared {
    /// Hands a reply to the request waiting on its inbox (with the request's correlation id
    /// if the replier gave none), or counts it as late.
    pub(super) fn deliver_reply(&self, mut env: Envelope) -> PublishReport {
        let pending = self.lock_pending();
        let sent = match pending.get(&env.subject[INBOX_PREFIX.len()..]) {
            Some(waiting) => {
                if env.correlation_id.is_none() {
                    env.correlation_id = Some(waiting.correlation_id.clone());
                }
                waiting.replies.try_send(Arc::new(env)).is_ok()
            }
            None => {
                // Not a request of this host: with a remote link, another host's (its
                // token starts with that host's id), so it goes out.
                let token = &env.subject[INBOX_PREFIX.len()..];
                if self.remote.get().is_some() && !is_own_inbox(&self.id, token) {
                    drop(pending);
                    let mut report = PublishReport::default();
                    self.forward(&env, &mut report);
                    return report;
                }
                false
            }
        };
        drop(pending);
        if sent {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            PublishReport {
                delivered: 1,
                ..PublishReport::default()
            }
        } else {
            self.late_replies.fetch_add(1, Ordering::Relaxed);
            PublishReport::default()
        }
    }

    /// Registers an inbox for up to `capacity` replies, then publishes the request.
    pub(super) fn start_exchange(
        self: &Arc<Self>,
        mut envelope: Envelope,
        capacity: usize,
    ) -> Result<Exchange, BusError> {
        check_publish_subject(&envelope.subject)?;
        if envelope.subject.starts_with(INBOX_PREFIX) {
            return Err(BusError::Reserved(envelope.subject));
        }
        let inbox: Box<str> = new_inbox_token(&self.id).into();
        envelope.reply_to = Some(format!("{INBOX_PREFIX}{inbox}"));
        let correlation_id = envelope
            .correlation_id
            .get_or_insert_with(|| envelope.id.clone())
            .clone();
        let (tx, replies) = mpsc::channel(capacity);
        let no_responders = Arc::new(AtomicBool::new(false));
        // Registered before publishing: a responder on another thread may answer at once.
        self.lock_pending().insert(
            inbox.clone(),
            Waiting {
                correlation_id,
                replies: tx,
                local: false,
                no_responders: Arc::clone(&no_responders),
            },
        );
        let exchange = Exchange {
            bus: Arc::clone(self),
            inbox,
            replies,
            no_responders,
        };
        self.published.fetch_add(1, Ordering::Relaxed);
        let env = Arc::new(envelope);
        let report = self.route(&env);
        if report.delivered > 0
            && let Some(w) = self.lock_pending().get_mut(&exchange.inbox)
        {
            w.local = true;
        }
        if self.remote.get().is_some() {
            // Other hosts may answer; the link reports when none can.
            let mut remote_report = PublishReport::default();
            self.forward(&env, &mut remote_report);
            if report.delivered > 0 || remote_report.refused == 0 {
                return Ok(exchange);
            }
            return Err(BusError::MailboxFull);
        }
        if report.delivered > 0 {
            Ok(exchange)
        } else if report.refused + report.dropped > 0 {
            Err(BusError::MailboxFull)
        } else {
            self.dead_letter(&env, DeadReason::NoResponders, None);
            Err(BusError::NoResponders)
        }
    }
}
