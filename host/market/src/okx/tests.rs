//! Pure tests on OKX's documented messages, then the feed against a WebSocket server on
//! 127.0.0.1 that replays OKX-format frames built from them. Every wait has a timeout.

use super::frame::{millis, size};
use super::session::{MIN_BACKOFF, next_backoff, tls_connector};
use super::*;
use crate::types::{Book, MarketEvent, QualityIssue, Quote};
use crate::types::{BookLevel, Side, Timestamp, Trade, ValueRule};
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const TICKERS: &str = include_str!("../okx_samples/ws_tickers.json");
const TRADES: &str = include_str!("../okx_samples/ws_trades.json");
const BOOKS_SNAPSHOT: &str = include_str!("../okx_samples/ws_books_snapshot.json");
const BOOKS_UPDATE: &str = include_str!("../okx_samples/ws_books_update.json");
const BBO_TBT: &str = include_str!("../okx_samples/ws_bbo_tbt.json");

/// 1597026383085 ms, the samples' time.
const SAMPLE_TS: Timestamp = 1_597_026_383_085_000_000;

/// Long enough for anything on loopback, short enough that a broken test fails quickly.
const WAIT: Duration = Duration::from_secs(5);

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn lv(price: &str, size: &str) -> BookLevel {
    BookLevel {
        price: d(price),
        size: d(size),
    }
}

fn btc() -> Arc<str> {
    "BTC-USDT".into()
}

/// A `books` frame on the sample snapshot's model, with these levels and ids.
fn books_frame(
    action: &str,
    bids: &[(&str, &str)],
    asks: &[(&str, &str)],
    prev: i64,
    seq: i64,
) -> String {
    let mut frame: Value = serde_json::from_str(BOOKS_SNAPSHOT).unwrap();
    let level = |(px, sz): &(&str, &str)| json!([px, sz, "0", "1"]);
    frame["action"] = json!(action);
    frame["data"][0]["bids"] = Value::Array(bids.iter().map(level).collect());
    frame["data"][0]["asks"] = Value::Array(asks.iter().map(level).collect());
    frame["data"][0]["prevSeqId"] = json!(prev);
    frame["data"][0]["seqId"] = json!(seq);
    frame.to_string()
}

/// The update of test (a): removes the best ask, adds one just above the best bid's price,
/// resizes the best bid and adds a bid level.
fn sample_update() -> String {
    books_frame(
        "update",
        &[("8476.97", "200"), ("8476.5", "4")],
        &[("8476.98", "0"), ("8476.99", "3")],
        123456,
        123457,
    )
}

fn ticker_frame(bid: &str) -> String {
    let mut frame: Value = serde_json::from_str(TICKERS).unwrap();
    frame["data"][0]["bidPx"] = json!(bid);
    frame.to_string()
}

fn book_messages(text: &str) -> Vec<BookMessage> {
    match parse_frame(text).unwrap() {
        Frame::Books(books) => books,
        other => panic!("not a book frame: {other:?}"),
    }
}

fn one_book(text: &str) -> BookMessage {
    let mut books = book_messages(text);
    assert_eq!(books.len(), 1);
    books.remove(0)
}

// -- parsing -------------------------------------------------------------------------------

#[test]
fn parses_the_tickers_sample_exactly() {
    let Frame::Quotes(quotes) = parse_frame(TICKERS).unwrap() else {
        panic!("not quotes");
    };
    assert_eq!(
        quotes,
        vec![Quote {
            symbol: btc(),
            bid: d("8888.88"),
            bid_size: d("5"),
            ask: d("9999.99"),
            ask_size: d("11"),
            ts: SAMPLE_TS,
        }]
    );
    // Exact: the printed scale survives.
    assert_eq!(quotes[0].bid.to_string(), "8888.88");
}

#[test]
fn parses_the_trades_sample_exactly() {
    let Frame::Trades(trades) = parse_frame(TRADES).unwrap() else {
        panic!("not trades");
    };
    assert_eq!(
        trades,
        vec![Trade {
            symbol: "BTC-USD".into(),
            price: d("42219.9"),
            size: d("0.12060306"),
            aggressor: Side::Buy,
            ts: 1_630_048_897_897_000_000,
        }]
    );
    assert_eq!(trades[0].size.to_string(), "0.12060306");
}

#[test]
fn parses_the_bbo_sample() {
    assert_eq!(
        parse_frame(BBO_TBT).unwrap(),
        Frame::Quotes(vec![Quote {
            symbol: btc(),
            bid: d("8476.97"),
            bid_size: d("256"),
            ask: d("8476.98"),
            ask_size: d("415"),
            ts: SAMPLE_TS,
        }])
    );
}

