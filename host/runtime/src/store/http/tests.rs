//! The sender against a real local server (raw TCP, so every byte on the wire is visible) and
//! an injected resolver: what reaches the server, the caps, the timeout, redirects left to the
//! guest, the audit record of each request, and the refusal-to-error table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmtime_wasi_http::{Error, WasiBody};

use super::{Exchange, error_code, loose_origin};
use crate::audit::{AuditEntry, AuditFilter, AuditStore, Decision};
use crate::net::{HttpLimits, HttpRefusal, Resolver, SystemResolver};
use crate::policy::Policy;
use colony_caps::{Capability, GrantSet};

/// Answers from a table; a name not in it fails to resolve.
#[derive(Clone)]
struct FakeResolver(HashMap<&'static str, Vec<IpAddr>>);

impl Resolver for FakeResolver {
    async fn lookup(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
    }
}

async fn audit_store(dir: &Path) -> AuditStore {
    match AuditStore::open_sqlite(&dir.join("audit.db")).await {
        Ok(s) => s,
        Err(e) => panic!("audit store: {e}"),
    }
}

fn policy(grants: &[String], store: &AuditStore) -> Arc<Policy> {
    let caps = grants.iter().map(|g| match g.parse::<Capability>() {
        Ok(c) => c,
        Err(e) => panic!("{g}: {e}"),
    });
    Arc::new(Policy::new(
        Arc::from("net-tool"),
        "digest".into(),
        GrantSet::new(caps),
        Some(store.writer()),
        0,
    ))
}

fn exchange(policy: Arc<Policy>, limits: HttpLimits) -> Exchange {
    Exchange {
        policy,
        limits,
        call_deadline: None,
        started: Instant::now(),
    }
}

fn request(method: &str, url: &str, body: &[u8], length: bool) -> http::Request<WasiBody> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-test", "1");
    if length {
        b = b.header("content-length", body.len().to_string());
    }
    let body = Full::new(Bytes::copy_from_slice(body))
        .map_err(|e| match e {})
        .boxed_unsync();
    match b.body(body) {
        Ok(r) => r,
        Err(e) => panic!("request: {e}"),
    }
}

/// A server on 127.0.0.1 answering every connection with `reply` once it has read the request
/// head (and `Content-Length` bytes of body); the request heads it saw are sent on the channel.
async fn server(
    reply: Vec<u8>,
    silent: bool,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("addr: {e}"),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_string();
                        let want = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while seen.len() < end + 4 + want {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = tx.send(head);
                        break;
                    }
                }
                if silent {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (port, rx)
}

fn ok_reply(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The `http.outbound` decision records, waiting (up to 5 s) until `n` are there.
async fn records(store: &AuditStore, n: usize) -> Vec<AuditEntry> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = match store.query(&AuditFilter::default()).await {
            Ok(r) => r,
            Err(e) => panic!("query: {e}"),
        };
        let found: Vec<AuditEntry> = found
            .into_iter()
            .filter(|r| r.capability.starts_with("http.outbound"))
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_body(body: WasiBody) -> Result<Vec<u8>, Error> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[tokio::test]
async fn a_granted_request_reaches_the_server_in_origin_form_and_is_audited_without_its_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = audit_store(dir.path()).await;
    let (port, mut seen) = server(ok_reply(b"hello"), false).await;
    let p = policy(&[format!("http.outbound:http://127.0.0.1:{port}")], &store);
    let url = format!("http://127.0.0.1:{port}/bot123/send?api_key=SECRET");
    let (resp, _io) = exchange(p, HttpLimits::default())
        .send(request("POST", &url, b"{}", true), None, SystemResolver)
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(resp.status(), 200);
    let body = read_body(resp.into_body())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body, b"hello");

    let head = seen.recv().await.unwrap_or_default();
    let first = head.lines().next().unwrap_or_default();
    assert_eq!(first, "POST /bot123/send?api_key=SECRET HTTP/1.1", "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{port}")),
        "{head}"
    );

    let recs = records(&store, 1).await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].decision, Some(Decision::Allow));
    assert_eq!(
        recs[0].capability,
        format!("http.outbound:http://127.0.0.1:{port}")
    );
    assert_eq!(
        recs[0].detail,
        format!("POST http://127.0.0.1:{port} status 200, 5 bytes in, 2 bytes out")
    );
    assert!(!recs[0].detail.contains("SECRET") && !recs[0].detail.contains("bot123"));
}

