//! Tests of the replay parsers, the embedded data and the live-feed quality checks.

use super::bars::default_symbol;
use super::*;
use crate::synthetic::{Synthetic, SyntheticConfig};
use crate::types::{BookLevel, MarketEvent, Side};
use crate::types::{Candle, QualityIssue};
use rust_decimal::Decimal;
use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const SEC: u64 = NANOS_PER_SEC;

#[test]
fn embedded_bars_are_the_whole_file() {
    let replay = embedded_bars().unwrap();
    assert!(replay.issues.is_empty(), "{:?}", replay.issues);
    let bars: Vec<&Candle> = replay.candles().collect();
    assert_eq!(bars.len(), replay.events.len());
    // `wc -l` says 45,032 lines: the header and 45,031 bars.
    assert_eq!(bars.len(), 45_031);
    // January 2022 alone is 31 × 1,440 bars, the 44,640 of the provenance note.
    let jan = parse_utc("2022-01-01 00:00:00").unwrap()..parse_utc("2022-02-01 00:00:00").unwrap();
    assert_eq!(
        bars.iter().filter(|b| jan.contains(&b.start)).count(),
        44_640
    );
    // `head -2`: 2021-12-31 23:01:00.000000,46319.0,46385.0,46319.0,46377.0,2300413.7295
    let first = Candle {
        symbol: Arc::from("BTC-PERP"),
        interval_secs: 60,
        start: 1_640_991_660 * SEC,
        open: d("46319.0"),
        high: d("46385.0"),
        low: d("46319.0"),
        close: d("46377.0"),
        volume: d("2300413.7295"),
    };
    assert_eq!(bars[0], &first);
    // `tail -1`: 2022-02-01 05:31:00.000000,38525.0,38546.0,38525.0,38544.0,685906.9735
    let last = Candle {
        start: 1_643_693_460 * SEC,
        open: d("38525.0"),
        high: d("38546.0"),
        low: d("38525.0"),
        close: d("38544.0"),
        volume: d("685906.9735"),
        ..first.clone()
    };
    assert_eq!(bars[bars.len() - 1], &last);
    // Decimals keep what the file wrote: the scale survives.
    assert_eq!(bars[0].volume.to_string(), "2300413.7295");
    assert!(bars.windows(2).all(|w| w[1].start == w[0].start + 60 * SEC));
}

#[test]
fn embedded_depth_reports_the_recorded_gap_and_ends_at_a_sound_quote() {
    let replay = embedded_depth(5).unwrap();
    let gap = QualityIssue::SequenceGap {
        symbol: Arc::from("BTCUSDT"),
        expected: 2_098_021_528_332,
        got: 2_098_041_693_400,
    };
    assert_eq!(replay.issues.len(), 1, "{:?}", replay.issues);
    assert_eq!(replay.issues[0].issue, gap);
    assert_eq!(
        (&*replay.issues[0].file, replay.issues[0].line),
        ("binance-btcusdt-depth-update.csv", 2)
    );
    // The snapshot file holds bids only: a book, no quote. Then the update: a book and a quote.
    let kinds: Vec<&str> = replay.events.iter().map(|e| e.kind().as_str()).collect();
    assert_eq!(kinds, ["book", "book", "quote"]);
    let MarketEvent::Book(snap) = &replay.events[0] else {
        panic!()
    };
    assert_eq!((snap.bids.len(), snap.asks.len()), (5, 0));
    assert_eq!(
        snap.bids[0],
        BookLevel {
            price: d("20377.00"),
            size: d("1.770")
        }
    );
    assert_eq!(snap.ts, 1_667_346_579_146 * NANOS_PER_MILLI);
    let MarketEvent::Quote(q) = &replay.events[2] else {
        panic!()
    };
    assert_eq!(
        (q.bid, q.bid_size, q.ask, q.ask_size),
        (d("20472.10"), d("22.276"), d("20472.20"), d("4.211"))
    );
    assert_eq!(q.ts, 1_667_347_199_939 * NANOS_PER_MILLI);
}

const DEPTH_HEADER: &str =
    "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n";

fn depth(body: &str) -> Replay {
    let text = format!("{DEPTH_HEADER}{body}");
    replay_depth(&parse_depth_rows("d.csv", text.as_bytes()).unwrap(), 10)
}

