//! The host's market and order side: the order router it starts, the kill switch and
//! approvals, settling and pacing a replay, the feed, and the equity curve.

use super::{Host, Running};
use crate::audit::{AuditError, AuditStore};
use crate::bus::Bus;
use crate::config::HostConfig;
use crate::market::feed;
use crate::market::feed::{FeedReport, FeedSpec, Pace};
use crate::market::service::MarketService;
use crate::orders::journal::JournalError;
use crate::orders::service::{KillMode, KillSwitchFileError, OrderService};
use crate::policy::Policy;
use crate::venues::credentials::CredentialsError;
use colony_caps::manifest::ManifestError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The feed driver's view of a host.
struct HostPace<'a>(&'a Arc<Host>);

impl Pace for HostPace<'_> {
    fn set_time(&self, ns: u64) {
        self.0.clock().set(ns);
        // Due timers go into their agents' mailboxes now, so the lockstep waits for them.
        self.0.timers.fire_due(ns);
    }

    async fn settle(&self) {
        self.0.settle().await;
        // After the agents handled the event: the report's equity at this replay time.
        self.0.sample_equity();
    }

    async fn throttle(&self, window: usize) {
        self.0.throttle(window).await;
        self.0.sample_equity();
    }
}

/// Why the order router the configuration asks for was not started. Each variant that wraps
/// another error shows that error's message unchanged.
#[derive(Debug, thiserror::Error)]
pub enum TradingSetupError {
    /// The `orders.credentials` file or the environment holding venue keys was refused.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// `orders.venue okx` without OKX keys.
    #[error(
        "orders.venue okx needs OKX credentials: COLONY_OKX_API_KEY, \
         COLONY_OKX_SECRET and COLONY_OKX_PASSPHRASE, or [okx] in the \
         orders.credentials file"
    )]
    NoOkxCredentials,
    /// `orders.venue alpaca` without Alpaca keys.
    #[error(
        "orders.venue alpaca needs Alpaca credentials: COLONY_ALPACA_KEY_ID and \
         COLONY_ALPACA_SECRET_KEY, or [alpaca] in the orders.credentials file"
    )]
    NoAlpacaCredentials,
    /// The live venue's client could not be built (its URL, TLS roots, …).
    #[error(transparent)]
    Venue(#[from] crate::venues::http::ConfigError),
    /// The order journal could not be opened, or the orders it holds not recovered.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// `DATA_DIR/kill-switch.json` exists but was not read.
    #[error(transparent)]
    KillSwitches(#[from] KillSwitchFileError),
}

/// Why an operator's action on orders ([`Host::kill_switch`], [`Host::decide_approval`])
/// was refused or failed; the admin endpoint answers with its message.
#[derive(Debug, thiserror::Error)]
pub enum OrderControlError {
    /// The host trades on no venue.
    #[error("this host has no order venue")]
    NoVenue,
    /// A kill-switch mode other than `on`, `off`, `reducing` or `halt`.
    #[error("kill-switch {0:?}: expected on, off, reducing or halt")]
    KillMode(String),
    /// The agent named is not a valid plugin name.
    #[error(transparent)]
    AgentName(#[from] ManifestError),
    /// `DATA_DIR/kill-switch.json` was not written.
    #[error(transparent)]
    SaveKillSwitches(#[from] std::io::Error),
    /// An approval id that is not a number.
    #[error("approval id {0:?}: expected a number")]
    ApprovalId(String),
    /// No order waits for this approval (decided already, or never asked).
    #[error("no order is waiting for approval {0}")]
    NoApproval(u64),
    /// The action took effect but was not audited.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The order router the configuration asks for, fed by the market service, with the kill
/// switches of the last run restored.
pub(super) async fn start_orders(
    config: &HostConfig,
    bus: &Bus,
    market: Option<&Arc<MarketService>>,
    audit: &AuditStore,
) -> Result<Option<Arc<OrderService>>, TradingSetupError> {
    use crate::orders::config::VenueChoice;
    use crate::orders::venue::{PaperVenue, Venue};
    use crate::venues::credentials::VenueCredentials;
    use crate::venues::live::LiveVenue;
    let settings = &config.orders;
    let credentials = || match &settings.credentials {
        Some(path) => VenueCredentials::from_file(path),
        None => VenueCredentials::from_env(),
    };
    let venue: Arc<dyn Venue> = match &settings.venue {
        VenueChoice::None => return Ok(None),
        VenueChoice::Paper => Arc::new(PaperVenue::new(settings.router.paper.clone())),
        VenueChoice::Okx { url, demo } => {
            let creds = credentials()?
                .okx
                .ok_or(TradingSetupError::NoOkxCredentials)?;
            Arc::new(
                LiveVenue::okx(creds, *demo, url, settings.venue_timeout)?
                    .with_audit(audit.writer()),
            )
        }
        VenueChoice::Alpaca { url } => {
            let creds = credentials()?
                .alpaca
                .ok_or(TradingSetupError::NoAlpacaCredentials)?;
            let env = if url.contains("paper") {
                crate::venues::alpaca::AlpacaEnv::Paper
            } else {
                crate::venues::alpaca::AlpacaEnv::Live
            };
            Arc::new(
                LiveVenue::alpaca(creds, env, url, settings.venue_timeout)?
                    .with_audit(audit.writer()),
            )
        }
    };
    let url = match &settings.journal {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", config.data_dir.join("orders.db").display()),
    };
    let journal = crate::orders::journal::Journal::open(&url).await?;
    let orders = OrderService::with_journal(bus.clone(), settings.router.clone(), venue, journal);
    if let Some(m) = market {
        m.set_observer(orders.clone());
    }
    let now = config.clock.now_ns();
    for (agent, mode) in crate::orders::service::load_kill_switches(&config.data_dir)? {
        orders.kill_switch(agent.as_deref(), mode, now);
    }
    // Before any agent runs: today's client ids are taken again, and working orders are
    // reconciled with the venue.
    orders
        .recover(crate::clock::Clock::system().now_ns())
        .await?;
    // The venue's instrument list, so that orders for what it trades pass without a feed.
    orders.start_instruments().await;
    orders.start_polling(settings.venue_poll);
    Ok(Some(orders))
}

/// An agent's own risk limits from its `orders.place` grants (quantity and notional are
/// enforced per grant by the policy; rate and open-order limits are agent-wide).
pub(super) fn agent_risk_limits(policy: &Policy) -> crate::orders::risk::RiskLimits {
    let (per_min, open) = policy.grants().order_rate_limits();
    crate::orders::risk::RiskLimits {
        max_orders_per_min: per_min,
        max_open_orders: open,
        ..Default::default()
    }
}

impl Host {
    /// The order router, when the host has a venue.
    pub fn orders(&self) -> Option<&Arc<OrderService>> {
        self.orders.as_ref()
    }

    /// The order router, or the error an operator sees on a host without a venue.
    pub(super) fn venue(&self) -> Result<&Arc<OrderService>, OrderControlError> {
        self.orders.as_ref().ok_or(OrderControlError::NoVenue)
    }

    /// Records an operator's action on orders (`kind`: `kill-switch`, `order-approval`).
    async fn audit_operator(
        &self,
        kind: &str,
        actor: &str,
        detail: String,
    ) -> Result<(), AuditError> {
        let rec = crate::audit::AuditRecord::new(crate::audit::AuditKind::Other(kind.into()))
            .with_actor(actor)
            .with_detail(detail);
        self.audit.writer().append(rec).await?;
        Ok(())
    }

    /// Sets the kill switch (`on`, `off`, `reducing`, `halt`) for every agent or one, keeps it in
    /// `DATA_DIR/kill-switch.json` for the next start, and audits it.
    pub async fn kill_switch(
        &self,
        agent: Option<&str>,
        mode: &str,
        actor: &str,
    ) -> Result<serde_json::Value, OrderControlError> {
        let orders = self.venue()?;
        let m = KillMode::parse(mode).ok_or_else(|| OrderControlError::KillMode(mode.into()))?;
        if let Some(a) = agent {
            colony_caps::manifest::validate_name(a)?;
        }
        let cancelled = orders.kill_switch(agent, m, self.config.clock.now_ns());
        crate::orders::service::save_kill_switches(&self.config.data_dir, &orders.kill_switches())?;
        // Audited after it took effect: a stop must not wait on the audit store.
        let detail = format!(
            "{mode} for {}; {cancelled} working orders cancelled",
            agent.unwrap_or("*")
        );
        self.audit_operator("kill-switch", actor, detail).await?;
        Ok(serde_json::json!({ "cancelled": cancelled }))
    }

    /// Approves or denies an order waiting for approval; audited.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        actor: &str,
    ) -> Result<serde_json::Value, OrderControlError> {
        let orders = self.venue()?;
        let id: u64 = id
            .parse()
            .map_err(|_| OrderControlError::ApprovalId(id.into()))?;
        let now = self.config.clock.now_ns();
        let found = orders.resolve_approval(id, approve, "approval.denied", now);
        if !found {
            return Err(OrderControlError::NoApproval(id));
        }
        let verb = if approve { "approved" } else { "denied" };
        self.audit_operator("order-approval", actor, format!("approval {id} {verb}"))
            .await?;
        Ok(serde_json::Value::Null)
    }

    /// The market-data service, when the host has a feed.
    pub fn market(&self) -> Option<&Arc<MarketService>> {
        self.market.as_ref()
    }

    /// Waits until every agent has handled everything the bus queued for it, including what
    /// those messages made agents send each other ([`Bus::settle`]). A busy machine only makes
    /// this take longer: it gives up only after the agents' wall-clock hang guard (and at
    /// least 10 s; agents that message each other forever), with a warning, and counts it
    /// ([`Host::settle_timeouts`]): a replay that went on without its agents is not repeatable.
    pub async fn settle(&self) {
        let limit = self.settle_limit();
        if !self.bus.settle(limit).await {
            self.settle_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "agents did not settle within {} s; the replay goes on and is not repeatable",
                limit.as_secs()
            );
        }
    }

    /// How long [`Host::settle`] and [`Host::throttle`] wait for the agents: their wall-clock
    /// hang guard, at least 10 s.
    fn settle_limit(&self) -> Duration {
        Duration::from_millis(self.config.agent_limits.hang_guard_ms).max(Duration::from_secs(10))
    }

    /// How many times a lockstep replay went on before its agents had settled.
    pub fn settle_timeouts(&self) -> u64 {
        self.settle_timeouts.load(Ordering::Relaxed)
    }

    /// Waits until no agent has more than `window` bus messages waiting (gives up after the
    /// same limit as [`Host::settle`]).
    pub async fn throttle(&self, window: usize) {
        let deadline = tokio::time::Instant::now() + self.settle_limit();
        loop {
            let fullest = {
                let reg = self.registry.read().await;
                reg.by_name
                    .values()
                    .filter_map(|e| match &e.running {
                        Running::Agent(h) => h.mailbox_stats().map(|m| m.depth),
                        Running::Tool(..) => None,
                    })
                    .max()
                    .unwrap_or(0)
            };
            if fullest <= window || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Starts the configured feed (after the plugins are loaded, so agents that subscribe in
    /// `init` miss nothing). A replay was loaded and checked by [`Host::start`]. `None`
    /// without a feed.
    pub fn start_feed(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<FeedReport>> {
        let spec = self.config.feed.clone()?;
        let service = Arc::clone(self.market.as_ref()?);
        let host = Arc::clone(self);
        Some(match spec {
            FeedSpec::Okx(insts) => feed::okx(
                &insts,
                &self.config.okx_url,
                self.config.book_depth,
                service,
            ),
            FeedSpec::Synthetic { seed, symbols } => tokio::spawn(async move {
                let speed = host.config.speed;
                feed::synthetic(seed, symbols, None, &service, speed, &HostPace(&host))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "synthetic feed");
                        FeedReport::default()
                    })
            }),
            FeedSpec::Embedded | FeedSpec::Files(_) => tokio::spawn(async move {
                let replay = host.replay.lock().await.take();
                let Some(replay) = replay else {
                    return FeedReport::default();
                };
                let report =
                    feed::play(replay, &service, host.config.speed, &HostPace(&host)).await;
                tracing::info!(
                    events = report.events,
                    issues = report.issues,
                    "replay finished"
                );
                report
            }),
        })
    }

    /// Offers the venue's total equity at the host clock's time to [`Host::equity_curve`].
    fn sample_equity(&self) {
        if let Some(o) = &self.orders {
            self.equity
                .offer_with(self.config.clock.now_ns(), || o.total_equity());
        }
    }

    /// The equity samples the replay driver took (at replay times, after each event settled)
    /// plus one now; empty without a venue or before any account traded.
    pub fn equity_curve(&self) -> Vec<(u64, rust_decimal::Decimal)> {
        if let Some(o) = &self.orders {
            self.equity
                .finish(self.config.clock.now_ns(), o.total_equity());
        }
        self.equity.samples()
    }

    /// How many events the replay loaded at start will play (until the feed takes it).
    pub async fn replay_len(&self) -> Option<usize> {
        self.replay.lock().await.as_ref().map(|r| r.events.len())
    }
}
