//! Feeds: what `colony run --feed …` starts, and the drivers that move their events into the
//! [`MarketService`].
//!
//! | `--feed` | source | venue token |
//! |---|---|---|
//! | `replay` (the default) | the shipped real BTC perpetual 1-minute bars and Binance BTCUSDT depth | `replay` |
//! | `replay:FILE[,FILE…]` | recorded files in the formats of `docs/market-data.md` | `replay` |
//! | `synthetic[:SEED[:SYMBOLS]]` | the seeded generator (default seed 1, 4 symbols) | `synthetic` |
//! | `okx[:INST,…]` | the live OKX v5 public WebSocket (default `BTC-USDT`: tickers, trades, books) | `okx` |
//! | `none` | no feed | — |
//!
//! `--speed max` (the default) replays as fast as the agents take it; `--speed N` paces the
//! replay at N times the recorded pace (1: real time); `--speed fast` drops the lockstep for
//! throughput (the feed runs up to [`FAST_WINDOW`] events ahead of the slowest agent, still
//! without dropping anything, but agents' clocks and their messages to each other are no
//! longer in step with the events, so results may differ between runs). A replay runs in **lockstep**: before each
//! event the virtual clock is set to the event's time, and after it the driver waits until every
//! agent has handled everything in its mailbox (the event and whatever messages it caused), so
//! the same data and plugins give the same results every run, and no market data is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::okx::{Channel, FeedItem, OkxConfig, OkxFeed, Subscription};
use super::replay::{self, Replay, ReplayError, ReplayOptions};
use super::service::MarketService;
use super::synthetic::{Synthetic, SyntheticConfig};
use super::types::Timestamp;

/// Which feed to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSpec {
    /// The data shipped in the binary.
    Embedded,
    /// Recorded files.
    Files(Vec<PathBuf>),
    /// The seeded generator.
    Synthetic {
        /// Generator seed.
        seed: u64,
        /// How many symbols.
        symbols: usize,
    },
    /// The live OKX public feed for these instruments.
    Okx(Vec<String>),
}

impl FeedSpec {
    /// Parses `--feed`; `none` is `Ok(None)`.
    pub fn parse(text: &str) -> Result<Option<FeedSpec>, String> {
        let (kind, arg) = match text.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (text, None),
        };
        Ok(Some(match (kind, arg) {
            ("none", None) => return Ok(None),
            ("replay", None) | ("replay", Some("embedded")) => FeedSpec::Embedded,
            ("replay", Some(files)) if !files.is_empty() => {
                FeedSpec::Files(files.split(',').map(PathBuf::from).collect())
            }
            ("synthetic", arg) => {
                let mut parts = arg.unwrap_or("").split(':').filter(|p| !p.is_empty());
                let seed = match parts.next() {
                    Some(s) => s
                        .parse()
                        .map_err(|_| format!("--feed synthetic: seed {s:?} is not a number"))?,
                    None => 1,
                };
                let symbols = match parts.next() {
                    Some(s) => s
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=super::synthetic::MAX_SYMBOLS).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "--feed synthetic: {s:?} is not a symbol count (1 to {})",
                                super::synthetic::MAX_SYMBOLS
                            )
                        })?,
                    None => 4,
                };
                FeedSpec::Synthetic { seed, symbols }
            }
            ("okx", None) => FeedSpec::Okx(vec!["BTC-USDT".into()]),
            ("okx", Some(list)) if !list.is_empty() => {
                let insts: Vec<String> = list.split(',').map(str::to_owned).collect();
                for i in &insts {
                    colony_model::symbol::check_symbol(i)
                        .map_err(|e| format!("--feed okx: {e}"))?;
                }
                FeedSpec::Okx(insts)
            }
            _ => {
                return Err(format!(
                    "--feed {text:?}: expected replay, replay:FILE[,FILE…], synthetic[:SEED[:SYMBOLS]], okx[:INST,…] or none"
                ));
            }
        }))
    }

    /// The venue token of its subjects.
    pub fn venue(&self) -> &'static str {
        match self {
            FeedSpec::Embedded | FeedSpec::Files(_) => "replay",
            FeedSpec::Synthetic { .. } => "synthetic",
            FeedSpec::Okx(_) => "okx",
        }
    }

    /// Whether the data is live (staleness against the system clock).
    pub fn is_live(&self) -> bool {
        matches!(self, FeedSpec::Okx(_))
    }

    /// The replay this feed plays, for `Embedded` and `Files` (read and checked now, so a bad
    /// file stops the host before it starts, naming the file, line and column).
    pub fn load(&self, book_depth: usize) -> Result<Option<Replay>, ReplayError> {
        match self {
            FeedSpec::Embedded => Ok(Some(Replay::merge(vec![
                replay::embedded_bars()?,
                replay::embedded_depth(book_depth)?,
            ]))),
            FeedSpec::Files(paths) => {
                let options = ReplayOptions {
                    book_depth,
                    ..ReplayOptions::default()
                };
                replay::load(paths, &options).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// How fast a replay or the synthetic feed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// As fast as the agents take it, in lockstep: repeatable.
    Max,
    /// As fast as the agents take it, without lockstep: the feed runs ahead of the agents by
    /// up to [`FAST_WINDOW`] events (never more than half a mailbox, so nothing is dropped),
    /// and the clock an agent reads may be ahead of the event it handles. For throughput,
    /// not for repeatable results.
    Fast,
    /// This many times the recorded pace (1: real time).
    Times(u32),
}

impl Speed {
    /// Parses `--speed max|N`.
    pub fn parse(text: &str) -> Result<Speed, String> {
        match text {
            "max" => return Ok(Speed::Max),
            "fast" => return Ok(Speed::Fast),
            _ => {}
        }
        match text.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Speed::Times(n)),
            _ => Err(format!(
                "--speed {text:?}: expected max, fast or a whole number greater than zero"
            )),
        }
    }
}