#[tokio::test]
async fn refusals_before_connecting_are_audited_as_denies_with_their_code() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = audit_store(dir.path()).await;
    let resolver = FakeResolver(HashMap::from([
        (
            "metadata.test",
            vec!["169.254.169.254".parse().unwrap_or(IpAddr::from([0; 4]))],
        ),
        (
            "inside.test",
            vec!["10.0.0.5".parse().unwrap_or(IpAddr::from([0; 4]))],
        ),
    ]));
    let p = policy(
        &[
            "http.outbound:http://metadata.test".into(),
            "http.outbound:http://inside.test".into(),
        ],
        &store,
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "http://metadata.test/latest/meta-data",
            "http.metadata",
            "destination IP address is prohibited",
        ),
        (
            "http://inside.test/x?token=1",
            "http.private-address",
            "destination IP address is prohibited",
        ),
        (
            "http://elsewhere.test/",
            "http.not-granted",
            "HTTP request denied",
        ),
        (
            "http://u:p@metadata.test/",
            "http.userinfo",
            "HTTP request denied",
        ),
    ];
    for (url, _code, error) in cases {
        let got = exchange(p.clone(), HttpLimits::default())
            .send(request("GET", url, b"", false), None, resolver.clone())
            .await;
        match got {
            Err(e) => assert_eq!(e.to_string(), *error, "{url}"),
            Ok(_) => panic!("{url} was sent"),
        }
    }
    let recs = records(&store, cases.len()).await;
    assert_eq!(recs.len(), cases.len(), "{recs:?}");
    for (url, code, _) in cases {
        let rec = recs
            .iter()
            .find(|r| r.detail.ends_with(&format!("refused {code}")))
            .unwrap_or_else(|| panic!("{url}: no record with {code}: {recs:?}"));
        assert_eq!(rec.decision, Some(Decision::Deny));
        assert!(rec.detail.starts_with("GET http://"), "{}", rec.detail);
        assert!(!rec.detail.contains('/') || !rec.detail.contains("meta-data"));
        assert!(!rec.detail.contains("token") && !rec.detail.contains("u:p"));
    }
}

