//! Crash tests of the live order path: a `colony run` host trading through OKX's REST API is
//! killed with SIGKILL at each point between an order's intent and its acknowledgement
//! (`COLONY_FAILPOINT`), restarted on the same data directory, and must end with every order
//! exactly once: one place request at the venue per client id, and a journal that holds the
//! venue's order id with exactly one `accepted` event.
//!
//! The venue is a mock OKX in the test process, replaying OKX's documented answers (place:
//! accepted with a new `ordId`, or `51016` for a client id it already has; order details by
//! client id: the order, or `51603` "Order does not exist"). It outlives the hosts: it is the
//! side of the exchange that survives the crash.
//!
//! | failpoint | journal at the crash | venue at the crash | recovery must |
//! |---|---|---|---|
//! | `order.after-intent` | pending, not sent | no place request | find the order unknown (51603) and send it once |
//! | `order.after-send` | pending, sent | placed | find it by client id and record the venue's id, not resend |
//! | `order.after-ack` | accepted | placed | find it as journaled and record nothing new |
//!
//! Without a crash, the same venue also fills and cancels orders: the host's poll of working
//! orders (`[orders] venue_poll_ms`) must bring each change into the journal once and to the
//! agent as an order event, and an agent's cancel must reach the venue once (OKX's
//! cancel-order answer, or `51400` for an order that is no longer working).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use colony_host::orders::journal::{Journal, JournalOrder, OrderFilter};
use colony_host::orders::{ExecKind, OrderStatus};
use colony_host::state_store::StateStore;
use colony_tests::guests;
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{COLONY, Running, colony, stderr};

const AGENT: &str = "trader";

// ------------------------------------------------------------------------------------------
// The mock OKX venue

/// One order the venue holds: as placed, then as it fills or is cancelled.
struct Held {
    ord_id: String,
    inst_id: String,
    side: String,
    ord_type: String,
    px: String,
    sz: String,
    /// OKX's `state`: `live`, `partially_filled`, `filled`, `canceled`.
    state: String,
    /// Filled so far (`accFillSz`) and at what average price (`avgPx`, "" before a fill).
    acc_fill_sz: String,
    avg_px: String,
    /// The latest fill (`fillSz`, `fillPx`; "0" and "" before one).
    fill_sz: String,
    fill_px: String,
}

/// The venue's side of the world: its orders and every request it was sent.
#[derive(Default)]
struct Book {
    /// Orders by `clOrdId`.
    orders: HashMap<String, Held>,
    /// Place requests per `clOrdId` (a duplicate counts too).
    posts: HashMap<String, u32>,
    /// Cancel requests per `clOrdId` of the order they name (by `ordId` or `clOrdId`).
    cancels: HashMap<String, u32>,
    /// Every request, as `METHOD TARGET`, for failure messages.
    requests: Vec<String>,
    next_ord_id: u64,
    /// Down: every request is answered 503 with OKX's "service temporarily unavailable".
    down: bool,
    /// How long the answer to a cancel-order takes after the order is cancelled.
    cancel_latency: Duration,
}

fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An OKX answer: `{"code","msg","data"}` plus the documented `inTime`/`outTime`.
fn envelope(code: &str, msg: &str, data: serde_json::Value) -> String {
    serde_json::json!({
        "code": code, "msg": msg, "data": data,
        "inTime": "1700000000000000", "outTime": "1700000000000100",
    })
    .to_string()
}

/// `GET /api/v5/public/instruments?instType=…`: BTC-USDT live and ETH-USDT suspended (spot),
/// BTC-USDT-SWAP live; no futures.
fn instruments(query: &str) -> String {
    let data = match query {
        "instType=SPOT" => serde_json::json!([
            {"instId": "BTC-USDT", "instType": "SPOT", "state": "live"},
            {"instId": "ETH-USDT", "instType": "SPOT", "state": "suspend"},
        ]),
        "instType=SWAP" => serde_json::json!([
            {"instId": "BTC-USDT-SWAP", "instType": "SWAP", "state": "live"},
        ]),
        _ => serde_json::json!([]),
    };
    envelope("0", "", data)
}

