//! The local admin endpoint of a running host: a Unix socket `DATA_DIR/admin.sock` speaking
//! one JSON request and one JSON response per line. Every request carries the token from
//! `DATA_DIR/admin.token` (mode 0600, new at every start), so only a user who can read the
//! data directory can drive the host.
//!
//! Requests: `{"token": T, "op": "status" | "plugins" | "tools" | "invoke" | "sync" |
//! "grants" | "grant" | "revoke" | "approve" | "publish" | "subscribe" | "orders" |
//! "kill-switch" | "approvals" | "approve-order" | "deny-order" | "tool-register" |
//! "tool-unregister" | "tool-list" | "tool-not-loaded" | "agent-sleep" | "agent-wake" |
//! "agent-release" | "agent-pause" | "agent-resume", "name": N, "args":
//! JSON-text, capability, payload or (`tool-register`) the path of a component file the
//! host reads}`. `subscribe` (name = pattern) answers
//! once, then streams one JSON line per message until the client disconnects. Responses: `{"ok": true, "result": …}` or
//! `{"ok": false, "error": "…"}`.
//!
//! Who asks is taken from the socket's peer credentials (`SO_PEERCRED`): the uid, named from
//! `/etc/passwd` (else `uid:N`), is the actor the audit records. An `actor` field a client
//! sends (older clients did) is ignored.
//!
//! | limit | value | why |
//! |---|---|---|
//! | connections at once | [`MAX_CONNECTIONS`] | each connection holds buffers and a task; more are closed at once |
//! | time to a first valid request | [`AUTH_TIMEOUT`] | an idle unauthenticated connection holds a slot |
//! | one request line | [`MAX_REQUEST`] | counted per request, so a long-lived client is never cut mid-request |
//! | accept failing (`EMFILE`, `ENFILE`, …) | back off [`ACCEPT_BACKOFF`] | retrying at once spins a core at the descriptor limit |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::supervisor::Host;

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 2 * 1024 * 1024;
/// Admin connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay open before its first request carrying the right token.
pub const AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors, …).
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// A request to the admin endpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The admin token.
    pub token: String,
    /// The operation.
    pub op: String,
    /// Plugin or tool name, for operations that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON arguments as text, for `invoke`; the capability for `grant`/`revoke`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Ignored: older clients sent their `$USER` here; the host takes who asks from the
    /// socket's peer credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// A response from the admin endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// Whether the operation succeeded.
    pub ok: bool,
    /// The result on success.
    #[serde(default)]
    pub result: serde_json::Value,
    /// The reason on failure.
    #[serde(default)]
    pub error: Option<String>,
}

/// Why the admin endpoint was not served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another host answers on the socket of this data directory.
    #[error("another host is already running with data directory {}", .0.display())]
    AlreadyRunning(PathBuf),
    /// The token file or the socket could not be written, removed or bound.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a request to a running host ([`call`]) got no response. A cause already in a
/// variant's message is not also its [`std::error::Error::source`], so a chain printed with
/// `{:#}` does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A host answers on the socket but its token file could not be read.
    #[error("cannot read admin token in {}: {error}", data_dir.display())]
    Token {
        /// The data directory.
        data_dir: PathBuf,
        /// Why the token was not read.
        error: std::io::Error,
    },
    /// The request could not be sent or the response read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The response is not the JSON of a [`Response`].
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The host closed the connection before it answered.
    #[error("the host closed the admin connection")]
    Closed,
}

/// Paths of the endpoint within a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Path of the token file within a data directory.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Serves the admin endpoint until the task is dropped. Writes a fresh token first.
pub async fn serve(host: Arc<Host>) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let data_dir = host.config().data_dir.clone();
    let token = new_token()?;
    write_private(&token_path(&data_dir), token.as_bytes())?;
    let sock = socket_path(&data_dir);
    if sock.exists() {
        // A live host answers; a stale socket from a crashed host does not.
        if UnixStream::connect(&sock).await.is_ok() {
            return Err(ServeError::AlreadyRunning(data_dir));
        }
        std::fs::remove_file(&sock)?;
    }
    let listener = UnixListener::bind(&sock)?;
    set_mode(&sock, 0o600)?;
    tracing::info!(socket = %sock.display(), "admin endpoint listening");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: retrying at once would spin.
                    tracing::warn!(error = %e, "admin socket: accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "admin socket: too many connections; closing a new one"
                );
                drop(stream);
                continue;
            };
            let host = host.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = serve_one(stream, &host, &token).await {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            });
        }
    }))
}