#[test]
fn parses_the_books_samples() {
    let snapshot = one_book(BOOKS_SNAPSHOT);
    assert_eq!(snapshot.channel, Channel::Books);
    assert_eq!(snapshot.action, BookAction::Snapshot);
    assert_eq!(
        (snapshot.prev_seq_id, snapshot.seq_id),
        (Some(-1), Some(123456))
    );
    assert_eq!(snapshot.bids.len(), 8);
    assert_eq!(snapshot.asks.len(), 8);
    assert_eq!(snapshot.bids[0], lv("8476.97", "256"));
    assert_eq!(snapshot.asks[7], lv("8506.96", "100"));
    assert_eq!(snapshot.ts, SAMPLE_TS);

    let update = one_book(BOOKS_UPDATE);
    assert_eq!(update.action, BookAction::Update);
    assert_eq!(
        (update.prev_seq_id, update.seq_id),
        (Some(123456), Some(123457))
    );
}

#[test]
fn books5_pushes_are_snapshots_without_ids() {
    let frame = json!({
        "arg": {"channel": "books5", "instId": "ETH-USDT"},
        "data": [{"asks": [["2000.1", "1.5", "0", "3"]], "bids": [["2000", "2", "0", "1"]],
                  "instId": "ETH-USDT", "ts": "1"}]
    })
    .to_string();
    let book = one_book(&frame);
    assert_eq!(book.action, BookAction::Snapshot);
    assert_eq!(book.seq_id, None);
    assert_eq!(book.ts, 1_000_000);
}

