//! Support for Colony's integration tests: paths of the test guest components (built by
//! `build.rs` from `guests/`) and producers of malformed inputs for the loader.

/// Absolute paths of the test guest components. Each is a component built from
/// `tests/guests/<name>`; what it does is in that crate's doc comment.
pub mod guests {
    /// Well-behaved agent: counts timer events in state `count`, embeds a `colony-manifest`
    /// (name `good-agent`); payloads `echo`, `log:N`, `state-get:N`.
    pub const GOOD_AGENT: &str = env!("GUEST_GOOD_AGENT");
    /// Agent whose on-timer loops forever.
    pub const LOOP_AGENT: &str = env!("GUEST_LOOP_AGENT");
    /// Agent whose on-timer allocates and touches 1 MiB chunks without bound.
    pub const MEMBOMB_AGENT: &str = env!("GUEST_MEMBOMB_AGENT");
    /// Agent whose on-timer recurses without bound.
    pub const STACK_AGENT: &str = env!("GUEST_STACK_AGENT");
    /// Agent whose on-timer panics with "guest panic on purpose".
    pub const PANIC_AGENT: &str = env!("GUEST_PANIC_AGENT");
    /// Agent whose on-timer writes 1 KiB lines to stdout forever.
    pub const FLOOD_AGENT: &str = env!("GUEST_FLOOD_AGENT");
    /// Agent that also imports `colony:evil/backdoor@0.1.0`, which no Colony world offers.
    pub const BADIMPORT_AGENT: &str = env!("GUEST_BADIMPORT_AGENT");
    /// Tool named `good-tool`: invoke returns `{"len": N}`, N the byte length of the args.
    pub const GOOD_TOOL: &str = env!("GUEST_GOOD_TOOL");
    /// Tool whose invoke loops forever.
    pub const LOOP_TOOL: &str = env!("GUEST_LOOP_TOOL");
    /// Agent whose on-timer probes WASI for environment, files, stdin and network, and
    /// returns `error::denied` listing whatever it could reach.
    pub const WASI_PROBE_AGENT: &str = env!("GUEST_WASI_PROBE_AGENT");
    /// Agent that reads/writes files and reads environment variables on command
    /// (`read:PATH`, `write:PATH:TEXT`, `env:NAME` as a message payload).
    pub const CAPS_AGENT: &str = env!("GUEST_CAPS_AGENT");
    /// Agent that drives messaging: subscribes per its config, runs `pub:`/`flood:`/`req:`/
    /// `gather:` commands from its inbox, records what it receives in state `received`, and
    /// answers requests with its configured `answer`.
    pub const BUS_AGENT: &str = env!("GUEST_BUS_AGENT");
    /// Agent that reads the WASI clocks through `std::time`: `now` stores the wall time (ns
    /// since the epoch) in state `wall` and the monotonic ns since `init` in `mono`;
    /// `sleep:MS` sleeps and stores the monotonic ns that passed in `slept`.
    pub const CLOCK_AGENT: &str = env!("GUEST_CLOCK_AGENT");
    /// Agent that drives market data: subscribes per its config, keeps running aggregates of
    /// what arrives (written to state `received` on `summary`), trades a moving-average
    /// crossover into state `journal`, and answers `quote:`/`book:`/`candles:`/`status:`/
    /// `symbols` commands from its inbox into state.
    pub const MARKET_AGENT: &str = env!("GUEST_MARKET_AGENT");

    /// Agent that drives orders: `place`/`cancel`/`open`/`position`/`balances` commands from
    /// its inbox store their answers in state, and every `on-order` event is appended to state
    /// `events` as `CID STATUS FILLED AVG FILL REASON`.
    pub const ORDERS_AGENT: &str = env!("GUEST_ORDERS_AGENT");