/// Who is on the other end of `stream`: `admin:NAME` from the peer's uid.
fn peer_actor(stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(cred) => format!("admin:{}", user_name(cred.uid())),
        Err(_) => "admin:unknown".to_string(),
    }
}

/// The name of `uid` in `/etc/passwd`, else `uid:N`.
pub fn user_name(uid: u32) -> String {
    let passwd = crate::files::read_regular_text(Path::new("/etc/passwd"), 16 * 1024 * 1024).ok();
    passwd
        .as_deref()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?.parse::<u32>().ok()?;
                (id == uid && plain_user_name(name)).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// A user name safe to print and record as is (else the uid is used).
fn plain_user_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'$'))
}

/// The user this process runs as (for records written with no host running).
pub fn current_user() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    user_name(unsafe { libc::geteuid() })
}

/// Reads one request line of at most [`MAX_REQUEST`] bytes (without the newline); `None` at
/// the end of the stream. The cap is per request: a client may send any number of them.
async fn read_request(
    read: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = (&mut *read)
        .take(MAX_REQUEST as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_REQUEST {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("request over the {MAX_REQUEST}-byte limit"),
        ));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "request is not UTF-8"))
}

async fn serve_one(stream: UnixStream, host: &Host, token: &str) -> std::io::Result<()> {
    let actor = peer_actor(&stream);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut authenticated = false;
    // One deadline for the whole unauthenticated phase: bad requests do not extend it.
    let auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    loop {
        let line = if authenticated {
            read_request(&mut read).await?
        } else {
            match tokio::time::timeout_at(auth_deadline, read_request(&mut read)).await {
                Ok(line) => line?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no authenticated request in time",
                    ));
                }
            }
        };
        let Some(line) = line else {
            return Ok(());
        };
        let response = match serde_json::from_str::<Request>(&line) {
            Err(e) => failure(format!("malformed request: {e}")),
            Ok(req) if !constant_time_eq(req.token.as_bytes(), token.as_bytes()) => {
                failure("bad admin token".into())
            }
            Ok(req) if req.op == "subscribe" => {
                // Streams until the operator disconnects; then the subscription ends.
                return tail(host, req, &actor, &mut write).await;
            }
            Ok(req) => {
                authenticated = true;
                handle(host, req, &actor).await
            }
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        write.write_all(&out).await?;
    }
}

/// `subscribe`: one JSON line per message on the pattern, until the client goes away.
async fn tail(
    host: &Host,
    req: Request,
    actor: &str,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let pattern = req.name.unwrap_or_default();
    let user = actor.strip_prefix("admin:").unwrap_or(actor);
    let owner = format!("operator:{user}#{}", crate::bus::new_id());
    let mailbox = host
        .bus()
        .mailbox(&owner, crate::bus::DEFAULT_MAILBOX_CAPACITY);
    let first = match host.bus().subscribe(&owner, &pattern, &mailbox) {
        Ok(_) => Response {
            ok: true,
            result: serde_json::json!({ "subscribed": pattern }),
            error: None,
        },
        Err(e) => failure(e.to_string()),
    };
    let subscribed = first.ok;
    let mut out = serde_json::to_vec(&first).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await?;
    let result = async {
        while subscribed && let Some(env) = mailbox.recv().await {
            let line = serde_json::json!({
                "subject": env.subject,
                "sender": &*env.sender,
                "id": env.id,
                "headers": env.headers,
                "payload": String::from_utf8_lossy(&env.payload),
            });
            let mut out = serde_json::to_vec(&line).unwrap_or_default();
            out.push(b'\n');
            write.write_all(&out).await?;
        }
        Ok(())
    }
    .await;
    host.bus().unsubscribe_all(&owner);
    mailbox.close();
    result
}

