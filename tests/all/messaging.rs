//! Messaging between wasm agents on the in-process bus: publish/subscribe, request/reply and
//! gather with quorum, grants (granted and no-permission, with the deny audited), and
//! containment of a flooding publisher, a never-replying responder and a trapped subscriber.

use colony_host::agent::Event;
use colony_host::audit::{AuditFilter, CapabilityMatch, Decision};
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
    // A market-data flood drops the oldest instead: never refused.
    for _ in 0..4 {
        t.host
            .deliver("flooder", inbox("flooder", "flood:md.okx.btc:400"))
            .await
            .unwrap();
        assert_eq!(
            text(&state, "flooder", "refused").await,
            "0",
            "market data is never refused"
        );
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