    /// Tool fit for registration, `schema-tool@1.0.0` (embedded manifest): input `{"n":
    /// integer, "spin"?: boolean}` with example `{"n": 1}`; answers `{"n": N, "version":
    /// "1.0.0"}`, and spins forever when `spin` is true.
    pub const SCHEMA_TOOL: &str = env!("GUEST_SCHEMA_TOOL");
    /// `schema-tool@2.0.0`: the same, answering `"version": "2.0.0"`.
    pub const SCHEMA_TOOL_V2: &str = env!("GUEST_SCHEMA_TOOL_V2");
    /// Tool that imports `colony:plugin/state`, which the tool world does not offer.
    pub const BADIMPORT_TOOL: &str = env!("GUEST_BADIMPORT_TOOL");
    /// Tool whose input schema is not a valid JSON Schema (`"type": 12`).
    pub const BADSCHEMA_TOOL: &str = env!("GUEST_BADSCHEMA_TOOL");
    /// Tool whose input schema has no `examples`.
    pub const NOEXAMPLE_TOOL: &str = env!("GUEST_NOEXAMPLE_TOOL");
    /// Tool that describes itself well but whose invoke panics.
    pub const SMOKEFAIL_TOOL: &str = env!("GUEST_SMOKEFAIL_TOOL");
    /// Tool `http-tool` (embedded manifest, requests nothing) that makes one request through
    /// `wasi:http`: input `{"url", "method", "body_bytes"?, "timeout_ms"?, "dry"?}`, answer
    /// `{"status", "len", "location"?}` or `{"error"}`; its example is `dry` (no request).
    pub const HTTP_TOOL: &str = env!("GUEST_HTTP_TOOL");
    /// Agent that also imports `wasi:http/outgoing-handler@0.2.12`, which only tools are offered.
    pub const HTTP_AGENT: &str = env!("GUEST_HTTP_AGENT");
    /// Agent that lists, calls and registers tools through the `tools` interface, on command.
    pub const TOOLS_AGENT: &str = env!("GUEST_TOOLS_AGENT");
    /// Registrable tool (example `{"mode":"ok"}`) that on request spins, burns fuel, grows
    /// memory without bound, floods stdout or answers 2 MiB: one mode per per-call limit.
    pub const HOG_TOOL: &str = env!("GUEST_HOG_TOOL");
    /// Agent whose `log` lines, stdout and error messages carry newlines, CR, NUL and escapes
    /// followed by text shaped like a host log line (`FORGED-HOST-LINE …`).
    pub const FORGE_AGENT: &str = env!("GUEST_FORGE_AGENT");
    /// Agent whose initial linear memory (a 200 MiB static) exceeds every memory limit.
    pub const BIGMEM_AGENT: &str = env!("GUEST_BIGMEM_AGENT");
    /// Tool whose `invoke` fails with a 4 MiB error and whose description is 200 KiB.
    pub const ERRBOMB_TOOL: &str = env!("GUEST_ERRBOMB_TOOL");
    /// Hostile agent granted nothing: each message `hammer:N` makes N rounds of three refused
    /// messaging calls (a new subject each time, the same subject, a new pattern) and adds
    /// the refusals to state `refused`.
    pub const DENYFLOOD_AGENT: &str = env!("GUEST_DENYFLOOD_AGENT");
    /// Hostile tool with no manifest whose `describe()` claims the name `schema-tool`;
    /// answers `{"n": N, "version": "impostor"}`.
    pub const IMPOSTOR_TOOL: &str = env!("GUEST_IMPOSTOR_TOOL");
    /// Tool that panics on `{"mode": "panic"}` (after a line on stderr) and answers
    /// `{"ok": true}` on `{"mode": "ok"}`; its schema allows no other argument.
    pub const PANIC_TOOL: &str = env!("GUEST_PANIC_TOOL");

