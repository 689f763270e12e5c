//! Outbound HTTP for tools through `wasi:http/outgoing-handler`, against a real server on
//! 127.0.0.1: a granted request goes through and is audited without its path or query; no
//! grant, a grant for another host, a granted name that resolves to loopback and a redirect's
//! follow-up to the metadata address are refused before any connection; the response and
//! request caps and the timeout; the imports step of registration; and an agent that imports
//! `wasi:http` never loads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colony_host::audit::{AuditEntry, AuditFilter, CapabilityMatch, Decision};
use colony_host::config::ConfigGrant;
use colony_host::tools::{RegistryError, Step};
use colony_tests::{TestHost, guests};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bytes of the `/hello` body.
const HELLO_LEN: usize = 1234;
/// Bytes of the `/big` body: more than the 8 MiB response cap.
const BIG_LEN: usize = 9 << 20;

/// A local HTTP/1.1 server on 127.0.0.1 with a few routes:
/// `/hello…` 200 with [`HELLO_LEN`] bytes; `/redirect` 302 to the metadata address;
/// `/big` 200 with [`BIG_LEN`] bytes; `/slow` never answers; `/upload` reads a chunked body to
/// its end, then 200 `ok`. Every request line it reads is kept.
struct Server {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"))
            .port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, seen.clone()));
            }
        });
        Server { port, lines }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The request lines received so far.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

