//! The demo swarm at max speed, as `colony run` alone plays it, beside the same replay with
//! no plugins.

use std::time::Instant;

use serde::Serialize;

/// The demo at max speed: what `colony run` alone does, timed.
#[derive(Debug, Clone, Serialize)]
pub struct DemoBench {
    /// Market events replayed.
    pub events: u64,
    /// Agents running (the shipped plugins that are agents).
    pub agents: usize,
    /// Events the agents handled together (market data, messages, timers, order events).
    pub deliveries: u64,
    /// Fills on the paper exchange.
    pub fills: u64,
    /// Wall-clock seconds from the feed's start to every agent being done with it.
    pub wall_s: f64,
    /// `events / wall_s`.
    pub events_per_sec: f64,
    /// The same replay through the same host with no plugins (the baseline, same run).
    pub bare_wall_s: f64,
    /// `events / bare_wall_s`.
    pub bare_events_per_sec: f64,
    /// `wall_s / bare_wall_s`.
    pub ratio: f64,
}

/// Runs the shipped plugins (the demo swarm) on the embedded replay at max speed, as
/// `colony run` alone does, and the same replay with an empty plugins folder; each in a fresh
/// data directory, the host started before the clock starts.
pub async fn demo() -> anyhow::Result<DemoBench> {
    async fn once(with_plugins: bool) -> anyhow::Result<(u64, usize, u64, u64, f64)> {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "colony-bench-demo-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = colony_host::config::HostConfig::new(dir.join("data"));
        config.plugins_dir = dir.join("plugins");
        std::fs::create_dir_all(&config.plugins_dir)?;
        if with_plugins {
            colony_host::embedded::install(&config.plugins_dir)?;
        }
        config.apply_demo();
        config.feed = Some(colony_host::market::feed::FeedSpec::Embedded);
        config.speed = colony_host::market::feed::Speed::Max;
        let host = colony_host::supervisor::Host::start(config).await?;
        let start = Instant::now();
        let feed = host
            .start_feed()
            .ok_or_else(|| anyhow::anyhow!("the demo host has no feed"))?;
        let report = feed.await?;
        host.settle().await;
        let wall = start.elapsed().as_secs_f64();
        let fills = host.orders().map_or(0, |o| o.counters().fills);
        let plugins = host.shutdown().await;
        let agents = plugins
            .iter()
            .filter(|p| p.info.kind == colony_caps::manifest::Kind::Agent)
            .count();
        let deliveries = plugins.iter().map(|p| p.delivered).sum();
        let _ = std::fs::remove_dir_all(&dir);
        Ok((report.events, agents, deliveries, fills, wall))
    }
    let (bare_events, _, _, _, bare_wall) = once(false).await?;
    let (events, agents, deliveries, fills, wall) = once(true).await?;
    if bare_events != events {
        anyhow::bail!("the two replays played {bare_events} and {events} events");
    }
    Ok(DemoBench {
        events,
        agents,
        deliveries,
        fills,
        wall_s: wall,
        events_per_sec: events as f64 / wall,
        bare_wall_s: bare_wall,
        bare_events_per_sec: events as f64 / bare_wall,
        ratio: wall / bare_wall,
    })
}