    /// Every guest as (crate name, path), for tests that go over all of them.
    pub const ALL: &[(&str, &str)] = &[
        ("good-agent", GOOD_AGENT),
        ("loop-agent", LOOP_AGENT),
        ("membomb-agent", MEMBOMB_AGENT),
        ("stack-agent", STACK_AGENT),
        ("panic-agent", PANIC_AGENT),
        ("flood-agent", FLOOD_AGENT),
        ("badimport-agent", BADIMPORT_AGENT),
        ("good-tool", GOOD_TOOL),
        ("loop-tool", LOOP_TOOL),
        ("wasi-probe-agent", WASI_PROBE_AGENT),
        ("caps-agent", CAPS_AGENT),
        ("bus-agent", BUS_AGENT),
        ("clock-agent", CLOCK_AGENT),
        ("market-agent", MARKET_AGENT),
        ("orders-agent", ORDERS_AGENT),
        ("schema-tool", SCHEMA_TOOL),
        ("schema-tool-v2", SCHEMA_TOOL_V2),
        ("badimport-tool", BADIMPORT_TOOL),
        ("badschema-tool", BADSCHEMA_TOOL),
        ("noexample-tool", NOEXAMPLE_TOOL),
        ("smokefail-tool", SMOKEFAIL_TOOL),
        ("http-tool", HTTP_TOOL),
        ("http-agent", HTTP_AGENT),
        ("tools-agent", TOOLS_AGENT),
        ("hog-tool", HOG_TOOL),
        ("forge-agent", FORGE_AGENT),
        ("bigmem-agent", BIGMEM_AGENT),
        ("errbomb-tool", ERRBOMB_TOOL),
        ("denyflood-agent", DENYFLOOD_AGENT),
        ("impostor-tool", IMPOSTOR_TOOL),
        ("panic-tool", PANIC_TOOL),
    ];
}

/// The first 8 bytes of every component: magic, then version 0x0d and layer 1.
pub const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

/// The first 8 bytes of every core module: magic, then version 1 and layer 0.
pub const CORE_MODULE_HEADER: [u8; 8] = *b"\0asm\x01\x00\x00\x00";

/// The good-agent component, embedded at compile time so the producers below need no I/O.
static GOOD_AGENT_BYTES: &[u8] = include_bytes!(env!("GUEST_GOOD_AGENT"));

/// A valid core wasm module (not a component): one function `run: func()` that does nothing.
/// The loader must refuse it as "not a component".
pub fn core_module_bytes() -> Vec<u8> {
    let mut bytes = CORE_MODULE_HEADER.to_vec();
    bytes.extend_from_slice(&[
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: one type, func () -> ()
        0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
        0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00,
        0x00, // export section: "run" = func 0
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: one body, no locals, `end`
    ]);
    bytes
}

/// The good-agent component cut in half: a valid header followed by a section that ends early.
pub fn truncated_bytes() -> Vec<u8> {
    GOOD_AGENT_BYTES[..GOOD_AGENT_BYTES.len() / 2].to_vec()
}

/// 4 KiB of deterministic pseudo-random bytes (xorshift64), different for each `seed`.
pub fn random_bytes(seed: u64) -> Vec<u8> {
    // xorshift has a fixed point at 0; any other start works.
    let mut state = if seed == 0 {
        0x9e37_79b9_7f4a_7c15
    } else {
        seed
    };
    let mut bytes = Vec::with_capacity(4096);
    while bytes.len() < 4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes
}

/// A host on a fresh temporary data directory and plugins folder, for one test.
pub struct TestHost {
    /// Holds the data directory (`data/`) and the plugins folder (`plugins/`).
    pub dir: tempfile::TempDir,
    /// The running host.
    pub host: std::sync::Arc<colony_host::supervisor::Host>,
}

/// A configuration on `root`: data in `root/data`, plugins in `root/plugins` (created), no
/// timer ticks (tests deliver events themselves), a small instance pool.
pub fn test_config(root: &std::path::Path) -> colony_host::config::HostConfig {
    let mut config = colony_host::config::HostConfig::new(root.join("data"));
    config.plugins_dir = root.join("plugins");
    config.tick_ms = 0;
    config.max_instances = 64;
    if let Err(e) = std::fs::create_dir_all(&config.plugins_dir) {
        panic!("cannot create {}: {e}", config.plugins_dir.display());
    }
    config
}

