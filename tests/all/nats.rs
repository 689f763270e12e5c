//! Two `colony run` processes joined over the real NATS server on 127.0.0.1:4222 (a unique
//! subject prefix per run): wasm agents on one host publish to, request from and gather from
//! wasm agents on the other exactly as on one host, and `colony status` reports the link.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colony_host::state_store::StateStore;
use colony_tests::guests;

use crate::support::{COLONY, Running, colony, stderr, stdout};

const NATS: &str = "nats://127.0.0.1:4222";

/// One bus-agent copy on a host: (name, config JSON, grants).
type Spec<'a> = (&'a str, &'a str, &'a [&'a str]);

/// Writes the plugins folder and colony.toml for `agents` under `root`, starts `colony run`
/// on the NATS bus under `prefix`, and waits until its admin socket answers.
fn start(root: &Path, prefix: &str, agents: &[Spec<'_>]) -> Running {
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    // A request waits at most until its event's deadline: 5 s, so a loaded CI machine does not
    // turn a round trip between two processes into a timeout.
    let mut toml = format!(
        "plugins = \"plugins\"\ntick_ms = 0\n[limits.agent]\ncpu_ms = 5000\n[bus]\nurl = \"{NATS}\"\nprefix = \"{prefix}\"\n"
    );
    for (name, config, grants) in agents {
        colony_tests::install(&plugins, guests::BUS_AGENT, &format!("{name}.wasm"));
        let table: serde_json::Value = serde_json::from_str(config).unwrap();
        toml.push_str(&format!("[agents.{name}]\n"));
        for (k, v) in table.as_object().unwrap() {
            toml.push_str(&format!("{k} = {v}\n"));
        }
        let caps: Vec<String> = grants.iter().map(|g| format!("{g:?}")).collect();
        toml.push_str(&format!(
            "[grants.{name}]\ncapabilities = [{}]\n",
            caps.join(", ")
        ));
    }
    let config = root.join("colony.toml");
    std::fs::write(&config, toml).unwrap();
    let data = root.join("data");
    let child = Command::new(COLONY)
        .arg("--data-dir")
        .arg(&data)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("COLONY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host = Running(child);
    wait_for(&format!("host in {}", root.display()), || {
        colony(&data, &["status"]).status.success()
    });
    host
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(data: &Path) -> serde_json::Value {
    let out = colony(data, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Sends a command to an agent's inbox through its host's admin socket.
fn command(data: &Path, agent: &str, text: &str) {
    let out = colony(data, &["bus", "pub", &format!("agent.{agent}.inbox"), text]);
    assert!(out.status.success(), "{}", stderr(&out));
}

async fn state_text(data: &Path, agent: &str, key: &str) -> String {
    let store = StateStore::open(&data.join("state.db"), Default::default())
        .await
        .unwrap();
    store
        .get(agent, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

async fn eventually_state(
    data: &Path,
    agent: &str,
    key: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = state_text(data, agent, key).await;
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{agent}.{key} is still {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_hosts_exchange_messages_requests_and_gathers() {
    let prefix = format!(
        "colonyit{}x{}",
        std::process::id(),
        colony_host::bus::new_id().replace('-', "x")
    );
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let _a = start(
        &root_a,
        &prefix,
        &[
            (
                "reader-a",
                r#"{"subscribe":["news.>"]}"#,
                &["messaging.subscribe:news.>"],
            ),
            (
                "svc-a",
                r#"{"subscribe":["svc.price"],"answer":"42"}"#,
                &["messaging.subscribe:svc.>"],
            ),
            (
                "risk-a",
                r#"{"subscribe":["risk.vote"],"answer":"yes"}"#,
                &["messaging.subscribe:risk.>"],
            ),
            ("pub-a", "{}", &["messaging.publish:news.>"]),
        ],
    );
    let _b = start(
        &root_b,
        &prefix,
        &[
            (
                "pub-b",
                "{}",
                &[
                    "messaging.publish:news.>",
                    "messaging.request:svc.>",
                    "messaging.request:risk.>",
                    "messaging.request:nobody.>",
                ],
            ),
            (
                "risk-b",
                r#"{"subscribe":["risk.vote"],"answer":"no"}"#,
                &["messaging.subscribe:risk.>"],
            ),
            (
                "reader-b",
                r#"{"subscribe":["news.>"]}"#,
                &["messaging.subscribe:news.>"],
            ),
        ],
    );
    let (data_a, data_b) = (root_a.join("data"), root_b.join("data"));
    // Each host holds one NATS subscription per pattern its agents want (each agent's inbox
    // included), confirmed by the server: a has 4 inboxes + news.>, svc.price, risk.vote; b has
    // 3 inboxes + risk.vote, news.>.
    wait_for("host a's seven subscriptions on NATS", || {
        status(&data_a)["nats"]["subscriptions"] == 7
    });
    wait_for("host b's five subscriptions on NATS", || {
        status(&data_b)["nats"]["subscriptions"] == 5
    });

    // Publish/subscribe both ways; the sender is the plugin, stamped on its own host.
    command(&data_b, "pub-b", "pub:news.btc:from-b");
    command(&data_a, "pub-a", "pub:news.eth:from-a");
    eventually_state(&data_a, "reader-a", "received", |v| {
        v.contains("news.btc|pub-b|from-b")
    })
    .await;
    eventually_state(&data_b, "reader-b", "received", |v| {
        v.contains("news.eth|pub-a|from-a")
    })
    .await;
    // Local subscribers get a local publish once, not again over NATS.
    eventually_state(&data_b, "reader-b", "received", |v| {
        v.contains("news.btc|pub-b|from-b")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = state_text(&data_b, "reader-b", "received").await;
    assert_eq!(
        lines.lines().count(),
        2,
        "reader-b: its host's message and host a's, each once: {lines}"
    );

    // Request/reply across hosts.
    command(&data_b, "pub-b", "req:svc.price:5000");
    let reply = eventually_state(&data_b, "pub-b", "reply", |v| !v.is_empty()).await;
    assert_eq!(reply, "ok:svc-a:42");

    // Gather with quorum: one voter on each host.
    command(&data_b, "pub-b", "gather:risk.vote:2:5000");
    let votes = eventually_state(&data_b, "pub-b", "gathered", |v| !v.is_empty()).await;
    assert_eq!(votes, "2:no,yes");

    // No responder on either host: an error at once, not a wait for the timeout.
    command(&data_b, "pub-b", "req:nobody.home:20000");
    let started = Instant::now();
    let none = eventually_state(&data_b, "pub-b", "reply", |v| v != "ok:svc-a:42").await;
    assert!(none.starts_with("err:"), "{none}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // Both hosts report the link.
    for data in [&data_a, &data_b] {
        let s = status(data);
        let n = &s["nats"];
        assert_eq!(n["connected"], true, "{s}");
        assert_eq!(n["prefix"], prefix.as_str());
        assert_eq!(n["malformed"], 0);
        assert!(s["bus"]["received"].as_u64().unwrap() >= 1, "{s}");
        let text = stdout(&colony(data, &["status"]));
        assert!(
            text.contains(&format!("nats: {NATS} prefix {prefix} connected")),
            "{text}"
        );
    }
}

#[test]
fn nats_unreachable_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let out = colony(
        &dir.path().join("data"),
        &[
            "run",
            "--plugins",
            plugins.to_str().unwrap(),
            "--bus",
            "nats://127.0.0.1:1",
            "--duration",
            "1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
    let out = colony(
        &dir.path().join("data"),
        &[
            "run",
            "--plugins",
            plugins.to_str().unwrap(),
            "--bus",
            "tcp://x",
            "--duration",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected `local` or `nats://HOST:PORT`"),
        "{}",
        stderr(&out)
    );
}
