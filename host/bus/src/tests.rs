//! Bus tests: routing, dead letters, request/reply and gather, through real mailboxes.

use super::*;
use bytes::Bytes;
use std::time::Instant as StdInstant;

fn msg(subject: &str) -> Envelope {
    Envelope::new("publisher".into(), subject, Bytes::from_static(b"x"))
}

fn subscribed(bus: &Bus, owner: &str, patterns: &[&str], capacity: usize) -> Mailbox {
    let m = bus.mailbox(owner, capacity);
    for p in patterns {
        bus.subscribe(owner, p, &m).unwrap();
    }
    m
}

fn subjects(m: &Mailbox) -> Vec<String> {
    std::iter::from_fn(|| m.try_recv().map(|e| e.subject.clone())).collect()
}

/// Answers every request that arrives in `m` with its own name, until the mailbox closes.
fn responder(bus: &Bus, m: Mailbox) -> tokio::task::JoinHandle<usize> {
    let bus = bus.clone();
    tokio::spawn(async move {
        let mut answered = 0;
        while let Some(req) = m.recv().await {
            let reply = Envelope::new(m.owner().clone(), "unused", m.owner().to_string());
            bus.reply(&req, reply).unwrap();
            answered += 1;
        }
        answered
    })
}

#[test]
fn bus_publish_subjects_are_checked() {
    let bus = Bus::new();
    let invalid =
        |r: Result<PublishReport, BusError>| matches!(r, Err(BusError::InvalidSubject(_)));
    for s in ["a.*", "a.>", "", "a..b", "a b", ".a", "a."] {
        assert!(invalid(bus.publish(msg(s))), "{s:?}");
    }
    assert_eq!(
        bus.publish(msg("_DEAD.x")),
        Err(BusError::Reserved("_DEAD.x".into()))
    );
    for s in ["a.b", "_DEAD", "md.spot.BTC-USDT", "agent.alpha.inbox"] {
        assert_eq!(bus.publish(msg(s)), Ok(PublishReport::default()), "{s:?}");
    }
    let e = bus.publish(msg("a.>")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "subject \"a.>\": wildcard '>' (token 2) is not allowed here"
    );
}

#[test]
fn bus_subscribe_patterns_are_checked() {
    let bus = Bus::new();
    let m = bus.mailbox("a", 4);
    for p in ["a.*", "a.>", ">", "*", "_DEAD.>", "_DEAD.cmd.*", "x.*.y.>"] {
        assert!(bus.subscribe("a", p, &m).is_ok(), "{p:?}");
    }
    for p in ["a.>.b", "a*", "", "a..b", "a b"] {
        assert!(
            matches!(bus.subscribe("a", p, &m), Err(BusError::InvalidSubject(_))),
            "{p:?}"
        );
    }
    assert_eq!(
        bus.subscribe("a", "_INBOX.>", &m),
        Err(BusError::Reserved("_INBOX.>".into()))
    );
    let other = Bus::new().mailbox("b", 4);
    assert_eq!(
        bus.subscribe("b", "a.b", &other),
        Err(BusError::ForeignMailbox("b".into()))
    );
    assert!(matches!(
        bus.subscribe("c", "a.b", &Mailbox::detached("c", 4)),
        Err(BusError::ForeignMailbox(_))
    ));
}

#[test]
fn bus_fan_out_gives_each_subscriber_one_copy() {
    let bus = Bus::new();
    let a = subscribed(&bus, "a", &["md.>", "md.*.BTC", "md.spot.BTC"], 16);
    let b = subscribed(&bus, "b", &["md.spot.*"], 16);
    let c = subscribed(&bus, "c", &["md.spot.ETH"], 16);
    let report = bus.publish(msg("md.spot.BTC")).unwrap();
    assert_eq!(
        report,
        PublishReport {
            delivered: 2,
            dropped: 0,
            refused: 0
        }
    );
    assert_eq!(subjects(&a), ["md.spot.BTC"]);
    assert_eq!(subjects(&b), ["md.spot.BTC"]);
    assert!(subjects(&c).is_empty());
    assert_eq!(bus.stats().delivered, 2);
    assert_eq!(bus.stats().published, 1);
}