#[tokio::test]
async fn a_response_over_the_cap_is_cut_and_a_large_request_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = audit_store(dir.path()).await;
    let (port, mut seen) = server(ok_reply(&[b'x'; 5000]), false).await;
    let p = policy(&[format!("http.outbound:http://127.0.0.1:{port}")], &store);
    let limits = HttpLimits {
        max_request_bytes: 100,
        max_response_bytes: 1000,
        ..HttpLimits::default()
    };
    let url = format!("http://127.0.0.1:{port}/");

    let (resp, _io) = exchange(p.clone(), limits)
        .send(request("GET", &url, b"", false), None, SystemResolver)
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    match read_body(resp.into_body()).await {
        Err(Error::HttpResponseBodySize(Some(1000))) => {}
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    assert!(seen.recv().await.is_some());

    // Declared too large: refused before connecting.
    match exchange(p.clone(), limits)
        .send(request("POST", &url, &[0; 101], true), None, SystemResolver)
        .await
    {
        Err(Error::HttpRequestBodySize(Some(100))) => {}
        other => panic!("{:?}", other.map(|r| r.0.status())),
    }
    // Streamed past the cap without a declared length.
    match exchange(p, limits)
        .send(
            request("POST", &url, &[0; 101], false),
            None,
            SystemResolver,
        )
        .await
    {
        Err(Error::HttpRequestBodySize(Some(100))) => {}
        other => panic!("{:?}", other.map(|r| r.0.status())),
    }

    let recs = records(&store, 3).await;
    assert_eq!(
        recs.iter()
            .filter(|r| r.detail.ends_with("refused http.too-large"))
            .count(),
        3,
        "{recs:?}"
    );
    assert!(
        recs.iter().any(|r| r.detail.starts_with(&format!(
            "GET http://127.0.0.1:{port} status 200, 5000 bytes in"
        )) || r.detail.contains("status 200")),
        "{recs:?}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_limit() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = audit_store(dir.path()).await;
    let (port, _seen) = server(Vec::new(), true).await;
    let p = policy(&[format!("http.outbound:http://127.0.0.1:{port}")], &store);
    let limits = HttpLimits {
        timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let start = Instant::now();
    let got = exchange(p, limits)
        .send(
            request("GET", &format!("http://127.0.0.1:{port}/slow"), b"", false),
            None,
            SystemResolver,
        )
        .await;
    let took = start.elapsed();
    assert!(
        matches!(got, Err(Error::ConnectionReadTimeout)),
        "{:?}",
        got.map(|r| r.0.status())
    );
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let recs = records(&store, 1).await;
    assert!(
        recs[0]
            .detail
            .ends_with("no status, 0 bytes in, 0 bytes out, refused http.timeout"),
        "{recs:?}"
    );
    assert_eq!(recs[0].decision, Some(Decision::Allow));
}

#[tokio::test]
async fn the_call_deadline_bounds_a_request() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = audit_store(dir.path()).await;
    let (port, _seen) = server(Vec::new(), true).await;
    let p = policy(&[format!("http.outbound:http://127.0.0.1:{port}")], &store);
    let mut x = exchange(p, HttpLimits::default());
    x.call_deadline = Some(Instant::now() + Duration::from_millis(200));
    let start = Instant::now();
    let got = x
        .send(
            request("GET", &format!("http://127.0.0.1:{port}/"), b"", false),
            None,
            SystemResolver,
        )
        .await;
    assert!(
        matches!(got, Err(Error::ConnectionReadTimeout)),
        "{:?}",
        got.map(|r| r.0.status())
    );
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_redirect_is_handed_to_the_guest_not_followed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = audit_store(dir.path()).await;
    let reply = b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data\r\ncontent-length: 0\r\n\r\n".to_vec();
    let (port, mut seen) = server(reply, false).await;
    let p = policy(&[format!("http.outbound:http://127.0.0.1:{port}")], &store);
    let (resp, _io) = exchange(p, HttpLimits::default())
        .send(
            request("GET", &format!("http://127.0.0.1:{port}/"), b"", false),
            None,
            SystemResolver,
        )
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("http://169.254.169.254/latest/meta-data")
    );
    drop(resp);
    assert!(seen.recv().await.is_some());
    let recs = records(&store, 1).await;
    assert_eq!(
        recs[0].detail,
        format!("GET http://127.0.0.1:{port} status 302, 0 bytes in, 0 bytes out")
    );
}

#[test]
fn refusals_map_to_wasi_http_error_codes() {
    let d = Duration::from_secs(1);
    let cases: Vec<(HttpRefusal, &str)> = vec![
        (
            HttpRefusal::InvalidUrl { reason: "x".into() },
            "invalid HTTP request URI",
        ),
        (
            HttpRefusal::Scheme {
                scheme: "ftp".into(),
            },
            "HTTP request denied",
        ),
        (
            HttpRefusal::NotGranted {
                host: "http://a:80".into(),
                needs: "http.outbound:http://a".into(),
            },
            "HTTP request denied",
        ),
        (
            HttpRefusal::Resolve {
                host: "a".into(),
                reason: "x".into(),
            },
            "DNS error: rcode no such host",
        ),
        (
            HttpRefusal::TooLarge {
                what: "request body",
                limit: 7,
            },
            "HTTP request body size exceeds limit: 7 bytes",
        ),
        (
            HttpRefusal::TooLarge {
                what: "response body",
                limit: 9,
            },
            "HTTP response body size exceeds limit: 9 bytes",
        ),
        (
            HttpRefusal::Timeout {
                what: "name resolution",
                limit: d,
            },
            "DNS lookup timed out",
        ),
        (
            HttpRefusal::Timeout {
                what: "connect",
                limit: d,
            },
            "connection timeout",
        ),
        (
            HttpRefusal::Timeout {
                what: "response",
                limit: d,
            },
            "connection read timeout",
        ),
    ];
    for (refusal, want) in cases {
        assert_eq!(error_code(&refusal).to_string(), want, "{refusal}");
    }
}

#[test]
fn an_unchecked_url_is_audited_by_its_origin_only() {
    assert_eq!(
        loose_origin("http://u:p@Example.COM/a?token=1"),
        "http://example.com:80"
    );
    assert_eq!(loose_origin("https://h:8443/x"), "https://h:8443");
    assert_eq!(loose_origin("ftp://h/x"), "(unreadable url)");
    assert_eq!(loose_origin("not a url"), "(unreadable url)");
}