#[test]
fn depth_replay_follows_binance_sequencing() {
    let replay = depth(concat!(
        "BTCUSDT,1000,90,100,b,set,9.9,1,80\n", // before the snapshot: skipped
        "BTCUSDT,1001,100,100,b,snap,10.0,1,-1\n",
        "BTCUSDT,1001,100,100,a,snap,10.5,2,-1\n",
        "BTCUSDT,1002,95,99,b,set,10.1,5,90\n", // ends before the snapshot: skipped
        "BTCUSDT,1003,98,105,b,set,10.1,5,97\n", // straddles it: applied
        "BTCUSDT,1004,106,110,a,set,10.5,0,105\n",
        "BTCUSDT,1004,106,110,a,set,10.4,3,105\n",
        "BTCUSDT,1005,111,112,b,set,9.0,1,110\n", // deeper level: book but no quote change
    ));
    assert!(replay.issues.is_empty(), "{:?}", replay.issues);
    let quotes: Vec<(Decimal, Decimal)> = replay
        .events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Quote(q) => Some((q.bid, q.ask)),
            _ => None,
        })
        .collect();
    assert_eq!(
        quotes,
        [
            (d("10.0"), d("10.5")),
            (d("10.1"), d("10.5")),
            (d("10.1"), d("10.4"))
        ]
    );
    assert_eq!(
        replay
            .events
            .iter()
            .filter(|e| matches!(e, MarketEvent::Book(_)))
            .count(),
        4
    );
}

#[test]
fn depth_replay_flags_an_injected_pu_gap() {
    let replay = depth(concat!(
        "BTCUSDT,1001,100,100,b,snap,10.0,1,-1\n",
        "BTCUSDT,1001,100,100,a,snap,10.5,2,-1\n",
        "BTCUSDT,1002,101,104,b,set,10.1,1,100\n",
        "BTCUSDT,1003,109,112,b,set,10.2,1,107\n", // pu should be 104
        "BTCUSDT,1004,113,115,b,set,10.3,1,112\n", // continues the gapped one: fine
    ));
    let issues: Vec<(usize, &QualityIssue)> =
        replay.issues.iter().map(|f| (f.line, &f.issue)).collect();
    let gap = QualityIssue::SequenceGap {
        symbol: Arc::from("BTCUSDT"),
        expected: 104,
        got: 107,
    };
    assert_eq!(issues, [(5, &gap)]);
    assert!(
        replay.issues[0]
            .to_string()
            .starts_with("d.csv:5: BTCUSDT: sequence gap")
    );
    // The gapped update is still applied.
    let MarketEvent::Quote(q) = replay.events.last().unwrap() else {
        panic!()
    };
    assert_eq!(q.bid, d("10.3"));
}

#[test]
fn depth_replay_flags_a_crossed_book_once_and_derives_no_quote_from_it() {
    let replay = depth(concat!(
        "BTCUSDT,1001,100,100,b,snap,10.0,1,-1\n",
        "BTCUSDT,1001,100,100,a,snap,10.5,2,-1\n",
        "BTCUSDT,1002,101,101,b,set,10.6,1,100\n", // bid above the ask: crossed
        "BTCUSDT,1003,102,102,b,set,10.7,1,101\n", // still crossed: not flagged again
        "BTCUSDT,1004,103,103,b,set,10.6,0,102\n",
        "BTCUSDT,1004,103,103,b,set,10.7,0,102\n", // back to 10.0 / 10.5
    ));
    let crossed = QualityIssue::CrossedBook {
        symbol: Arc::from("BTCUSDT"),
        bid: d("10.6"),
        ask: d("10.5"),
    };
    assert_eq!(
        replay
            .issues
            .iter()
            .map(|f| (f.line, &f.issue))
            .collect::<Vec<_>>(),
        [(4, &crossed)]
    );
    let kinds: Vec<&str> = replay.events.iter().map(|e| e.kind().as_str()).collect();
    // The uncrossed book gives back the quote of before, which did not change: no new quote.
    assert_eq!(kinds, ["book", "quote", "book", "book", "book"]);
}

#[test]
fn depth_replay_flags_time_going_back() {
    let replay = depth(concat!(
        "BTCUSDT,2000,100,100,b,snap,10.0,1,-1\n",
        "BTCUSDT,2000,100,100,a,snap,10.5,2,-1\n",
        "BTCUSDT,1999,101,101,b,set,10.1,1,100\n",
        "BTCUSDT,2001,102,102,a,set,10.4,1,101\n",
    ));
    let back = QualityIssue::NonMonotonicTime {
        symbol: Arc::from("BTCUSDT"),
        previous: 2_000 * NANOS_PER_MILLI,
        got: 1_999 * NANOS_PER_MILLI,
    };
    assert_eq!(
        replay.issues.iter().map(|f| &f.issue).collect::<Vec<_>>(),
        [&back]
    );
    // Its level is in the book all the same: the ids say it belongs.
    let MarketEvent::Quote(q) = replay.events.last().unwrap() else {
        panic!()
    };
    assert_eq!((q.bid, q.ask), (d("10.1"), d("10.4")));
}

const BARS: &str = "timestamp,open,high,low,close,volume\n";

