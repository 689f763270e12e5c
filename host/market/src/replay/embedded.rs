//! The recorded data shipped inside the binary: a month of 1 m BTC perpetual bars and a Binance
//! depth snapshot with its updates.

use super::bars::parse_bars;
use super::depth::{parse_depth_rows, replay_depth};
use super::load::gunzip;
use super::results::{Replay, ReplayError, ReplayOptions};
use std::sync::Arc;

const BARS_NAME: &str = "btc-perp-2022-01-1m.csv";
const BARS_GZ: &[u8] = include_bytes!("../../../data/btc-perp-2022-01-1m.csv.gz");
const DEPTH_SNAP_NAME: &str = "binance-btcusdt-depth-snap.csv";
const DEPTH_SNAP: &[u8] = include_bytes!("../../../data/binance-btcusdt-depth-snap.csv");
const DEPTH_UPDATE_NAME: &str = "binance-btcusdt-depth-update.csv";
const DEPTH_UPDATE: &[u8] = include_bytes!("../../../data/binance-btcusdt-depth-update.csv");

/// The symbol of the shipped 1 m bars (the file has no symbol column; this is its instrument's
/// name at the venue it was recorded from).
pub const EMBEDDED_BARS_SYMBOL: &str = "BTC-PERP";

/// The shipped BTC perpetual 1 m bars, 2021-12-31 23:01 to 2022-02-01 05:31 UTC: 45,031
/// [`Candle`] events of symbol [`EMBEDDED_BARS_SYMBOL`] (`host/data/SOURCES.md`).
pub fn embedded_bars() -> Result<Replay, ReplayError> {
    let text = gunzip(BARS_NAME, BARS_GZ)?;
    let options = ReplayOptions {
        symbol: Some(Arc::from(EMBEDDED_BARS_SYMBOL)),
        ..ReplayOptions::default()
    };
    Ok(parse_bars(BARS_NAME, &text, &options)?)
}

/// The shipped Binance BTCUSDT depth snapshot and the update that follows it, replayed through
/// an [`L2Book`] with `depth` levels per side in Book events. The update does not continue the
/// snapshot (the recording skipped about 20 million update ids), so the replay reports that
/// sequence gap.
pub fn embedded_depth(depth: usize) -> Result<Replay, ReplayError> {
    let mut rows = parse_depth_rows(DEPTH_SNAP_NAME, DEPTH_SNAP)?;
    rows.extend(parse_depth_rows(DEPTH_UPDATE_NAME, DEPTH_UPDATE)?);
    Ok(replay_depth(&rows, depth))
}