async fn serve(mut sock: tokio::net::TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    let end = loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let line = head.lines().next().unwrap_or_default().to_string();
    if let Ok(mut l) = seen.lock() {
        l.push(line.clone());
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    let reply = |status: &str, extra: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\ncontent-length: {len}\r\nconnection: close\r\n{extra}\r\n")
    };
    if path.starts_with("/hello") {
        let mut r = reply("200 OK", "", HELLO_LEN).into_bytes();
        r.extend(std::iter::repeat_n(b'h', HELLO_LEN));
        let _ = sock.write_all(&r).await;
    } else if path == "/redirect" {
        let r = reply(
            "302 Found",
            "location: http://169.254.169.254/latest/meta-data\r\n",
            0,
        );
        let _ = sock.write_all(r.as_bytes()).await;
    } else if path == "/big" {
        let _ = sock
            .write_all(reply("200 OK", "", BIG_LEN).as_bytes())
            .await;
        let chunk = vec![b'b'; 64 * 1024];
        for _ in 0..BIG_LEN / chunk.len() {
            if sock.write_all(&chunk).await.is_err() {
                return;
            }
        }
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    } else if path == "/upload" {
        let mut rest = got[end + 4..].to_vec();
        while !rest.ends_with(b"0\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
        let mut r = reply("200 OK", "", 2).into_bytes();
        r.extend_from_slice(b"ok");
        let _ = sock.write_all(&r).await;
    } else {
        let _ = sock
            .write_all(reply("404 Not Found", "", 0).as_bytes())
            .await;
    }
    let _ = sock.shutdown().await;
}

/// A host running `http-tool` from the plugins folder with `grants` (approved for its build).
async fn tool_host(grants: &[String]) -> TestHost {
    tool_host_with(grants, |_| {}).await
}

/// [`tool_host`] after `tweak` has adjusted the configuration.
async fn tool_host_with(
    grants: &[String],
    tweak: impl FnOnce(&mut colony_host::config::HostConfig),
) -> TestHost {
    let grants = grants.to_vec();
    TestHost::start_with(&[(guests::HTTP_TOOL, "http-tool.wasm")], move |c| {
        tweak(c);
        if !grants.is_empty() {
            c.grants.insert(
                "http-tool".into(),
                ConfigGrant {
                    capabilities: grants,
                    digest: None,
                },
            );
        }
    })
    .await
}

/// Calls `http-tool` with `args` and parses its JSON answer.
async fn call(t: &TestHost, args: serde_json::Value) -> serde_json::Value {
    let out = t
        .host
        .call_tool("http-tool", &args.to_string())
        .await
        .unwrap_or_else(|e| panic!("call {args}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
}

/// The `http.outbound` decision records of `http-tool`, waiting (up to 10 s) until `n` are
/// there (the audit writer is asynchronous); newest first.
async fn http_records(t: &TestHost, n: usize) -> Vec<AuditEntry> {
    // Refusal summaries are written when their window closes (10 s, docs/capabilities.md):
    // a loaded machine may take longer; the wait ends as soon as the records are there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = t
            .host
            .audit()
            .query(&AuditFilter {
                plugin: Some("http-tool".into()),
                capability: Some(CapabilityMatch::Prefix("http.outbound".into())),
                ..AuditFilter::default()
            })
            .await
            .unwrap_or_else(|e| panic!("audit query: {e}"));
        // Grants are audited too (kind `grant`); only the requests' decisions count here.
        let found: Vec<AuditEntry> = found.into_iter().filter(|r| r.decision.is_some()).collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_tool_reaches_the_local_server_and_each_request_is_audited_without_its_path() {
    let s = Server::start().await;
    let grant = format!("http.outbound:http://127.0.0.1:{}", s.port);
    let t = tool_host(std::slice::from_ref(&grant)).await;

    let got = call(
        &t,
        serde_json::json!({"url": s.url("/hello/bot42?api_key=SECRET"), "method": "GET"}),
    )
    .await;
    assert_eq!(got, serde_json::json!({"status": 200, "len": HELLO_LEN}));
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/upload"), "method": "POST", "body_bytes": 10_000}),
    )
    .await;
    assert_eq!(got, serde_json::json!({"status": 200, "len": 2}));
    // The server saw origin-form request lines: path and query only.
    assert_eq!(
        s.lines(),
        vec![
            "GET /hello/bot42?api_key=SECRET HTTP/1.1".to_string(),
            "POST /upload HTTP/1.1".to_string()
        ]
    );

    let records = http_records(&t, 2).await;
    let details: Vec<&str> = records.iter().map(|r| r.detail.as_str()).collect();
    let origin = format!("http://127.0.0.1:{}", s.port);
    assert!(
        details.contains(
            &format!("GET {origin} status 200, {HELLO_LEN} bytes in, 0 bytes out").as_str()
        ),
        "{details:?}"
    );
    assert!(
        details
            .contains(&format!("POST {origin} status 200, 2 bytes in, 10000 bytes out").as_str()),
        "{details:?}"
    );
    for r in &records {
        assert_eq!(r.capability, grant);
        assert_eq!(r.decision, Some(Decision::Allow));
        for secret in ["SECRET", "api_key", "bot42", "/hello", "/upload"] {
            assert!(!r.detail.contains(secret), "{secret} in {}", r.detail);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grant_registration_stops_at_imports_and_every_request_is_denied() {
    // Registered: the imports step needs an http.outbound grant for the tool's name.
    let t = TestHost::start(&[]).await;
    let bytes = std::fs::read(guests::HTTP_TOOL).unwrap_or_else(|e| panic!("{e}"));
    match t.host.register_tool(&bytes, "admin:test").await {
        Err(RegistryError::Rejected(r)) => {
            assert_eq!(r.step, Step::Imports, "{r}");
            assert!(
                r.reason.contains("imports wasi:http/")
                    && r.reason
                        .contains("@0.2.12, which needs an http.outbound grant"),
                "{r}"
            );
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(tool) => panic!("registered as {}", tool.id()),
    }
    // With a grant for its name, the same component passes every step (its example is dry).
    t.host
        .grant("http-tool", "http.outbound:https://api.example.com", "test")
        .await
        .unwrap_or_else(|e| panic!("grant: {e}"));
    let tool = t
        .host
        .register_tool(&bytes, "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register with a grant: {e}"));
    assert_eq!(tool.id(), "http-tool@1.0.0");

    // In the plugins folder with no grant it loads, and its requests are refused before any
    // connection.
    let s = Server::start().await;
    let t = tool_host(&[]).await;
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/hello"), "method": "GET"}),
    )
    .await;
    assert_eq!(
        got,
        serde_json::json!({"error": "ErrorCode::HttpRequestDenied"})
    );
    assert!(s.lines().is_empty(), "{:?}", s.lines());
    let records = http_records(&t, 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].decision, Some(Decision::Deny));
    assert_eq!(
        records[0].capability,
        format!("http.outbound:http://127.0.0.1:{}", s.port)
    );
    assert_eq!(
        records[0].detail,
        format!(
            "GET http://127.0.0.1:{} no status, 0 bytes in, 0 bytes out, refused http.not-granted",
            s.port
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_for_another_host_or_port_is_not_granted() {
    let s = Server::start().await;
    let other = s.port.wrapping_add(1).max(1);
    let t = tool_host(&[
        format!("http.outbound:http://127.0.0.1:{other}"),
        format!("http.outbound:https://127.0.0.1:{}", s.port),
        format!("http.outbound:http://127.0.0.2:{}", s.port),
    ])
    .await;
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/hello"), "method": "GET"}),
    )
    .await;
    assert_eq!(
        got,
        serde_json::json!({"error": "ErrorCode::HttpRequestDenied"})
    );
    assert!(s.lines().is_empty(), "{:?}", s.lines());
    let records = http_records(&t, 1).await;
    assert!(
        records[0].detail.ends_with("refused http.not-granted"),
        "{records:?}"
    );
    assert_eq!(records[0].decision, Some(Decision::Deny));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_that_resolves_to_loopback_is_refused_as_a_private_address() {
    // `localhost` is granted by name, not as an address: what it resolves to (127.0.0.1) is
    // not the operator's decision, so the connection is refused (DNS rebinding).
    let s = Server::start().await;
    let t = tool_host(&[format!("http.outbound:http://localhost:{}", s.port)]).await;
    let url = format!("http://localhost:{}/hello", s.port);
    let got = call(&t, serde_json::json!({"url": url, "method": "GET"})).await;
    assert_eq!(
        got,
        serde_json::json!({"error": "ErrorCode::DestinationIpProhibited"})
    );
    assert!(s.lines().is_empty(), "{:?}", s.lines());
    let records = http_records(&t, 1).await;
    assert_eq!(
        records[0].detail,
        format!(
            "GET http://localhost:{} no status, 0 bytes in, 0 bytes out, refused http.private-address",
            s.port
        )
    );
    assert_eq!(records[0].decision, Some(Decision::Deny));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_reaches_the_guest_and_its_follow_up_to_the_metadata_address_is_refused() {
    let s = Server::start().await;
    let t = tool_host(&[format!("http.outbound:http://127.0.0.1:{}", s.port)]).await;
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/redirect"), "method": "GET", "follow": true}),
    )
    .await;
    // The host did not follow: the guest got the 302 and its Location, and the request it
    // made to follow it was checked like any other (169.254.169.254 is not granted) and
    // refused before connecting.
    assert_eq!(
        got,
        serde_json::json!({
            "status": 302,
            "len": 0,
            "location": "http://169.254.169.254/latest/meta-data",
            "then": {"error": "ErrorCode::HttpRequestDenied"}
        })
    );
    assert_eq!(s.lines(), vec!["GET /redirect HTTP/1.1".to_string()]);
    let records = http_records(&t, 2).await;
    let details: Vec<&str> = records.iter().map(|r| r.detail.as_str()).collect();
    assert!(
        details.contains(
            &format!(
                "GET http://127.0.0.1:{} status 302, 0 bytes in, 0 bytes out",
                s.port
            )
            .as_str()
        ),
        "{details:?}"
    );
    assert!(
        details.contains(
            &"GET http://169.254.169.254:80 no status, 0 bytes in, 0 bytes out, refused http.not-granted"
        ),
        "{details:?}"
    );
    for r in &records {
        assert!(!r.detail.contains("meta-data"), "{}", r.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_caps_fail_the_request() {
    let s = Server::start().await;
    let t = tool_host(&[format!("http.outbound:http://127.0.0.1:{}", s.port)]).await;

    // Response: 9 MiB against the 8 MiB cap; the stream fails, nothing past the cap arrives.
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/big"), "method": "GET"}),
    )
    .await;
    let error = got["error"].as_str().unwrap_or_else(|| panic!("{got}"));
    assert!(error.starts_with("response body failed after "), "{error}");
    let read: u64 = error
        .trim_start_matches("response body failed after ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(read <= 8 << 20, "{read} bytes reached the guest");

    // Request: 1.5 MiB streamed against the 1 MiB cap.
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/upload"), "method": "POST", "body_bytes": 3 << 19}),
    )
    .await;
    assert_eq!(
        got,
        serde_json::json!({"error": "ErrorCode::HttpRequestBodySize(Some(1048576))"})
    );

    let records = http_records(&t, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert!(r.detail.ends_with("refused http.too-large"), "{}", r.detail);
    }
    assert!(
        records.iter().any(|r| r
            .detail
            .starts_with(&format!("GET http://127.0.0.1:{} status 200, ", s.port))),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_times_out_before_the_call_hang_guard() {
    let s = Server::start().await;
    // A 3 s hang guard: waiting for the server costs the tool no CPU budget, so only its own
    // timeouts and the guard (less a tenth of it) end the wait.
    let t = tool_host_with(
        &[format!("http.outbound:http://127.0.0.1:{}", s.port)],
        |c| {
            c.tool_limits.hang_guard_ms = 3_000;
        },
    )
    .await;

    // The guest's own first-byte timeout.
    let start = Instant::now();
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/slow"), "method": "GET", "timeout_ms": 200}),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        got,
        serde_json::json!({"error": "ErrorCode::ConnectionReadTimeout"})
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // None: the host ends the request a tenth of the guard before the tool's 3 s hang guard,
    // so the tool gets an error it can answer with instead of being ended by the guard.
    let start = Instant::now();
    let got = call(
        &t,
        serde_json::json!({"url": s.url("/slow"), "method": "GET"}),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        got,
        serde_json::json!({"error": "ErrorCode::ConnectionReadTimeout"})
    );
    assert!(
        took >= Duration::from_millis(2_500) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let records = http_records(&t, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(
            r.detail,
            format!(
                "GET http://127.0.0.1:{} no status, 0 bytes in, 0 bytes out, refused http.timeout",
                s.port
            )
        );
        assert_eq!(r.decision, Some(Decision::Allow));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_importing_wasi_http_does_not_load() {
    let t = TestHost::start(&[(guests::HTTP_AGENT, "http-agent.wasm")]).await;
    let rejected = t.host.rejected().await;
    let reason = rejected
        .iter()
        .find(|r| r.file.file_name().is_some_and(|n| n == "http-agent.wasm"))
        .map(|r| r.reason.clone())
        .unwrap_or_else(|| panic!("http-agent.wasm was not refused: {rejected:?}"));
    // The first wasi:http import it lists (types or outgoing-handler) is named.
    assert!(
        reason.contains("imports wasi:http/")
            && reason.contains("@0.2.12, which the agent world does not offer")
            && reason.contains("wasi:http is offered to tools only"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_change_reaches_a_registered_tool_at_once() {
    // A registered tool runs under the grants of its name; an operator's grant and revoke
    // apply to its next request, without a restart or a new registration.
    let s = Server::start().await;
    let grant = format!("http.outbound:http://127.0.0.1:{}", s.port);
    let t = TestHost::start(&[]).await;
    t.host
        .grant("http-tool", &grant, "test")
        .await
        .unwrap_or_else(|e| panic!("grant: {e}"));
    let bytes = std::fs::read(guests::HTTP_TOOL).unwrap_or_else(|e| panic!("{e}"));
    let tool = t
        .host
        .register_tool(&bytes, "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    assert_eq!(tool.id(), "http-tool@1.0.0");
    // Granted before any build existed, so no build is approved yet: the grant let the
    // imports step pass, but the build's requests are refused until an operator approves it.
    let args = serde_json::json!({"url": s.url("/hello"), "method": "GET"});
    assert_eq!(
        call(&t, args.clone()).await,
        serde_json::json!({"error": "ErrorCode::HttpRequestDenied"})
    );
    assert!(s.lines().is_empty(), "{:?}", s.lines());
    let approved = t
        .host
        .approve("http-tool", "test")
        .await
        .unwrap_or_else(|e| panic!("approve: {e}"));
    assert_eq!(approved, tool.digest);
    assert_eq!(
        call(&t, args.clone()).await,
        serde_json::json!({"status": 200, "len": HELLO_LEN})
    );

    t.host
        .revoke("http-tool", &grant, "test")
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}"));
    assert_eq!(
        call(&t, args.clone()).await,
        serde_json::json!({"error": "ErrorCode::HttpRequestDenied"})
    );
    assert_eq!(s.lines().len(), 1, "{:?}", s.lines());

    // Granted again: the same registered build reaches the server again.
    t.host
        .grant("http-tool", &grant, "test")
        .await
        .unwrap_or_else(|e| panic!("grant again: {e}"));
    assert_eq!(
        call(&t, args).await,
        serde_json::json!({"status": 200, "len": HELLO_LEN})
    );
    assert_eq!(s.lines().len(), 2, "{:?}", s.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_schemes_get_colonys_audited_denial_and_upper_case_http_is_http() {
    // Regression: wasi-http's default refused `ftp`/`file`/`HTTP` itself, with a protocol
    // error and no audit record. Schemes are case-insensitive (RFC 3986 §3.1): `HTTP` is
    // `http`, under the same grant.
    let s = Server::start().await;
    let grant = format!("http.outbound:http://127.0.0.1:{}", s.port);
    let t = tool_host(std::slice::from_ref(&grant)).await;
    for scheme in ["ftp", "file", "gopher"] {
        let url = format!("{scheme}://127.0.0.1:{}/x", s.port);
        let got = call(&t, serde_json::json!({"url": url, "method": "GET"})).await;
        let error = got["error"].as_str().unwrap_or_default();
        assert!(error.contains("HttpRequestDenied"), "{scheme}: {got}");
    }
    // The first refusal is recorded in full, the next ones counted in a summary
    // (`docs/capabilities.md`): three in all.
    let records = http_records(&t, 2).await;
    assert!(
        records
            .iter()
            .any(|r| r.detail.contains("refused http.scheme") && r.decision == Some(Decision::Deny)),
        "{records:?}"
    );
    let refused: u64 = records.iter().map(AuditEntry::refusals).sum();
    assert_eq!(refused, 3, "{records:?}");

    let got = call(
        &t,
        serde_json::json!({"url": format!("HTTP://127.0.0.1:{}/hello", s.port), "method": "GET"}),
    )
    .await;
    assert_eq!(got, serde_json::json!({"status": 200, "len": HELLO_LEN}));
    assert_eq!(s.lines(), vec!["GET /hello HTTP/1.1".to_string()]);
}