fn bars(body: &str) -> Result<Replay, RecordError> {
    let options = ReplayOptions {
        symbol: Some(Arc::from("X")),
        ..ReplayOptions::default()
    };
    parse_bars("data.csv", format!("{BARS}{body}").as_bytes(), &options)
}

#[test]
fn malformed_bar_files_name_line_and_column() {
    let good = "2022-01-01 00:00:00.000000,1.0,2.0,0.5,1.5,10\n";
    // (file body after the header, line, column, reason)
    let cases: &[(&str, usize, Option<&str>, &str)] = &[
        (
            "2022-01-01 00:01:00,1.0,abc,0.5,1.5,10\n",
            3,
            Some("high"),
            "\"abc\" is not a decimal",
        ),
        (
            "2022-01-01 00:01:00,1.0,2.0,0.5,1.5,1e3\n",
            3,
            Some("volume"),
            "\"1e3\" is not a decimal",
        ),
        (
            "2022-01-01 00:01:00,1.0,2.0,,1.5,10\n",
            3,
            Some("low"),
            "\"\" is not a decimal",
        ),
        (
            "2022-02-30 00:01:00,1.0,2.0,0.5,1.5,10\n",
            3,
            Some("timestamp"),
            "\"2022-02-30 00:01:00\" is not a date",
        ),
        (
            "2022-01-01T24:00:00,1.0,2.0,0.5,1.5,10\n",
            3,
            Some("timestamp"),
            "is not a time of day",
        ),
        (
            "01/01/2022 00:01,1.0,2.0,0.5,1.5,10\n",
            3,
            Some("timestamp"),
            "is not a UTC time",
        ),
        (
            "2022-01-01 00:01:00,1.0,2.0,0.5,1.5\n",
            3,
            Some("volume"),
            "missing: the line has 5 fields, the header 6",
        ),
        (
            "2022-01-01 00:01:00,1.0,2.0,0.5,1.5,10,7\n",
            3,
            None,
            "the line has 7 fields, the header 6",
        ),
        (
            "2022-01-01 00:01:00,1.0,0.4,0.5,0.45,10\n",
            3,
            Some("high"),
            "0.4 is below the low 0.5",
        ),
        (
            "2022-01-01 00:01:00,3.0,2.0,0.5,1.5,10\n",
            3,
            Some("open"),
            "3.0 is outside the range low 0.5 to high 2.0",
        ),
        (
            "2022-01-01 00:01:00,\"1.0\",2.0,0.5,1.5,10\n",
            3,
            None,
            "quoted fields are not supported",
        ),
    ];
    for (body, line, column, reason) in cases {
        let err = bars(&format!("{good}{body}")).unwrap_err();
        assert_eq!(err.line, *line, "{body}: {err}");
        assert_eq!(
            err.place,
            column.map(|c| Place::Column(c.to_string())),
            "{body}: {err}"
        );
        assert!(err.reason.contains(reason), "{body}: {err}");
    }
    let err = bars(&format!("{good}2022-01-01 00:01:00,1.0,abc,0.5,1.5,10\n")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"data.csv:3: column "high": "abc" is not a decimal"#
    );
}

#[test]
fn malformed_headers_are_line_one() {
    let options = ReplayOptions::default();
    let cases: &[(&str, &str, &str)] = &[
        (
            "timestamp,open,high,low,close\n",
            "volume",
            "missing from the header",
        ),
        (
            "timestamp,open,high,low,close,volume,vwap\n",
            "vwap",
            "unknown column",
        ),
        (
            "timestamp,open,open,high,low,close,volume\n",
            "open",
            "appears twice",
        ),
    ];
    for (header, column, reason) in cases {
        let err = parse_bars("x.csv", header.as_bytes(), &options).unwrap_err();
        assert_eq!(
            (err.line, err.place.clone()),
            (1, Some(Place::Column(column.to_string()))),
            "{err}"
        );
        assert!(err.reason.contains(reason), "{err}");
    }
    let err = parse_bars("x.csv", b"", &options).unwrap_err();
    assert_eq!(err.line, 1);
    // A name that gives no symbol, and no symbol option.
    let err = parse_bars("my bars.csv", BARS.as_bytes(), &options).unwrap_err();
    assert!(err.reason.contains("no symbol column"), "{err}");
}

