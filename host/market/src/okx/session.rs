//! The feed task: connecting (TLS), reconnection with backoff, and one session's
//! subscribe, keepalive and frame handling.

use super::book_sync::{BookStep, BookSync};
use super::feed::{FeedItem, FeedStats, FeedStatus, OkxConfig, bump};
use super::frame::{BookMessage, Frame, parse_frame, preview};
use super::subscription::{Channel, Subscription, subscribe_request, unsubscribe_request};
use super::{MAX_MESSAGE, SUBSCRIBE_BATCH, UPGRADE_NOTICE};
use crate::types::MarketEvent;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The shortest reconnection delay, whatever the configuration says, so that a server that
/// accepts and at once closes cannot make the feed spin.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// The reconnection delay after `current`: doubled, within [`MIN_BACKOFF`] and `max`.
pub(super) fn next_backoff(current: Duration, max: Duration) -> Duration {
    current
        .saturating_mul(2)
        .clamp(MIN_BACKOFF, max.max(MIN_BACKOFF))
}

pub(super) async fn run(
    config: OkxConfig,
    out: mpsc::Sender<FeedItem>,
    stats: Arc<FeedStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = config.backoff_min.max(MIN_BACKOFF);
    let mut tls: Option<Connector> = None;
    loop {
        let opened = tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = out.closed() => return,
            r = tokio::time::timeout(config.connect_timeout, open(&config.url, &mut tls)) => r,
        };
        let (reason, healthy) = match opened {
            Ok(Ok(ws)) => {
                bump(&stats.connects);
                stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(url = %config.url, "okx feed connected");
                if out
                    .send(FeedItem::Status(FeedStatus::Connected))
                    .await
                    .is_err()
                {
                    return;
                }
                let mut session = Session {
                    config: &config,
                    out: &out,
                    stats: &stats,
                    ws,
                    books: book_states(&config),
                    healthy: false,
                };
                let end = session.run(&mut stop).await;
                stats.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Stop => return,
                    End::Lost(reason) => {
                        bump(&stats.disconnects);
                        (reason, session.healthy)
                    }
                }
            }
            Ok(Err(reason)) => (reason, false),
            Err(_) => ("connect timed out".to_string(), false),
        };
        if healthy {
            backoff = config.backoff_min.max(MIN_BACKOFF);
        }
        let delay = backoff;
        backoff = next_backoff(backoff, config.backoff_max);
        tracing::warn!(
            url = %config.url,
            %reason,
            retry_in_ms = delay.as_millis() as u64,
            "okx feed disconnected"
        );
        let status = FeedStatus::Disconnected {
            reason,
            retry_in: delay,
        };
        if out.send(FeedItem::Status(status)).await.is_err() {
            return;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = out.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Opens the WebSocket; TLS (rustls with the ring provider and the system's root certificates)
/// only for `wss://`, set up on first use.
pub(super) async fn open(url: &str, tls: &mut Option<Connector>) -> Result<Ws, String> {
    let connector = if url.starts_with("wss://") {
        if tls.is_none() {
            *tls = Some(tls_connector()?);
        }
        tls.clone()
    } else {
        None
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (ws, _response) =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config), true, connector)
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
    Ok(ws)
}

pub(super) fn tls_connector() -> Result<Connector, String> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "cannot load a root certificate");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no root certificates found on this system (install ca-certificates)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// A fresh book state, awaiting its snapshot, for each book subscription.
fn book_states(config: &OkxConfig) -> HashMap<Subscription, BookSync> {
    config
        .subscriptions
        .iter()
        .filter(|s| matches!(s.channel, Channel::Books | Channel::Books5))
        .map(|s| {
            let sync = BookSync::new(s.inst_id.clone(), s.channel, config.book_depth);
            (s.clone(), sync)
        })
        .collect()
}

/// How a session ended.
enum End {
    /// Stop asked for, or nobody is listening any more.
    Stop,
    /// The connection is gone (or must be given up); reconnect.
    Lost(String),
}

/// One open connection.
struct Session<'a> {
    config: &'a OkxConfig,
    out: &'a mpsc::Sender<FeedItem>,
    stats: &'a FeedStats,
    ws: Ws,
    books: HashMap<Subscription, BookSync>,
    /// Data (or a subscription) arrived on this connection, so backoff starts over.
    healthy: bool,
}

