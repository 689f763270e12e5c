//! The `wasi:http/outgoing-handler` host of tool stores: every request a tool sends goes
//! through [`Outbound`]'s [`WasiHttpHooks::send_request`], which applies the tool's
//! `http.outbound` grants through [`crate::net`] and connects only where they allow.
//!
//! For each request, in order:
//!
//! 1. **URL.** `scheme://authority/path?query` as the guest set it is checked by
//!    [`OutboundPolicy::check_url`] against the grants in force *now* (built from
//!    [`Policy::grants`] per request, so a revocation applies to the next one).
//! 2. **Request size.** A `Content-Length` over [`HttpLimits::max_request_bytes`] is refused
//!    before anything is resolved; a body streamed without one is cut when it passes the cap.
//! 3. **Addresses.** The host name is resolved once ([`OutboundPolicy::resolve_target`],
//!    the system resolver) and every address is checked; any refused address refuses the
//!    request.
//! 4. **Connection.** A TCP connection to the checked [`SocketAddr`]s, in the resolver's
//!    order, never to the name (so it is never resolved again: no DNS rebinding between check
//!    and connect); TLS (rustls, ring, the system's roots) for `https`, with the checked host
//!    as the server name; HTTP/1.1 (hyper). The request line carries only the path and query,
//!    and `Host` is the normalised host the grant was checked against.
//! 5. **Time.** One deadline for the whole exchange (resolution, connect, response head and
//!    body): [`HttpLimits::timeout`] from the start, but never later than the tool call's own
//!    deadline less [`DEADLINE_MARGIN`], so the guest sees a timeout it can handle instead of
//!    being ended by the call deadline. The guest's `request-options` (connect, first byte,
//!    between bytes) can only shorten it.
//! 6. **Response size.** The body stream fails with `HTTP-response-body-size` once more than
//!    [`HttpLimits::max_response_bytes`] have arrived; nothing past the cap reaches the guest.
//! 7. **Redirects** are not followed: `wasi:http` never does. The guest sees the 3xx and its
//!    `Location`; a request it makes to follow it is a new request through every step above.
//! 8. **Audit.** One record per request ([`Ledger`]): a `decision` record with capability
//!    `http.outbound:scheme://host[:port]` and detail [`HttpAuditEntry`] (method,
//!    `scheme://host:port`, status, bytes in and out, and `refused CODE` when refused or cut
//!    short; never the path, query, headers or bodies). It is `deny` when the request was
//!    refused before a connection was attempted, `allow` once one was, and it is written when
//!    the exchange ends (the response body read to its end, failed or dropped).
//!
//! A refusal is logged (warn, target `colony::http`, with plugin, code and reason) and
//! returned to the guest as a `wasi:http` `error-code` ([`error_code`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks};

use crate::audit::Decision;
use crate::net::{
    HttpAuditEntry, HttpLimits, HttpRefusal, OutboundPolicy, Resolver, SystemResolver, Target,
};
use crate::policy::Policy;

/// How long before the tool call's deadline an outbound request gives up, so the guest gets
/// its timeout error and can still answer.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(25);

/// What a tool store needs for `wasi:http`: the context and the hooks that send requests.
pub struct HttpState {
    pub(super) ctx: WasiHttpCtx,
    pub(super) hooks: Outbound,
}

impl HttpState {
    /// The `wasi:http` state of a tool store running under `policy`, with `limits` on every
    /// request.
    pub fn new(policy: Arc<Policy>, limits: HttpLimits) -> HttpState {
        HttpState {
            ctx: WasiHttpCtx::new(),
            hooks: Outbound {
                policy,
                limits,
                deadline: None,
                tools_only: false,
            },
        }
    }

    /// State that refuses every request: for a store that is not a tool's (never linked to
    /// `wasi:http`; this is the second line of defence).
    pub fn refusing(policy: Arc<Policy>) -> HttpState {
        let mut state = HttpState::new(policy, HttpLimits::default());
        state.hooks.tools_only = true;
        state
    }

    /// Sets the tool call's deadline, which bounds every request made from now on.
    pub(super) fn set_deadline(&mut self, deadline: Instant) {
        self.hooks.deadline = Some(deadline);
    }
}