async fn handle(host: &Host, req: Request, actor: &str) -> Response {
    let actor = actor.to_string();
    let json = |v: Result<serde_json::Value, serde_json::Error>| match v {
        Ok(result) => Response {
            ok: true,
            result,
            error: None,
        },
        Err(e) => failure(e.to_string()),
    };
    match req.op.as_str() {
        "status" | "plugins" => {
            let plugins = host.plugins().await;
            let rejected = host.rejected().await;
            json(serde_json::to_value(serde_json::json!({
                "plugins_dir": host.config().plugins_dir,
                "plugins": plugins,
                "rejected": rejected,
                "audit_dropped": host.audit().writer().dropped(),
                "bus": host.bus().stats(),
                "nats": host.nats_status(),
                "market": host.market().map(|m| serde_json::json!({
                    "venue": m.venue(),
                    "published": m.published(),
                    "issues": m.issues(),
                    "symbols": m.statuses(),
                })),
                "orders": host.orders().map(|o| o.status()),
            })))
        }
        "tools" => json(serde_json::to_value(host.tools().await)),
        "publish" => {
            let (Some(subject), Some(payload)) = (req.name, req.args) else {
                return failure("publish needs a subject and a payload".into());
            };
            let user = actor.strip_prefix("admin:").unwrap_or(&actor);
            let sender: std::sync::Arc<str> = format!("operator:{user}").into();
            let env = crate::bus::Envelope::new(sender, subject, payload.into_bytes());
            match host.bus().publish(env) {
                Ok(r) => json(Ok(serde_json::json!({
                    "delivered": r.delivered,
                    "dropped": r.dropped,
                    "refused": r.refused,
                }))),
                Err(e) => failure(e.to_string()),
            }
        }
        "grants" => json(serde_json::to_value(host.grants().await)),
        "grant" | "revoke" | "approve" => {
            let Some(plugin) = req.name else {
                return failure(format!("{} needs a plugin name", req.op));
            };
            if let Err(e) = colony_caps::manifest::check_name(&plugin) {
                return failure(format!("{}: plugin name {e}", req.op));
            }
            let result = match (req.op.as_str(), req.args) {
                ("grant", Some(cap)) => host
                    .grant(&plugin, &cap, &actor)
                    .await
                    .map(|()| serde_json::Value::Null),
                ("revoke", Some(cap)) => host
                    .revoke(&plugin, &cap, &actor)
                    .await
                    .map(|()| serde_json::Value::Null),
                ("approve", _) => host
                    .approve(&plugin, &actor)
                    .await
                    .map(serde_json::Value::String),
                (op, None) => return failure(format!("{op} needs a capability")),
                (op, _) => return failure(format!("unknown op {op:?}")),
            };
            match result {
                Ok(result) => Response {
                    ok: true,
                    result,
                    error: None,
                },
                Err(e) => failure(e.to_string()),
            }
        }
        "orders" => match host.orders() {
            Some(o) => json(serde_json::to_value(o.report())),
            None => failure("this host has no order venue".into()),
        },
        "approvals" => match host.orders() {
            Some(o) => json(serde_json::to_value(o.approvals())),
            None => failure("this host has no order venue".into()),
        },
        "kill-switch" | "approve-order" | "deny-order" => {
            let Some(arg) = req.args else {
                return failure(format!("{} needs an argument", req.op));
            };
            let result = if req.op == "kill-switch" {
                host.kill_switch(req.name.as_deref(), &arg, &actor).await
            } else {
                host.decide_approval(&arg, req.op == "approve-order", &actor)
                    .await
            };
            match result {
                Ok(v) => Response {
                    ok: true,
                    result: v,
                    error: None,
                },
                Err(e) => failure(e.to_string()),
            }
        }
        "agent-sleep" | "agent-wake" | "agent-release" | "agent-pause" | "agent-resume" => {
            let Some(name) = req.name else {
                return failure(format!("{} needs an agent name", req.op));
            };
            if !(req.op == "agent-sleep" && name == "*")
                && let Err(e) = colony_caps::manifest::check_name(&name)
            {
                return failure(format!("{}: agent name {e}", req.op));
            }
            let result = match req.op.as_str() {
                "agent-sleep" if name == "*" => Ok(serde_json::json!({
                    "changed": host.sleep_all().await,
                })),
                "agent-sleep" => host
                    .sleep_agent(&name)
                    .await
                    .map(|changed| serde_json::json!({ "changed": changed })),
                "agent-wake" => host
                    .wake_agent(&name)
                    .await
                    .map(|()| serde_json::json!({ "changed": true })),
                "agent-pause" => host
                    .pause_agent(&name, &actor)
                    .await
                    .map(|changed| serde_json::json!({ "changed": changed })),
                "agent-resume" => host
                    .resume_agent(&name, &actor)
                    .await
                    .map(|changed| serde_json::json!({ "changed": changed })),
                _ => host
                    .release_agent(&name, &actor)
                    .await
                    .map(|changed| serde_json::json!({ "changed": changed })),
            };
            match result {
                Ok(v) => Response {
                    ok: true,
                    result: v,
                    error: None,
                },
                Err(e) => failure(e.to_string()),
            }
        }
        "sync" => json(serde_json::to_value(host.sync().await)),
        "invoke" => {
            let (Some(name), Some(args)) = (req.name, req.args) else {
                return failure("invoke needs name and args".into());
            };
            match host.call_tool(&name, &args).await {
                Ok(out) => Response {
                    ok: true,
                    result: serde_json::Value::String(out),
                    error: None,
                },
                Err(e) => failure(e.to_string()),
            }
        }
        "tool-list" => json(serde_json::to_value(host.registered_tools().list())),
        "tool-not-loaded" => json(serde_json::to_value(host.registered_tools().not_loaded())),
        "tool-register" => {
            let Some(path) = req.args else {
                return failure("tool-register needs the path of a component file".into());
            };
            let bytes = match read_component(Path::new(&path)) {
                Ok(b) => b,
                Err(e) => return failure(e),
            };
            match host.register_tool(&bytes, &actor).await {
                Ok(t) => json(Ok(serde_json::json!({
                    "name": t.name,
                    "version": t.version,
                    "digest": t.digest,
                }))),
                Err(e) => failure(e.to_string()),
            }
        }
        "tool-unregister" => {
            let Some(spec) = req.name else {
                return failure("tool-unregister needs NAME or NAME@VERSION".into());
            };
            match host.unregister_tool(&spec, &actor).await {
                Ok(removed) => json(serde_json::to_value(removed)),
                Err(e) => failure(e.to_string()),
            }
        }
        other => failure(format!("unknown op {other:?}")),
    }
}

