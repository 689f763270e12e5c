//! Guest stdout/stderr: forwarded line by line to `tracing` under the plugin's name, with a
//! byte cap per event or call. A write past the cap traps the guest with
//! [`LimitExceeded::Output`], so a flooding plugin ends its own event instead of filling the
//! host's log or memory. Lines are split at `\n` only; every other control character of a
//! line (carriage return, NUL, escape, …) is escaped as for `log`
//! ([`crate::guest_text::escape_controls`]), so a guest line cannot pass for a host line.

use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::limits::LimitExceeded;

/// Longest line forwarded to the log; longer lines are cut.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// Which guest stream a sink serves.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Guest stdout (logged at info).
    Stdout,
    /// Guest stderr (logged at warn).
    Stderr,
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    used: u64,
    line: Vec<u8>,
}

/// Shared byte budget for one store's stdout and stderr.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    plugin: Arc<str>,
    inner: Arc<Mutex<Inner>>,
}

impl OutputBudget {
    /// A budget of `limit` bytes per event for `plugin`.
    pub fn new(plugin: Arc<str>, limit: u64) -> OutputBudget {
        OutputBudget {
            plugin,
            inner: Arc::new(Mutex::new(Inner {
                limit,
                used: 0,
                line: Vec::new(),
            })),
        }
    }

    /// Ends an event or call: logs any partial line left (both streams share one line
    /// buffer; the rest is logged as stdout) and makes the full budget available to the next
    /// call. One lock, on every event's path.
    pub(crate) fn end_call(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.used = 0;
            if !inner.line.is_empty() {
                let line = std::mem::take(&mut inner.line);
                emit(&self.plugin, Stream::Stdout, &line);
            }
        }
    }

    /// A sink for one of the guest's streams.
    pub fn sink(&self, stream: Stream) -> OutputSink {
        OutputSink {
            budget: self.clone(),
            stream,
        }
    }

    fn write(&self, stream: Stream, bytes: &[u8]) -> Result<(), LimitExceeded> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(());
        };
        let len = bytes.len() as u64;
        if inner.used.saturating_add(len) > inner.limit {
            inner.used = inner.limit;
            inner.line.clear();
            return Err(LimitExceeded::Output(inner.limit));
        }
        inner.used += len;
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if chunk.ends_with(b"\n") {
                let mut line = std::mem::take(&mut inner.line);
                line.extend_from_slice(&chunk[..chunk.len() - 1]);
                emit(&self.plugin, stream, &line);
            } else {
                let room = MAX_LINE.saturating_sub(inner.line.len());
                let take = chunk.len().min(room);
                inner.line.extend_from_slice(&chunk[..take]);
            }
        }
        Ok(())
    }
}

fn emit(plugin: &str, stream: Stream, line: &[u8]) {
    let line = &line[..line.len().min(MAX_LINE)];
    let lossy = String::from_utf8_lossy(line);
    let text = crate::guest_text::escape_controls(&lossy);
    match stream {
        Stream::Stdout => {
            tracing::info!(target: "colony::guest", plugin, stream = "stdout", "{text}")
        }
        Stream::Stderr => {
            tracing::warn!(target: "colony::guest", plugin, stream = "stderr", "{text}")
        }
    }
}

/// One of the guest's output streams, writing into an [`OutputBudget`].
#[derive(Debug, Clone)]
pub struct OutputSink {
    budget: OutputBudget,
    stream: Stream,
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputSink {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputSink {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.budget
            .write(self.stream, &bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for OutputSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(
            self.budget
                .write(self.stream, buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_per_event_and_shared_by_both_streams() {
        let budget = OutputBudget::new("p".into(), 10);
        assert!(budget.write(Stream::Stdout, b"hello\n").is_ok());
        assert!(budget.write(Stream::Stderr, b"1234").is_ok());
        assert_eq!(
            budget.write(Stream::Stdout, b"x"),
            Err(LimitExceeded::Output(10))
        );
        budget.end_call();
        assert!(budget.write(Stream::Stdout, b"0123456789").is_ok());
    }
}