#[test]
fn bus_unsubscribe_stops_delivery() {
    let bus = Bus::new();
    let m = bus.mailbox("a", 16);
    let one = bus.subscribe("a", "x.*", &m).unwrap();
    bus.subscribe("a", "y.>", &m).unwrap();
    let b = subscribed(&bus, "b", &["x.>"], 16);
    assert_eq!(bus.subscription_count(), 3);

    assert_eq!(bus.publish(msg("x.1")).unwrap().delivered, 2);
    assert!(bus.unsubscribe(one));
    assert!(!bus.unsubscribe(one), "already gone");
    assert_eq!(bus.publish(msg("x.2")).unwrap().delivered, 1);
    assert_eq!(bus.publish(msg("y.1")).unwrap().delivered, 1);

    assert_eq!(bus.unsubscribe_all("a"), 1);
    assert_eq!(bus.unsubscribe_all("a"), 0);
    assert_eq!(bus.publish(msg("y.2")).unwrap().delivered, 0);
    assert_eq!(subjects(&m), ["x.1", "y.1"]);
    assert_eq!(subjects(&b), ["x.1", "x.2"]);
    assert_eq!(bus.subscription_count(), 1);
}

#[test]
fn bus_refused_command_is_dead_lettered_with_its_reason() {
    let bus = Bus::new();
    let slow = subscribed(&bus, "slow", &["cmd.>"], 1);
    let everything = subscribed(&bus, "everything", &[">"], 16);
    let ops = subscribed(&bus, "ops", &["_DEAD.>"], 16);

    bus.publish(msg("cmd.first")).unwrap();
    let second = msg("cmd.second").with_header("k", "v");
    let id = second.id.clone();
    let report = bus.publish(second).unwrap();
    assert_eq!(
        report,
        PublishReport {
            delivered: 1,
            dropped: 0,
            refused: 1
        }
    );
    assert_eq!(slow.stats().refused, 1);

    let dead = ops.try_recv().expect("a dead letter");
    assert_eq!(dead.subject, "_DEAD.cmd.second");
    assert_eq!(dead.id, id, "the original id, so operators can trace it");
    assert_eq!(&*dead.sender, "publisher");
    assert_eq!(dead.header(DEAD_REASON_HEADER), Some("mailbox-full"));
    assert_eq!(dead.header(DEAD_SUBSCRIBER_HEADER), Some("slow"));
    assert_eq!(dead.header("k"), Some("v"));
    assert!(ops.try_recv().is_none());

    // `>` does not see dead letters; only `_DEAD.` patterns do.
    assert_eq!(subjects(&everything), ["cmd.first", "cmd.second"]);
    let stats = bus.stats();
    assert_eq!((stats.dead_letters, stats.dead_letters_lost), (1, 0));
}

#[test]
fn bus_dead_letters_nobody_takes_are_counted_not_recursed() {
    let bus = Bus::new();
    let slow = subscribed(&bus, "slow", &["cmd.>"], 1);
    let ops = subscribed(&bus, "ops", &["_DEAD.>"], 1);
    for i in 0..4 {
        bus.publish(msg(&format!("cmd.{i}"))).unwrap();
    }
    let stats = bus.stats();
    assert_eq!(stats.dead_letters, 3);
    assert_eq!(stats.dead_letters_lost, 2);
    assert_eq!(ops.stats().refused, 2);
    assert_eq!(subjects(&ops), ["_DEAD.cmd.1"]);
    assert_eq!(subjects(&slow), ["cmd.0"]);
}

#[test]
fn bus_market_data_under_pressure_drops_the_oldest_and_reports_it() {
    let bus = Bus::new();
    let m = subscribed(&bus, "a", &["md.>"], 2);
    let ops = subscribed(&bus, "ops", &["_DEAD.>"], 16);
    for i in 0..5 {
        let report = bus.publish(msg(&format!("md.tick.{i}"))).unwrap();
        assert_eq!(report.delivered, 1);
        assert_eq!(report.dropped, usize::from(i >= 2));
    }
    assert_eq!(m.stats().dropped, 3);
    assert_eq!(subjects(&m), ["md.tick.3", "md.tick.4"]);
    assert!(
        ops.try_recv().is_none(),
        "drops are counted, not dead-lettered"
    );
}