/// The hooks: every outgoing request of a tool goes through [`WasiHttpHooks::send_request`].
pub struct Outbound {
    policy: Arc<Policy>,
    limits: HttpLimits,
    /// The current call's deadline (the store's), refreshed whenever the guest calls in.
    deadline: Option<Instant>,
    /// Not a tool store: refuse everything.
    tools_only: bool,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
)>;

impl WasiHttpHooks for Outbound {
    /// Every scheme the guest can set reaches [`Self::send_request`], so that the policy
    /// decides (and audits) it: `ftp`, `file`, … are refused as `http.scheme`, and `HTTP` is
    /// `http` (schemes are case-insensitive, RFC 3986 §3.1). wasi-http's default would answer
    /// a bare protocol error with no record of the attempt.
    fn is_supported_scheme(&mut self, _scheme: &http::uri::Scheme) -> bool {
        true
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if self.tools_only {
            tracing::warn!(target: "colony::http", plugin = %self.policy.plugin(), "wasi:http is offered to tools only; request refused");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let exchange = Exchange {
            policy: self.policy.clone(),
            limits: self.limits,
            call_deadline: self.deadline,
            started: Instant::now(),
        };
        Box::new(exchange.send(request, options, SystemResolver))
    }
}

/// One outbound request in flight.
struct Exchange {
    policy: Arc<Policy>,
    limits: HttpLimits,
    call_deadline: Option<Instant>,
    started: Instant,
}

/// The `wasi:http` error a refusal becomes for the guest.
///
/// | refusal | `error-code` |
/// |---|---|
/// | `http.invalid-url` | `HTTP-request-URI-invalid` |
/// | `http.scheme`, `http.userinfo`, `http.ip-literal`, `http.not-granted`, `http.redirect` | `HTTP-request-denied` |
/// | `http.private-address`, `http.metadata` | `destination-IP-prohibited` |
/// | `http.resolve` | `DNS-error` (rcode `no such host`) |
/// | `http.too-large` (request / response body) | `HTTP-request-body-size` / `HTTP-response-body-size` (the cap) |
/// | `http.timeout`: name resolution / connect or TLS / response head / response body | `DNS-timeout` / `connection-timeout` / `connection-read-timeout` / `HTTP-response-timeout` |
pub(crate) fn error_code(refusal: &HttpRefusal) -> Error {
    match refusal {
        HttpRefusal::InvalidUrl { .. } => Error::HttpRequestUriInvalid,
        HttpRefusal::Scheme { .. }
        | HttpRefusal::Userinfo { .. }
        | HttpRefusal::IpLiteral { .. }
        | HttpRefusal::NotGranted { .. }
        | HttpRefusal::Redirect { .. }
        | HttpRefusal::TooManyRedirects { .. } => Error::HttpRequestDenied,
        HttpRefusal::PrivateAddress { .. } | HttpRefusal::Metadata { .. } => {
            Error::DestinationIpProhibited
        }
        HttpRefusal::Resolve { .. } => Error::DnsError {
            rcode: Some("no such host".into()),
            info_code: None,
        },
        HttpRefusal::TooLarge { what, limit } => {
            if what.starts_with("request") {
                Error::HttpRequestBodySize(Some(*limit))
            } else {
                Error::HttpResponseBodySize(Some(*limit))
            }
        }
        HttpRefusal::Timeout { what, .. } => match *what {
            "name resolution" => Error::DnsTimeout,
            "response" => Error::ConnectionReadTimeout,
            "response body" => Error::HttpResponseTimeout,
            _ => Error::ConnectionTimeout,
        },
    }
}

/// `scheme://host:port` of a URL no [`Target`] was made of, for the audit: never the path,
/// query or userinfo.
fn loose_origin(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(format!(
                "{}://{host}:{}",
                u.scheme(),
                u.port_or_known_default()?
            ))
        })
        .unwrap_or_else(|| "(unreadable url)".into())
}

/// The audit record of one request, written exactly once: by [`Ledger::finish`] when the
/// exchange ends, or when the last holder drops it (the guest dropped the response, the
/// call ended).
struct Ledger {
    policy: Arc<Policy>,
    state: Mutex<LedgerState>,
}

struct LedgerState {
    capability: String,
    entry: HttpAuditEntry,
    decision: Decision,
    written: bool,
}