/// What a feed did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedReport {
    /// Events published.
    pub events: u64,
    /// Data-quality issues reported.
    pub issues: u64,
    /// Times of the first and last event.
    pub first: Timestamp,
    /// Time of the last event.
    pub last: Timestamp,
}

/// What the driver needs from the host: set the virtual clock, and wait until every agent has
/// handled what it was sent.
pub trait Pace: Send + Sync {
    /// The feed's time is now `ns`.
    fn set_time(&self, ns: Timestamp);
    /// Waits until the agents are idle.
    fn settle(&self) -> impl std::future::Future<Output = ()> + Send;
    /// Waits until no agent has more than `window` messages waiting.
    fn throttle(&self, window: usize) -> impl std::future::Future<Output = ()> + Send;
}

/// Events `--speed fast` lets the feed run ahead of the slowest agent (half an agent mailbox).
pub(crate) const FAST_WINDOW: usize = 512;

/// Plays `replay` into `service` in lockstep (see the module doc).
pub async fn play(
    replay: Replay,
    service: &MarketService,
    speed: Speed,
    pace: &impl Pace,
) -> FeedReport {
    let mut report = FeedReport::default();
    let mut issues = replay.issues.into_iter().peekable();
    let mut previous: Option<Timestamp> = None;
    for event in replay.events {
        let at = replay::known_at(&event);
        if let (Speed::Times(n), Some(prev)) = (speed, previous)
            && at > prev
        {
            tokio::time::sleep(Duration::from_nanos((at - prev) / u64::from(n))).await;
        }
        while let Some(flagged) = issues.next_if(|f| f.ts <= at) {
            service.flagged(&flagged);
            report.issues += 1;
        }
        pace.set_time(at);
        service.publish(event);
        match speed {
            Speed::Fast => {
                if report.events % 64 == 63 {
                    pace.throttle(FAST_WINDOW - 64).await;
                }
            }
            Speed::Max | Speed::Times(_) => pace.settle().await,
        }
        report.events += 1;
        if previous.is_none() {
            report.first = at;
        }
        report.last = at;
        previous = Some(at);
    }
    for flagged in issues {
        service.flagged(&flagged);
        report.issues += 1;
    }
    pace.settle().await;
    service.finish();
    report
}