#[test]
fn malformed_depth_rows_name_line_and_column() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "BTCUSDT,1000,1,2,x,set,10,1,0",
            Some("side"),
            "\"x\" is not a side",
        ),
        (
            "BTCUSDT,1000,1,2,b,upd,10,1,0",
            Some("update_type"),
            "\"upd\" is not an update type",
        ),
        (
            "BTCUSDT,1000,1,2,b,set,10,1,zero",
            Some("pu"),
            "\"zero\" is not an integer",
        ),
        (
            "BTCUSDT,10.5,1,2,b,set,10,1,0",
            Some("timestamp"),
            "\"10.5\" is not an integer",
        ),
        (
            "BTCUSDT,1000,3,2,b,set,10,1,0",
            Some("last_update_id"),
            "2 is below first_update_id 3",
        ),
        (
            "btcusdt,1000,1,2,b,set,10,1,0",
            Some("symbol"),
            "is not a symbol",
        ),
        ("BTCUSDT,1000,1,2,b,set,10,1", Some("pu"), "missing"),
        (
            "BTCUSDT,99999999999999999999,1,2,b,set,10,1,0",
            Some("timestamp"),
            "out of range",
        ),
    ];
    for (row, column, reason) in cases {
        let text = format!("{DEPTH_HEADER}BTCUSDT,1000,1,2,b,set,10,1,0\n{row}\n");
        let err = parse_depth_rows("d.csv", text.as_bytes()).unwrap_err();
        assert_eq!(err.line, 3, "{row}: {err}");
        assert_eq!(
            err.place,
            column.map(|c| Place::Column(c.to_string())),
            "{row}: {err}"
        );
        assert!(err.reason.contains(reason), "{row}: {err}");
    }
}

#[test]
fn bars_going_back_in_time_are_flagged_and_skipped() {
    let replay = bars(concat!(
        "2022-01-01 00:01:00,1,1,1,1,1\n",
        "2022-01-01 00:02:00,1,1,1,1,1\n",
        "2022-01-01 00:02:00,1,1,1,1,1\n", // repeated
        "2022-01-01 00:00:00,1,1,1,1,1\n", // back in time
        "2022-01-01 00:03:00,1,1,1,1,1\n",
    ))
    .unwrap();
    assert_eq!(replay.events.len(), 3);
    let lines: Vec<usize> = replay.issues.iter().map(|f| f.line).collect();
    assert_eq!(lines, [4, 5]);
    // Bars are compared by when they close.
    let close = |t| parse_utc(t).unwrap();
    let issues: Vec<&QualityIssue> = replay.issues.iter().map(|f| &f.issue).collect();
    let x: Arc<str> = Arc::from("X");
    assert_eq!(
        issues,
        [
            &QualityIssue::NonMonotonicTime {
                symbol: x.clone(),
                previous: close("2022-01-01 00:03:00"),
                got: close("2022-01-01 00:03:00")
            },
            &QualityIssue::NonMonotonicTime {
                symbol: x,
                previous: close("2022-01-01 00:03:00"),
                got: close("2022-01-01 00:01:00")
            },
        ]
    );
}

#[test]
fn bar_files_take_crlf_a_bom_and_a_symbol_column() {
    let text = "\u{feff}symbol,timestamp,open,high,low,close,volume\r\nBTC-USDT,2022-01-01T00:00:00Z,1,2,0.5,1.5,3\r\n\r\nETH-USDT,2022-01-01 00:00:00.5,1,2,0.5,1.5,3\r\n";
    let replay = parse_bars("x.csv", text.as_bytes(), &ReplayOptions::default()).unwrap();
    let symbols: Vec<&str> = replay.events.iter().map(|e| &**e.symbol()).collect();
    assert_eq!(symbols, ["BTC-USDT", "ETH-USDT"]);
    assert_eq!(replay.events[1].ts(), 1_640_995_200 * SEC + SEC / 2);
}

#[test]
fn default_symbol_comes_from_the_file_name() {
    assert_eq!(
        default_symbol("/data/btc-perp-2022-01-1m.csv.gz"),
        "BTC-PERP"
    );
    assert_eq!(default_symbol("eth-usdt.csv"), "ETH-USDT");
    assert_eq!(default_symbol("2022.csv"), "2022");
}

#[test]
fn utc_times_parse_and_format() {
    let cases: &[(&str, Option<u64>)] = &[
        ("1970-01-01 00:00:00", Some(0)),
        ("2021-12-31 23:01:00.000000", Some(1_640_991_660 * SEC)),
        (
            "2024-02-29T12:00:00.123456789Z",
            Some(1_709_208_000 * SEC + 123_456_789),
        ),
        (
            "2000-03-01 00:00:00.1",
            Some(951_868_800 * SEC + 100_000_000),
        ),
        ("2023-02-29 00:00:00", None),
        ("1900-02-29 00:00:00", None),
        ("1969-12-31 23:59:59", None),
        ("2022-01-01 00:00:60", None),
        ("2022-01-01 00:00:00.", None),
        ("2022-01-01 00:00:00.1234567890", None),
        ("2022-1-01 00:00:00", None),
        ("2022-01-01 00:00", None),
        ("+022-01-01 00:00:00", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_utc(text).ok(), *expected, "{text}");
    }
    for ts in [
        0,
        1_640_991_660 * SEC,
        1_709_208_000 * SEC + 123_456_789,
        951_782_400 * SEC,
    ] {
        assert_eq!(parse_utc(&format_utc(ts)), Ok(ts));
    }
    assert_eq!(
        format_utc(1_709_208_000 * SEC + 5),
        "2024-02-29T12:00:00.000000005Z"
    );
}