impl Ledger {
    fn new(policy: Arc<Policy>, capability: String, entry: HttpAuditEntry) -> Arc<Ledger> {
        Arc::new(Ledger {
            policy,
            state: Mutex::new(LedgerState {
                capability,
                entry,
                decision: Decision::Deny,
                written: false,
            }),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut LedgerState) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// A connection is being attempted: the request is no longer refused by the policy.
    fn allow(&self) {
        self.with(|s| s.decision = Decision::Allow);
    }

    fn status(&self, status: u16) {
        self.with(|s| s.entry.status = Some(status));
    }

    fn bytes_in(&self, n: u64) {
        self.with(|s| s.entry.bytes_in = s.entry.bytes_in.saturating_add(n));
    }

    fn bytes_out(&self, n: u64) {
        self.with(|s| s.entry.bytes_out = s.entry.bytes_out.saturating_add(n));
    }

    /// Writes the record (once), with `refusal` if the request was refused or cut short.
    fn finish(&self, refusal: Option<&'static str>) {
        let record = self.with(|s| {
            if s.written {
                return None;
            }
            s.written = true;
            if s.entry.refusal.is_none() {
                s.entry.refusal = refusal;
            }
            Some((s.capability.clone(), s.decision, s.entry.detail()))
        });
        if let Some((capability, decision, detail)) = record {
            tracing::debug!(target: "colony::http", plugin = %self.policy.plugin(), %detail, "outbound request");
            self.policy.record(&capability, decision, &detail);
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.finish(None);
    }
}

impl Exchange {
    /// When the whole exchange must be over: the HTTP timeout, or the call's deadline less
    /// the margin, whichever comes first.
    fn until(&self) -> Instant {
        let own = self.started + self.limits.timeout;
        match self.call_deadline {
            Some(d) => own.min(d.checked_sub(DEADLINE_MARGIN).unwrap_or(d)),
            None => own,
        }
    }

    /// The refusal of a timeout at `until`.
    fn timeout(&self, what: &'static str) -> HttpRefusal {
        HttpRefusal::Timeout {
            what,
            limit: self.until().saturating_duration_since(self.started),
        }
    }

    /// Logs and audits a refusal; returns the guest's error.
    fn refuse(&self, ledger: &Ledger, refusal: &HttpRefusal) -> Error {
        tracing::warn!(target: "colony::http", plugin = %self.policy.plugin(), code = refusal.code(), reason = %refusal, "outbound request refused");
        ledger.finish(Some(refusal.code()));
        error_code(refusal)
    }

    async fn send<R: Resolver>(
        self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        resolver: R,
    ) -> SendResult {
        let method = request.method().as_str().to_owned();
        let uri = request.uri();
        let url = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default(),
            uri.path_and_query().map_or("/", |p| p.as_str()),
        );
        let outbound = OutboundPolicy::new(self.policy.grants(), self.limits);

        // 1. The URL and the grants.
        let target = match outbound.check_url(&url) {
            Ok(t) => t,
            Err(refusal) => {
                let (capability, origin) = match &refusal {
                    HttpRefusal::NotGranted { host, needs } => (needs.clone(), host.clone()),
                    _ => ("http.outbound".to_owned(), loose_origin(&url)),
                };
                let entry = HttpAuditEntry::for_origin(&method, origin);
                let ledger = Ledger::new(self.policy.clone(), capability, entry);
                return Err(self.refuse(&ledger, &refusal));
            }
        };
        let ledger = Ledger::new(
            self.policy.clone(),
            target.capability(),
            HttpAuditEntry::new(&method, &target),
        );

        // 2. A declared body size over the cap.
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared
            && let Err(refusal) = self.limits.check_request_bytes(n)
        {
            return Err(self.refuse(&ledger, &refusal));
        }

        // 3. Every address.
        let until = self.until();
        let resolved =
            match tokio::time::timeout_at(until.into(), outbound.resolve_target(target, &resolver))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(refusal)) => return Err(self.refuse(&ledger, &refusal)),
                Err(_) => return Err(self.refuse(&ledger, &self.timeout("name resolution"))),
            };

        // 4. Connect to the checked addresses only.
        ledger.allow();
        let opt = |d: Option<Duration>| {
            d.and_then(|d| Instant::now().checked_add(d))
                .map_or(until, |t| t.min(until))
        };
        let connect_until = opt(options.and_then(|o| o.connect_timeout));
        let tcp = match tokio::time::timeout_at(connect_until.into(), connect(&resolved.addrs))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(target: "colony::http", plugin = %self.policy.plugin(), host = %resolved.target.origin(), error = %e, "outbound connection failed");
                ledger.finish(None);
                return Err(Error::Connect(e));
            }
            Err(_) => return Err(self.refuse(&ledger, &self.timeout("connect"))),
        };
        let target = resolved.target;
        let stream: Box<dyn Stream> = if target.scheme() == colony_caps::Scheme::Https {
            let tls = match tls_handshake(&target, tcp, connect_until).await {
                Ok(s) => s,
                Err(TlsFailure::Timeout) => {
                    return Err(self.refuse(&ledger, &self.timeout("TLS handshake")));
                }
                Err(TlsFailure::Failed(e)) => {
                    tracing::info!(target: "colony::http", plugin = %self.policy.plugin(), host = %target.origin(), error = %e, "outbound TLS handshake failed");
                    ledger.finish(None);
                    return Err(e);
                }
            };
            Box::new(tls)
        } else {
            Box::new(tcp)
        };

        // 5. The request: path and query only on the request line, the checked host.
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = match http::Uri::builder().path_and_query(path).build() {
            Ok(u) => u,
            Err(_) => {
                let refusal = HttpRefusal::InvalidUrl {
                    reason: "bad path".into(),
                };
                return Err(self.refuse(&ledger, &refusal));
            }
        };
        let host = match target.url().port() {
            Some(p) => format!("{}:{p}", target.host()),
            None => target.host().to_owned(),
        };
        match http::HeaderValue::from_str(&host) {
            Ok(v) => {
                parts.headers.insert(http::header::HOST, v);
            }
            Err(_) => {
                let refusal = HttpRefusal::InvalidUrl {
                    reason: "bad host".into(),
                };
                return Err(self.refuse(&ledger, &refusal));
            }
        }
        let over = Arc::new(AtomicBool::new(false));
        let body = RequestBody {
            inner: body,
            ledger: ledger.clone(),
            sent: 0,
            limit: self.limits.max_request_bytes,
            over: over.clone(),
        };
        let request = http::Request::from_parts(parts, body);

        let handshake = hyper::client::conn::http1::Builder::new()
            .handshake::<_, RequestBody>(TokioIo::new(stream));
        let (mut sender, conn) = match tokio::time::timeout_at(until.into(), handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                ledger.finish(None);
                return Err(Error::Hyper(e));
            }
            Err(_) => return Err(self.refuse(&ledger, &self.timeout("request"))),
        };
        let mut conn = Box::pin(conn);

        // 6. The response head, driving the connection meanwhile.
        let first_byte_until = opt(options.and_then(|o| o.first_byte_timeout));
        let send = sender.send_request(request);
        let mut send = std::pin::pin!(send);
        let mut conn_done = false;
        let head = tokio::time::timeout_at(first_byte_until.into(), async {
            let early = tokio::select! {
                r = &mut send => Some(r),
                c = conn.as_mut() => {
                    // The connection ended before the response head: the request fails.
                    conn_done = true;
                    c?;
                    None
                }
            };
            match early {
                Some(r) => r,
                None => send.await,
            }
        })
        .await;
        let response = match head {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if over.load(Ordering::Relaxed) {
                    let refusal = HttpRefusal::TooLarge {
                        what: "request body",
                        limit: self.limits.max_request_bytes,
                    };
                    return Err(self.refuse(&ledger, &refusal));
                }
                tracing::info!(target: "colony::http", plugin = %self.policy.plugin(), host = %target.origin(), error = %e, "outbound request failed");
                ledger.finish(None);
                return Err(Error::Hyper(e));
            }
            Err(_) => return Err(self.refuse(&ledger, &self.timeout("response"))),
        };
        ledger.status(response.status().as_u16());
        if response.status().is_redirection() {
            tracing::debug!(target: "colony::http", plugin = %self.policy.plugin(), host = %target.origin(), status = response.status().as_u16(), "redirect not followed (the guest sees it)");
        }

        // 7. The body, capped and timed; the connection keeps running until it ends.
        let between = options.and_then(|o| o.between_bytes_timeout);
        let response = response.map(|incoming| {
            ResponseBody {
                inner: incoming,
                ledger: ledger.clone(),
                received: 0,
                limit: self.limits.max_response_bytes,
                until: Box::pin(tokio::time::sleep_until(until.into())),
                between,
                idle: between.map(|d| Box::pin(tokio::time::sleep(d))),
                done: false,
                plugin: self.policy.plugin().clone(),
                timeout: self.timeout("response body"),
            }
            .boxed_unsync()
        });
        let io = async move {
            if conn_done {
                return Ok(());
            }
            match tokio::time::timeout_at(until.into(), conn).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Hyper(e)),
                Err(_) => Err(Error::ConnectionTimeout),
            }
        };
        Ok((
            response,
            Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
        ))
    }
}