#[test]
fn bus_a_full_mailbox_does_not_stop_delivery_to_others() {
    let bus = Bus::new();
    let slow = subscribed(&bus, "slow", &["cmd.>", "md.>"], 1);
    let fast = subscribed(&bus, "fast", &["cmd.>", "md.>"], 64);
    for i in 0..10 {
        let report = bus.publish(msg(&format!("cmd.{i}"))).unwrap();
        assert_eq!(report.delivered, 1 + usize::from(i == 0));
    }
    for i in 0..10 {
        let report = bus.publish(msg(&format!("md.{i}"))).unwrap();
        assert_eq!((report.delivered, report.dropped), (1, 1));
    }
    assert_eq!(fast.depth(), 20);
    assert_eq!(
        slow.stats(),
        MailboxStats {
            depth: 1,
            capacity: 1,
            dropped: 10,
            refused: 9,
            expired: 0,
            md_routed: 10,
            md_taken: 0,
            sent_refused: 0,
        }
    );
    assert_eq!(bus.stats().dead_letters, 9);
    assert_eq!(bus.stats().dead_letters_lost, 9, "no one watches _DEAD");
}

#[tokio::test]
async fn bus_expired_message_is_dead_lettered_when_received() {
    let bus = Bus::new();
    let m = subscribed(&bus, "a", &["cmd.>"], 16);
    let ops = subscribed(&bus, "ops", &["_DEAD.>"], 16);
    let mut stale = msg("cmd.stale");
    stale.expires_at = Some(Instant::now());
    bus.publish(stale).unwrap();
    bus.publish(msg("cmd.fresh").with_ttl(Duration::from_secs(3600)))
        .unwrap();
    assert!(
        ops.try_recv().is_none(),
        "expiry is decided at receive time"
    );

    let got = m.recv().await.unwrap();
    assert_eq!(got.subject, "cmd.fresh");
    assert_eq!(m.stats().expired, 1);
    let dead = ops.try_recv().expect("a dead letter");
    assert_eq!(dead.subject, "_DEAD.cmd.stale");
    assert_eq!(dead.header(DEAD_REASON_HEADER), Some("expired"));
    assert_eq!(dead.header(DEAD_SUBSCRIBER_HEADER), Some("a"));
    assert_eq!(dead.expires_at, None, "a dead letter does not expire again");
}

#[tokio::test]
async fn bus_request_gets_the_first_reply() {
    let bus = Bus::new();
    let svc = subscribed(&bus, "svc", &["svc.price"], 16);
    let task = responder(&bus, svc.clone());

    let req = msg("svc.price");
    let id = req.id.clone();
    let reply = bus.request(req, Duration::from_secs(30)).await.unwrap();
    assert_eq!(&reply.payload[..], b"svc");
    assert_eq!(&*reply.sender, "svc");
    assert_eq!(reply.correlation_id.as_deref(), Some(id.as_str()));
    assert!(reply.subject.starts_with(INBOX_PREFIX), "{}", reply.subject);

    // A correlation id the requester chose is kept.
    let mut req = msg("svc.price");
    req.correlation_id = Some("mine".into());
    let reply = bus.request(req, Duration::from_secs(30)).await.unwrap();
    assert_eq!(reply.correlation_id.as_deref(), Some("mine"));

    svc.close();
    assert_eq!(task.await.unwrap(), 2);
    assert_eq!(bus.stats().late_replies, 0);
    assert!(bus.0.lock_pending().is_empty());
}

#[tokio::test]
async fn bus_reply_by_subject_alone_gets_the_request_correlation_id() {
    // What a guest's `reply(reply-to, payload)` does: publish on the reply subject.
    let bus = Bus::new();
    let svc = subscribed(&bus, "svc", &["svc.price"], 16);
    let b = bus.clone();
    let task = tokio::spawn(async move {
        let req = svc.recv().await.unwrap();
        let to = req.reply_to.clone().unwrap();
        b.publish(Envelope::new("svc".into(), to, Bytes::new()))
            .unwrap()
    });
    let req = msg("svc.price");
    let id = req.id.clone();
    let reply = bus.request(req, Duration::from_secs(600)).await.unwrap();
    assert_eq!(reply.correlation_id.as_deref(), Some(id.as_str()));
    assert_eq!(task.await.unwrap().delivered, 1);
}

#[test]
fn bus_inboxes_are_unguessable_tokens() {
    let bus = Bus::new();
    let a = envelope::new_inbox_token(bus.id());
    let b = envelope::new_inbox_token(bus.id());
    assert_ne!(a, b);
    let (id, token) = a.split_once('.').unwrap();
    assert_eq!(id, bus.id());
    assert!(id.starts_with(envelope::host_id()));
    assert_ne!(Bus::new().id(), bus.id(), "each bus has its own id");
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert!(caps::check_subject(&format!("{INBOX_PREFIX}{a}"), false).is_ok());
}