#[test]
fn decimals_are_exact_and_strict() {
    assert_eq!(parse_decimal("43000.50").unwrap().to_string(), "43000.50");
    assert_eq!(parse_decimal("-0.1"), Ok(d("-0.1")));
    for bad in [
        "", "1.", ".5", "1e5", "+1", " 1", "1_000", "NaN", "1.2.3", "0x10",
    ] {
        assert!(parse_decimal(bad).is_err(), "{bad}");
    }
    // 30 fractional digits do not fit exactly: refused, not rounded.
    assert!(parse_decimal("0.123456789012345678901234567890").is_err());
}

fn sample_events() -> Vec<MarketEvent> {
    // A candle that closes as the synthetic feed starts, then the feed.
    let mut events = vec![MarketEvent::Candle(Candle {
        symbol: Arc::from("SYN0000-USD"),
        interval_secs: 60,
        start: 1_704_067_140 * SEC,
        open: d("1.10"),
        high: d("1.25"),
        low: d("1.00"),
        close: d("1.2"),
        volume: d("0.000000001"),
    })];
    events.extend(Synthetic::new(SyntheticConfig::new(9, 2)).unwrap().take(40));
    events
}

#[test]
fn jsonl_round_trip() {
    let events = sample_events();
    assert!(events.iter().any(|e| matches!(e, MarketEvent::Book(_))));
    assert!(events.iter().any(|e| matches!(e, MarketEvent::Trade(_))));
    let mut text = Vec::new();
    write_jsonl(&events, &mut text).unwrap();
    let replay = parse_jsonl("r.jsonl", &text).unwrap();
    assert_eq!(replay.events, events);
    assert!(replay.issues.is_empty());
    // And again from the file on disk, through detection.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(
        load(&[&path], &ReplayOptions::default()).unwrap().events,
        events
    );
}

#[test]
fn jsonl_reads_the_documented_examples() {
    let text = concat!(
        r#"{"type":"quote","symbol":"BTC-USDT","ts":1641081600000000000,"bid":"46319.5","bid_size":"1.2","ask":"46320","ask_size":"0.4"}"#,
        "\n",
        r#"{"type":"trade","symbol":"BTC-USDT","ts":"2022-01-02T00:00:00.5Z","price":"46320","size":"0.05","side":"buy"}"#,
        "\n\n",
        r#"{"type":"book","symbol":"BTC-USDT","ts":1641081601000000000,"bids":[["46319.5","1.2"],["46319","3"]],"asks":[["46320","0.4"]]}"#,
        "\n",
        r#"{"type":"candle","symbol":"BTC-USDT","start":1641081600000000000,"interval":60,"open":"46319","high":"46385","low":"46319","close":"46377","volume":"12.5"}"#,
        "\n",
    );
    let replay = parse_jsonl("ex.jsonl", text.as_bytes()).unwrap();
    let kinds: Vec<&str> = replay.events.iter().map(|e| e.kind().as_str()).collect();
    assert_eq!(kinds, ["quote", "trade", "book", "candle"]);
    let MarketEvent::Trade(t) = &replay.events[1] else {
        panic!()
    };
    assert_eq!(
        (t.price, t.aggressor, t.ts),
        (d("46320"), Side::Buy, 1_641_081_600_500_000_000)
    );
}