/// A connected byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Connects to each address in turn; the first that answers wins.
async fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // Best effort: small requests go out at once.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
}

enum TlsFailure {
    Timeout,
    Failed(Error),
}

/// The client configuration, made once: rustls with ring and the system's root certificates.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "cannot load a root certificate");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no root certificates found on this system (install ca-certificates)".into(),
                );
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// TLS over `tcp`, verifying the certificate for the checked host (or IP).
async fn tls_handshake(
    target: &Target,
    tcp: TcpStream,
    until: Instant,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsFailure> {
    use rustls::pki_types::ServerName;
    let config = tls_config().map_err(|e| {
        tracing::warn!(target: "colony::http", error = %e, "outbound https unavailable");
        TlsFailure::Failed(Error::TlsCertificateError)
    })?;
    let name = match target.ip() {
        Some(ip) => ServerName::IpAddress(ip.into()),
        None => ServerName::try_from(target.host().to_owned())
            .map_err(|e| TlsFailure::Failed(Error::Tls(io::Error::other(e))))?,
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout_at(until.into(), connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(TlsFailure::Failed(Error::Tls(e))),
        Err(_) => Err(TlsFailure::Timeout),
    }
}

/// The guest's request body, counted into the audit and cut past the cap.
struct RequestBody {
    inner: WasiBody,
    ledger: Arc<Ledger>,
    sent: u64,
    limit: u64,
    over: Arc<AtomicBool>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.sent = this.sent.saturating_add(n);
                    if this.sent > this.limit {
                        this.over.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(
                            this.limit,
                        )))));
                    }
                    this.ledger.bytes_out(n);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body as the guest reads it: counted, cut past the cap, and failed at the