/// Runs the synthetic generator into `service` until `steps` steps (or forever with `None`),
/// paced by `speed` (free-running: no lockstep, as a load generator should be).
pub async fn synthetic(
    seed: u64,
    symbols: usize,
    steps: Option<u64>,
    service: &MarketService,
    speed: Speed,
    pace: &impl Pace,
) -> Result<FeedReport, String> {
    let config = SyntheticConfig::new(seed, symbols);
    let step = Duration::from_nanos(config.step_ns);
    let mut generator = Synthetic::new(config).map_err(|e| e.to_string())?;
    let mut report = FeedReport::default();
    let mut n = 0u64;
    while steps.is_none_or(|s| n < s) {
        let events = generator.next_step();
        if let Some(first) = events.first() {
            let at = first.ts();
            pace.set_time(at);
            if n == 0 {
                report.first = at;
            }
            report.last = at;
        }
        for e in events {
            service.publish(e);
            report.events += 1;
        }
        n += 1;
        match speed {
            Speed::Times(k) => tokio::time::sleep(step / k).await,
            // Let the agents run between steps on a busy runtime.
            Speed::Max | Speed::Fast if n.is_multiple_of(64) => tokio::task::yield_now().await,
            Speed::Max | Speed::Fast => {}
        }
    }
    Ok(report)
}

