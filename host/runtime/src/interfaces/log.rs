//! `colony:plugin/log`: guest log lines into `tracing`, tagged with the plugin's name.
//!
//! Limits (a guest controls both): a line is cut at 8 KiB, and at most
//! [`LINES_PER_CALL`] lines per event or call are written; the rest are dropped, counted,
//! and reported once at the end of the event. Never an error, never a trap.
//!
//! Every control character of a line (newline, carriage return, NUL, escape, …) is escaped
//! ([`crate::guest_text::escape_controls`]), so one guest line stays one log line and cannot
//! pass for a line of the host's.

use wasmtime::component::{HasData, Linker};

use crate::bindings::log::{self, Host, Level};
use crate::output::MAX_LINE;

/// Most log lines a plugin may write in one event or call.
pub const LINES_PER_CALL: u32 = 256;

/// Per-event counters of the `log` interface.
#[derive(Debug, Default)]
pub struct LogBudget {
    written: u32,
    dropped: u32,
}

impl LogBudget {
    /// Starts a new event.
    pub fn reset(&mut self) {
        self.written = 0;
        self.dropped = 0;
    }

    /// Lines dropped in the current event.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Logs one warning if lines were dropped in this event.
    pub(crate) fn report_dropped(&self, plugin: &str, call: &str) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "colony::guest",
                plugin,
                call,
                dropped = self.dropped,
                "log limit of {LINES_PER_CALL} lines per event exceeded; lines dropped"
            );
        }
    }
}

/// What the `log` interface works on: the plugin's name and its per-event budget.
pub struct LogCtx<'a> {
    /// The plugin, tagging every line.
    pub plugin: &'a str,
    /// The current event's line counts.
    pub budget: &'a mut LogBudget,
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = LogCtx<'a>;
}

/// Links `colony:plugin/log`; `ctx` hands out the store's [`LogCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> LogCtx<'_>,
) -> wasmtime::Result<()> {
    log::add_to_linker::<T, HasLog>(linker, ctx)
}

impl Host for LogCtx<'_> {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.budget.written >= LINES_PER_CALL {
            self.budget.dropped = self.budget.dropped.saturating_add(1);
            return Ok(());
        }
        self.budget.written += 1;
        let mut end = message.len().min(MAX_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = crate::guest_text::escape_controls(&message[..end]);
        let plugin = self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "colony::guest", plugin, "{text}"),
            Level::Debug => tracing::debug!(target: "colony::guest", plugin, "{text}"),
            Level::Info => tracing::info!(target: "colony::guest", plugin, "{text}"),
            Level::Warn => tracing::warn!(target: "colony::guest", plugin, "{text}"),
            Level::Error => tracing::error!(target: "colony::guest", plugin, "{text}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_dropped_and_counted_until_the_next_event() {
        let mut budget = LogBudget::default();
        let mut ctx = LogCtx {
            plugin: "p",
            budget: &mut budget,
        };
        for _ in 0..LINES_PER_CALL + 3 {
            ctx.log(Level::Info, "line\nwith a newline".into()).unwrap();
        }
        assert_eq!(budget.written, LINES_PER_CALL);
        assert_eq!(budget.dropped(), 3);
        budget.reset();
        assert_eq!(budget.dropped(), 0);
    }
}