#[test]
fn malformed_jsonl_names_line_and_field() {
    let q = r#""type":"quote","symbol":"BTC-USDT","ts":1,"bid_size":"1","ask":"2","ask_size":"1""#;
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (format!(r#"{{{q},"bid":43000.5}}"#), Some("bid"), "not JSON numbers"),
        (format!(r#"{{{q},"bid":"4x"}}"#), Some("bid"), "\"4x\" is not a decimal"),
        (format!(r#"{{{q}}}"#), Some("bid"), "missing"),
        (format!(r#"{{{q},"bid":"1","venue":"okx"}}"#), Some("venue"), "unknown field for a quote"),
        (r#"{"type":"tick","symbol":"X"}"#.to_string(), Some("type"), "\"tick\" is not an event type"),
        (r#"{"type":"trade","symbol":"X","ts":-1,"price":"1","size":"1","side":"buy"}"#.to_string(), Some("ts"), "not a whole number"),
        (r#"{"type":"trade","symbol":"X","ts":1,"price":"1","size":"1","side":"bid"}"#.to_string(), Some("side"), "not a side"),
        (r#"{"type":"trade","symbol":"x","ts":1,"price":"1","size":"1","side":"buy"}"#.to_string(), Some("symbol"), "not a symbol"),
        (r#"{"type":"book","symbol":"X","ts":1,"bids":[["2","1"],["3","1"]],"asks":[]}"#.to_string(), Some("bids"), "out of order"),
        (r#"{"type":"book","symbol":"X","ts":1,"bids":[["2"]],"asks":[]}"#.to_string(), Some("bids"), "not a [price, size] pair"),
        (r#"{"type":"candle","symbol":"X","start":0,"interval":0,"open":"1","high":"1","low":"1","close":"1","volume":"1"}"#.to_string(), Some("interval"), "above 0"),
        ("{\"type\":\"quote\",".to_string(), None, "not JSON"),
        ("[1,2]".to_string(), None, "expected a JSON object"),
    ];
    let good = r#"{"type":"trade","symbol":"X","ts":0,"price":"1","size":"1","side":"sell"}"#;
    for (line, field, reason) in &cases {
        let text = format!("{good}\n{line}\n");
        let err = parse_jsonl("bad.jsonl", text.as_bytes()).unwrap_err();
        assert_eq!(err.line, 2, "{line}: {err}");
        assert_eq!(
            err.place,
            field.map(|f| Place::Field(f.to_string())),
            "{line}: {err}"
        );
        assert!(err.reason.contains(reason), "{line}: {err}");
    }
    let err = parse_jsonl("bad.jsonl", format!("{good}\n{}\n", cases[0].0).as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"bad.jsonl:2: field "bid": decimals are written as strings"#),
        "{err}"
    );
}

/// The one issue of a replay, as logged (`FILE:LINE: …`).
fn only_issue(replay: &Replay) -> String {
    assert_eq!(replay.issues.len(), 1, "{:?}", replay.issues);
    replay.issues[0].to_string()
}

/// A JSONL record with a price that is not positive or a size below its rule is skipped and
/// reported with its line; the records around it are kept.
#[test]
fn jsonl_records_with_bad_values_are_skipped_and_reported_with_the_line() {
    let good = r#"{"type":"trade","symbol":"X","ts":1,"price":"1","size":"1","side":"sell"}"#;
    let after = r#"{"type":"trade","symbol":"X","ts":3,"price":"2","size":"1","side":"buy"}"#;
    let q = |bid: &str, bid_size: &str, ask: &str| {
        format!(
            r#"{{"type":"quote","symbol":"X","ts":2,"bid":"{bid}","bid_size":"{bid_size}","ask":"{ask}","ask_size":"1"}}"#
        )
    };
    let t = |price: &str, size: &str| {
        format!(
            r#"{{"type":"trade","symbol":"X","ts":2,"price":"{price}","size":"{size}","side":"buy"}}"#
        )
    };
    let b = |bid: &str, ask_size: &str| {
        format!(
            r#"{{"type":"book","symbol":"X","ts":2,"bids":[["{bid}","1"]],"asks":[["5","1"],["6","{ask_size}"]]}}"#
        )
    };
    let c = |low: &str, close: &str, volume: &str| {
        format!(
            r#"{{"type":"candle","symbol":"X","start":0,"interval":1,"open":"2","high":"3","low":"{low}","close":"{close}","volume":"{volume}"}}"#
        )
    };
    let cases = [
        (q("0", "1", "2"), "X: bid 0 is not positive; record dropped"),
        (
            q("-1", "1", "2"),
            "X: bid -1 is not positive; record dropped",
        ),
        (q("1", "1", "0"), "X: ask 0 is not positive; record dropped"),
        (
            q("1", "-2", "2"),
            "X: bid_size -2 is negative; record dropped",
        ),
        (t("0", "1"), "X: price 0 is not positive; record dropped"),
        (t("-5", "1"), "X: price -5 is not positive; record dropped"),
        (t("5", "-1"), "X: size -1 is not positive; record dropped"),
        (t("5", "0"), "X: size 0 is not positive; record dropped"),
        (
            b("0", "1"),
            "X: bids[0].price 0 is not positive; record dropped",
        ),
        (
            b("-4", "1"),
            "X: bids[0].price -4 is not positive; record dropped",
        ),
        (
            b("4", "-1"),
            "X: asks[1].size -1 is not positive; record dropped",
        ),
        (
            b("4", "0"),
            "X: asks[1].size 0 is not positive; record dropped",
        ),
        (c("0", "2", "1"), "X: low 0 is not positive; record dropped"),
        // Also outside the bar's range: the bad price is what is reported, not a load error.
        (
            c("1", "-5", "1"),
            "X: close -5 is not positive; record dropped",
        ),
        (
            c("1", "2", "-1"),
            "X: volume -1 is negative; record dropped",
        ),
    ];
    for (line, want) in &cases {
        let text = format!("{good}\n{line}\n{after}\n");
        let replay =
            parse_jsonl("data/x.jsonl", text.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            only_issue(&replay),
            format!("data/x.jsonl:2: {want}"),
            "{line}"
        );
        let prices: Vec<String> = replay
            .events
            .iter()
            .map(|e| match e {
                MarketEvent::Trade(t) => t.price.to_string(),
                other => panic!("{other:?} was not skipped"),
            })
            .collect();
        assert_eq!(prices, ["1", "2"], "{line}");
    }
    // A quiet minute: a candle with volume 0 and a quote with size 0 are fine.
    let fine = format!("{}\n{}\n", q("1", "0", "2"), c("1", "2", "0"));
    let replay = parse_jsonl("ok.jsonl", fine.as_bytes()).unwrap();
    assert_eq!((replay.events.len(), replay.issues.len()), (2, 0));
}

/// A bar with a price that is not positive or a negative volume is skipped and reported with
/// its line (the header is line 1).
#[test]
fn bars_with_bad_values_are_skipped_and_reported_with_the_line() {
    let cases = [
        ("2,3,0,2,1", "low 0 is not positive"),
        ("2,3,-5,2,1", "low -5 is not positive"),
        ("0,0,0,0,1", "open 0 is not positive"),
        ("2,3,1,-1,1", "close -1 is not positive"),
        ("2,3,1,2,-7", "volume -7 is negative"),
    ];
    for (values, want) in cases {
        let replay = bars(&format!(
            "2022-01-01 00:00:00,1,1,1,1,1\n2022-01-01 00:01:00,{values}\n2022-01-01 00:02:00,4,4,4,4,0\n"
        ))
        .unwrap_or_else(|e| panic!("{values}: {e}"));
        assert_eq!(
            only_issue(&replay),
            format!("data.csv:3: X: {want}; record dropped"),
            "{values}"
        );
        let closes: Vec<String> = replay.candles().map(|c| c.close.to_string()).collect();
        assert_eq!(closes, ["1", "4"], "{values}");
    }
}

/// A depth row with a price that is not positive or a negative quantity is reported with its
/// line and left out of the book; the rest of its event is applied. Quantity 0 removes a level.
#[test]
fn depth_rows_with_bad_values_are_left_out_and_reported_with_the_line() {
    let cases = [
        ("0", "1", "price 0 is not positive"),
        ("-10.2", "1", "price -10.2 is not positive"),
        ("10.2", "-1", "qty -1 is negative"),
    ];
    for (price, qty, want) in cases {
        let replay = depth(&format!(
            "BTCUSDT,2000,100,100,b,snap,10.0,1,-1\n\
             BTCUSDT,2000,100,100,a,snap,10.5,2,-1\n\
             BTCUSDT,2001,101,101,b,set,{price},{qty},100\n\
             BTCUSDT,2001,101,101,a,set,10.4,3,100\n"
        ));
        assert_eq!(
            only_issue(&replay),
            format!("d.csv:4: BTCUSDT: {want}; record dropped"),
            "{price} {qty}"
        );
        let MarketEvent::Book(book) = &replay.events[2] else {
            panic!("{:?}", replay.events)
        };
        assert_eq!(
            book.bids,
            [BookLevel {
                price: d("10.0"),
                size: d("1")
            }]
        );
        assert_eq!(
            book.asks[0],
            BookLevel {
                price: d("10.4"),
                size: d("3")
            }
        );
        assert!(replay.events.iter().all(MarketEvent::is_sane));
    }
    let removed = depth(concat!(
        "BTCUSDT,2000,100,100,b,snap,10.0,1,-1\n",
        "BTCUSDT,2000,100,100,a,snap,10.5,2,-1\n",
        "BTCUSDT,2001,101,101,a,set,10.5,0,100\n",
    ));
    assert!(removed.issues.is_empty(), "{:?}", removed.issues);
}

#[test]
fn jsonl_keeps_a_recorded_crossed_quote_and_flags_it() {
    let text =
        r#"{"type":"quote","symbol":"X","ts":5,"bid":"2","bid_size":"1","ask":"2","ask_size":"1"}"#;
    let replay = parse_jsonl("c.jsonl", text.as_bytes()).unwrap();
    assert_eq!(replay.events.len(), 1);
    let issue = QualityIssue::CrossedBook {
        symbol: Arc::from("X"),
        bid: d("2"),
        ask: d("2"),
    };
    assert_eq!(replay.issues[0].issue, issue);
    assert_eq!(
        replay.issues[0].to_string(),
        "c.jsonl:1: X: locked book: best bid 2 >= best ask 2"
    );
}

#[test]
fn formats_are_detected_and_files_loaded_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let bars_path = dir.path().join("eth-usdt-2022.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io::Write::write_all(
        &mut gz,
        format!("{BARS}2022-01-01 00:00:00,1,2,0.5,1.5,3\n").as_bytes(),
    )
    .unwrap();
    std::fs::write(&bars_path, gz.finish().unwrap()).unwrap();
    let snap = dir.path().join("snap.csv");
    std::fs::write(&snap, format!("{DEPTH_HEADER}BTCUSDT,1640995200000,100,100,b,snap,10.0,1,-1\nBTCUSDT,1640995200000,100,100,a,snap,10.5,1,-1\n")).unwrap();
    let update = dir.path().join("update.csv");
    std::fs::write(
        &update,
        format!("{DEPTH_HEADER}BTCUSDT,1640995260000,101,101,a,set,10.4,1,100\n"),
    )
    .unwrap();
    let replay = load(&[&bars_path, &snap, &update], &ReplayOptions::default()).unwrap();
    // The bar closes at 00:01, after the snapshot (00:00) and with the update (00:01).
    let seen: Vec<(&str, &str)> = replay
        .events
        .iter()
        .map(|e| (&**e.symbol(), e.kind().as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("BTCUSDT", "book"),
            ("BTCUSDT", "quote"),
            ("ETH-USDT", "candle"),
            ("BTCUSDT", "book"),
            ("BTCUSDT", "quote")
        ]
    );
    assert!(replay.issues.is_empty());

    assert_eq!(detect("a.ndjson", b"").unwrap(), Format::Jsonl);
    assert_eq!(
        detect("feed", b"{\"type\":\"trade\"}").unwrap(),
        Format::Jsonl
    );
    let err = detect("notes.txt", b"hello,world\n").unwrap_err();
    assert!(
        err.to_string().starts_with("notes.txt: unknown format"),
        "{err}"
    );
    let err = load(&[dir.path().join("missing.csv")], &ReplayOptions::default()).unwrap_err();
    assert!(matches!(err, ReplayError::Read { .. }), "{err}");
    let broken = dir.path().join("broken.csv.gz");
    std::fs::write(&broken, b"not gzip at all").unwrap();
    let err = load(&[&broken], &ReplayOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a valid gzip file"), "{err}");
    // Errors name the file as given.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{BARS}2022-01-01 00:00:00,1,x,0.5,1.5,3\n")).unwrap();
    let err = load(
        &[&bad],
        &ReplayOptions {
            symbol: Some(Arc::from("X")),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: column \"high\": \"x\" is not a decimal",
            bad.display()
        )
    );
}

#[test]
fn time_order_flags_a_symbol_going_back() {
    let mut order = TimeOrder::new();
    let a: Arc<str> = Arc::from("A");
    let b: Arc<str> = Arc::from("B");
    assert_eq!(order.observe(&a, 10), None);
    assert_eq!(order.observe(&a, 10), None);
    assert_eq!(order.observe(&b, 5), None);
    assert_eq!(
        order.observe(&a, 9),
        Some(QualityIssue::NonMonotonicTime {
            symbol: a.clone(),
            previous: 10,
            got: 9
        })
    );
    // The last good time is kept.
    assert!(order.observe(&a, 9).is_some());
    assert_eq!(order.observe(&a, 11), None);
}

#[test]
fn staleness_reports_each_silence_once() {
    let mut s = Staleness::new(Duration::from_secs(5));
    let a: Arc<str> = Arc::from("A");
    let b: Arc<str> = Arc::from("B");
    s.observe(&a, 0);
    s.observe(&b, 3 * SEC);
    assert!(s.check(5 * SEC).is_empty());
    assert_eq!(
        s.check(5 * SEC + 1),
        vec![QualityIssue::Stale {
            symbol: a.clone(),
            last: 0,
            now: 5 * SEC + 1
        }]
    );
    assert!(s.check(6 * SEC).is_empty());
    assert!(s.is_stale("A", 6 * SEC) && !s.is_stale("B", 6 * SEC) && !s.is_stale("C", 6 * SEC));
    assert_eq!(s.check(9 * SEC).len(), 1);
    s.observe(&a, 10 * SEC);
    assert!(!s.is_stale("A", 10 * SEC));
    let issues = s.check(16 * SEC);
    assert_eq!(
        issues,
        vec![QualityIssue::Stale {
            symbol: a.clone(),
            last: 10 * SEC,
            now: 16 * SEC
        }]
    );
    assert_eq!(
        describe(&issues[0]),
        "A: stale: no data for 6 s (last at 1970-01-01T00:00:10.000000000Z)"
    );
    assert!(s.check(100 * SEC).is_empty());
}