/// Reads a component file for `tool-register`: a regular file of at most the plugin size
/// limit (a FIFO, a device or a symlink to one is refused without blocking).
pub fn read_component(path: &Path) -> Result<Vec<u8>, String> {
    crate::files::read_regular(path, crate::plugin::MAX_FILE_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn failure(error: String) -> Response {
    Response {
        ok: false,
        result: serde_json::Value::Null,
        error: Some(error),
    }
}

/// Sends one request to the host serving `data_dir`. `Ok(None)` means no host is running.
pub async fn call(
    data_dir: &Path,
    op: &str,
    name: Option<String>,
    args: Option<String>,
) -> Result<Option<Response>, CallError> {
    let Ok(stream) = UnixStream::connect(socket_path(data_dir)).await else {
        return Ok(None);
    };
    let token =
        std::fs::read_to_string(token_path(data_dir)).map_err(|error| CallError::Token {
            data_dir: data_dir.to_path_buf(),
            error,
        })?;
    let req = Request {
        token: token.trim().to_string(),
        op: op.into(),
        name,
        args,
        actor: None,
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&req)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut lines = BufReader::new(read).lines();
    let reply = lines.next_line().await?.ok_or(CallError::Closed)?;
    Ok(Some(serde_json::from_str(&reply)?))
}

fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    set_mode(&tmp, 0o600)?;
    std::fs::rename(&tmp, path)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// [`handle`] for the property tests of `fuzz_tests`, which drive every operation of a real
/// host with hostile arguments.
#[cfg(test)]
pub(crate) async fn handle_for_fuzz(host: &Host, req: Request) -> Response {
    handle(host, req, "admin:fuzz").await
}
