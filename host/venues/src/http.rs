//! Sending a [`SignedRequest`] to a venue over HTTPS and reading the answer, within one deadline
//! and one size limit.
//!
//! The whole exchange (connect, TLS, send, status, body) must finish within the sender's
//! `timeout`; the body is read in chunks and refused as soon as it passes [`MAX_RESPONSE_BYTES`].
//! Errors say what went wrong in terms the caller can act on ([`SendError`]): a timeout or a
//! broken connection after sending leaves an order's outcome unknown, a refused connection does
//! not.
//!
//! What the sender will not do, and why:
//! - follow redirects: a redirect would carry the key headers to wherever it points;
//! - use proxy environment variables: where signed requests go does not depend on the
//!   environment the host was started in;
//! - speak plain `http` to anything but a loopback address (tests and local gateways): the
//!   headers carry secrets.
//!
//! Log lines name the method, the path (ids, no secrets), the status, the body size and the
//! time taken; header values are never logged.

use std::fmt;
use std::time::{Duration, Instant};

use super::{MAX_RESPONSE_BYTES, SignedRequest};

/// Header names whose values `reqwest` is told are sensitive (kept out of its own debug output
/// and HTTP/2 header compression tables).
const SENSITIVE_HEADERS: &[&str] = &[
    "OK-ACCESS-PASSPHRASE",
    "OK-ACCESS-SIGN",
    "APCA-API-SECRET-KEY",
];

/// A venue's answer: the HTTP status and the body, at most [`MAX_RESPONSE_BYTES`] of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No complete answer within the deadline. The request may have reached the venue.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made; nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The body passed its limit ([`MAX_RESPONSE_BYTES`] for most requests) while being read.
    #[error("response body over {0} bytes")]
    BodyTooLarge(usize),
    /// The request cannot be put on the wire (a header value with a newline, …); nothing was
    /// sent. Names the header, never its value.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The connection broke, or the answer was not HTTP or not UTF-8. The request may have
    /// reached the venue.
    #[error("{0}")]
    Io(String),
}

/// A sender that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The base URL is not one.
    #[error("venue base url {url:?}: {reason}")]
    BaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A zero timeout.
    #[error("venue timeout must be positive")]
    ZeroTimeout,
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

/// Sends requests to one venue's base URL; cheap to share (the client pools connections).
#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    /// Without a trailing `/`; [`SignedRequest::path`] starts with one.
    base_url: String,
    timeout: Duration,
}

impl fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSender")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpSender {
    /// A sender to `base_url` (`https://host[:port]`, or `http://` to a loopback address) whose
    /// exchanges must each finish within `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let base_url = check_base_url(base_url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("colony/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(error_chain(&e)))?;
        Ok(HttpSender {
            client,
            base_url,
            timeout,
        })
    }

    /// The venue's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `req` and reads the answer, whatever its status; a 4xx or 5xx is an
    /// [`HttpResponse`], not an error.
    pub async fn send(&self, req: &SignedRequest) -> Result<HttpResponse, SendError> {
        self.send_within(req, MAX_RESPONSE_BYTES).await
    }

    /// [`send`](Self::send), refusing a body over `limit` bytes instead of
    /// [`MAX_RESPONSE_BYTES`] (a venue's instrument list is larger than any order answer).
    pub async fn send_within(
        &self,
        req: &SignedRequest,
        limit: usize,
    ) -> Result<HttpResponse, SendError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.exchange(req, limit))
            .await
            .unwrap_or(Err(SendError::Timeout(self.timeout)));
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let method = req.method.as_str();
        let path = req.path.as_str();
        match &result {
            Ok(response) => tracing::debug!(
                method,
                path,
                status = response.status,
                bytes = response.body.len(),
                elapsed_ms,
                "venue request"
            ),
            Err(error) => tracing::warn!(method, path, elapsed_ms, %error, "venue request failed"),
        }
        result
    }

    async fn exchange(&self, req: &SignedRequest, limit: usize) -> Result<HttpResponse, SendError> {
        let method = match req.method {
            super::Method::Get => reqwest::Method::GET,
            super::Method::Post => reqwest::Method::POST,
            super::Method::Delete => reqwest::Method::DELETE,
        };
        let url = format!("{}{}", self.base_url, req.path);
        let mut headers = reqwest::header::HeaderMap::with_capacity(req.headers.len());
        for (name, value) in &req.headers {
            let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::InvalidRequest(format!("header name {name:?}")))?;
            let mut header_value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| SendError::InvalidRequest(format!("value of header {name}")))?;
            if SENSITIVE_HEADERS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
            {
                header_value.set_sensitive(true);
            }
            headers.insert(header_name, header_value);
        }
        let mut builder = self.client.request(method, url).headers(headers);
        if !req.body.is_empty() {
            builder = builder.body(req.body.clone());
        }
        let request = builder
            .build()
            .map_err(|e| SendError::InvalidRequest(error_chain(&e)))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.classify(&e))?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(SendError::BodyTooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(SendError::BodyTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(body)
            .map_err(|_| SendError::Io(format!("HTTP {status} body is not UTF-8")))?;
        Ok(HttpResponse { status, body })
    }

    fn classify(&self, error: &reqwest::Error) -> SendError {
        if error.is_connect() {
            SendError::Connect(error_chain(error))
        } else if error.is_timeout() {
            SendError::Timeout(self.timeout)
        } else {
            SendError::Io(error_chain(error))
        }
    }
}