#[test]
fn bus_unsubscribe_owned_only_ends_the_owners_subscription() {
    let bus = Bus::new();
    let m = bus.mailbox("a", 4);
    let id = bus.subscribe("a", "x", &m).unwrap();
    assert!(!bus.unsubscribe_owned("b", id));
    assert_eq!(bus.subscription_count(), 1);
    assert!(bus.unsubscribe_owned("a", id));
    assert_eq!(bus.subscription_count(), 0);
}

#[tokio::test]
async fn bus_request_without_responders_fails_at_once_and_is_dead_lettered() {
    let bus = Bus::new();
    let ops = subscribed(&bus, "ops", &["_DEAD.>"], 16);
    let _other = subscribed(&bus, "other", &["svc.other"], 16);
    let start = StdInstant::now();
    let r = bus.request(msg("svc.none"), Duration::from_secs(600)).await;
    assert_eq!(r, Err(BusError::NoResponders));
    assert!(start.elapsed() < Duration::from_secs(60));
    let dead = ops.try_recv().expect("a dead letter");
    assert_eq!(dead.subject, "_DEAD.svc.none");
    assert_eq!(dead.header(DEAD_REASON_HEADER), Some("no-responders"));
    assert!(dead.reply_to.is_some());

    let r = bus
        .gather(msg("svc.none"), 1, Duration::from_secs(600))
        .await;
    assert_eq!(r, Err(BusError::NoResponders));
    assert!(bus.0.lock_pending().is_empty());
}

#[tokio::test]
async fn bus_request_to_full_responders_fails_at_once() {
    let bus = Bus::new();
    let svc = subscribed(&bus, "svc", &["svc.>"], 1);
    bus.publish(msg("svc.busy")).unwrap();
    let r = bus
        .request(msg("svc.price"), Duration::from_secs(600))
        .await;
    assert_eq!(r, Err(BusError::MailboxFull));
    assert_eq!(svc.stats().refused, 1);
    assert_eq!(bus.stats().dead_letters, 1);
}

#[tokio::test]
async fn bus_request_reserved_and_invalid_subjects() {
    let bus = Bus::new();
    let t = Duration::from_secs(1);
    assert!(matches!(
        bus.request(msg("svc.*"), t).await,
        Err(BusError::InvalidSubject(_))
    ));
    assert!(matches!(
        bus.request(msg("_INBOX.x"), t).await,
        Err(BusError::Reserved(_))
    ));
    assert!(matches!(
        bus.gather(msg("_DEAD.x"), 1, t).await,
        Err(BusError::Reserved(_))
    ));
    assert_eq!(
        bus.reply(&msg("no.reply.to"), msg("x")),
        Err(BusError::NoReplyTo)
    );
}

#[tokio::test]
async fn bus_request_timeout_then_late_reply_is_counted() {
    let bus = Bus::new();
    let svc = subscribed(&bus, "svc", &["svc.slow"], 16);
    let r = bus
        .request(msg("svc.slow"), Duration::from_millis(20))
        .await;
    assert_eq!(r, Err(BusError::Timeout));
    assert!(bus.0.lock_pending().is_empty(), "the inbox is gone");

    let req = svc.try_recv().expect("the request was delivered");
    let report = bus.reply(&req, msg("unused")).unwrap();
    assert_eq!(report.delivered, 0);
    assert_eq!(bus.stats().late_replies, 1);

    // A reply to an inbox that never existed is counted the same way.
    bus.publish(msg("_INBOX.nobody")).unwrap();
    assert_eq!(bus.stats().late_replies, 2);
}

#[tokio::test]
async fn bus_cancelled_request_removes_its_inbox() {
    let bus = Bus::new();
    let svc = subscribed(&bus, "svc", &["svc.slow"], 16);
    tokio::select! {
        _ = bus.request(msg("svc.slow"), Duration::from_secs(600)) => panic!("no reply was sent"),
        _ = tokio::task::yield_now() => {}
    }
    assert!(bus.0.lock_pending().is_empty());
    let req = svc.try_recv().unwrap();
    bus.reply(&req, msg("unused")).unwrap();
    assert_eq!(bus.stats().late_replies, 1);
}