#[test]
fn parses_events_and_pong() {
    let cases: &[(&str, Frame)] = &[
        ("pong", Frame::Pong),
        (
            r#"{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}"#,
            Frame::Subscribed(Subscription::new(Channel::Books, "BTC-USDT")),
        ),
        (
            r#"{"event":"unsubscribe","arg":{"channel":"tickers","instId":"LTC-USDT"},"connId":"a4d3ae55"}"#,
            Frame::Unsubscribed(Subscription::new(Channel::Tickers, "LTC-USDT")),
        ),
        (
            r#"{"event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\"}","connId":"a4d3ae55"}"#,
            Frame::Error {
                code: "60012".into(),
                msg: r#"Invalid request: {"op": "subscribe"}"#.into(),
            },
        ),
        (
            r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#,
            Frame::Notice {
                event: "notice".into(),
                code: "64008".into(),
                msg: "The connection will soon be closed for a service upgrade. Please reconnect."
                    .into(),
            },
        ),
        (
            r#"{"event":"subscribe","arg":{"channel":"candle1m","instId":"BTC-USDT"},"connId":"1"}"#,
            Frame::Ignored("subscribe of channel candle1m".into()),
        ),
        (
            r#"{"arg":{"channel":"candle1D","instId":"BTC-USDT"},"data":[["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","1"]]}"#,
            Frame::Ignored("channel candle1D".into()),
        ),
        (
            r#"{"arg":{"channel":"tickers","instId":"NEW-USDT"},"data":[{"instId":"NEW-USDT","bidPx":"","bidSz":"","askPx":"1","askSz":"2","ts":"5"}]}"#,
            Frame::Quotes(vec![]),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&parse_frame(text).unwrap(), want, "{text}");
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let ticker = |field: &str, value: &str| {
        let mut frame: Value = serde_json::from_str(TICKERS).unwrap();
        frame["data"][0][field] = json!(value);
        frame.to_string()
    };
    let trade = |field: &str, value: &str| {
        let mut frame: Value = serde_json::from_str(TRADES).unwrap();
        frame["data"][0][field] = json!(value);
        frame.to_string()
    };
    let mut no_seq: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
    no_seq["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("prevSeqId");
    let mut no_action: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
    no_action.as_object_mut().unwrap().remove("action");
    let mut short_level: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
    short_level["data"][0]["asks"][0] = json!(["8476.98"]);
    let mut numeric_level: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
    numeric_level["data"][0]["asks"][0] = json!([8476.98, 415]);

    let cases = [
        String::new(),
        "ping".into(),
        "garbage{".into(),
        "[]".into(),
        "{}".into(),
        r#"{"arg":{"channel":"tickers"},"data":[]}"#.into(),
        r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"}}"#.into(),
        ticker("bidPx", "abc"),
        ticker("bidPx", "1e5"),
        ticker("ts", "-1"),
        ticker("ts", "99999999999999999999"),
        ticker("ts", "18446744073709552"), // overflows u64 nanoseconds
        trade("side", "sideways"),
        trade("px", "79228162514264337593543950336"), // beyond Decimal
        no_seq.to_string(),
        no_action.to_string(),
        short_level.to_string(),
        numeric_level.to_string(),
        BOOKS_UPDATE.replace("\"update\"", "\"replace\""),
    ];
    for text in &cases {
        assert!(parse_frame(text).is_err(), "accepted: {text}");
    }
}

#[test]
fn millisecond_timestamps_become_nanoseconds() {
    assert_eq!(millis("ts", "0").unwrap(), 0);
    assert_eq!(millis("ts", "1597026383085").unwrap(), SAMPLE_TS);
    assert_eq!(
        millis("ts", "18446744073709").unwrap(),
        18_446_744_073_709_000_000
    );
    assert!(millis("ts", "18446744073710").is_err());
    assert!(millis("ts", "").is_err());
    assert!(millis("ts", "1.5").is_err());
}

#[test]
fn a_negative_zero_size_is_zero() {
    assert_eq!(size("sz", "-0").unwrap(), Decimal::ZERO);
    assert!(!size("sz", "-0.0").unwrap().is_sign_negative());
}

#[test]
fn subscriptions_round_trip_and_build_requests() {
    for text in [
        "tickers:BTC-USDT",
        "books:ETH-USDT-SWAP",
        "bbo-tbt:X",
        "books5:A_B",
    ] {
        let sub: Subscription = text.parse().unwrap();
        assert_eq!(sub.to_string(), text);
    }
    for text in [
        "",
        "tickers",
        "tickers:",
        "candle1m:BTC-USDT",
        "books:BTC USDT",
        ":BTC",
    ] {
        assert!(text.parse::<Subscription>().is_err(), "{text}");
    }
    let subs = [
        Subscription::new(Channel::Tickers, "BTC-USDT"),
        Subscription::new(Channel::Books, "ETH-USDT"),
    ];
    let request: Value = serde_json::from_str(&subscribe_request(&subs)).unwrap();
    assert_eq!(
        request,
        json!({"op": "subscribe", "args": [
            {"channel": "tickers", "instId": "BTC-USDT"},
            {"channel": "books", "instId": "ETH-USDT"}
        ]})
    );
    let request: Value = serde_json::from_str(&unsubscribe_request(&subs[1..])).unwrap();
    assert_eq!(request["op"], "unsubscribe");
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let max = Duration::from_secs(30);
    let mut delay = Duration::from_millis(500);
    let mut seen = vec![];
    for _ in 0..9 {
        seen.push(delay.as_millis());
        delay = next_backoff(delay, max);
    }
    assert_eq!(
        seen,
        [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
    assert_eq!(next_backoff(Duration::ZERO, max), MIN_BACKOFF);
    assert_eq!(
        next_backoff(Duration::from_secs(1), Duration::ZERO),
        MIN_BACKOFF
    );
}

#[test]
fn tls_setup_does_not_depend_on_a_process_wide_provider() {
    // rustls panics when no crypto provider can be chosen; the feed names ring itself, so
    // building the connector either works or says that root certificates are missing.
    if let Err(e) = tls_connector() {
        assert!(e.contains("root certificates"), "{e}");
    }
}

// -- the book state machine ---------------------------------------------------------------

#[test]
fn book_sync_snapshot_then_update_gives_hand_computed_levels() {
    let mut sync = BookSync::new(btc(), Channel::Books, 3);
    let BookStep::Applied { book, quote } = sync.on_message(&one_book(BOOKS_SNAPSHOT)) else {
        panic!("snapshot not applied");
    };
    let book = book.unwrap();
    assert_eq!(
        book.bids,
        vec![
            lv("8476.97", "256"),
            lv("8475.55", "101"),
            lv("8475.54", "100")
        ]
    );
    assert_eq!(
        book.asks,
        vec![lv("8476.98", "415"), lv("8477", "7"), lv("8477.34", "85")]
    );
    assert_eq!(quote.unwrap().ask, d("8476.98"));
    assert_eq!(
        sync.state(),
        SyncState::Synced {
            seq_id: Some(123456)
        }
    );

    let BookStep::Applied { book, quote } = sync.on_message(&one_book(&sample_update())) else {
        panic!("update not applied");
    };
    let book = book.unwrap();
    assert_eq!(
        book.bids,
        vec![
            lv("8476.97", "200"),
            lv("8476.5", "4"),
            lv("8475.55", "101")
        ]
    );
    assert_eq!(
        book.asks,
        vec![lv("8476.99", "3"), lv("8477", "7"), lv("8477.34", "85")]
    );
    assert_eq!(
        quote,
        Some(Quote {
            symbol: btc(),
            bid: d("8476.97"),
            bid_size: d("200"),
            ask: d("8476.99"),
            ask_size: d("3"),
            ts: SAMPLE_TS,
        })
    );
    assert_eq!(
        sync.state(),
        SyncState::Synced {
            seq_id: Some(123457)
        }
    );
    assert_eq!(sync.book().len(Side::Sell), 8); // one removed, one added
}

#[test]
fn book_sync_publishes_only_changes() {
    let mut sync = BookSync::new(btc(), Channel::Books, 2);
    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    // The sample update restates the snapshot's levels: nothing changed.
    assert_eq!(
        sync.on_message(&one_book(BOOKS_UPDATE)),
        BookStep::Applied {
            book: None,
            quote: None
        }
    );
    // A change below the top two levels changes neither.
    let deep = books_frame("update", &[("8446", "1")], &[], 123457, 123458);
    assert_eq!(
        sync.on_message(&one_book(&deep)),
        BookStep::Applied {
            book: None,
            quote: None
        }
    );
    // A change at the second level changes the book, not the quote.
    let second = books_frame("update", &[("8475.55", "5")], &[], 123458, 123459);
    let BookStep::Applied {
        book: Some(_),
        quote: None,
    } = sync.on_message(&one_book(&second))
    else {
        panic!("second level change");
    };
    // A heartbeat (no levels, prevSeqId == seqId) is accepted and moves time on.
    let heartbeat = books_frame("update", &[], &[], 123459, 123459);
    assert_eq!(
        sync.on_message(&one_book(&heartbeat)),
        BookStep::Applied {
            book: None,
            quote: None
        }
    );
    assert_eq!(
        sync.state(),
        SyncState::Synced {
            seq_id: Some(123459)
        }
    );
}

#[test]
fn book_sync_gap_resyncs_then_skips_until_snapshot() {
    let mut sync = BookSync::new(btc(), Channel::Books, 5);
    // An update before any snapshot is skipped.
    assert_eq!(sync.on_message(&one_book(BOOKS_UPDATE)), BookStep::Skipped);
    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    let gap = books_frame("update", &[("8476", "1")], &[], 123999, 124000);
    assert_eq!(
        sync.on_message(&one_book(&gap)),
        BookStep::Resync(QualityIssue::SequenceGap {
            symbol: btc(),
            expected: 123456,
            got: 123999
        })
    );
    assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
    // What was in flight before the resubscription took effect is dropped.
    let stale = books_frame("update", &[("8476", "2")], &[], 124000, 124001);
    assert_eq!(sync.on_message(&one_book(&stale)), BookStep::Skipped);
    // The fresh snapshot is published even where it equals what was published before.
    let BookStep::Applied {
        book: Some(book),
        quote: Some(_),
    } = sync.on_message(&one_book(BOOKS_SNAPSHOT))
    else {
        panic!("fresh snapshot not published");
    };
    assert_eq!(book.bids.len(), 5);
}

#[test]
fn book_sync_seq_reset_is_continuous_when_prev_matches() {
    // OKX may reset seqId during maintenance: the new seqId is smaller, but prevSeqId still
    // names the last one.
    let mut sync = BookSync::new(btc(), Channel::Books, 5);
    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    let reset = books_frame("update", &[("8476", "1")], &[], 123456, 3);
    assert!(matches!(
        sync.on_message(&one_book(&reset)),
        BookStep::Applied { .. }
    ));
    let next = books_frame("update", &[("8476", "2")], &[], 3, 4);
    assert!(matches!(
        sync.on_message(&one_book(&next)),
        BookStep::Applied { .. }
    ));
}

#[test]
fn book_sync_crossing_update_resyncs() {
    let mut sync = BookSync::new(btc(), Channel::Books, 5);
    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    let locking = books_frame("update", &[("8476.98", "1")], &[], 123456, 123457);
    assert_eq!(
        sync.on_message(&one_book(&locking)),
        BookStep::Resync(QualityIssue::CrossedBook {
            symbol: btc(),
            bid: d("8476.98"),
            ask: d("8476.98")
        })
    );
    assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
}

/// A level whose price is not positive or whose size is negative is never applied: the book
/// is given up and resubscribed, as after a gap, and the issue names the level.
#[test]
fn book_sync_bad_level_resyncs_without_applying_it() {
    let bad = |field: &str, value: &str, rule| {
        BookStep::Resync(QualityIssue::BadValue {
            symbol: btc(),
            field: field.to_string(),
            value: d(value),
            rule,
        })
    };
    let mut sync = BookSync::new(btc(), Channel::Books, 5);
    let zero_price = books_frame(
        "snapshot",
        &[("100", "1"), ("0", "1")],
        &[("101", "1")],
        -1,
        1,
    );
    assert_eq!(
        sync.on_message(&one_book(&zero_price)),
        bad("bids[1].price", "0", ValueRule::Positive)
    );
    assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
    assert!(
        sync.book().best_bid().is_none(),
        "nothing of it was applied"
    );

    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    let before = sync.book().clone();
    let negative = books_frame("update", &[], &[("8476.99", "-3")], 123456, 123457);
    assert_eq!(
        sync.on_message(&one_book(&negative)),
        bad("asks[0].size", "-3", ValueRule::NotNegative)
    );
    assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
    assert_eq!(sync.book().best_ask(), before.best_ask());
    let negative_price = books_frame("update", &[("-1", "1")], &[], 123457, 123458);
    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    assert_eq!(
        sync.on_message(&one_book(&negative_price)),
        bad("bids[0].price", "-1", ValueRule::Positive)
    );
    // Size 0 in an update removes a level: not a bad value.
    sync.on_message(&one_book(BOOKS_SNAPSHOT));
    assert!(matches!(
        sync.on_message(&one_book(&sample_update())),
        BookStep::Applied { .. }
    ));
}

#[test]
fn book_sync_crossed_snapshot_is_reported_once_and_withheld() {
    let mut sync = BookSync::new(btc(), Channel::Books, 5);
    let crossed = books_frame("snapshot", &[("101", "1")], &[("100", "1")], -1, 10);
    assert_eq!(
        sync.on_message(&one_book(&crossed)),
        BookStep::Crossed(QualityIssue::CrossedBook {
            symbol: btc(),
            bid: d("101"),
            ask: d("100")
        })
    );
    let still = books_frame("update", &[("101", "2")], &[], 10, 11);
    assert_eq!(sync.on_message(&one_book(&still)), BookStep::StillCrossed);
    let uncross = books_frame("update", &[("101", "0"), ("99", "1")], &[], 11, 12);
    let BookStep::Applied {
        book: Some(book),
        quote: Some(quote),
    } = sync.on_message(&one_book(&uncross))
    else {
        panic!("uncrossed book not published");
    };
    assert_eq!(book.bids, vec![lv("99", "1")]);
    assert_eq!((quote.bid, quote.ask), (d("99"), d("100")));
}

#[test]
fn book_sync_books5_has_no_continuity_to_check() {
    let mut sync = BookSync::new(btc(), Channel::Books5, 5);
    for (i, bid) in ["100", "100", "101"].into_iter().enumerate() {
        let mut msg = one_book(BOOKS_SNAPSHOT);
        msg.channel = Channel::Books5;
        msg.seq_id = None;
        msg.prev_seq_id = None;
        msg.bids = vec![lv(bid, "1")];
        msg.asks = vec![lv("102", "1")];
        let step = sync.on_message(&msg);
        match i {
            1 => assert_eq!(
                step,
                BookStep::Applied {
                    book: None,
                    quote: None
                }
            ),
            _ => assert!(matches!(
                step,
                BookStep::Applied {
                    book: Some(_),
                    quote: Some(_)
                }
            )),
        }
    }
}

// -- the feed against a local server ------------------------------------------------------

type ServerWs = WebSocketStream<TcpStream>;

/// A WebSocket server on 127.0.0.1 that hands each accepted connection to the test.
struct Server {
    url: String,
    conns: mpsc::Receiver<ServerWs>,
    accept: JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel(8);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await
                    && tx.send(ws).await.is_err()
                {
                    return;
                }
            }
        });
        Server { url, conns, accept }
    }

    async fn next_conn(&mut self) -> ServerWs {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("the client connects")
            .expect("the server is running")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn test_config(url: &str, subs: &[&str]) -> OkxConfig {
    OkxConfig {
        url: url.to_string(),
        subscriptions: subs.iter().map(|s| s.parse().unwrap()).collect(),
        book_depth: 3,
        ping_after: Duration::from_secs(60),
        pong_timeout: Duration::from_secs(60),
        connect_timeout: WAIT,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
    }
}

fn start(config: OkxConfig) -> (OkxFeed, mpsc::Receiver<FeedItem>) {
    let (tx, rx) = mpsc::channel(256);
    (OkxFeed::spawn(config, tx), rx)
}

/// The next text frame the client sent (WebSocket-level pings and pongs skipped).
async fn read_text(ws: &mut ServerWs) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the client sends a frame")
            .expect("the connection is open")
            .expect("the frame is readable");
        match msg {
            Message::Text(text) => return text.as_str().to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame from the client: {other:?}"),
        }
    }
}