/// Copies a guest component into a plugins folder as `file_name`.
pub fn install(plugins_dir: &std::path::Path, guest: &str, file_name: &str) -> std::path::PathBuf {
    let to = plugins_dir.join(file_name);
    if let Err(e) = std::fs::copy(guest, &to) {
        panic!("cannot copy {guest} to {}: {e}", to.display());
    }
    to
}

impl TestHost {
    /// Starts a host whose plugins folder holds `guests` (path, file name), after `tweak`
    /// has adjusted the configuration.
    pub async fn start_with(
        guests: &[(&str, &str)],
        tweak: impl FnOnce(&mut colony_host::config::HostConfig),
    ) -> TestHost {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut config = test_config(dir.path());
        for (guest, name) in guests {
            install(&config.plugins_dir, guest, name);
        }
        tweak(&mut config);
        let host = colony_host::supervisor::Host::start(config)
            .await
            .unwrap_or_else(|e| panic!("host start: {e:#}"));
        TestHost { dir, host }
    }

    /// Starts a host running one copy of the agent `guest` per `(name, config JSON, grants)`,
    /// each as `NAME.wasm` with that `init` configuration and those capabilities, after
    /// `tweak` has adjusted the rest of the configuration.
    pub async fn start_copies(
        guest: &str,
        agents: &[(&str, &str, &[&str])],
        tweak: impl FnOnce(&mut colony_host::config::HostConfig),
    ) -> TestHost {
        let names: Vec<String> = agents.iter().map(|(n, _, _)| format!("{n}.wasm")).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|n| (guest, n.as_str())).collect();
        TestHost::start_with(&files, |c| {
            for (name, config, grants) in agents {
                c.agent_config.insert(name.to_string(), config.to_string());
                if !grants.is_empty() {
                    c.grants.insert(
                        name.to_string(),
                        colony_host::config::ConfigGrant {
                            capabilities: grants.iter().map(|g| g.to_string()).collect(),
                            digest: None,
                        },
                    );
                }
            }
            tweak(c);
        })
        .await
    }

    /// The running host's agent state store (`DATA/state.db`).
    pub async fn state(&self) -> colony_host::state_store::StateStore {
        colony_host::state_store::StateStore::open(
            &self.dir.path().join("data/state.db"),
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("state store: {e}"))
    }

    /// Starts a host with default test configuration.
    pub async fn start(guests: &[(&str, &str)]) -> TestHost {
        Self::start_with(guests, |_| {}).await
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("plugins")
    }

    /// The audit records of kind `kind` (`lifecycle`, `breaker`, …), of `plugin` if given,
    /// newest first, after the writer has flushed what it queued.
    pub async fn audited(
        &self,
        kind: &str,
        plugin: Option<&str>,
    ) -> Vec<colony_host::audit::AuditEntry> {
        let audit = self.host.audit();
        audit
            .writer()
            .flush()
            .await
            .unwrap_or_else(|e| panic!("audit flush: {e}"));
        audit
            .query(&colony_host::audit::AuditFilter {
                kind: Some(colony_host::audit::AuditKind::Other(kind.into())),
                plugin: plugin.map(str::to_string),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("audit query: {e}"))
    }

    /// A timer event at `now`.
    pub fn timer(now: u64) -> colony_host::agent::Event {
        colony_host::agent::Event::Timer(now)
    }

    /// Waits (up to 20 s) until `check` holds, re-checking every 25 ms; for effects of file
    /// watching, which arrive on their own schedule. Panics with `what` on timeout.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !check().await {
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting for: {what}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

/// A message delivered straight to an agent's `on-message` (not through the bus), on
/// `subject` from sender `test`.
pub fn message(subject: &str, payload: &[u8]) -> colony_host::agent::Event {
    colony_host::agent::Event::Message(colony_host::agent::Message {
        id: "test".into(),
        subject: subject.into(),
        sender: "test".into(),
        correlation_id: None,
        reply_to: None,
        timestamp: 0,
        headers: Vec::new(),
        payload: payload.to_vec(),
    })
}