impl Session<'_> {
    async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> End {
        let config = self.config;
        for batch in config.subscriptions.chunks(SUBSCRIBE_BATCH) {
            if let Err(end) = self.send_text(subscribe_request(batch)).await {
                return end;
            }
        }
        let idle = tokio::time::sleep(config.ping_after);
        tokio::pin!(idle);
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    let _ = self.ws.close(None).await;
                    return End::Stop;
                }
                _ = self.out.closed() => {
                    let _ = self.ws.close(None).await;
                    return End::Stop;
                }
                _ = &mut idle => {
                    if awaiting_pong {
                        return End::Lost(format!(
                            "no pong within {} ms of a ping",
                            config.pong_timeout.as_millis()
                        ));
                    }
                    if let Err(end) = self.send_text("ping".to_string()).await {
                        return end;
                    }
                    bump(&self.stats.pings);
                    awaiting_pong = true;
                    idle.as_mut().reset(Instant::now() + config.pong_timeout);
                }
                msg = self.ws.next() => {
                    let msg = match msg {
                        None => return End::Lost("connection closed".into()),
                        Some(Err(e)) => return End::Lost(format!("connection failed: {e}")),
                        Some(Ok(msg)) => msg,
                    };
                    awaiting_pong = false;
                    idle.as_mut().reset(Instant::now() + config.ping_after);
                    let outcome = match msg {
                        Message::Text(text) => self.on_text(text.as_str()).await,
                        Message::Binary(bytes) => {
                            bump(&self.stats.messages);
                            self.parse_error(&format!("binary frame of {} bytes", bytes.len()), "");
                            Ok(())
                        }
                        Message::Close(frame) => {
                            let why = frame
                                .map(|f| format!(": {} {}", f.code, f.reason))
                                .unwrap_or_default();
                            Err(End::Lost(format!("closed by the server{why}")))
                        }
                        // tungstenite answers pings itself.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
                    };
                    if let Err(end) = outcome {
                        return end;
                    }
                }
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        bump(&self.stats.messages);
        let frame = match parse_frame(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.parse_error(&e.to_string(), text);
                return Ok(());
            }
        };
        match frame {
            Frame::Pong => {
                bump(&self.stats.pongs);
            }
            Frame::Subscribed(sub) => {
                self.healthy = true;
                tracing::debug!(subscription = %sub, "okx subscribed");
                self.emit(FeedItem::Status(FeedStatus::Subscribed(sub)))
                    .await?;
            }
            Frame::Unsubscribed(sub) => {
                tracing::debug!(subscription = %sub, "okx unsubscribed");
            }
            Frame::Error { code, msg } => {
                bump(&self.stats.venue_errors);
                tracing::warn!(%code, %msg, "okx refused a request");
                self.emit(FeedItem::Status(FeedStatus::VenueError { code, msg }))
                    .await?;
            }
            Frame::Notice { event, code, msg } => {
                tracing::info!(%event, %code, %msg, "okx notice");
                if code == UPGRADE_NOTICE {
                    return Err(End::Lost(format!("okx asked to reconnect: {msg}")));
                }
            }
            Frame::Ignored(what) => {
                bump(&self.stats.ignored);
                tracing::debug!(%what, "okx frame ignored");
            }
            Frame::Quotes(quotes) => {
                self.healthy = true;
                for quote in quotes {
                    self.emit_checked(MarketEvent::Quote(quote)).await?;
                }
            }
            Frame::Trades(trades) => {
                self.healthy = true;
                for trade in trades {
                    self.emit_checked(MarketEvent::Trade(trade)).await?;
                }
            }
            Frame::Books(messages) => {
                self.healthy = true;
                for message in &messages {
                    self.on_book(message).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_book(&mut self, msg: &BookMessage) -> Result<(), End> {
        let key = Subscription::new(msg.channel, msg.symbol.clone());
        // Only subscribed books are kept, so what the server sends cannot grow the map.
        let Some(sync) = self.books.get_mut(&key) else {
            bump(&self.stats.ignored);
            tracing::debug!(subscription = %key, "okx book push for an unsubscribed instrument");
            return Ok(());
        };
        let step = sync.on_message(msg);
        match step {
            BookStep::Applied { book, quote } => {
                if let Some(quote) = quote {
                    self.emit(FeedItem::Event(MarketEvent::Quote(quote)))
                        .await?;
                }
                if let Some(book) = book {
                    self.emit(FeedItem::Event(MarketEvent::Book(book))).await?;
                }
            }
            BookStep::Skipped => {
                bump(&self.stats.skipped);
            }
            BookStep::StillCrossed => {}
            BookStep::Crossed(issue) => {
                tracing::warn!(subscription = %key, ?issue, "okx book snapshot is crossed");
                self.emit(FeedItem::Issue(issue)).await?;
            }
            BookStep::Resync(issue) => {
                let n = bump(&self.stats.resyncs);
                tracing::warn!(
                    subscription = %key,
                    ?issue,
                    resyncs = n,
                    "okx book lost continuity: resubscribing"
                );
                self.emit(FeedItem::Issue(issue)).await?;
                self.emit(FeedItem::Status(FeedStatus::Resyncing(key.clone())))
                    .await?;
                let one = std::slice::from_ref(&key);
                self.send_text(unsubscribe_request(one)).await?;
                self.send_text(subscribe_request(one)).await?;
            }
        }
        Ok(())
    }

    /// Emits `event`, or, when a price is not positive or a size breaks its rule, the
    /// `QualityIssue::BadValue` instead: the record is dropped, the rest of its frame is not.
    async fn emit_checked(&self, event: MarketEvent) -> Result<(), End> {
        match event.bad_value() {
            None => self.emit(FeedItem::Event(event)).await,
            Some(issue) => {
                tracing::warn!(?issue, "okx record dropped: bad value");
                self.emit(FeedItem::Issue(issue)).await
            }
        }
    }

    async fn emit(&self, item: FeedItem) -> Result<(), End> {
        match &item {
            FeedItem::Event(_) => bump(&self.stats.events),
            FeedItem::Issue(_) => bump(&self.stats.issues),
            FeedItem::Status(_) => 0,
        };
        self.out.send(item).await.map_err(|_| End::Stop)
    }

    async fn send_text(&mut self, text: String) -> Result<(), End> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| End::Lost(format!("send failed: {e}")))
    }

    fn parse_error(&self, error: &str, frame: &str) {
        let n = bump(&self.stats.parse_errors);
        // A stream of garbage must not become a stream of log lines.
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(
                %error,
                frame = preview(frame, 200),
                parse_errors = n,
                "okx frame dropped"
            );
        }
    }
}