/// Reads a request and checks its op and arguments (as `channel:instId`).
async fn expect_request(ws: &mut ServerWs, op: &str, subs: &[&str]) {
    let text = read_text(ws).await;
    let request: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(request["op"], op, "{text}");
    let args: Vec<String> = request["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["channel"].as_str().unwrap(),
                a["instId"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(args, subs, "{text}");
}

async fn send(ws: &mut ServerWs, text: &str) {
    ws.send(Message::text(text.to_string())).await.unwrap();
}

fn ack(sub: &str) -> String {
    let (channel, inst) = sub.split_once(':').unwrap();
    json!({"event": "subscribe", "arg": {"channel": channel, "instId": inst}, "connId": "t"})
        .to_string()
}

/// Receives items until `pick` returns something; every item passed over is returned too.
async fn wait_for<T>(
    rx: &mut mpsc::Receiver<FeedItem>,
    mut pick: impl FnMut(&FeedItem) -> Option<T>,
) -> (T, Vec<FeedItem>) {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let item = rx.recv().await.expect("the feed is running");
            if let Some(found) = pick(&item) {
                return (found, seen);
            }
            seen.push(item);
        }
    })
    .await
    .expect("the awaited item arrives")
}

fn book_of(item: &FeedItem) -> Option<Book> {
    match item {
        FeedItem::Event(MarketEvent::Book(book)) => Some(book.clone()),
        _ => None,
    }
}

