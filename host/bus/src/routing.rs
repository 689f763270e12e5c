//! The routing table: subscriptions grouped by mailbox, copied on write, and the fan-out of one
//! publish to every mailbox whose patterns cover its subject.

use super::*;

#[derive(Clone, Default)]
pub(super) struct Table {
    pub(super) targets: Vec<Target>,
    /// Whether any pattern starts with `_DEAD.`; if not, a dead letter is only counted.
    pub(super) has_dead: bool,
}

/// One mailbox and its subscriptions.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) mailbox: Mailbox,
    pub(super) subs: Vec<Sub>,
}

#[derive(Clone)]
pub(super) struct Sub {
    pub(super) id: u64,
    pub(super) owner: Arc<str>,
    /// The pattern as written.
    pub(super) raw: Arc<str>,
    pub(super) pattern: Subject,
    /// The pattern starts with `_DEAD.`: it sees dead letters and only dead letters.
    pub(super) dead: bool,
    /// Host-local ([`Bus::subscribe_local`]): never announced to the remote link.
    pub(super) local: bool,
    /// The pattern names one agent (`agent.<name>.…`): only such a pattern sees that agent's
    /// private subjects.
    pub(super) names_agent: bool,
}

impl Table {
    pub(super) fn recount(&mut self) {
        self.targets.retain(|t| !t.subs.is_empty());
        self.has_dead = self.targets.iter().flat_map(|t| &t.subs).any(|s| s.dead);
    }
}

impl Target {
    #[inline]
    pub(super) fn covers(&self, subject: &str, dead: bool) -> bool {
        let private = subject.starts_with(AGENT_PREFIX);
        self.subs
            .iter()
            .any(|s| s.dead == dead && (!private || s.names_agent) && s.pattern.covers(subject))
    }
}

impl BusShared {
    /// Removes the subscriptions `remove` selects; returns how many.
    pub(super) fn edit_subs(&self, remove: impl Fn(&Sub) -> bool) -> usize {
        let mut guard = self.write_table();
        let gone: Vec<Arc<str>> = guard
            .targets
            .iter()
            .flat_map(|t| &t.subs)
            .filter(|s| remove(s))
            .filter(|s| !s.dead && !s.local)
            .map(|s| Arc::clone(&s.raw))
            .collect();
        let found: usize = guard
            .targets
            .iter()
            .map(|t| t.subs.iter().filter(|s| remove(s)).count())
            .sum();
        if found > 0 {
            let table = Arc::make_mut(&mut guard);
            for t in &mut table.targets {
                t.subs.retain(|s| !remove(s));
            }
            table.recount();
        }
        drop(guard);
        for pattern in gone {
            self.interest_changed(&pattern, false);
        }
        found
    }

    /// Pushes `env` to every mailbox with a covering subscription, dead-lettering refusals.
    pub(super) fn route(&self, env: &Arc<Envelope>) -> PublishReport {
        // One publish reaches all its mailboxes before the next one reaches any: a subscriber
        // that reacts to this envelope cannot get its own message to another subscriber ahead
        // of it. Dead letters of refusals push under this hold (through `push_all`, which
        // does not take it).
        let _fanout = self.fanout.lock().unwrap_or_else(PoisonError::into_inner);
        let table = self.read_table();
        self.push_all(&table, env, false, |refused_by, reason| {
            self.dead_letter(env, reason, Some(refused_by.owner()));
        })
    }

    /// Pushes `env` to the mailboxes of `table` whose patterns cover its subject (dead letters
    /// only to `_DEAD.` patterns, everything else only to the others).
    pub(super) fn push_all(
        &self,
        table: &Table,
        env: &Arc<Envelope>,
        dead: bool,
        mut on_refused: impl FnMut(&Mailbox, DeadReason),
    ) -> PublishReport {
        let mut report = PublishReport::default();
        for t in &table.targets {
            if !t.covers(&env.subject, dead) {
                continue;
            }
            match t.mailbox.push(Arc::clone(env)) {
                Ok(Pushed::Queued) => report.delivered += 1,
                Ok(Pushed::Evicted) => {
                    report.delivered += 1;
                    report.dropped += 1;
                }
                Ok(Pushed::Dropped) => report.dropped += 1,
                Err(PushError::MailboxFull) => {
                    report.refused += 1;
                    on_refused(&t.mailbox, DeadReason::MailboxFull);
                }
                Err(PushError::SenderShare) => {
                    report.refused += 1;
                    on_refused(&t.mailbox, DeadReason::SenderShare);
                }
                Err(PushError::Closed) => {}
            }
        }
        self.delivered
            .fetch_add(report.delivered as u64, Ordering::Relaxed);
        report
    }
}
