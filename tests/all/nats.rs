//! Two `colony run` processes joined over the real NATS server on 127.0.0.1:4222 (a unique
//! subject prefix per run): wasm agents on one host publish to, request from and gather from
//! wasm agents on the other exactly as on one host, and `colony status` reports the link; an
//! agent name runs on one host of the bus at a time.

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
/// on the NATS bus under `prefix` (its log in `root/host.log`), and waits until its admin
/// socket answers (after its first pass over the plugins folder).
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
        .stderr(std::fs::File::create(root.join("host.log")).unwrap())
        .spawn()
        .unwrap();
    let host = Running(child);
    wait_for(&format!("host in {}", root.display()), || {
        colony(&data, &["status"]).status.success()
    });
    host
}

fn unique_prefix() -> String {
    format!(
        "colonyit{}x{}",
        std::process::id(),
        colony_host::bus::new_id().replace('-', "x")
    )
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
    let prefix = unique_prefix();
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

/// The names of the plugins a host runs.
fn running(status: &serde_json::Value) -> Vec<String> {
    status["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The files a host refused, with the reasons.
fn refused(status: &serde_json::Value) -> Vec<(String, String)> {
    status["rejected"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["file"].as_str().unwrap_or("?").to_owned(),
                r["reason"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn host_id(data: &Path) -> String {
    status(data)["nats"]["host_id"]
        .as_str()
        .expect("the host id in `colony status --json`")
        .to_owned()
}

fn taken(name: &str, prefix: &str, host: &str, pid: u32) -> String {
    format!(
        "agent \"{name}\" already runs on host {host} (pid {pid}) on this NATS bus (prefix \
         {prefix}), so it is not started here: rename it on one of the two hosts, or stop it on \
         host {host} and then touch this file or restart this host"
    )
}

const TRADER: Spec<'static> = (
    "trader",
    r#"{"subscribe":["news.>"]}"#,
    &["messaging.subscribe:news.>"],
);

/// Issue 17: two hosts on one bus, each with an agent named `trader`: the second host does not
/// start it and says why (status, plugins list, log), the first keeps it and is the only one
/// that receives; other names are unaffected; once the first host is gone, the second runs
/// `trader` when its file is touched, and again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_an_agent_name_runs_on_one_host_of_the_bus() {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let (data_a, data_b) = (root_a.join("data"), root_b.join("data"));
    let a = start(&root_a, &prefix, &[TRADER, ("alpha", "{}", &[])]);
    assert_eq!(running(&status(&data_a)), ["alpha", "trader"]);
    let (id_a, pid_a) = (host_id(&data_a), a.0.id());
    let b_agents = [TRADER, ("beta", "{}", &["messaging.publish:news.>"][..])];
    let b = start(&root_b, &prefix, &b_agents);

    // b runs its other agent and refuses trader, naming a.
    let s = status(&data_b);
    assert_eq!(running(&s), ["beta"], "{s}");
    let why = taken("trader", &prefix, &id_a, pid_a);
    let refusals = refused(&s);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let (file, reason) = &refusals[0];
    assert!(file.ends_with("/plugins/trader.wasm"), "{file}");
    assert_eq!(reason, &why);
    let line = format!("refused {file}: {why}");
    for args in [&["status"][..], &["plugins", "list"]] {
        let text = stdout(&colony(&data_b, args));
        assert!(text.contains(&line), "colony {args:?}: {text}");
    }
    let log = std::fs::read_to_string(root_b.join("host.log")).unwrap();
    assert!(
        log.contains(&format!("plugin refused: {file}: {why}")),
        "{log}"
    );
    // a keeps it, and its operator hears of the other host.
    let s = status(&data_a);
    assert_eq!(running(&s), ["alpha", "trader"]);
    assert!(refused(&s).is_empty(), "{s}");
    assert!(
        s["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["quarantined"] == false),
        "{s}"
    );
    let log = std::fs::read_to_string(root_a.join("host.log")).unwrap();
    assert!(
        log.contains("another host on the NATS bus asked to run an agent this host runs"),
        "{log}"
    );

    // One trader receives what is published on the bus: a's.
    command(&data_b, "beta", "pub:news.btc:from-b");
    eventually_state(&data_a, "trader", "received", |v| {
        v.contains("news.btc|beta|from-b")
    })
    .await;
    assert_eq!(state_text(&data_b, "trader", "received").await, "");

    // a goes away (killed: its connection, and with it its hold, ends). Touching the refused
    // file makes b ask again, and it runs trader; restarted, b claims it again.
    drop(a);
    std::fs::File::options()
        .write(true)
        .open(root_b.join("plugins/trader.wasm"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    wait_for("b to run trader once a is gone", || {
        running(&status(&data_b)) == ["beta", "trader"]
    });
    assert!(refused(&status(&data_b)).is_empty());
    drop(b);
    let _b = start(&root_b, &prefix, &b_agents);
    let s = status(&data_b);
    assert_eq!(running(&s), ["beta", "trader"], "{s}");
    assert!(refused(&s).is_empty(), "{s}");
}

/// Two hosts that start an agent of one name at the same moment: exactly one runs it, and the
/// other names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_hosts_starting_one_agent_at_once_run_it_once() {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let (data_a, data_b) = (root_a.join("data"), root_b.join("data"));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start(&root_a, &prefix, &[TRADER, ("alpha", "{}", &[])]));
        let b = s.spawn(|| start(&root_b, &prefix, &[TRADER, ("beta", "{}", &[])]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (sa, sb) = (status(&data_a), status(&data_b));
    let (winner, loser, other) = match (running(&sa).len(), running(&sb).len()) {
        (2, 1) => ((&data_a, &a), &sb, "beta"),
        (1, 2) => ((&data_b, &b), &sa, "alpha"),
        _ => panic!("not exactly one trader: a {sa}\nb {sb}"),
    };
    assert_eq!(running(loser), [other]);
    let (id, pid) = (host_id(winner.0), winner.1.0.id());
    let reasons = refused(loser);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].0.ends_with("/plugins/trader.wasm"),
        "{reasons:?}"
    );
    // The loser heard the winner either holding it or asking first.
    let first =
        taken("trader", &prefix, &id, pid).replace("already runs on", "is being started first on");
    assert!(
        reasons[0].1 == taken("trader", &prefix, &id, pid) || reasons[0].1 == first,
        "{reasons:?}"
    );
}