fn quote_of(item: &FeedItem) -> Option<Quote> {
    match item {
        FeedItem::Event(MarketEvent::Quote(quote)) => Some(quote.clone()),
        _ => None,
    }
}

// (a)
#[tokio::test]
async fn feed_book_snapshot_and_update_give_hand_computed_top_and_quote() {
    let mut server = Server::start().await;
    let (feed, mut rx) = start(test_config(&server.url, &["books:BTC-USDT"]));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["books:BTC-USDT"]).await;
    send(&mut ws, &ack("books:BTC-USDT")).await;
    send(&mut ws, BOOKS_SNAPSHOT).await;

    let (quote, seen) = wait_for(&mut rx, quote_of).await;
    assert!(seen.contains(&FeedItem::Status(FeedStatus::Connected)));
    assert!(seen.contains(&FeedItem::Status(FeedStatus::Subscribed(
        Subscription::new(Channel::Books, "BTC-USDT")
    ))));
    assert_eq!(
        (quote.bid, quote.bid_size, quote.ask, quote.ask_size),
        (d("8476.97"), d("256"), d("8476.98"), d("415"))
    );
    let (book, _) = wait_for(&mut rx, book_of).await;
    assert_eq!(
        book.asks,
        vec![lv("8476.98", "415"), lv("8477", "7"), lv("8477.34", "85")]
    );

    send(&mut ws, &sample_update()).await;
    let (quote, _) = wait_for(&mut rx, quote_of).await;
    assert_eq!(
        quote,
        Quote {
            symbol: btc(),
            bid: d("8476.97"),
            bid_size: d("200"),
            ask: d("8476.99"),
            ask_size: d("3"),
            ts: SAMPLE_TS,
        }
    );
    let (book, _) = wait_for(&mut rx, book_of).await;
    assert_eq!(
        book,
        Book {
            symbol: btc(),
            bids: vec![
                lv("8476.97", "200"),
                lv("8476.5", "4"),
                lv("8475.55", "101")
            ],
            asks: vec![lv("8476.99", "3"), lv("8477", "7"), lv("8477.34", "85")],
            ts: SAMPLE_TS,
        }
    );
    let stats = feed.stats();
    assert_eq!(
        (
            stats.connects,
            stats.messages,
            stats.parse_errors,
            stats.events
        ),
        (1, 3, 0, 4)
    );
    assert!(stats.connected);
    feed.stop().await;
}