/// exchange's deadline or after `between` without data.
struct ResponseBody {
    inner: hyper::body::Incoming,
    ledger: Arc<Ledger>,
    received: u64,
    limit: u64,
    until: Pin<Box<Sleep>>,
    between: Option<Duration>,
    idle: Option<Pin<Box<Sleep>>>,
    done: bool,
    plugin: Arc<str>,
    timeout: HttpRefusal,
}

impl ResponseBody {
    fn fail(&mut self, refusal: &HttpRefusal) -> Error {
        self.done = true;
        tracing::warn!(target: "colony::http", plugin = %self.plugin, code = refusal.code(), reason = %refusal, "outbound response cut");
        self.ledger.finish(Some(refusal.code()));
        error_code(refusal)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.received = this.received.saturating_add(n);
                    this.ledger.bytes_in(n);
                    if this.received > this.limit {
                        let refusal = HttpRefusal::TooLarge {
                            what: "response body",
                            limit: this.limit,
                        };
                        return Poll::Ready(Some(Err(this.fail(&refusal))));
                    }
                }
                if let (Some(idle), Some(at)) = (
                    this.idle.as_mut(),
                    this.between.and_then(|d| Instant::now().checked_add(d)),
                ) {
                    idle.as_mut().reset(at.into());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                this.ledger.finish(None);
                Poll::Ready(Some(Err(if e.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    Error::Hyper(e)
                })))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.ledger.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this
                    .idle
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(cx).is_ready());
                if this.until.as_mut().poll(cx).is_ready() || idle {
                    let refusal = this.timeout.clone();
                    return Poll::Ready(Some(Err(this.fail(&refusal))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