/// Starts the live OKX feed for `insts` (tickers, trades and books of each) at `url` (the
/// public endpoint unless testing) and publishes what it delivers until the returned task is
/// aborted or the feed ends.
pub fn okx(
    insts: &[String],
    url: &str,
    book_depth: usize,
    service: Arc<MarketService>,
) -> tokio::task::JoinHandle<FeedReport> {
    let subs = insts
        .iter()
        .flat_map(|i| {
            [Channel::Tickers, Channel::Trades, Channel::Books]
                .into_iter()
                .map(move |c| Subscription::new(c, i.as_str()))
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let mut config = OkxConfig::new(subs);
    config.url = url.to_owned();
    config.book_depth = book_depth;
    let feed = OkxFeed::spawn(config, tx);
    tokio::spawn(async move {
        let _feed = feed;
        let mut report = FeedReport::default();
        while let Some(item) = rx.recv().await {
            match item {
                FeedItem::Event(e) => {
                    let at = e.ts();
                    if report.events == 0 {
                        report.first = at;
                    }
                    report.last = at;
                    report.events += 1;
                    service.publish(e);
                }
                FeedItem::Issue(i) => {
                    report.issues += 1;
                    service.issue(&i);
                }
                FeedItem::Status(s) => tracing::info!(status = ?s, "okx feed"),
            }
        }
        report
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use colony_bus::Bus;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    /// `--feed okx` end to end: the feed task subscribes at the configured URL (a local server
    /// speaking OKX's documented frames) and what arrives lands in the service's snapshots and
    /// on the bus; a record with a bad price is counted with the feed's issues instead.
    #[tokio::test]
    async fn okx_feed_reaches_the_market_service() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            // One subscribe request (OKX takes several channels in one).
            let mut subscribed = Vec::new();
            while subscribed.is_empty() {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => subscribed.push(t.to_string()),
                    Some(Ok(_)) => {}
                    _ => return subscribed,
                }
            }
            let tickers = include_str!("okx_samples/ws_tickers.json");
            // A ticker whose bid is not positive first: dropped and counted, not published.
            let bad = tickers.replace("\"8888.88\"", "\"-1\"");
            assert_ne!(bad, tickers);
            ws.send(Message::text(bad)).await.unwrap();
            ws.send(Message::text(tickers)).await.unwrap();
            // Keep the connection open until the test ends.
            let _ = ws.next().await;
            subscribed
        });
        let bus = Bus::new();
        let md = bus.mailbox("reader", 16);
        bus.subscribe("reader", "md.okx.>", &md).unwrap();
        let service = Arc::new(MarketService::new(
            "okx",
            bus.clone(),
            true,
            crate::service::DEFAULT_STALE_AFTER,
        ));
        let task = okx(&["BTC-USDT".into()], &url, 5, service.clone());
        let env = tokio::time::timeout(Duration::from_secs(10), md.recv())
            .await
            .expect("a quote within 10 s")
            .unwrap();
        assert_eq!(env.subject, "md.okx.BTC-USDT.quote");
        let q = service.quote("BTC-USDT").unwrap();
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("8888.88".into(), "9999.99".into())
        );
        assert_eq!(q.ts, 1_597_026_383_085_000_000);
        assert_eq!(
            service.issues(),
            1,
            "the bad ticker is a data-quality issue"
        );
        assert_eq!(service.status("BTC-USDT").map(|s| s.issues), Some(1));
        assert_eq!(service.published(), 1);
        task.abort();
        let subscribed = server.await.unwrap_or_default();
        assert!(
            subscribed.iter().any(|s| s.contains("tickers")),
            "{subscribed:?}"
        );
        assert!(
            subscribed.iter().any(|s| s.contains("books")),
            "{subscribed:?}"
        );
    }

    /// A `Pace` that records the times it was given.
    #[derive(Default)]
    struct Times(std::sync::Mutex<Vec<Timestamp>>);

    impl Pace for Times {
        fn set_time(&self, ns: Timestamp) {
            self.0.lock().unwrap().push(ns);
        }
        async fn settle(&self) {}
        async fn throttle(&self, _window: usize) {}
    }

    #[tokio::test]
    async fn synthetic_feed_publishes_every_step_and_moves_the_clock() {
        let bus = Bus::new();
        let m = bus.mailbox("all", 100_000);
        bus.subscribe("all", "md.synthetic.>", &m).unwrap();
        let service =
            MarketService::new("synthetic", bus, false, crate::service::DEFAULT_STALE_AFTER);
        let pace = Times::default();
        let report = synthetic(7, 3, Some(50), &service, Speed::Max, &pace)
            .await
            .unwrap();
        assert!(report.events >= 50 * 3, "{report:?}");
        assert_eq!(m.depth() as u64, report.events, "every event on the bus");
        assert_eq!(service.symbols().len(), 3);
        let times = pace.0.lock().unwrap().clone();
        assert_eq!(times.len(), 50, "one clock step per generator step");
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "the clock only moves forward"
        );
        assert_eq!((report.first, report.last), (times[0], times[49]));
        // The same seed again gives the same events.
        let again = MarketService::new(
            "synthetic",
            Bus::new(),
            false,
            crate::service::DEFAULT_STALE_AFTER,
        );
        let report2 = synthetic(7, 3, Some(50), &again, Speed::Max, &Times::default())
            .await
            .unwrap();
        assert_eq!(report, report2);
        assert_eq!(service.quote("SYN0000-USD"), again.quote("SYN0000-USD"));
    }

    #[test]
    fn feed_and_speed_arguments() {
        assert_eq!(FeedSpec::parse("replay"), Ok(Some(FeedSpec::Embedded)));
        assert_eq!(FeedSpec::parse("none"), Ok(None));
        assert_eq!(
            FeedSpec::parse("replay:a.csv,b.jsonl"),
            Ok(Some(FeedSpec::Files(vec![
                "a.csv".into(),
                "b.jsonl".into()
            ])))
        );
        assert_eq!(
            FeedSpec::parse("synthetic:7:2"),
            Ok(Some(FeedSpec::Synthetic {
                seed: 7,
                symbols: 2
            }))
        );
        assert_eq!(
            FeedSpec::parse("okx:BTC-USDT,ETH-USDT"),
            Ok(Some(FeedSpec::Okx(vec![
                "BTC-USDT".into(),
                "ETH-USDT".into()
            ])))
        );
        for bad in ["replay:", "kraken", "synthetic:x", "okx:bad sym"] {
            assert!(FeedSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Speed::parse("max"), Ok(Speed::Max));
        assert_eq!(Speed::parse("10"), Ok(Speed::Times(10)));
        assert_eq!(Speed::parse("fast"), Ok(Speed::Fast));
        assert!(Speed::parse("0").is_err() && Speed::parse("quick").is_err());
    }
}
