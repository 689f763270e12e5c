//! Agent names across hosts: of the hosts that share a NATS prefix, one at a time runs an agent
//! of a given name. Names are identity (grants, state, order records and the `agent.<name>.…`
//! subjects are keyed by them), and two copies of one agent on one bus would both take its
//! inbox and both trade; so a host claims an agent's name on the bus before it starts the agent,
//! and answers for the name while the agent runs.
//!
//! | step | on NATS |
//! |---|---|
//! | 1. answer for the name | `SUB _COLONY.claim.<prefix>.<name>` |
//! | 2. ask who else has it | `PUB _COLONY.claim.<prefix>.<name>` with this host's [`Stake`], reply to a fresh `_INBOX.…` |
//! | 3a. no other host answers for it | the server says "no responders" at once: the name is this host's |
//! | 3b. an answer whose stake comes first | this host gives way: it stops answering and does not start the agent |
//! | 3c. otherwise, once [`CLAIM_WAIT`] has passed | the name is this host's |
//! | while the agent runs | every ask is answered with this host's stake, marked as holding |
//! | the agent stops, or the host dies | `UNSUB`, or the server drops the connection: the name is free, no lock is left behind |
//!
//! Which stake comes first ([`Stake::gives_way`]): a host whose agent runs keeps the name
//! against anyone; of two hosts that are both still asking, the earlier ask (its wall-clock
//! ns, then the host id) keeps it. Both sides compare the same two stakes, so they agree
//! whatever their clocks say. A host that is asked while it is itself still asking compares
//! too, and gives way if the asker comes first. Since each host subscribes (1) before it asks
//! (2) on one connection, which the server handles in order, of two hosts asking at once at
//! least one hears the other's ask; so two hosts starting together neither both run the name
//! nor both refuse it.
//!
//! **The bound:** a host waits at most [`CLAIM_WAIT`] for answers. Answers come from the
//! answering host's NATS task (not from a guest), one round trip through the server; an answer
//! later than that (a host stalled, paused or cut off from the server for that long) is not
//! heard, and then both hosts may run the name. A host that is not connected to the server, or
//! loses the connection while it asks, refuses the agent rather than guess.
//!
//! The subjects are outside `<prefix>.`, where every agent's subject lives (and a prefix may
//! not start with `_COLONY`), so no agent can ask, answer or listen; the connection's `no_echo`
//! keeps a host from answering its own ask.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::StatusCode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{NatsLink, Stats};

/// How long a host that has heard only answers it comes before waits for more, before it takes
/// the name (the module doc's bound).
pub const CLAIM_WAIT: Duration = Duration::from_secs(2);

/// The first tokens of every claim subject; a bus prefix may not start with its first one.
pub(super) const CLAIM_ROOT: &str = "_COLONY.claim";

/// The subject hosts under `prefix` ask and answer on for `name`.
fn claim_subject(prefix: &str, name: &str) -> String {
    format!("{CLAIM_ROOT}.{prefix}.{name}")
}

/// One host's stake in a name, as it travels on NATS (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stake {
    /// The host's bus id (`colony status` shows it).
    host: String,
    /// Its process id, so an operator finds it on its machine.
    pid: u32,
    /// When it began to ask, in ns since the epoch on its own clock.
    since_ns: u64,
    /// Whether it holds the name (its agent runs).
    holds: bool,
}

impl Stake {
    fn asking(host: &str) -> Stake {
        Stake {
            host: host.to_owned(),
            pid: std::process::id(),
            since_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            holds: false,
        }
    }

    /// Whether this host gives the name up to `theirs`: never while it holds it; else to a
    /// holder, or to an earlier ask (the host id breaks a tie of times).
    pub(crate) fn gives_way(&self, theirs: &Stake) -> bool {
        !self.holds
            && (theirs.holds
                || (theirs.since_ns, theirs.host.as_str()) < (self.since_ns, self.host.as_str()))
    }

    /// A stake from the network is used only if its host id is what a host sends (it ends up in
    /// log lines and error messages).
    fn is_valid(&self) -> bool {
        (1..=64).contains(&self.host.len()) && self.host.bytes().all(|b| b.is_ascii_alphanumeric())
    }
}

/// A stake from a NATS payload, if it is one.
fn parse(payload: &[u8]) -> Option<Stake> {
    serde_json::from_slice::<Stake>(payload)
        .ok()
        .filter(Stake::is_valid)
}

