//! Messaging between wasm agents on the in-process bus: publish/subscribe, request/reply and
//! gather with quorum, grants (granted and no-permission, with the deny audited), and
//! containment of a flooding publisher, a never-replying responder and a trapped subscriber;
//! hostile agents: headers over their limits or with the host's names, sends on the host's
//! subjects, an observer answering another agent's requests, a publisher starving a peer.

use colony_host::agent::Event;
use colony_host::audit::{AuditFilter, CapabilityMatch, Decision};
use colony_host::bus::Envelope;
use colony_host::state_store::StateStore;
use colony_tests::{TestHost, guests};

/// One bus-agent copy: (name, config JSON, grants).
type Spec<'a> = (&'a str, &'a str, &'a [&'a str]);

async fn swarm(agents: &[Spec<'_>]) -> (TestHost, StateStore) {
    let t = TestHost::start_copies(guests::BUS_AGENT, agents, |_| {}).await;
    let state = t.state().await;
    (t, state)
}

/// A command on the agent's inbox subject, delivered straight to it.
fn inbox(agent: &str, text: &str) -> Event {
    colony_tests::message(&format!("agent.{agent}.inbox"), text.as_bytes())
}

async fn text(state: &StateStore, agent: &str, key: &str) -> String {
    state
        .get(agent, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

async fn eventually_received(t: &TestHost, state: &StateStore, agent: &str, line: &str) {
    let (state, agent, line) = (state.clone(), agent.to_string(), line.to_string());
    t.eventually(&format!("{agent} received {line}"), || {
        let (state, agent, line) = (state.clone(), agent.clone(), line.clone());
        async move {
            text(&state, &agent, "received")
                .await
                .lines()
                .any(|l| l == line)
        }
    })
    .await;
}

const PUBLISHER: &[&str] = &[
    "messaging.publish:news.>",
    "messaging.publish:cmd.>",
    "messaging.publish:md.>",
    "messaging.request:svc.>",
    "messaging.request:risk.>",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_publish_subscribe_request_and_gather() {
    let (t, state) = swarm(&[
        ("pub-a", "{}", PUBLISHER),
        (
            "sub-b",
            r#"{"subscribe":["news.>","svc.approve"],"answer":"yes-b"}"#,
            &["messaging.subscribe:news.>", "messaging.subscribe:svc.>"],
        ),
        (
            "risk-1",
            r#"{"subscribe":["risk.vote"],"answer":"yes"}"#,
            &["messaging.subscribe:risk.>"],
        ),
        (
            "risk-2",
            r#"{"subscribe":["risk.vote"],"answer":"yes"}"#,
            &["messaging.subscribe:risk.>"],
        ),
        (
            "risk-3",
            r#"{"subscribe":["risk.vote"],"answer":"no"}"#,
            &["messaging.subscribe:risk.>"],
        ),
    ])
    .await;
    assert!(
        t.host.rejected().await.is_empty(),
        "{:?}",
        t.host.rejected().await
    );

    t.host
        .deliver("pub-a", inbox("pub-a", "pub:news.btc:hello"))
        .await
        .unwrap();
    eventually_received(&t, &state, "sub-b", "news.btc|pub-a|hello").await;
    assert_eq!(
        text(&state, "risk-1", "received").await,
        "",
        "risk agents did not subscribe to news"
    );

    t.host
        .deliver("pub-a", inbox("pub-a", "req:svc.approve:80"))
        .await
        .unwrap();
    assert_eq!(text(&state, "pub-a", "reply").await, "ok:sub-b:yes-b");

    t.host
        .deliver("pub-a", inbox("pub-a", "gather:risk.vote:3:80"))
        .await
        .unwrap();
    assert_eq!(text(&state, "pub-a", "gathered").await, "3:no,yes,yes");
    t.host
        .deliver("pub-a", inbox("pub-a", "gather:risk.vote:2:80"))
        .await
        .unwrap();
    assert!(text(&state, "pub-a", "gathered").await.starts_with("2:"));

    // A malformed subject is the guest's mistake, not a missing grant.
    let err = t
        .host
        .deliver("pub-a", inbox("pub-a", "pub:news.*:x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("returned an error: invalid argument:"),
        "{err}"
    );

    // No subscriber: the request says so at once.
    t.host
        .deliver("pub-a", inbox("pub-a", "req:svc.nobody:80"))
        .await
        .unwrap();
    assert!(
        text(&state, "pub-a", "reply")
            .await
            .starts_with("err:unavailable: no subscriber")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_without_grants_is_denied_and_audited() {
    let (t, state) = swarm(&[
        ("pub-a", "{}", &[]),
        ("sub-b", r#"{"subscribe":["news.>"]}"#, &[]),
    ])
    .await;
    // Subscribing in init without a grant fails init: the agent is refused, saying why.
    let rejected = t.host.rejected().await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0]
            .reason
            .contains("needs messaging.subscribe:news.>"),
        "{rejected:?}"
    );

    let err = t
        .host
        .deliver("pub-a", inbox("pub-a", "pub:news.btc:x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("denied: needs messaging.publish:news.btc"),
        "{err}"
    );
    t.host
        .deliver("pub-a", inbox("pub-a", "req:svc.x:50"))
        .await
        .unwrap();
    assert_eq!(
        text(&state, "pub-a", "reply").await,
        "err:denied: needs messaging.request:svc.x"
    );

    t.host.audit().writer().flush().await.unwrap();
    for cap in ["messaging.publish:news.btc", "messaging.request:svc.x"] {
        let rows = t
            .host
            .audit()
            .query(&AuditFilter {
                plugin: Some("pub-a".into()),
                capability: Some(CapabilityMatch::Exact(cap.into())),
                decision: Some(Decision::Deny),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{cap}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_a_mute_responder_and_a_trapping_subscriber_are_contained() {
    let (t, state) = swarm(&[
        ("pub-a", "{}", PUBLISHER),
        ("flooder", "{}", PUBLISHER),
        (
            "sub-b",
            r#"{"subscribe":["news.>"]}"#,
            &["messaging.subscribe:news.>"],
        ),
        (
            "slow-c",
            r#"{"subscribe":["cmd.>","md.>"]}"#,
            &["messaging.subscribe:cmd.>", "messaging.subscribe:md.>"],
        ),
        (
            "mute-d",
            r#"{"subscribe":["svc.mute"]}"#,
            &["messaging.subscribe:svc.>"],
        ),
        (
            "trap-e",
            r#"{"subscribe":["news.>"],"trap_on_message":true}"#,
            &["messaging.subscribe:news.>"],
        ),
    ])
    .await;
    assert!(
        t.host.rejected().await.is_empty(),
        "{:?}",
        t.host.rejected().await
    );

    // A flood of commands at a slow subscriber: its mailbox fills and the rest are refused
    // (limit-exceeded to the publisher, dead letters on the bus).
    let mut refused = 0u32;
    for _ in 0..4 {
        t.host
            .deliver("flooder", inbox("flooder", "flood:cmd.work:400"))
            .await
            .unwrap();
        refused += text(&state, "flooder", "refused")
            .await
            .parse::<u32>()
            .unwrap();
    }
    assert!(refused > 0, "nothing was refused");
    // A market-data flood (only the host's feed publishes `md.…`) drops the oldest instead:
    // never refused.
    let bus = t.host.bus();
    for i in 0..1_600 {
        let env = Envelope::new("feed".into(), "md.okx.btc", format!("{i}"));
        let report = bus.publish(env).unwrap();
        assert_eq!(report.refused, 0, "market data is never refused");
    }

    // A responder that never answers: the request times out.
    t.host
        .deliver("pub-a", inbox("pub-a", "req:svc.mute:40"))
        .await
        .unwrap();
    assert_eq!(text(&state, "pub-a", "reply").await, "err:timeout");

    // Through all of that, news still reaches the healthy subscriber, while the trapping
    // one fails on every message without holding anyone up.
    for i in 0..5 {
        t.host
            .deliver("pub-a", inbox("pub-a", &format!("pub:news.n{i}:hello")))
            .await
            .unwrap();
    }
    for i in 0..5 {
        eventually_received(&t, &state, "sub-b", &format!("news.n{i}|pub-a|hello")).await;
    }
    let host = t.host.clone();
    t.eventually("slow-c dropped market data and refused commands", || {
        let host = host.clone();
        async move {
            let p = host.plugins().await;
            let c = p.iter().find(|p| p.info.name == "slow-c").unwrap();
            c.bus_dropped > 0 && c.bus_refused > 0
        }
    })
    .await;
    let status = t.host.plugins().await;
    let trap = status.iter().find(|p| p.info.name == "trap-e").unwrap();
    assert!(
        trap.failed > 0,
        "the trapping subscriber never received anything"
    );
    assert!(t.host.bus().stats().dead_letters > 0);
}

/// Every answer a requester stored for `n` requests `req:SUBJECT:TIMEOUT:BODY`.
async fn ask(t: &TestHost, state: &StateStore, who: &str, cmd: &str, n: usize) -> Vec<String> {
    let mut answers = Vec::new();
    for _ in 0..n {
        t.host.deliver(who, inbox(who, cmd)).await.unwrap();
        answers.push(text(state, who, "reply").await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_limited_counted_in_the_message_size_and_the_hosts_are_refused() {
    let (t, state) = swarm(&[
        ("hdr", "{}", &["messaging.publish:news.>"]),
        (
            "reader",
            r#"{"subscribe":["news.>"]}"#,
            &["messaging.subscribe:news.>"],
        ),
    ])
    .await;
    let pubh = async |cmd: &str| {
        t.host
            .deliver("hdr", inbox("hdr", &format!("pubh:news.h:{cmd}")))
            .await
            .unwrap();
        text(&state, "hdr", "pubh").await
    };
    // The attack: 20 MiB of header on a 1-byte payload.
    let got = pubh("1:8388608:big:1").await;
    assert!(
        got.starts_with("limit-exceeded: header limit of 16384 bytes exceeded"),
        "{got}"
    );
    let got = pubh("33:1:h:1").await;
    assert!(
        got.starts_with("limit-exceeded: header limit of 32 headers exceeded"),
        "{got}"
    );
    // Within the header limits, but payload + headers over the 1 MiB message limit.
    let got = pubh("1:16000:h:1040000").await;
    assert!(
        got.starts_with("limit-exceeded: payload limit of 1048576 bytes exceeded")
            && got.contains("headers included"),
        "{got}"
    );
    // Names the host gives meaning to, in any case.
    for name in [
        "x-dead-reason",
        "X-Dead-Subscriber",
        "Colony-Sender",
        "x-colony-x",
    ] {
        let got = pubh(&format!("1:4:{name}:1")).await;
        assert!(
            got.starts_with(&format!(
                "invalid-argument: header \"{name}\" is reserved for the host"
            )),
            "{name}: {got}"
        );
    }
    let got = pubh("1:4:bad name:1").await;
    assert!(got.starts_with("invalid-argument: header name"), "{got}");
    // Nothing refused reached the reader; a message within every limit does.
    assert_eq!(pubh("2:8:trace:5").await, "ok");
    eventually_received(&t, &state, "reader", "news.h|hdr|ppppp").await;
    assert_eq!(text(&state, "reader", "received").await.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_subjects_are_refused_to_guests_whatever_their_grants() {
    let everything: &[&str] = &["messaging.publish:>", "messaging.request:>"];
    let (t, state) = swarm(&[
        ("broad", "{}", everything),
        (
            "watcher",
            r#"{"subscribe":["md.>","_DEAD.>"]}"#,
            &["messaging.subscribe:md.>", "messaging.subscribe:_DEAD.>"],
        ),
    ])
    .await;
    for subject in [
        "md.okx.BTC-USDT.trade",
        "agent.watcher.timer",
        "agent.watcher.orders",
        "agent.watcher.inbox.more",
        "agent.watcher",
        "_INBOX.abc.def",
        "_DEAD.x",
        "_HOST.x",
    ] {
        let err = t
            .host
            .deliver("broad", inbox("broad", &format!("pub:{subject}:x")))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "invalid argument: subject \"{subject}\" is reserved for the host"
            )),
            "{subject}: {err}"
        );
    }
    t.host
        .deliver("broad", inbox("broad", "req:md.x:50"))
        .await
        .unwrap();
    assert!(
        text(&state, "broad", "reply")
            .await
            .starts_with("err:invalid-argument: subject \"md.x\" is reserved for the host"),
    );
    // An inbox stays open, and nothing forged reached the watcher.
    t.host
        .deliver("broad", inbox("broad", "pub:agent.watcher.inbox:hi"))
        .await
        .unwrap();
    assert_eq!(text(&state, "watcher", "received").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_neither_sees_nor_answers_another_agents_requests() {
    let (t, state) = swarm(&[
        ("pong", "{}", &[]),
        ("asker", "{}", &["messaging.request:agent.pong.inbox"]),
        // A catch-all subscriber that answers everything it sees.
        (
            "spy-wide",
            r#"{"subscribe":[">"],"hijack":true}"#,
            &["messaging.subscribe:>", "messaging.publish:>"],
        ),
        (
            "spy-star",
            r#"{"subscribe":["agent.*.inbox"],"hijack":true}"#,
            &["messaging.subscribe:agent.*.inbox"],
        ),
        // The operator named pong's inbox: this one may watch it, not answer in its name.
        (
            "spy-named",
            r#"{"subscribe":["agent.pong.inbox"],"hijack":true}"#,
            &["messaging.subscribe:agent.pong.inbox"],
        ),
    ])
    .await;
    assert!(
        t.host.rejected().await.is_empty(),
        "{:?}",
        t.host.rejected().await
    );
    let answers = ask(&t, &state, "asker", "req:agent.pong.inbox:80:ping", 30).await;
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, &format!("ok:pong:pong:{}", i + 1), "request {i}");
    }
    // Broad patterns never saw pong's inbox.
    for spy in ["spy-wide", "spy-star"] {
        let seen = text(&state, spy, "seen").await;
        assert!(!seen.contains("agent.pong.inbox"), "{spy} saw: {seen}");
    }
    // The named observer saw every request and none of its answers went through.
    t.eventually("spy-named saw all 30 requests", || {
        let state = state.clone();
        async move { text(&state, "spy-named", "hijack").await.lines().count() == 30 }
    })
    .await;
    let seen = text(&state, "spy-named", "seen").await;
    assert_eq!(seen.lines().count(), 30, "{seen}");
    assert!(
        seen.lines().all(|l| l == "agent.pong.inbox|asker"),
        "{seen}"
    );
    for outcome in text(&state, "spy-named", "hijack").await.lines() {
        assert!(
            outcome.starts_with("invalid-argument: ")
                && outcome.contains("is not the reply-to of a request delivered to this agent"),
            "{outcome}"
        );
    }
    // A broad grant does not allow naming another agent's inbox either.
    t.host
        .deliver("spy-wide", inbox("spy-wide", "sub:agent.pong.inbox"))
        .await
        .unwrap();
    assert_eq!(
        text(&state, "spy-wide", "sub").await,
        "denied: needs messaging.subscribe:agent.pong.inbox"
    );
    // Nor can a reply be published around `reply`.
    let err = t
        .host
        .deliver("spy-wide", inbox("spy-wide", "pub:_INBOX.x.y:forged"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is reserved for the host"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_publisher_cannot_starve_a_peers_requests() {
    let (t, state) = swarm(&[
        (
            "svc",
            r#"{"subscribe":["svc.work","svc.ask"],"answer":"yes","quiet":true}"#,
            &["messaging.subscribe:svc.>"],
        ),
        ("flooder", "{}", &["messaging.publish:svc.work"]),
        ("probe", "{}", &["messaging.request:svc.ask"]),
    ])
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (host, stop) = (t.host.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rounds = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = host
                    .deliver("flooder", inbox("flooder", "flood:svc.work:3000"))
                    .await;
                rounds += 1;
            }
            rounds
        })
    };
    // Let the flood fill the receiver first.
    t.eventually("the flooder was refused", || {
        let state = state.clone();
        async move {
            text(&state, "flooder", "refused")
                .await
                .parse::<u32>()
                .is_ok_and(|n| n > 0)
        }
    })
    .await;
    let answers = ask(&t, &state, "probe", "req:svc.ask:90", 40).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = flood.await.unwrap();
    let failed: Vec<&String> = answers.iter().filter(|a| *a != "ok:svc:yes").collect();
    assert!(
        failed.is_empty(),
        "{} of 40 failed: {failed:?}",
        failed.len()
    );
    assert!(rounds > 0);
    // The flooder learned, and the operator sees it on both ends.
    let status = t.host.plugins().await;
    let of = |name: &str| status.iter().find(|p| p.info.name == name).unwrap();
    assert!(of("flooder").bus_sent_refused > 0);
    assert!(of("svc").bus_refused > 0);
    assert_eq!(of("probe").bus_sent_refused, 0);
}