impl Book {
    /// The HTTP status line's code and the JSON body for one request.
    fn respond(&mut self, method: &str, target: &str, body: &str) -> (u16, String) {
        self.requests.push(format!("{method} {target}"));
        if self.down {
            let body = envelope(
                "50001",
                "Service temporarily unavailable",
                serde_json::json!([]),
            );
            return (503, body);
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match (method, path) {
            ("POST", "/api/v5/trade/order") => self.place(body),
            ("POST", "/api/v5/trade/cancel-order") => self.cancel(body),
            ("GET", "/api/v5/public/instruments") => (200, instruments(query)),
            ("GET", "/api/v5/trade/order") => {
                let params: HashMap<&str, &str> =
                    query.split('&').filter_map(|p| p.split_once('=')).collect();
                (
                    200,
                    self.detail(params.get("clOrdId").copied().unwrap_or("")),
                )
            }
            _ => (
                404,
                envelope(
                    "404",
                    &format!("no route {method} {path}"),
                    serde_json::json!([]),
                ),
            ),
        }
    }

    /// `POST /api/v5/trade/order`: the documented accepted answer, or `51016` for a client id
    /// the venue already has.
    fn place(&mut self, body: &str) -> (u16, String) {
        let Ok(order) = serde_json::from_str::<serde_json::Value>(body) else {
            return (
                200,
                envelope("50002", "JSON syntax error", serde_json::json!([])),
            );
        };
        let field = |k: &str| order[k].as_str().unwrap_or_default().to_string();
        let cl_ord_id = field("clOrdId");
        *self.posts.entry(cl_ord_id.clone()).or_default() += 1;
        if self.orders.contains_key(&cl_ord_id) {
            let item = serde_json::json!([{
                "clOrdId": cl_ord_id, "ordId": "", "tag": "",
                "sCode": "51016", "sMsg": "Duplicated clOrdId",
            }]);
            return (200, envelope("1", "All operations failed", item));
        }
        self.next_ord_id += 1;
        let ord_id = format!("{}", 2_000_000_000_000_000_000u64 + self.next_ord_id);
        let item = serde_json::json!([{
            "clOrdId": cl_ord_id, "ordId": ord_id, "tag": "",
            "ts": "1700000000000", "sCode": "0", "sMsg": "Order placed",
        }]);
        self.orders.insert(
            cl_ord_id,
            Held {
                ord_id,
                inst_id: field("instId"),
                side: field("side"),
                ord_type: field("ordType"),
                px: field("px"),
                sz: field("sz"),
                state: "live".into(),
                acc_fill_sz: "0".into(),
                avg_px: String::new(),
                fill_sz: "0".into(),
                fill_px: String::new(),
            },
        );
        (200, envelope("0", "", item))
    }

    /// `POST /api/v5/trade/cancel-order` (`{"instId", "ordId" or "clOrdId"}`): a working
    /// order is cancelled with the documented answer; one that is filled, cancelled or
    /// unknown is refused with `51400`.
    fn cancel(&mut self, body: &str) -> (u16, String) {
        let Ok(request) = serde_json::from_str::<serde_json::Value>(body) else {
            return (
                200,
                envelope("50002", "JSON syntax error", serde_json::json!([])),
            );
        };
        let ord_id = request["ordId"].as_str().unwrap_or_default();
        let cl_ord_id = request["clOrdId"].as_str().unwrap_or_default();
        let found = self
            .orders
            .iter_mut()
            .find(|(cid, o)| (!ord_id.is_empty() && o.ord_id == ord_id) || *cid == cl_ord_id);
        let Some((cid, o)) = found else {
            let item = serde_json::json!([{
                "clOrdId": cl_ord_id, "ordId": ord_id, "sCode": "51400",
                "sMsg": "Order cancellation failed as the order has been filled, canceled or does not exist",
            }]);
            return (200, envelope("1", "All operations failed", item));
        };
        *self.cancels.entry(cid.clone()).or_default() += 1;
        if !matches!(o.state.as_str(), "live" | "partially_filled") {
            let item = serde_json::json!([{
                "clOrdId": cid, "ordId": o.ord_id, "sCode": "51400",
                "sMsg": "Order cancellation failed as the order has been filled, canceled or does not exist",
            }]);
            return (200, envelope("1", "All operations failed", item));
        }
        o.state = "canceled".into();
        let item = serde_json::json!([{
            "clOrdId": cid, "ordId": o.ord_id, "sCode": "0", "sMsg": "",
        }]);
        (200, envelope("0", "", item))
    }

    /// `GET /api/v5/trade/order?instId=…&clOrdId=…`: the order's details as they stand, or
    /// `51603` when the venue never got it.
    fn detail(&self, cl_ord_id: &str) -> String {
        let Some(o) = self.orders.get(cl_ord_id) else {
            return envelope("51603", "Order does not exist", serde_json::json!([]));
        };
        let filled = o.fill_sz != "0";
        let item = serde_json::json!([{
            "accFillSz": o.acc_fill_sz, "avgPx": o.avg_px, "cTime": "1700000000000",
            "category": "normal", "ccy": "", "clOrdId": cl_ord_id, "fee": "0",
            "feeCcy": "USDT", "fillPx": o.fill_px, "fillSz": o.fill_sz,
            "fillTime": if filled { "1700000000500" } else { "" }, "instId": o.inst_id,
            "instType": "SPOT", "lever": "", "ordId": o.ord_id, "ordType": o.ord_type,
            "pnl": "0", "posSide": "net", "px": o.px, "rebate": "0", "rebateCcy": "USDT",
            "reduceOnly": "false", "side": o.side, "source": "", "state": o.state, "sz": o.sz,
            "tag": "", "tdMode": "cash", "tgtCcy": "",
            "tradeId": if filled { "242589207" } else { "" }, "uTime": "1700000000500",
        }]);
        envelope("0", "", item)
    }
}

/// A mock OKX REST venue on 127.0.0.1, served by tasks of the test's runtime.
struct MockOkx {
    url: String,
    book: Arc<Mutex<Book>>,
}

impl MockOkx {
    async fn start() -> MockOkx {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let book = Arc::new(Mutex::new(Book::default()));
        let b = Arc::clone(&book);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, Arc::clone(&b)));
            }
        });
        MockOkx { url, book }
    }

    /// Place requests the venue got for `cl_ord_id`.
    fn posts(&self, cl_ord_id: &str) -> u32 {
        lock(&self.book).posts.get(cl_ord_id).copied().unwrap_or(0)
    }

    /// The venue's `ordId` for `cl_ord_id`.
    fn ord_id(&self, cl_ord_id: &str) -> Option<String> {
        lock(&self.book)
            .orders
            .get(cl_ord_id)
            .map(|o| o.ord_id.clone())
    }

    /// Cancel requests the venue got for the order `cl_ord_id`.
    fn cancels(&self, cl_ord_id: &str) -> u32 {
        lock(&self.book)
            .cancels
            .get(cl_ord_id)
            .copied()
            .unwrap_or(0)
    }

    /// The order `cl_ord_id` fills at the venue: `acc_fill_sz` in all at average `avg_px`,
    /// the latest fill being `fill_sz` at `fill_px`; OKX's `state` becomes `state`.
    fn fill(
        &self,
        cl_ord_id: &str,
        acc_fill_sz: &str,
        avg_px: &str,
        last: (&str, &str),
        state: &str,
    ) {
        let mut book = lock(&self.book);
        let o = book
            .orders
            .get_mut(cl_ord_id)
            .expect("the venue has the order");
        o.acc_fill_sz = acc_fill_sz.into();
        o.avg_px = avg_px.into();
        (o.fill_sz, o.fill_px) = (last.0.into(), last.1.into());
        o.state = state.into();
    }

    /// Answers cancel-order requests `latency` after cancelling the order.
    fn set_cancel_latency(&self, latency: Duration) {
        lock(&self.book).cancel_latency = latency;
    }

    /// Takes the venue down (every request answered 503) or brings it back.
    fn set_down(&self, down: bool) {
        lock(&self.book).down = down;
    }

    /// Order lookups the venue got for `cl_ord_id`.
    fn queries(&self, cl_ord_id: &str) -> usize {
        let needle = "GET /api/v5/trade/order?";
        let id = format!("clOrdId={cl_ord_id}");
        lock(&self.book)
            .requests
            .iter()
            .filter(|r| r.starts_with(needle) && r.ends_with(&id))
            .count()
    }

    fn requests(&self) -> Vec<String> {
        lock(&self.book).requests.clone()
    }
}