/// Why an agent's name is not this host's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Another host on the bus runs the agent, or asked for its name first.
    #[error(
        "agent \"{name}\" {} on host {host} (pid {pid}) on this NATS bus (prefix {prefix}), so it is \
         not started here: rename it on one of the two hosts, or stop it on host {host} and then \
         touch this file or restart this host",
        if *.holds { "already runs" } else { "is being started first" }
    )]
    Taken {
        /// The agent.
        name: String,
        /// The bus prefix.
        prefix: String,
        /// The other host's id.
        host: String,
        /// The other host's process id.
        pid: u32,
        /// Whether the other host's agent runs (else it asked first and is starting it).
        holds: bool,
    },
    /// The bus could not be asked.
    #[error(
        "agent \"{name}\" is not started: its name could not be claimed on the NATS bus \
         ({reason}); touch this file or restart this host once NATS is reachable"
    )]
    Unasked {
        /// The agent.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

/// This host's hold on an agent name: the name is answered for until [`NameClaim::release`]
/// (or until it is dropped).
#[must_use = "the name is held only while the claim is kept"]
pub struct NameClaim {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl NameClaim {
    /// Stops answering for the name; returns once the unsubscribe has been handed to the
    /// connection, so a later [`NatsLink::sync`] covers it.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for NameClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameClaim").finish_non_exhaustive()
    }
}

/// This host's stake in one name, shared by the asking and the answering side.
struct Standing {
    mine: Stake,
    /// The stake this host gave way to, while it was still asking.
    beaten_by: Option<Stake>,
}

impl NatsLink {
    /// Claims the agent name `name` for this host on the bus (the module doc's protocol):
    /// returns the claim, to be kept while the agent runs, or why the name is not this host's.
    /// Returns at once when no other host answers for the name or one that holds it answers;
    /// waits up to [`CLAIM_WAIT`] when only hosts that give way to this one answer.
    pub async fn claim(&self, name: &str) -> Result<NameClaim, ClaimError> {
        let unasked = |reason: String| ClaimError::Unasked {
            name: name.to_owned(),
            reason,
        };
        let stats = &self.stats;
        if !stats.connected.load(Ordering::Relaxed) {
            return Err(unasked("not connected to the server".into()));
        }
        let disconnects = stats.disconnects.load(Ordering::Relaxed);
        let subject = claim_subject(&self.config.prefix, name);
        let mine = Stake::asking(&self.bus_id);
        let standing = Arc::new(Mutex::new(Standing {
            mine: mine.clone(),
            beaten_by: None,
        }));
        // Answer first, then ask (the module doc says why).
        let sub = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| unasked(e.to_string()))?;
        let (stop, stopped) = oneshot::channel();
        let claim = NameClaim {
            stop: Some(stop),
            task: tokio::spawn(answer(
                self.client.clone(),
                sub,
                Arc::clone(&standing),
                name.to_owned(),
                Arc::clone(stats),
                stopped,
            )),
        };
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unasked(e.to_string()))?;
        let ask = serde_json::to_vec(&mine).map_err(|e| unasked(e.to_string()))?;
        self.client
            .publish_with_reply(subject, inbox, ask.into())
            .await
            .map_err(|e| unasked(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, answers.next()).await {
            if msg.status == Some(StatusCode::NO_RESPONDERS) {
                break;
            }
            let Some(theirs) = parse(&msg.payload) else {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if mine.gives_way(&theirs) {
                lock(&standing).beaten_by.get_or_insert(theirs);
                break;
            }
        }
        drop(answers);
        let outcome = {
            let mut s = lock(&standing);
            if let Some(theirs) = s.beaten_by.take() {
                Err(ClaimError::Taken {
                    name: name.to_owned(),
                    prefix: self.config.prefix.clone(),
                    host: theirs.host,
                    pid: theirs.pid,
                    holds: theirs.holds,
                })
            } else if !stats.connected.load(Ordering::Relaxed)
                || stats.disconnects.load(Ordering::Relaxed) != disconnects
            {
                Err(unasked(
                    "the connection to the server was lost while asking".into(),
                ))
            } else {
                s.mine.holds = true;
                Ok(())
            }
        };
        match outcome {
            Ok(()) => Ok(claim),
            Err(e) => {
                claim.release().await;
                Err(e)
            }
        }
    }
}

fn lock(standing: &Mutex<Standing>) -> std::sync::MutexGuard<'_, Standing> {
    standing.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers other hosts' asks for `name` with this host's stake until `stop` fires (then it
/// unsubscribes); gives way, while this host is still asking, to an ask that comes first.
async fn answer(
    client: async_nats::Client,
    mut sub: async_nats::Subscriber,
    standing: Arc<Mutex<Standing>>,
    name: String,
    stats: Arc<Stats>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let Some(msg) = super::next_or_stop(&mut sub, &mut stop).await else {
            return;
        };
        let (Some(reply), Some(theirs)) = (msg.reply, parse(&msg.payload)) else {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mine = {
            let mut s = lock(&standing);
            if s.mine.gives_way(&theirs) {
                s.beaten_by.get_or_insert(theirs.clone());
            }
            s.mine.clone()
        };
        if mine.holds {
            tracing::warn!(
                agent = %name,
                host = %theirs.host,
                pid = theirs.pid,
                "another host on the NATS bus asked to run an agent this host runs; it was told to give way"
            );
        }
        if let Ok(json) = serde_json::to_vec(&mine) {
            let _ = client.publish(reply, json.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stake(host: &str, since_ns: u64, holds: bool) -> Stake {
        Stake {
            host: host.into(),
            pid: 1,
            since_ns,
            holds,
        }
    }

    #[test]
    fn who_gives_way() {
        let cases = [
            (
                "a holder keeps the name against an earlier ask",
                stake("b", 9, true),
                stake("a", 1, false),
                false,
            ),
            (
                "a holder keeps it against another holder",
                stake("b", 9, true),
                stake("a", 1, true),
                false,
            ),
            (
                "an ask gives way to a holder, however late",
                stake("a", 1, false),
                stake("b", 9, true),
                true,
            ),
            (
                "a later ask gives way to an earlier one",
                stake("b", 9, false),
                stake("a", 1, false),
                true,
            ),
            (
                "an earlier ask does not",
                stake("a", 1, false),
                stake("b", 9, false),
                false,
            ),
            (
                "same time: the smaller host id keeps it",
                stake("b", 5, false),
                stake("a", 5, false),
                true,
            ),
            (
                "same time, larger host id asking",
                stake("a", 5, false),
                stake("b", 5, false),
                false,
            ),
        ];
        for (what, mine, theirs, want) in cases {
            assert_eq!(mine.gives_way(&theirs), want, "{what}");
        }
    }

    /// Of any two stakes still asking, exactly one gives way: two hosts comparing the same
    /// pair never both run a name nor both refuse it.
    #[test]
    fn of_two_asks_exactly_one_gives_way() {
        let stakes = [
            stake("a", 1, false),
            stake("b", 1, false),
            stake("a", 2, false),
            stake("c", 0, false),
        ];
        for x in &stakes {
            for y in stakes.iter().filter(|y| *y != x) {
                assert!(x.gives_way(y) != y.gives_way(x), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn stakes_from_the_network_are_checked() {
        let good = stake("3f2a9c1b0d4e12345678", 7, true);
        let json = serde_json::to_vec(&good).unwrap();
        assert_eq!(parse(&json), Some(good));
        for bad in [
            &b"{not json"[..],
            br#"{"host":"","pid":1,"since_ns":1,"holds":true}"#,
            br#"{"host":"a\nb","pid":1,"since_ns":1,"holds":true}"#,
            br#"{"host":"a","pid":-1,"since_ns":1,"holds":true}"#,
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let long = format!(
            r#"{{"host":"{}","pid":1,"since_ns":1,"holds":true}}"#,
            "a".repeat(65)
        );
        assert_eq!(parse(long.as_bytes()), None);
    }

    /// A joined bus, and a plain NATS client that plays another host by hand.
    async fn host_and_stand_in() -> (String, crate::Bus, Arc<NatsLink>, async_nats::Client) {
        let prefix = format!("colonyclaim{}", crate::new_id().replace('-', "x"));
        let bus = crate::Bus::new();
        let link = super::super::connect(
            &bus,
            super::super::NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                prefix: prefix.clone(),
            },
            |_| None,
        )
        .await
        .expect("the NATS server on 127.0.0.1:4222 (the tests need it)");
        let raw = async_nats::ConnectOptions::new()
            .no_echo()
            .connect("nats://127.0.0.1:4222")
            .await
            .unwrap();
        (prefix, bus, link, raw)
    }

    /// Returns once the server has handled everything `raw` sent before (its subscriptions
    /// included): a request nobody answers comes back "no responders" only then. (`flush`
    /// waits only for the socket write.)
    async fn settled(raw: &async_nats::Client) {
        let nobody = format!("colonyclaimsync.{}", crate::new_id().replace('-', "x"));
        let e = raw.request(nobody, bytes::Bytes::new()).await.unwrap_err();
        assert_eq!(
            e.kind(),
            async_nats::client::RequestErrorKind::NoResponders,
            "{e}"
        );
    }

    fn payload(s: &Stake) -> bytes::Bytes {
        serde_json::to_vec(s).unwrap().into()
    }

    /// Two hosts asking at once, driven step by step: whichever side hears the other, the
    /// earlier ask keeps the name.
    #[tokio::test]
    async fn an_earlier_ask_wins_whichever_side_hears_it() {
        let (prefix, _bus, link, raw) = host_and_stand_in().await;
        let earlier = stake("standin", 1, false);

        // The host hears the stand-in's answer: an earlier ask, so it gives way at once.
        let mut sub = raw
            .subscribe(claim_subject(&prefix, "first"))
            .await
            .unwrap();
        settled(&raw).await;
        let answering = tokio::spawn({
            let (raw, earlier) = (raw.clone(), earlier.clone());
            async move {
                let ask = sub.next().await.unwrap();
                let theirs = parse(&ask.payload).unwrap();
                raw.publish(ask.reply.unwrap(), payload(&earlier))
                    .await
                    .unwrap();
                (theirs, sub)
            }
        });
        let e = link.claim("first").await.unwrap_err();
        let (their_ask, _keep) = answering.await.unwrap();
        assert_eq!(their_ask.host, link.status().host_id);
        assert!(!their_ask.holds);
        assert_eq!(
            e,
            ClaimError::Taken {
                name: "first".into(),
                prefix: prefix.clone(),
                host: "standin".into(),
                pid: 1,
                holds: false,
            }
        );

        // The host is asked while it waits for answers (the stand-in listens, never answers,
        // and asks with an earlier stake): it answers, and gives way.
        let subject = claim_subject(&prefix, "second");
        let mut sub = raw.subscribe(subject.clone()).await.unwrap();
        settled(&raw).await;
        let asking = tokio::spawn({
            let (raw, earlier) = (raw.clone(), earlier.clone());
            async move {
                let _their_ask = sub.next().await.unwrap();
                let inbox = raw.new_inbox();
                let mut answers = raw.subscribe(inbox.clone()).await.unwrap();
                raw.publish_with_reply(subject, inbox, payload(&earlier))
                    .await
                    .unwrap();
                let answer = answers.next().await.unwrap();
                (parse(&answer.payload).unwrap(), sub)
            }
        });
        let e = link.claim("second").await.unwrap_err();
        let (answer, _keep) = asking.await.unwrap();
        assert_eq!((answer.host, answer.holds), (link.status().host_id, false));
        assert!(
            matches!(&e, ClaimError::Taken { host, holds: false, .. } if host == "standin"),
            "{e}"
        );

        // Answers from later asks only: the host waits the whole window, then holds the name
        // and says so to the next asker.
        let mut sub = raw
            .subscribe(claim_subject(&prefix, "third"))
            .await
            .unwrap();
        settled(&raw).await;
        let later = stake("standin", u64::MAX, false);
        let answering = tokio::spawn({
            let raw = raw.clone();
            async move {
                let ask = sub.next().await.unwrap();
                raw.publish(ask.reply.unwrap(), payload(&later))
                    .await
                    .unwrap();
            }
        });
        let started = std::time::Instant::now();
        let held = link.claim("third").await.unwrap();
        assert!(started.elapsed() >= CLAIM_WAIT, "{:?}", started.elapsed());
        answering.await.unwrap();
        let answer = raw
            .request(claim_subject(&prefix, "third"), payload(&earlier))
            .await
            .unwrap();
        assert_eq!(
            parse(&answer.payload).map(|s| (s.host, s.holds)),
            Some((link.status().host_id, true))
        );
        held.release().await;
        assert_eq!(link.status().malformed, 0);
    }

    #[test]
    fn the_refusal_names_the_agent_the_other_host_and_what_to_do() {
        let e = ClaimError::Taken {
            name: "trader".into(),
            prefix: "desk1".into(),
            host: "3f2a9c1b0d4e12345678".into(),
            pid: 4242,
            holds: true,
        };
        assert_eq!(
            e.to_string(),
            "agent \"trader\" already runs on host 3f2a9c1b0d4e12345678 (pid 4242) on this NATS \
             bus (prefix desk1), so it is not started here: rename it on one of the two hosts, or \
             stop it on host 3f2a9c1b0d4e12345678 and then touch this file or restart this host"
        );
    }
}