// (b)
#[tokio::test]
async fn feed_gap_resubscribes_that_channel_and_applies_the_fresh_snapshot() {
    let mut server = Server::start().await;
    let subs = ["tickers:BTC-USDT", "books:BTC-USDT"];
    let (feed, mut rx) = start(test_config(&server.url, &subs));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &subs).await;
    send(&mut ws, BOOKS_SNAPSHOT).await;
    wait_for(&mut rx, book_of).await;

    send(
        &mut ws,
        &books_frame("update", &[("8476", "1")], &[], 123999, 124000),
    )
    .await;
    let (issue, _) = wait_for(&mut rx, |item| match item {
        FeedItem::Issue(issue) => Some(issue.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        issue,
        QualityIssue::SequenceGap {
            symbol: btc(),
            expected: 123456,
            got: 123999
        }
    );
    let books = Subscription::new(Channel::Books, "BTC-USDT");
    let (status, _) = wait_for(&mut rx, |item| match item {
        FeedItem::Status(status) => Some(status.clone()),
        _ => None,
    })
    .await;
    assert_eq!(status, FeedStatus::Resyncing(books));

    // Only the books subscription is renewed.
    expect_request(&mut ws, "unsubscribe", &["books:BTC-USDT"]).await;
    expect_request(&mut ws, "subscribe", &["books:BTC-USDT"]).await;

    // An update still in flight is skipped; the fresh snapshot is applied.
    send(
        &mut ws,
        &books_frame("update", &[("8476", "2")], &[], 124000, 124001),
    )
    .await;
    send(
        &mut ws,
        &books_frame(
            "snapshot",
            &[("8400", "1.5"), ("8399", "2")],
            &[("8401", "0.25")],
            -1,
            500,
        ),
    )
    .await;
    let (book, seen) = wait_for(&mut rx, book_of).await;
    assert_eq!(book.bids, vec![lv("8400", "1.5"), lv("8399", "2")]);
    assert_eq!(book.asks, vec![lv("8401", "0.25")]);
    assert!(
        seen.iter().all(|item| quote_of(item).is_some()),
        "only the new quote before the book: {seen:?}"
    );

    // And it continues from the new snapshot's seqId.
    send(
        &mut ws,
        &books_frame("update", &[("8400.5", "1")], &[], 500, 501),
    )
    .await;
    let (book, _) = wait_for(&mut rx, book_of).await;
    assert_eq!(book.bids[0], lv("8400.5", "1"));

    let stats = feed.stats();
    assert_eq!(
        (stats.resyncs, stats.skipped, stats.issues, stats.connects),
        (1, 1, 1, 1)
    );
    feed.stop().await;
}

// (c)
#[tokio::test]
async fn feed_reconnects_after_the_server_drops_and_resubscribes() {
    let mut server = Server::start().await;
    let subs = ["tickers:BTC-USDT", "trades:BTC-USDT"];
    let (feed, mut rx) = start(test_config(&server.url, &subs));

    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &subs).await;
    send(&mut ws, TICKERS).await;
    let (quote, _) = wait_for(&mut rx, quote_of).await;
    assert_eq!(quote.bid, d("8888.88"));
    drop(ws); // no close frame: the TCP connection just ends

    let (reason, _) = wait_for(&mut rx, |item| match item {
        FeedItem::Status(FeedStatus::Disconnected { reason, retry_in }) => {
            assert_eq!(
                *retry_in,
                Duration::from_millis(10),
                "a healthy session backs off from the minimum"
            );
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert!(!reason.is_empty());

    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &subs).await;
    send(&mut ws, &ticker_frame("8888.9")).await;
    let (quote, seen) = wait_for(&mut rx, quote_of).await;
    assert!(seen.contains(&FeedItem::Status(FeedStatus::Connected)));
    assert_eq!(quote.bid, d("8888.9"));

    let stats = feed.stats();
    assert_eq!((stats.connects, stats.disconnects), (2, 1));
    feed.stop().await;
}

#[tokio::test]
async fn feed_backs_off_while_it_cannot_connect() {
    // A port that was just free: connecting is refused.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("ws://{}", listener.local_addr().unwrap())
    };
    let (feed, mut rx) = start(test_config(&url, &["tickers:BTC-USDT"]));
    let mut delays = Vec::new();
    while delays.len() < 5 {
        let (delay, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Status(FeedStatus::Disconnected { retry_in, .. }) => {
                Some(retry_in.as_millis())
            }
            _ => None,
        })
        .await;
        delays.push(delay);
    }
    assert_eq!(delays, [10, 20, 40, 80, 100]);
    assert_eq!(feed.stats().connects, 0);
    feed.stop().await;
}