#[tokio::test]
async fn bus_gather_returns_at_quorum_without_waiting_for_the_timeout() {
    let bus = Bus::new();
    let tasks: Vec<_> = ["r1", "r2", "r3"]
        .iter()
        .map(|name| {
            let m = subscribed(&bus, name, &["risk.approve"], 16);
            (m.clone(), responder(&bus, m))
        })
        .collect();

    let start = StdInstant::now();
    let replies = bus
        .gather(msg("risk.approve"), 2, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "returned at quorum"
    );
    assert_eq!(replies.len(), 2);
    let mut senders: Vec<&str> = replies.iter().map(|r| &*r.sender).collect();
    senders.dedup();
    assert_eq!(senders.len(), 2, "two different responders");

    for (m, task) in tasks {
        m.close();
        assert_eq!(task.await.unwrap(), 1);
    }
    assert_eq!(bus.stats().late_replies, 1, "the third reply came too late");
    assert!(bus.0.lock_pending().is_empty());
}

#[tokio::test]
async fn bus_gather_returns_what_arrived_at_the_timeout() {
    let bus = Bus::new();
    let answering = subscribed(&bus, "r1", &["risk.approve"], 16);
    let _silent_a = subscribed(&bus, "r2", &["risk.approve"], 16);
    let _silent_b = subscribed(&bus, "r3", &["risk.approve"], 16);
    let task = responder(&bus, answering.clone());

    let replies = bus
        .gather(msg("risk.approve"), 3, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(&*replies[0].sender, "r1");
    answering.close();
    assert_eq!(task.await.unwrap(), 1);

    // Quorum 0 waits for nothing.
    let none = bus
        .gather(msg("risk.approve"), 0, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Not a timing test: it checks the counts of a burst big enough to matter and prints the cost
/// per delivery (`cargo test --release -p colony-host --lib bus_fan_out -- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_fan_out_100k_publishes_to_10_mailboxes() {
    const N: usize = 100_000;
    const SUBS: usize = 10;
    let bus = Bus::new();
    let boxes: Vec<Mailbox> = (0..SUBS)
        .map(|i| subscribed(&bus, &format!("agent-{i}"), &["bench.>"], N))
        .collect();
    // Ten publishers, so that none passes its share of a mailbox (`SENDER_SHARE`).
    let senders: Vec<Arc<str>> = (0..10).map(|i| format!("bench-{i}").into()).collect();
    let publish_all = |bus: &Bus| {
        for i in 0..N as u64 {
            let sender = senders[i as usize % senders.len()].clone();
            let env = Envelope::new(sender, "bench.tick", i.to_le_bytes().to_vec());
            let report = bus.publish(env).unwrap();
            assert_eq!(report.delivered, SUBS);
        }
    };

    // Publishing alone: routing and pushing, with nobody receiving.
    let start = StdInstant::now();
    publish_all(&bus);
    let publish_only = start.elapsed();
    for m in &boxes {
        assert_eq!(m.depth(), N);
        let mut n = 0u64;
        while let Some(e) = m.try_recv() {
            assert_eq!(&e.payload[..], n.to_le_bytes());
            n += 1;
        }
        assert_eq!(n, N as u64);
    }

    // Publishing while ten receivers drain concurrently.
    let receivers: Vec<_> = boxes
        .iter()
        .cloned()
        .map(|m| {
            tokio::spawn(async move {
                let mut n = 0u64;
                while n < N as u64 {
                    let e = m.recv().await.unwrap();
                    assert_eq!(&e.payload[..], n.to_le_bytes());
                    n += 1;
                }
                n
            })
        })
        .collect();
    let start = StdInstant::now();
    publish_all(&bus);
    for r in receivers {
        assert_eq!(r.await.unwrap(), N as u64);
    }
    let with_receivers = start.elapsed();

    let stats = bus.stats();
    assert_eq!(stats.published, 2 * N as u64);
    assert_eq!(stats.delivered, (2 * N * SUBS) as u64);
    assert_eq!(stats.dead_letters, 0);
    for m in &boxes {
        assert_eq!(
            m.stats(),
            MailboxStats {
                depth: 0,
                capacity: N,
                dropped: 0,
                refused: 0,
                expired: 0,
                md_routed: m.stats().md_routed,
                md_taken: m.stats().md_routed,
                sent_refused: 0,
            }
        );
    }
    let per = |d: Duration| d.as_nanos() as f64 / (N * SUBS) as f64;
    println!(
        "bus fan-out, {N} publishes x {SUBS} subscribers: publish only {:.0} ns/delivery, \
         with 10 receivers {:.0} ns/delivery ({:.0} deliveries/s)",
        per(publish_only),
        per(with_receivers),
        1e9 / per(with_receivers),
    );
}

#[tokio::test]
async fn bus_settle_waits_for_agent_mailboxes_only() {
    let bus = Bus::new();
    let agent = bus.agent_mailbox("agent", 8);
    bus.subscribe("agent", "md.>", &agent).unwrap();
    let operator = subscribed(&bus, "operator", &["md.>"], 8);
    assert!(bus.settle(Duration::from_millis(10)).await, "idle at start");
    bus.publish(msg("md.x.BTC.quote")).unwrap();
    bus.publish(msg("md.x.BTC.trade")).unwrap();
    assert_eq!(
        bus.busy_mailboxes(),
        1,
        "the operator's mailbox is not counted"
    );
    assert!(
        !bus.settle(Duration::from_millis(20)).await,
        "two envelopes not handled"
    );
    let first = agent.try_recv().unwrap();
    agent.done();
    assert_eq!(first.subject, "md.x.BTC.quote");
    // Taken but not finished: still busy.
    let _second = agent.try_recv().unwrap();
    assert!(!bus.settle(Duration::from_millis(20)).await);
    let waiter = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.settle(Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished());
    agent.done();
    assert!(waiter.await.unwrap(), "the last done wakes the waiter");
    assert_eq!(
        operator.depth(),
        2,
        "the operator never read, and did not hold anyone up"
    );
    // A busy agent mailbox that goes away does not keep the bus busy.
    bus.publish(msg("md.x.BTC.quote")).unwrap();
    assert_eq!(bus.busy_mailboxes(), 1);
    bus.unsubscribe_all("agent");
    drop(agent);
    assert_eq!(bus.busy_mailboxes(), 0);
}

/// A remote link that records which patterns the bus asked it for.
#[derive(Default)]
struct RecordingRemote {
    interest: std::sync::Mutex<Vec<(String, bool)>>,
}

impl Remote for RecordingRemote {
    fn forward(&self, _envelope: &Envelope) -> bool {
        true
    }
    fn interest(&self, pattern: &str, wanted: bool) {
        self.interest
            .lock()
            .unwrap()
            .push((pattern.to_string(), wanted));
    }
}

#[test]
fn bus_local_subscriptions_are_never_announced_to_the_remote() {
    let bus = Bus::new();
    let remote = Arc::new(RecordingRemote::default());
    let mb = bus.mailbox("a", 16);
    // Before and after the link is attached.
    let early = bus.subscribe_local("a", "agent.a.orders", &mb).unwrap();
    assert!(bus.attach_remote(remote.clone()));
    bus.subscribe("a", "news.>", &mb).unwrap();
    bus.subscribe_local("a", "agent.b.orders", &mb).unwrap();
    // Still delivered locally.
    let r = bus
        .publish(Envelope::new("host".into(), "agent.a.orders", "x"))
        .unwrap();
    assert_eq!(r.delivered, 1);
    bus.unsubscribe(early);
    bus.unsubscribe_all("a");
    let seen = remote.interest.lock().unwrap().clone();
    assert_eq!(
        seen,
        [("news.>".to_string(), true), ("news.>".to_string(), false)]
    );
}

fn answer(payload: &[u8]) -> Envelope {
    Envelope::new("responder".into(), "x", payload.to_vec())
}

/// A replayed wait (`Wait::Replay`) of `agent`, counted as a busy mailbox, with `timeout_ms`.
fn replayed(agent: &str, timeout_ms: u64) -> Wait {
    Wait::Replay {
        agent: agent.into(),
        counted: true,
        timeout_ns: timeout_ms * 1_000_000,
        cap: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_replayed_request_waits_for_a_slow_responder_however_long_it_takes() {
    // In a replay a request's timeout is not real time: a responder that takes far longer
    // than the timeout (a loaded machine) still gets its answer through.
    let bus = Bus::new();
    let asker = bus.agent_mailbox("asker", 8);
    let slow = bus.agent_mailbox("slow", 8);
    bus.subscribe("slow", "svc.slow", &slow).unwrap();
    // The asker is handling an event (its mailbox busy), as in a lockstep replay.
    asker.push(Arc::new(msg("agent.asker.inbox"))).unwrap();
    let _event = asker.try_recv().unwrap();
    let answering = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let req = slow.recv().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            bus.reply(&req, answer(b"late but in time")).unwrap();
            slow.done();
        })
    };
    let started = StdInstant::now();
    let reply = bus
        .request_with(msg("svc.slow"), replayed("asker", 10))
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"late but in time");
    assert!(started.elapsed() >= Duration::from_millis(300));
    answering.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_replayed_request_times_out_once_no_reply_can_come() {
    let bus = Bus::new();
    let asker = bus.agent_mailbox("asker", 8);
    let mute = bus.agent_mailbox("mute", 8);
    bus.subscribe("mute", "svc.mute", &mute).unwrap();
    asker.push(Arc::new(msg("agent.asker.inbox"))).unwrap();
    let _event = asker.try_recv().unwrap();
    let handling = tokio::spawn(async move {
        let _req = mute.recv().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Handled without an answer.
        mute.done();
        mute
    });
    let started = StdInstant::now();
    let err = bus
        .request_with(msg("svc.mute"), replayed("asker", 60_000))
        .await
        .unwrap_err();
    assert_eq!(err, BusError::Timeout);
    let waited = started.elapsed();
    // Not before the responder finished, and long before the 60 s timeout or the 30 s cap.
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let _mute = handling.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_replayed_waits_that_wait_on_each_other_end_shortest_timeout_first() {
    // Two agents each request from the other while handling an event: neither can answer,
    // so the one with the shorter timeout times out first, whatever the scheduling; then
    // the other gets the first one's answer.
    let bus = Bus::new();
    let a = bus.agent_mailbox("a", 8);
    let b = bus.agent_mailbox("b", 8);
    bus.subscribe("a", "svc.a", &a).unwrap();
    bus.subscribe("b", "svc.b", &b).unwrap();
    a.push(Arc::new(msg("agent.a.inbox"))).unwrap();
    b.push(Arc::new(msg("agent.b.inbox"))).unwrap();
    let _ea = a.try_recv().unwrap();
    let _eb = b.try_recv().unwrap();
    let long = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.request_with(msg("svc.a"), replayed("b", 500)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let short = bus.request_with(msg("svc.b"), replayed("a", 50)).await;
    assert_eq!(short.unwrap_err(), BusError::Timeout);
    // a, done waiting, finishes its event, then handles b's request and answers it.
    a.done();
    let req = a.try_recv().unwrap();
    assert_eq!(req.subject, "svc.a");
    bus.reply(&req, answer(b"from a")).unwrap();
    a.done();
    let reply = long.await.unwrap().unwrap();
    assert_eq!(&reply.payload[..], b"from a");
}
/// Fan-out order: a subscriber that reacts to an envelope as soon as it has it cannot get its
/// answer into a later subscriber's mailbox ahead of that envelope (a lockstep replay would
/// otherwise deliver the two in an order that depends on thread scheduling).
#[test]
fn bus_one_publish_reaches_every_mailbox_before_another_publish_routes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const SUBS: usize = 5_000;
    let bus = Bus::new();
    let first = subscribed(&bus, "first", &["md.>"], 4);
    let others: Vec<Mailbox> = (1..SUBS)
        .map(|i| subscribed(&bus, &format!("s{i}"), &["md.>"], 4))
        .collect();
    let last = subscribed(&bus, "last", &["md.>", "reply.>"], 4);
    // Without the fan-out hold the reactor wins some of these rounds (not every one: it needs
    // a core while the publish walks the table).
    for round in 0..40 {
        let ready = Arc::new(AtomicBool::new(false));
        let reactor = {
            let (first, bus, ready) = (first.clone(), bus.clone(), ready.clone());
            std::thread::spawn(move || {
                ready.store(true, Ordering::SeqCst);
                while first.try_recv().is_none() {
                    std::hint::spin_loop();
                }
                bus.publish(msg("reply.x")).unwrap();
            })
        };
        // The reactor is spinning before the publish starts.
        while !ready.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        bus.publish(msg("md.event")).unwrap();
        reactor.join().unwrap();
        assert_eq!(subjects(&last), ["md.event", "reply.x"], "round {round}");
        for m in &others {
            while m.try_recv().is_some() {}
        }
    }
}
#[test]
fn bus_agent_subjects_reach_only_patterns_that_name_the_agent() {
    let bus = Bus::new();
    let wide = subscribed(&bus, "wide", &[">"], 16);
    let star = subscribed(&bus, "star", &["agent.*.inbox", "*.pong.inbox"], 16);
    let agents = subscribed(&bus, "agents", &["agent.>"], 16);
    let named = subscribed(&bus, "named", &["agent.pong.inbox"], 16);
    let pong_all = subscribed(&bus, "pong-all", &["agent.pong.>"], 16);
    let other = subscribed(&bus, "other", &["agent.ping.>"], 16);
    for s in ["agent.pong.inbox", "agent.pong.orders", "news.x"] {
        bus.publish(msg(s)).unwrap();
    }
    assert_eq!(subjects(&wide), ["news.x"]);
    assert!(subjects(&star).is_empty());
    assert!(subjects(&agents).is_empty());
    assert_eq!(subjects(&named), ["agent.pong.inbox"]);
    assert_eq!(
        subjects(&pong_all),
        ["agent.pong.inbox", "agent.pong.orders"]
    );
    assert!(subjects(&other).is_empty());
}

#[test]
fn bus_host_subjects_headers_and_addressees() {
    for (subject, reserved) in [
        ("md.okx.BTC", true),
        ("_INBOX.a.b", true),
        ("_DEAD.x", true),
        ("_anything", true),
        ("agent.pong.timer", true),
        ("agent.pong.orders", true),
        ("agent.pong", true),
        ("agent.pong.inbox.x", true),
        ("agent..inbox", true),
        ("agent.pong.inbox", false),
        ("mdx.y", false),
        ("agents.x", false),
        ("news.md.x", false),
    ] {
        assert_eq!(reserved_for_host(subject).is_some(), reserved, "{subject}");
    }
    for (name, reserved) in [
        ("x-dead-reason", true),
        ("X-DEAD-SUBSCRIBER", true),
        ("colony-sender", true),
        ("Colony-Id", true),
        ("x-colony-", true),
        ("x-dead", false),
        ("trace-id", false),
        ("x-deadline", false),
        ("é", false),
    ] {
        assert_eq!(is_reserved_header(name), reserved, "{name}");
    }
    for (agent, subject, answers) in [
        ("pong", "agent.pong.inbox", true),
        ("spy", "agent.pong.inbox", false),
        ("spy", "agent.pongx.inbox", false),
        ("spy", "risk.vote", true),
    ] {
        assert_eq!(may_answer(agent, subject), answers, "{agent} {subject}");
    }
}

#[test]
fn bus_a_flooding_sender_is_refused_at_its_share_and_others_still_get_in() {
    let bus = Bus::new();
    let m = subscribed(&bus, "svc", &["svc.>"], DEFAULT_MAILBOX_CAPACITY);
    let share = m.sender_share();
    assert_eq!(share, DEFAULT_MAILBOX_CAPACITY / SENDER_SHARE);
    let mut refused = 0;
    for _ in 0..DEFAULT_MAILBOX_CAPACITY {
        refused += bus.publish(msg("svc.work")).unwrap().refused;
    }
    assert_eq!(refused, DEFAULT_MAILBOX_CAPACITY - share);
    assert_eq!(m.depth(), share);
    // Another sender still gets in.
    let probe = Envelope::new("probe".into(), "svc.ask", Bytes::new());
    assert_eq!(bus.publish(probe).unwrap().delivered, 1);
    assert_eq!(m.stats().refused as usize, DEFAULT_MAILBOX_CAPACITY - share);
    // The flooder's messages leave its share as they are received.
    for _ in 0..10 {
        m.try_recv().unwrap();
    }
    assert_eq!(bus.publish(msg("svc.work")).unwrap().delivered, 1);
}

#[test]
fn bus_sender_share_refusals_are_dead_lettered_with_their_reason() {
    let bus = Bus::new();
    let _m = subscribed(&bus, "svc", &["svc.>"], DEFAULT_MAILBOX_CAPACITY);
    let dead = subscribed(&bus, "ops", &["_DEAD.>"], 4096);
    for _ in 0..DEFAULT_MAILBOX_CAPACITY / SENDER_SHARE + 1 {
        bus.publish(msg("svc.work")).unwrap();
    }
    let letter = dead.try_recv().unwrap();
    assert_eq!(letter.header(DEAD_REASON_HEADER), Some("sender-share"));
    assert_eq!(letter.header(DEAD_SUBSCRIBER_HEADER), Some("svc"));
}