/// Reads one HTTP/1.1 request (head, then `Content-Length` bytes of body) and answers it
/// with `Connection: close`.
async fn answer(mut stream: TcpStream, book: Arc<Mutex<Book>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    let (status, json, delay) = {
        let mut book = lock(&book);
        let (status, json) = book.respond(&method, &target, &body);
        let cancel = target == "/api/v5/trade/cancel-order";
        (
            status,
            json,
            if cancel {
                book.cancel_latency
            } else {
                Duration::ZERO
            },
        )
    };
    tokio::time::sleep(delay).await;
    let reason = match status {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// The host

/// A data directory, plugins folder (the orders agent as `trader`) and colony.toml trading
/// on the mock venue.
struct Site {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new(venue_url: &str) -> Site {
        Site::with_orders(venue_url, "")
    }

    /// A site whose `[orders]` section has `extra` (lines) too.
    fn with_orders(venue_url: &str, extra: &str) -> Site {
        Site::with_risk(venue_url, extra, "")
    }

    /// A site whose `[orders]` section has `extra` (lines) too, and `[orders.risk]` `risk`.
    /// There is no feed: BTC-USDT is defined in the configuration, and the built-in limits
    /// are off (their price collar needs a reference price a feed would give).
    fn with_risk(venue_url: &str, extra: &str, risk: &str) -> Site {
        Site::build(
            venue_url,
            &format!("instruments = [\"BTC-USDT\"]\n{extra}"),
            risk,
        )
    }

    /// A site whose `[orders]` section has `orders` (lines) and `[orders.risk]` `risk`: no
    /// feed, the built-in limits off.
    fn build(venue_url: &str, orders: &str, risk: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        colony_tests::install(&plugins, guests::ORDERS_AGENT, &format!("{AGENT}.wasm"));
        // A place waits for an fsync'd SQLite write: 5 s, so a loaded CI machine does not
        // turn it into a deadline trap. Limit orders need no market data (no collar, no age
        // limit), so there is no feed.
        let toml = format!(
            "plugins = \"plugins\"\ntick_ms = 0\n\
             [limits.agent]\ncpu_ms = 5000\n\
             [market]\nfeed = \"none\"\n\
             [orders]\nvenue = \"okx\"\nvenue_url = \"{venue_url}\"\nokx_demo = true\nvenue_timeout_ms = 5000\n\
             {orders}\
             [orders.risk]\ndefaults = false\n{risk}\
             [grants.{AGENT}]\ncapabilities = [\"orders.place:*\", \"orders.cancel:*\"]\n"
        );
        let config = dir.path().join("colony.toml");
        std::fs::write(&config, toml).unwrap();
        Site {
            data: dir.path().join("data"),
            config,
            _dir: dir,
        }
    }

    /// Starts `colony run` (stopping at `failpoint`, if any) and waits until its admin
    /// socket answers.
    fn start(&self, failpoint: Option<&str>) -> Host {
        self.start_held(failpoint, None)
    }

    /// [`start`](Self::start), with an order held at `failpoint` only until `release`
    /// exists (`COLONY_FAILPOINT_RELEASE`).
    fn start_held(&self, failpoint: Option<&str>, release: Option<&Path>) -> Host {
        let mut cmd = Command::new(COLONY);
        cmd.arg("--data-dir")
            .arg(&self.data)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("COLONY_LOG", "info")
            .env("COLONY_OKX_API_KEY", "crash-test-key")
            .env("COLONY_OKX_SECRET", "crash-test-secret")
            .env("COLONY_OKX_PASSPHRASE", "crash-test-passphrase")
            .env_remove("COLONY_FAILPOINT")
            .env_remove("COLONY_FAILPOINT_RELEASE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(point) = failpoint {
            cmd.env("COLONY_FAILPOINT", point);
        }
        if let Some(file) = release {
            cmd.env("COLONY_FAILPOINT_RELEASE", file);
        }
        let mut child = cmd.spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut host = Host {
            process: Some(Running(child)),
            lines,
            log: Vec::new(),
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = colony(&self.data, &["status"]);
            if out.status.success() {
                return host;
            }
            host.drain();
            if let Some(Ok(Some(status))) = host.process.as_mut().map(|p| p.0.try_wait()) {
                panic!("host exited with {status}:\n{}", host.log.join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "host did not come up: {}\n{}",
                stderr(&out),
                host.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a command to the agent's inbox through the host's admin socket.
    fn command(&self, text: &str) {
        let out = colony(
            &self.data,
            &["bus", "pub", &format!("agent.{AGENT}.inbox"), text],
        );
        assert!(out.status.success(), "bus pub {text:?}: {}", stderr(&out));
    }

    async fn journal(&self) -> Journal {
        let url = format!("sqlite://{}", self.data.join("orders.db").display());
        Journal::open(&url).await.unwrap()
    }

    /// The journal's row for `cid` (the journal is closed again, so nothing is held open
    /// across a crash).
    async fn order(&self, cid: &str) -> Option<JournalOrder> {
        let j = self.journal().await;
        let o = j.order(AGENT, cid).await.unwrap();
        j.close().await;
        o
    }

    /// The kinds of the journaled events of `cid`, and how many order rows it has.
    async fn events_and_rows(&self, cid: &str) -> (Vec<String>, usize) {
        let j = self.journal().await;
        let events = j
            .events(AGENT, cid)
            .await
            .unwrap()
            .into_iter()
            .map(|e| kind(&e.report.kind))
            .collect();
        let rows = j
            .orders(&OrderFilter {
                agent: Some(AGENT.into()),
                ..OrderFilter::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|o| o.state.request.client_id == cid)
            .count();
        j.close().await;
        (events, rows)
    }

    /// Waits (up to 20 s) until the journal has `cid` accepted with a venue order id.
    async fn accepted(&self, cid: &str, host: &mut Host, venue: &MockOkx) -> JournalOrder {
        self.until(cid, OrderStatus::Accepted, host, venue).await
    }

    /// Waits (up to 20 s) until the journal has `cid` in `status` with a venue order id.
    async fn until(
        &self,
        cid: &str,
        status: OrderStatus,
        host: &mut Host,
        venue: &MockOkx,
    ) -> JournalOrder {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(o) = self.order(cid).await
                && o.state.status == status
                && o.state.venue_order_id.is_some()
            {
                return o;
            }
            host.drain();
            assert!(
                Instant::now() < deadline,
                "{cid} not {status:?} in the journal: {:?}\nvenue requests: {:?}\nhost:\n{}",
                self.order(cid).await.map(|o| o.state),
                venue.requests(),
                host.log.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn kind(k: &ExecKind) -> String {
    match k {
        ExecKind::Accepted => "accepted".into(),
        ExecKind::Fill(_) => "fill".into(),
        ExecKind::Cancelled => "cancelled".into(),
        ExecKind::Expired => "expired".into(),
        ExecKind::Rejected { code, message } => format!("rejected {code} {message}"),
    }
}

/// A running `colony run` whose stderr is read line by line.
struct Host {
    process: Option<Running>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    /// Keeps what the host wrote so far (for failure messages).
    fn drain(&mut self) {
        self.log.extend(self.lines.try_iter());
    }

    /// Waits (up to 30 s) for a stderr line containing `needle`.
    fn wait_line(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!(
                    "no {needle:?} on the host's stderr ({e}):\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// SIGKILL, and the process is gone.
    fn kill(mut self) {
        let mut running = self.process.take().unwrap();
        running.0.kill().unwrap();
        let status = running.0.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "the host died of SIGKILL");
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
    }
}

/// An order of `cid` the agent places: a resting limit buy.
fn place(cid: &str) -> String {
    format!("place {cid} BTC-USDT buy limit 100 1")
}

/// The order `cid` as the running host's router has it (`colony orders list`'s data).
async fn router_row(data: &Path, cid: &str) -> serde_json::Value {
    let report = colony_host::admin::call(data, "orders", None, None)
        .await
        .unwrap()
        .expect("the host answers");
    assert!(report.ok, "{:?}", report.error);
    report.result["open"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["client_id"] == cid)
        .cloned()
        .unwrap_or_else(|| panic!("{cid} not among the open orders: {}", report.result))
}

/// Kills the host at `point` with order `cid` on its way, restarts it, and checks that the
/// order exists exactly once at the venue and in the journal, and that trading goes on.
async fn crash_at(point: &str, cid: &str) {
    let venue = MockOkx::start().await;
    let site = Site::new(&venue.url);

    let mut host = site.start(Some(point));
    site.command(&place(cid));
    host.wait_line(&format!("colony: failpoint {point} reached"));
    host.kill();

    // At the crash.
    let o = site.order(cid).await.expect("the intent is journaled");
    let (status, sent, posts) = match point {
        "order.after-intent" => (OrderStatus::Pending, false, 0),
        "order.after-send" => (OrderStatus::Pending, true, 1),
        _ => (OrderStatus::Accepted, true, 1),
    };
    assert_eq!(
        o.state.status, status,
        "{point}: journal status at the crash"
    );
    assert_eq!(o.sent, sent, "{point}: journaled as sent at the crash");
    assert_eq!(
        venue.posts(cid),
        posts,
        "{point}: place requests at the crash"
    );
    assert_eq!(o.state.request.qty, 1.into());
    assert_eq!(o.state.request.price, Some(100.into()));

    // Restart without the failpoint: start-up recovery reconciles by client id.
    let mut host = site.start(None);
    let o = site.accepted(cid, &mut host, &venue).await;
    let ord_id = venue.ord_id(cid).expect("the venue has the order");
    assert_eq!(
        venue.posts(cid),
        1,
        "{point}: the order was placed exactly once; venue requests: {:?}",
        venue.requests()
    );
    assert_eq!(o.state.venue_order_id.as_deref(), Some(ord_id.as_str()));
    assert_eq!(o.venue, "okx-demo", "the journal names the demo account");
    assert!(o.sent, "{point}: journaled as sent after recovery");
    let (events, rows) = site.events_and_rows(cid).await;
    assert_eq!(rows, 1, "{point}: one journaled order for {cid}");
    assert_eq!(events, ["accepted"], "{point}: journaled events of {cid}");
    let row = router_row(&site.data, cid).await;
    assert_eq!(row["status"], "accepted");
    assert_eq!(row["venue_order_id"], ord_id.as_str());

    // Trading goes on: a new order is placed once and journaled with the venue's id.
    let next = format!("{cid}n");
    site.command(&place(&next));
    let o = site.accepted(&next, &mut host, &venue).await;
    assert_eq!(venue.posts(&next), 1);
    assert_eq!(o.state.venue_order_id, venue.ord_id(&next));
    assert_eq!(
        site.events_and_rows(&next).await,
        (vec!["accepted".into()], 1)
    );
    // The order of the crash was not touched again.
    assert_eq!(venue.posts(cid), 1);
    assert_eq!(site.events_and_rows(cid).await.0, ["accepted"]);
    host.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_intent_sends_the_order_once_on_restart() {
    crash_at("order.after-intent", "intent1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_send_finds_the_order_at_the_venue_and_does_not_resend() {
    crash_at("order.after-send", "send1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_ack_keeps_the_one_accepted_event() {
    crash_at("order.after-ack", "ack1").await;
}

/// The venue is down when the host comes back: the order stays pending (nothing is resent
/// blindly) while start-up recovery's lookups fail, and once the venue answers again the
/// background reconciliation finds the order and records it, still placed only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_send_with_the_venue_down_at_restart_reconciles_once_it_is_back() {
    let (point, cid) = ("order.after-send", "down1");
    let venue = MockOkx::start().await;
    let site = Site::new(&venue.url);
    let mut host = site.start(Some(point));
    site.command(&place(cid));
    host.wait_line(&format!("colony: failpoint {point} reached"));
    host.kill();
    assert_eq!(venue.posts(cid), 1);

    venue.set_down(true);
    let mut host = site.start(None);
    // Two failed lookups (recovery's, then the first retry's): fewer than the five that open
    // the circuit breaker, so the next retry reaches the venue.
    let deadline = Instant::now() + Duration::from_secs(20);
    while venue.queries(cid) < 2 {
        host.drain();
        assert!(
            Instant::now() < deadline,
            "no lookups of {cid} while the venue is down: {:?}\n{}",
            venue.requests(),
            host.log.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let o = site.order(cid).await.unwrap();
    assert_eq!(
        o.state.status,
        OrderStatus::Pending,
        "unknown stays pending"
    );
    assert_eq!(
        venue.posts(cid),
        1,
        "nothing resent while the venue is down"
    );

    venue.set_down(false);
    let o = site.accepted(cid, &mut host, &venue).await;
    assert_eq!(venue.posts(cid), 1, "placed once: {:?}", venue.requests());
    assert_eq!(o.state.venue_order_id, venue.ord_id(cid));
    assert_eq!(
        site.events_and_rows(cid).await,
        (vec!["accepted".into()], 1)
    );
    host.kill();
}

/// `d` as the orders agent writes it: the WIT decimal the host hands it (the smallest scale
/// with a 64-bit mantissa, rounded to fit), printed without trailing zeros.
fn agent_text(d: Decimal) -> String {
    let mut d = d.normalize();
    while i64::try_from(d.mantissa()).is_err() && d.scale() > 0 {
        d = d.round_dp(d.scale() - 1);
    }
    d.normalize().to_string()
}

/// The agent's state `key`, as text ("" when unset).
async fn agent_state(store: &StateStore, key: &str) -> String {
    store
        .get(AGENT, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

/// The journaled fills of `cid` as (qty, price), and the kinds of all its events.
async fn fills_and_kinds(site: &Site, cid: &str) -> (Vec<(Decimal, Decimal)>, Vec<String>) {
    let j = site.journal().await;
    let events = j.events(AGENT, cid).await.unwrap();
    j.close().await;
    let fills = events
        .iter()
        .filter_map(|e| match &e.report.kind {
            ExecKind::Fill(f) => Some((f.qty, f.price)),
            _ => None,
        })
        .collect();
    (fills, events.iter().map(|e| kind(&e.report.kind)).collect())
}

/// A live host that is not crashed: the background poll of working orders (every 200 ms)
/// brings the venue's fills and cancels into the journal and to the agent. `k1` fills in two
/// steps at the venue; `k2` is cancelled by the agent through the venue's cancel-order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_venue_fills_and_cancels_reach_the_journal_and_the_agent() {
    let venue = MockOkx::start().await;
    let site = Site::with_orders(&venue.url, "venue_poll_ms = 200\n");
    let mut host = site.start(None);
    site.command(&place("k1"));
    site.command(&place("k2"));
    site.accepted("k1", &mut host, &venue).await;
    site.accepted("k2", &mut host, &venue).await;

    // Part of k1 fills: 0.4 at 100.
    venue.fill("k1", "0.4", "100", ("0.4", "100"), "partially_filled");
    let o = site
        .until("k1", OrderStatus::PartiallyFilled, &mut host, &venue)
        .await;
    assert_eq!(o.state.filled_qty, dec("0.4"));
    assert_eq!(o.state.filled_notional, dec("40.0"));
    let (fills, kinds) = fills_and_kinds(&site, "k1").await;
    assert_eq!(kinds, ["accepted", "fill"]);
    assert_eq!(fills, [(dec("0.4"), dec("100"))]);

    // The rest fills: 1 in all at an average of 99.8, so the new 0.6 went at
    // (99.8 × 1 − 100 × 0.4) / 0.6 = 99.666…, as exact as a 96-bit decimal gets.
    venue.fill("k1", "1", "99.8", ("0.6", "99.6"), "filled");
    let o = site
        .until("k1", OrderStatus::Filled, &mut host, &venue)
        .await;
    let second = dec("99.66666666666666666666666667");
    assert_eq!(
        (dec("99.8") * dec("1") - dec("40.0")) / dec("0.6"),
        second,
        "the router's formula"
    );
    assert_eq!(o.state.filled_qty, dec("1"));
    assert_eq!(o.state.filled_notional, dec("40.0") + dec("0.6") * second);
    let (fills, kinds) = fills_and_kinds(&site, "k1").await;
    assert_eq!(kinds, ["accepted", "fill", "fill"]);
    assert_eq!(fills, [(dec("0.4"), dec("100")), (dec("0.6"), second)]);

    // The agent cancels k2: one cancel-order request, then the journal has it cancelled. The
    // venue's answer takes 500 ms, so polls see the order `canceled` before the host has the
    // cancel's own answer: the order is cancelled once, not once per report.
    venue.set_cancel_latency(Duration::from_millis(500));
    site.command("cancel k2");
    site.until("k2", OrderStatus::Cancelled, &mut host, &venue)
        .await;
    // Past the cancel's answer and a few polls more, nothing was recorded twice.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (fills, kinds) = fills_and_kinds(&site, "k2").await;
    assert!(fills.is_empty());
    assert_eq!(kinds, ["accepted", "cancelled"], "k2's journaled events");
    assert_eq!(
        fills_and_kinds(&site, "k1").await.1.len(),
        3,
        "k1 unchanged"
    );
    let requests = venue.requests();
    assert_eq!(venue.cancels("k2"), 1, "one cancel of k2: {requests:?}");
    assert_eq!(venue.cancels("k1"), 0, "no cancel of k1: {requests:?}");
    assert_eq!(venue.posts("k1"), 1, "k1 placed once: {requests:?}");
    assert_eq!(venue.posts("k2"), 1, "k2 placed once: {requests:?}");
    let cancels = requests
        .iter()
        .filter(|r| r.starts_with("POST /api/v5/trade/cancel-order"))
        .count();
    assert_eq!(cancels, 1, "{requests:?}");

    // The agent saw every change as an order event (and its cancel call succeeded).
    let store = StateStore::open(&site.data.join("state.db"), Default::default())
        .await
        .unwrap();
    let avg = (dec("40.0") + dec("0.6") * second) / dec("1");
    let expected = [
        "k1 partially-filled 0.4 100 0.4@100/0 -".to_string(),
        format!(
            "k1 filled 1 {} 0.6@{}/0 -",
            agent_text(avg),
            agent_text(second)
        ),
        "k2 cancelled 0 - - -".to_string(),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = agent_state(&store, "events").await;
        let lines: Vec<&str> = events.lines().collect();
        if expected.iter().all(|e| lines.contains(&e.as_str())) {
            break events;
        }
        host.drain();
        assert!(
            Instant::now() < deadline,
            "the agent's events lack {expected:?}:\n{events}\nhost:\n{}",
            host.log.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for cid in ["k1", "k2"] {
        let accepted = format!("{cid} accepted 0 - - -");
        assert_eq!(
            events.lines().filter(|l| *l == accepted).count(),
            1,
            "{events}"
        );
    }
    assert_eq!(events.lines().count(), 5, "one event per change:\n{events}");
    assert_eq!(agent_state(&store, "cancel.k2").await, "ok");

    // The venue never failed: the breaker is closed.
    let out = colony(&site.data, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let breaker = &status["orders"]["breaker"];
    assert!(breaker.is_object(), "{status}");
    assert_eq!(breaker["state"], "closed", "{status}");
    assert_eq!(breaker["consecutive_failures"], 0, "{status}");
    assert_eq!(status["orders"]["counters"]["fills"], 2, "{status}");
    assert_eq!(status["orders"]["open_orders"], 0, "{status}");
    host.kill();
}

/// Waits (up to 20 s) until the journal has `cid` in `status` (with or without a venue id).
async fn journal_status(
    site: &Site,
    cid: &str,
    status: OrderStatus,
    host: &mut Host,
) -> JournalOrder {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = site.order(cid).await;
        if let Some(o) = o.filter(|o| o.state.status == status) {
            return o;
        }
        host.drain();
        assert!(
            Instant::now() < deadline,
            "{cid} not {status:?} in the journal: {:?}\nhost:\n{}",
            site.order(cid).await.map(|o| o.state),
            host.log.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 20 s) until the agent has stored `key`, and returns it.
async fn agent_answer(site: &Site, key: &str, host: &mut Host) -> String {
    let store = StateStore::open(&site.data.join("state.db"), Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = agent_state(&store, key).await;
        if !v.is_empty() {
            return v;
        }
        host.drain();
        assert!(
            Instant::now() < deadline,
            "the agent stored no {key:?}; host:\n{}",
            host.log.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The kill switch has no window: an order that passed risk and is held between its
/// journaled intent and its send (`order.after-intent`, released by a file) is in the set
/// the switch stops, and the send re-checks the switch, so nothing reaches the venue after
/// `colony orders kill-switch on`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_while_an_order_waits_to_be_sent_sends_nothing() {
    let venue = MockOkx::start().await;
    let site = Site::new(&venue.url);
    let release = site.data.with_file_name("release-failpoint");
    let point = "order.after-intent";
    let mut host = site.start_held(Some(point), Some(&release));
    site.command(&place("w1"));
    host.wait_line(&format!("colony: failpoint {point} reached"));
    let o = site.order("w1").await.expect("the intent is journaled");
    assert_eq!((o.state.status, o.sent), (OrderStatus::Pending, false));

    let out = colony(&site.data, &["orders", "kill-switch", "on"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 working orders cancelled"), "{said}");
    std::fs::write(&release, b"").unwrap();
    host.wait_line(&format!("colony: failpoint {point} released"));

    let o = journal_status(&site, "w1", OrderStatus::Cancelled, &mut host).await;
    assert!(!o.sent, "never marked sent");
    assert_eq!(
        venue.posts("w1"),
        0,
        "venue requests: {:?}",
        venue.requests()
    );
    let trade: Vec<String> = venue
        .requests()
        .into_iter()
        .filter(|r| r.contains("/api/v5/trade/"))
        .collect();
    assert!(
        trade.is_empty(),
        "only the instrument lists were asked for: {trade:?}"
    );
    let (_, kinds) = fills_and_kinds(&site, "w1").await;
    assert_eq!(kinds, ["cancelled"]);
    let events = agent_answer(&site, "events", &mut host).await;
    assert!(
        events.lines().any(|l| l.starts_with("w1 cancelled")),
        "{events}"
    );

    // Switched off, trading goes on: the next order is placed once.
    let out = colony(&site.data, &["orders", "kill-switch", "off"]);
    assert!(out.status.success(), "{}", stderr(&out));
    site.command(&place("w2"));
    site.accepted("w2", &mut host, &venue).await;
    assert_eq!((venue.posts("w1"), venue.posts("w2")), (0, 1));
    host.kill();
}

/// A restart rebuilds the risk state from the journal: after a SIGKILL with a position of 1
/// open and a realised loss of 60 (limit 50), the restarted host refuses the order that adds
/// risk (`risk.daily-loss`) and lets the one that reduces the position through; the refusal
/// is in the journal, and `colony orders list --rejected` shows it with no host running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_daily_loss_limit_still_holds_and_refusals_are_journaled() {
    let venue = MockOkx::start().await;
    let site = Site::with_risk(
        &venue.url,
        "venue_poll_ms = 200\n",
        "max_daily_loss = \"50\"\n",
    );
    let mut host = site.start(None);
    site.command("place l1 BTC-USDT buy limit 100 2");
    site.accepted("l1", &mut host, &venue).await;
    venue.fill("l1", "2", "100", ("2", "100"), "filled");
    site.until("l1", OrderStatus::Filled, &mut host, &venue)
        .await;
    site.command("place l2 BTC-USDT sell limit 40 1");
    site.accepted("l2", &mut host, &venue).await;
    venue.fill("l2", "1", "40", ("1", "40"), "filled");
    site.until("l2", OrderStatus::Filled, &mut host, &venue)
        .await;
    host.kill();

    let mut host = site.start(None);
    site.command("place l3 BTC-USDT buy limit 100 1");
    let ack = agent_answer(&site, "ack.l3", &mut host).await;
    assert!(ack.starts_with("rejected risk.daily-loss "), "{ack}");
    assert!(
        ack.contains("-60"),
        "the realised loss is the journal's: {ack}"
    );
    site.command("place l4 BTC-USDT sell limit 100 1");
    assert_eq!(agent_answer(&site, "ack.l4", &mut host).await, "submitted");
    site.accepted("l4", &mut host, &venue).await;
    assert_eq!(venue.posts("l3"), 0);
    // The refusal is written behind; wait for it, then crash again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = site.journal().await;
        let refused = j.rejections(&OrderFilter::default()).await.unwrap();
        j.close().await;
        if refused.iter().any(|r| r.state.request.client_id == "l3") {
            break;
        }
        assert!(Instant::now() < deadline, "l3's refusal is not journaled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.kill();

    let out = colony(&site.data, &["orders", "list", "--rejected", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = listed["rejected"].as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["client_id"], "l3");
    assert_eq!(rows[0]["reject_code"], "risk.daily-loss");
    assert_eq!(rows[0]["status"], "rejected");
    assert!(
        rows[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("daily loss limit 50"),
        "{listed}"
    );
}

/// With no feed and no `[orders] instruments`, a live venue's own list defines what may be
/// ordered: it is asked for before the first order goes out; an instrument it lists live is
/// sent, one it lists suspended is refused (`risk.unknown-instrument`); `colony status` says
/// how many it listed. And the cancel-rate window outlives a crash: two cancels (the limit
/// per minute) before it, and the first cancel after the restart is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_venue_lists_its_instruments_and_the_cancel_rate_outlives_a_crash() {
    let venue = MockOkx::start().await;
    let site = Site::build(&venue.url, "", "max_cancels_per_min = 2\n");
    let mut host = site.start(None);
    site.command("place i1 BTC-USDT buy limit 100 1");
    assert_eq!(agent_answer(&site, "ack.i1", &mut host).await, "submitted");
    site.accepted("i1", &mut host, &venue).await;
    site.command("place i2 ETH-USDT buy limit 100 1");
    let ack = agent_answer(&site, "ack.i2", &mut host).await;
    assert!(
        ack.starts_with("rejected risk.unknown-instrument "),
        "{ack}"
    );
    assert_eq!(venue.posts("i2"), 0);
    let requests = venue.requests();
    let asked = requests
        .iter()
        .position(|r| r == "GET /api/v5/public/instruments?instType=SPOT");
    let sent = requests
        .iter()
        .position(|r| r.starts_with("POST /api/v5/trade/order"));
    assert!(
        matches!((asked, sent), (Some(a), Some(s)) if a < s),
        "instruments asked for before the first order: {requests:?}"
    );
    let out = colony(&site.data, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("venue instruments: 2 listed by okx-demo"),
        "{text}"
    );

    site.command("place i3 BTC-USDT buy limit 100 1");
    site.accepted("i3", &mut host, &venue).await;
    for cid in ["i1", "i3"] {
        site.command(&format!("cancel {cid}"));
        assert_eq!(
            agent_answer(&site, &format!("cancel.{cid}"), &mut host).await,
            "ok"
        );
    }
    // The cancel requests are written behind; wait for them, then crash.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = site.journal().await;
        let cancels = j.cancel_requests_since("okx-demo", 0).await.unwrap();
        j.close().await;
        if cancels.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cancels not journaled: {cancels:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.kill();

    let mut host = site.start(None);
    site.command("place i4 BTC-USDT buy limit 100 1");
    site.accepted("i4", &mut host, &venue).await;
    site.command("cancel i4");
    let answer = agent_answer(&site, "cancel.i4", &mut host).await;
    assert!(answer.starts_with("err limit-exceeded"), "{answer}");
    assert!(answer.contains("cancel rate"), "{answer}");
    assert_eq!(venue.cancels("i4"), 0);
}