// (d)
#[tokio::test]
async fn feed_pings_when_idle_and_accepts_the_pong() {
    let mut server = Server::start().await;
    let mut config = test_config(&server.url, &["tickers:BTC-USDT"]);
    config.ping_after = Duration::from_millis(100);
    config.pong_timeout = Duration::from_secs(2);
    let (feed, mut rx) = start(config);
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;

    for _ in 0..3 {
        assert_eq!(read_text(&mut ws).await, "ping");
        send(&mut ws, "pong").await;
    }
    // Still the same connection, and still delivering.
    send(&mut ws, TICKERS).await;
    wait_for(&mut rx, quote_of).await;
    let stats = feed.stats();
    assert_eq!(
        (stats.connects, stats.disconnects, stats.parse_errors),
        (1, 0, 0)
    );
    assert!(stats.pings >= 3);
    // Frames are handled in order: all three pongs were seen before the ticker.
    assert_eq!(stats.pongs, 3);
    feed.stop().await;
}

#[tokio::test]
async fn feed_reconnects_when_the_pong_does_not_come() {
    let mut server = Server::start().await;
    let mut config = test_config(&server.url, &["tickers:BTC-USDT"]);
    config.ping_after = Duration::from_millis(50);
    config.pong_timeout = Duration::from_millis(100);
    let (feed, mut rx) = start(config);
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
    assert_eq!(read_text(&mut ws).await, "ping");

    let (reason, _) = wait_for(&mut rx, |item| match item {
        FeedItem::Status(FeedStatus::Disconnected { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("no pong"), "{reason}");
    let mut ws2 = server.next_conn().await;
    expect_request(&mut ws2, "subscribe", &["tickers:BTC-USDT"]).await;
    assert_eq!(feed.stats().connects, 2);
    drop(ws);
    feed.stop().await;
}

// (e)
#[tokio::test]
async fn feed_turns_tickers_and_trades_into_exact_quotes_and_trades() {
    let mut server = Server::start().await;
    let subs = ["tickers:BTC-USDT", "trades:BTC-USD"];
    let (feed, mut rx) = start(test_config(&server.url, &subs));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &subs).await;
    send(&mut ws, TICKERS).await;
    send(&mut ws, TRADES).await;

    let (quote, _) = wait_for(&mut rx, quote_of).await;
    assert_eq!(
        quote,
        Quote {
            symbol: btc(),
            bid: d("8888.88"),
            bid_size: d("5"),
            ask: d("9999.99"),
            ask_size: d("11"),
            ts: SAMPLE_TS,
        }
    );
    let (trade, _) = wait_for(&mut rx, |item| match item {
        FeedItem::Event(MarketEvent::Trade(trade)) => Some(trade.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&*trade.symbol, "BTC-USD");
    assert_eq!(trade.price.to_string(), "42219.9");
    assert_eq!(trade.size.to_string(), "0.12060306");
    assert_eq!(trade.aggressor, Side::Buy);
    assert_eq!(trade.ts, 1_630_048_897_897_000_000);
    feed.stop().await;
}

// (f)
#[tokio::test]
async fn feed_counts_garbage_frames_and_goes_on() {
    let mut server = Server::start().await;
    let (feed, mut rx) = start(test_config(&server.url, &["tickers:BTC-USDT"]));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
    send(&mut ws, "garbage{").await;
    send(&mut ws, &ticker_frame("not-a-number")).await;
    ws.send(Message::binary(vec![0xff, 0x00])).await.unwrap();
    send(&mut ws, r#"{"event":"error","code":"60018","msg":"Wrong URL or channel:tickers,instId:NOPE doesn't exist."}"#).await;
    // A book nobody subscribed to is not kept.
    send(&mut ws, BOOKS_SNAPSHOT).await;
    send(&mut ws, &ticker_frame("8000.5")).await;

    let (quote, seen) = wait_for(&mut rx, quote_of).await;
    assert_eq!(quote.bid, d("8000.5"));
    assert!(seen.iter().any(|item| matches!(
        item,
        FeedItem::Status(FeedStatus::VenueError { code, .. }) if code == "60018"
    )));
    let stats = feed.stats();
    assert_eq!(
        (
            stats.parse_errors,
            stats.venue_errors,
            stats.ignored,
            stats.messages,
            stats.connects,
            stats.disconnects
        ),
        (3, 1, 1, 6, 1, 0)
    );
    feed.stop().await;
}

/// A ticker or trade with a price that is not positive, or a negative size, is dropped on its
/// own and reported as an issue; the good records of the same frame are published.
#[tokio::test]
async fn feed_drops_records_with_bad_values_and_reports_them() {
    let mut server = Server::start().await;
    let subs = ["tickers:BTC-USDT", "trades:BTC-USD"];
    let (feed, mut rx) = start(test_config(&server.url, &subs));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &subs).await;
    send(&mut ws, &ticker_frame("0")).await;
    let mut trades: Value = serde_json::from_str(TRADES).unwrap();
    let good = trades["data"][0].clone();
    let mut negative = good.clone();
    negative["px"] = json!("-42219.9");
    let mut zero_size = good.clone();
    zero_size["sz"] = json!("0");
    trades["data"] = json!([negative, zero_size, good]);
    send(&mut ws, &trades.to_string()).await;
    send(&mut ws, &ticker_frame("8000.5")).await;

    let (quote, seen) = wait_for(&mut rx, quote_of).await;
    assert_eq!(quote.bid, d("8000.5"), "the bad ticker was not published");
    let issue = |symbol: &str, field: &str, value: &str, rule| {
        FeedItem::Issue(QualityIssue::BadValue {
            symbol: symbol.into(),
            field: field.to_string(),
            value: d(value),
            rule,
        })
    };
    let items: Vec<&FeedItem> = seen
        .iter()
        .filter(|i| matches!(i, FeedItem::Issue(_) | FeedItem::Event(_)))
        .collect();
    assert!(
        matches!(items.get(3), Some(FeedItem::Event(MarketEvent::Trade(t))) if t.price == d("42219.9")),
        "the good trade of the frame is published: {items:?}"
    );
    assert_eq!(
        items[..3],
        [
            &issue("BTC-USDT", "bid", "0", ValueRule::Positive),
            &issue("BTC-USD", "price", "-42219.9", ValueRule::Positive),
            &issue("BTC-USD", "size", "0", ValueRule::Positive),
        ]
    );
    let stats = feed.stats();
    assert_eq!((stats.issues, stats.parse_errors), (3, 0));
    feed.stop().await;
}

#[tokio::test]
async fn feed_reconnects_at_once_on_the_upgrade_notice() {
    let mut server = Server::start().await;
    let mut config = test_config(&server.url, &["tickers:BTC-USDT"]);
    config.backoff_min = Duration::from_millis(10);
    let (feed, mut rx) = start(config);
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
    send(&mut ws, r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a"}"#).await;
    let mut ws2 = server.next_conn().await;
    expect_request(&mut ws2, "subscribe", &["tickers:BTC-USDT"]).await;
    let (reason, _) = wait_for(&mut rx, |item| match item {
        FeedItem::Status(FeedStatus::Disconnected { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("reconnect"), "{reason}");
    drop(ws);
    feed.stop().await;
}

#[tokio::test]
async fn feed_ends_when_its_receiver_is_dropped_or_it_is_stopped() {
    let mut server = Server::start().await;
    let (feed, rx) = start(test_config(&server.url, &["tickers:BTC-USDT"]));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
    drop(rx);
    // The client closes the connection: the server sees the end of the stream.
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the client closes when nobody listens");
    tokio::time::timeout(WAIT, feed.task)
        .await
        .expect("the task ends")
        .unwrap();

    let (feed, _rx) = start(test_config(&server.url, &["tickers:BTC-USDT"]));
    let mut ws = server.next_conn().await;
    expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
    let stats = feed.stats_handle();
    feed.stop().await;
    assert!(!stats.snapshot().connected);
}