/// `error: cause: cause…`, since `reqwest`'s own message ("error sending request") hides the
/// cause that says what happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The base URL without a trailing `/`, if it is `https`, or `http` to a loopback address, and
/// has no query, fragment or credentials.
fn check_base_url(text: &str) -> Result<String, ConfigError> {
    let refuse = |reason: &str| ConfigError::BaseUrl {
        url: text.to_string(),
        reason: reason.to_string(),
    };
    let url = reqwest::Url::parse(text).map_err(|e| refuse(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| refuse("no host"))?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(refuse("plain http only to a loopback address")),
        _ => return Err(refuse("not an http(s) url")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("has a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("has credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A loopback HTTP/1.1 server for tests: records each request and answers it from a script.
#[cfg(test)]
pub(crate) mod loopback {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// One request as the server read it; header names are lowercase.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        pub target: String,
        pub headers: HashMap<String, String>,
        pub body: String,
    }

    impl Recorded {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .get(&name.to_ascii_lowercase())
                .map(String::as_str)
        }
    }

    /// How the server answers one request.
    pub(crate) enum Reply {
        /// A `Content-Length` response with a JSON body.
        Json(u16, String),
        /// These bytes, then close the connection.
        Raw(Vec<u8>),
        /// Never answer (the connection stays open until the test ends).
        Hang,
    }

    type Script = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

    pub struct Server {
        pub base_url: String,
        requests: Arc<Mutex<Vec<Recorded>>>,
    }

    impl Server {
        /// Serves on 127.0.0.1; `script(n, request)` answers the `n`th request (from 0).
        pub async fn start(
            script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
        ) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base_url = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let script: Arc<Script> = Arc::new(script);
            let recorded = requests.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, recorded.clone(), script.clone()));
                }
            });
            Server { base_url, requests }
        }

        /// Every request so far, in arrival order.
        pub fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }

        pub fn count(&self) -> usize {
            self.requests.lock().unwrap().len()
        }
    }

    async fn serve(
        mut stream: TcpStream,
        requests: Arc<Mutex<Vec<Recorded>>>,
        script: Arc<Script>,
    ) {
        let mut buffer = Vec::new();
        loop {
            let Some(request) = read_request(&mut stream, &mut buffer).await else {
                return;
            };
            let n = {
                let mut all = requests.lock().unwrap();
                all.push(request.clone());
                all.len() - 1
            };
            match script(n, &request) {
                Reply::Json(status, body) => {
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let bytes = [head.into_bytes(), body.into_bytes()].concat();
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Reply::Raw(bytes) => {
                    let _ = stream.write_all(&bytes).await;
                    return;
                }
                Reply::Hang => std::future::pending::<()>().await,
            }
        }
    }

    async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Recorded> {
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let mut start = lines.next()?.split(' ');
        let method = start.next()?.to_string();
        let target = start.next()?.to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap_or(0));
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(buffer[head_end..head_end + length].to_vec()).ok()?;
        buffer.drain(..head_end + length);
        Some(Recorded {
            method,
            target,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::loopback::{Reply, Server};
    use super::*;
    use crate::Method;

    const TIMEOUT: Duration = Duration::from_millis(300);

    fn request(method: Method, path: &str, body: &str) -> SignedRequest {
        SignedRequest {
            method,
            path: path.into(),
            headers: vec![
                ("APCA-API-KEY-ID".into(), "key-id".into()),
                ("APCA-API-SECRET-KEY".into(), "the-secret-key".into()),
            ],
            body: body.into(),
        }
    }

    #[tokio::test]
    async fn sends_method_path_headers_and_body_and_returns_any_status() {
        let server = Server::start(|n, _| match n {
            0 => Reply::Json(200, r#"{"ok":true}"#.into()),
            _ => Reply::Json(503, "busy".into()),
        })
        .await;
        let sender = HttpSender::new(&format!("{}/", server.base_url), TIMEOUT).unwrap();
        assert_eq!(sender.base_url(), server.base_url);
        let post = request(Method::Post, "/v2/orders", r#"{"a":1}"#);
        assert_eq!(
            sender.send(&post).await,
            Ok(HttpResponse {
                status: 200,
                body: r#"{"ok":true}"#.into()
            })
        );
        let get = request(
            Method::Get,
            "/v2/orders:by_client_order_id?client_order_id=a",
            "",
        );
        assert_eq!(sender.send(&get).await.unwrap().status, 503);
        let delete = request(Method::Delete, "/v2/orders/1", "");
        sender.send(&delete).await.unwrap();

        let seen = server.requests();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            (
                seen[0].method.as_str(),
                seen[0].target.as_str(),
                seen[0].body.as_str()
            ),
            ("POST", "/v2/orders", r#"{"a":1}"#)
        );
        assert_eq!(
            seen[0].header("apca-api-secret-key"),
            Some("the-secret-key")
        );
        assert_eq!(
            (
                seen[1].method.as_str(),
                seen[1].target.as_str(),
                seen[1].body.as_str()
            ),
            ("GET", "/v2/orders:by_client_order_id?client_order_id=a", "")
        );
        assert_eq!(seen[2].method, "DELETE");
    }

    #[tokio::test]
    async fn an_unanswered_request_times_out_at_the_deadline() {
        let server = Server::start(|_, _| Reply::Hang).await;
        let sender = HttpSender::new(&server.base_url, TIMEOUT).unwrap();
        let started = Instant::now();
        let result = sender.send(&request(Method::Get, "/x", "")).await;
        let elapsed = started.elapsed();
        assert_eq!(result, Err(SendError::Timeout(TIMEOUT)));
        assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "{elapsed:?}");
        assert_eq!(server.count(), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let sender = HttpSender::new(&base_url, TIMEOUT).unwrap();
        let result = sender.send(&request(Method::Get, "/x", "")).await;
        assert!(matches!(result, Err(SendError::Connect(_))), "{result:?}");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_streamed() {
        let big = "x".repeat(MAX_RESPONSE_BYTES + 1);
        let declared = big.clone();
        let server = Server::start(move |n, _| match n {
            0 => Reply::Json(200, declared.clone()),
            // No Content-Length: the body runs to the end of the connection.
            _ => Reply::Raw(
                format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{big}").into_bytes(),
            ),
        })
        .await;
        let sender = HttpSender::new(&server.base_url, Duration::from_secs(5)).unwrap();
        for _ in 0..2 {
            let result = sender.send(&request(Method::Get, "/big", "")).await;
            assert_eq!(result, Err(SendError::BodyTooLarge(MAX_RESPONSE_BYTES)));
        }
        assert_eq!(server.count(), 2);
    }

    #[tokio::test]
    async fn a_request_with_a_larger_limit_takes_a_larger_body_and_no_more() {
        let body = "x".repeat(MAX_RESPONSE_BYTES + 10);
        let served = body.clone();
        let server = Server::start(move |_, _| Reply::Json(200, served.clone())).await;
        let sender = HttpSender::new(&server.base_url, Duration::from_secs(5)).unwrap();
        let req = request(Method::Get, "/instruments", "");
        let got = sender.send_within(&req, MAX_RESPONSE_BYTES + 10).await;
        assert_eq!(got.map(|r| r.body.len()), Ok(body.len()));
        let over = sender.send_within(&req, MAX_RESPONSE_BYTES + 9).await;
        assert_eq!(over, Err(SendError::BodyTooLarge(MAX_RESPONSE_BYTES + 9)));
    }

    #[tokio::test]
    async fn a_broken_answer_is_an_io_error() {
        let server = Server::start(|_, _| Reply::Raw(b"not http at all\r\n\r\n".to_vec())).await;
        let sender = HttpSender::new(&server.base_url, TIMEOUT).unwrap();
        let result = sender.send(&request(Method::Get, "/x", "")).await;
        assert!(matches!(result, Err(SendError::Io(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_header_value_that_cannot_be_sent_is_named_not_quoted() {
        let server = Server::start(|_, _| Reply::Json(200, "{}".into())).await;
        let sender = HttpSender::new(&server.base_url, TIMEOUT).unwrap();
        let mut bad = request(Method::Get, "/x", "");
        bad.headers[1].1 = "secret\r\nX-Injected: 1".into();
        let result = sender.send(&bad).await;
        assert_eq!(
            result,
            Err(SendError::InvalidRequest(
                "value of header APCA-API-SECRET-KEY".into()
            ))
        );
        assert_eq!(server.count(), 0);
    }

    #[test]
    fn base_urls_must_be_https_or_loopback_http() {
        let ok = [
            ("https://www.okx.com", "https://www.okx.com"),
            (
                "https://paper-api.alpaca.markets/",
                "https://paper-api.alpaca.markets",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:1/", "http://localhost:1"),
            ("http://[::1]:9", "http://[::1]:9"),
            (
                "https://gateway.example/prefix/",
                "https://gateway.example/prefix",
            ),
        ];
        for (input, expected) in ok {
            assert_eq!(check_base_url(input).as_deref(), Ok(expected), "{input}");
        }
        for bad in [
            "http://www.okx.com",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://u:p@www.okx.com",
            "https://www.okx.com/?x=1",
            "www.okx.com",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            HttpSender::new("https://www.okx.com", Duration::ZERO).unwrap_err(),
            ConfigError::ZeroTimeout
        );
    }

    #[test]
    fn debug_shows_no_headers() {
        let sender = HttpSender::new("https://www.okx.com", TIMEOUT).unwrap();
        assert_eq!(
            format!("{sender:?}"),
            "HttpSender { base_url: \"https://www.okx.com\", timeout: 300ms, .. }"
        );
    }
}
