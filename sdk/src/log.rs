//! Logging into the host's log (always granted).
//!
//! Each line is tagged by the host with the plugin's name. The host truncates a line over
//! 8 KiB and drops lines past 256 per event or call (counting them); neither is an error.
//! Off `wasm32` (native unit tests) lines go to stderr as `[LEVEL] message`.
//!
//! The [`info!`](crate::info)-style macros format like `format!`:
//!
//! ```
//! let symbol = "BTC-USDT";
//! colony_sdk::info!("watching {symbol}");
//! colony_sdk::warn!("spread is {} bps", 12);
//! colony_sdk::log::debug("plain text, no formatting");
//! ```

pub use crate::__bindings::agent::colony::plugin::log::Level;

/// Writes one line at `level`.
///
/// ```
/// colony_sdk::log::log(colony_sdk::log::Level::Info, "started");
/// ```
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::agent::colony::plugin::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{}] {message}", level_name(level));
}

#[cfg(not(target_arch = "wasm32"))]
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

/// Writes one line at [`Level::Trace`].
///
/// ```
/// colony_sdk::log::trace("entering on_market");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`].
///
/// ```
/// colony_sdk::log::debug("book depth 5");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`].
///
/// ```
/// colony_sdk::log::info("started");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`].
///
/// ```
/// colony_sdk::log::warn("stale quote ignored");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`].
///
/// ```
/// colony_sdk::log::error("order rejected");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Logs a `format!`-style line at [`Level::Trace`](crate::log::Level::Trace).
///
/// ```
/// colony_sdk::trace!("tick {}", 1);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style line at [`Level::Debug`](crate::log::Level::Debug).
///
/// ```
/// colony_sdk::debug!("depth {}", 5);
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style line at [`Level::Info`](crate::log::Level::Info).
///
/// ```
/// colony_sdk::info!("started with {} symbols", 3);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style line at [`Level::Warn`](crate::log::Level::Warn).
///
/// ```
/// colony_sdk::warn!("stale quote, age {} ms", 250);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style line at [`Level::Error`](crate::log::Level::Error).
///
/// ```
/// colony_sdk::error!("order {} rejected", "c-1");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}
