//! Guest stdout/stderr: forwarded line by line to `tracing` under the plugin's name, with a
//! byte cap per event or call. A write past the cap traps the guest with
//! [`LimitExceeded::Output`], so a flooding plugin ends its own event instead of filling the
//! host's log or memory. Lines are split at `\n` only; every other control character of a
//! line (carriage return, NUL, escape, …) is escaped as for `log`
//! ([`crate::guest_text::escape_controls`]), so a guest line cannot pass for a host line.
//!
//! The budget also keeps the last lines of the current call's stderr ([`StderrTail`], at
//! most [`STDERR_TAIL`] bytes of whole lines), which [`crate::store::guarded`] takes at the
//! end of every call and adds to a trap's error: a Rust panic's message and location, or a
//! Python traceback, reach whoever made the call instead of only the host log. Each call
//! starts with an empty tail, so an error never shows an earlier call's output.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::limits::LimitExceeded;

/// Longest line forwarded to the log; longer lines are cut.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// How much of a call's stderr its error carries: the last lines, whole, up to about this
/// many bytes (a longer last line is cut, with a marker).
pub(crate) const STDERR_TAIL: usize = 2 * 1024;

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
    /// The partial last line of each stream (stdout, stderr).
    lines: [Vec<u8>; 2],
    tail: StderrTail,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The last lines a guest wrote to stderr in one call, within [`STDERR_TAIL`] bytes;
/// blank lines and Rust's hint about `RUST_BACKTRACE` are left out.
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    lines: VecDeque<String>,
    bytes: usize,
    /// Whether earlier lines were dropped to stay within the bound.
    dropped: bool,
}

impl StderrTail {
    fn push(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim();
        if trimmed.is_empty() || is_noise(trimmed) {
            return;
        }
        let text = crate::guest_text::cap(text.trim_end(), STDERR_TAIL).into_owned();
        self.bytes += text.len();
        self.lines.push_back(text);
        while self.bytes > STDERR_TAIL && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
                self.dropped = true;
            }
        }
    }

    /// The tail as one line for an error, or `None` if the call wrote nothing to stderr:
    /// its lines joined by `\n` (escaped, like every other control character, so the text
    /// stays on one line and cannot pass for a host line), a leading `…` when earlier lines
    /// were left out. A Rust panic's two lines (`thread '…' panicked at FILE:LINE:COL:`, then
    /// the message) read as one: `panicked at FILE:LINE:COL: message`.
    pub(crate) fn render(&self) -> Option<String> {
        if self.lines.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(self.bytes + self.lines.len() + 4);
        if self.dropped {
            out.push_str("… ");
        }
        let mut lines = self.lines.iter();
        let mut first = true;
        while let Some(line) = lines.next() {
            if !std::mem::take(&mut first) {
                out.push('\n');
            }
            match panic_location(line) {
                Some(location) => {
                    out.push_str(location);
                    if let Some(message) = lines.next() {
                        out.push(' ');
                        out.push_str(message);
                    }
                }
                None => out.push_str(line),
            }
        }
        Some(crate::guest_text::escape_controls(&out).into_owned())
    }
}

/// `panicked at FILE:LINE:COL:` when `line` is the first line of a Rust panic (`thread 'NAME'
/// (ID) panicked at …:`, whose message follows on the next line).
fn panic_location(line: &str) -> Option<&str> {
    let at = line.find("panicked at ")?;
    let (before, location) = line.split_at(at);
    // `thread 'NAME' ` or, since Rust 1.89, `thread 'NAME' (ID) `.
    let thread = before.is_empty() || (before.starts_with("thread '") && before.ends_with(' '));
    (thread && location.ends_with(':')).then_some(location)
}

/// Lines that say nothing about the failure.
fn is_noise(line: &str) -> bool {
    line.starts_with("note: run with `RUST_BACKTRACE=")
        || line.starts_with("note: Some details are omitted, run with `RUST_BACKTRACE=")
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
                lines: [Vec::new(), Vec::new()],
                tail: StderrTail::default(),
            })),
        }
    }

    /// Ends an event or call: logs any partial line left on either stream, makes the full
    /// budget available to the next call, and hands over (and clears) the call's stderr
    /// tail. One lock, on every event's path; no allocation unless the call wrote to stderr.
    pub(crate) fn end_call(&self) -> StderrTail {
        let Ok(mut inner) = self.inner.lock() else {
            return StderrTail::default();
        };
        inner.used = 0;
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !inner.lines[stream.index()].is_empty() {
                let line = std::mem::take(&mut inner.lines[stream.index()]);
                if let Stream::Stderr = stream {
                    inner.tail.push(&line);
                }
                emit(&self.plugin, stream, &line);
            }
        }
        std::mem::take(&mut inner.tail)
    }

    /// A sink for one of the guest's streams.
    pub fn sink(&self, stream: Stream) -> OutputSink {
        OutputSink {
            budget: self.clone(),
            stream,
        }
    }

    /// Takes `bytes` the guest wrote to `stream`, within the budget.
    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) -> Result<(), LimitExceeded> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(());
        };
        let len = bytes.len() as u64;
        if inner.used.saturating_add(len) > inner.limit {
            inner.used = inner.limit;
            inner.lines = [Vec::new(), Vec::new()];
            return Err(LimitExceeded::Output(inner.limit));
        }
        inner.used += len;
        let i = stream.index();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if chunk.ends_with(b"\n") {
                let mut line = std::mem::take(&mut inner.lines[i]);
                let room = MAX_LINE.saturating_sub(line.len());
                let body = &chunk[..chunk.len() - 1];
                line.extend_from_slice(&body[..body.len().min(room)]);
                if let Stream::Stderr = stream {
                    inner.tail.push(&line);
                }
                emit(&self.plugin, stream, &line);
            } else {
                let room = MAX_LINE.saturating_sub(inner.lines[i].len());
                let take = chunk.len().min(room);
                inner.lines[i].extend_from_slice(&chunk[..take]);
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

    fn tail_of(writes: &[(Stream, &[u8])]) -> Option<String> {
        let budget = OutputBudget::new("p".into(), 1 << 20);
        for (stream, bytes) in writes {
            budget.write(*stream, bytes).unwrap();
        }
        budget.end_call().render()
    }

    #[test]
    fn a_rust_panic_reads_as_one_line_without_the_backtrace_hint() {
        let panic = b"thread '<unnamed>' panicked at src/lib.rs:12:9:\nboom\nnote: run with \
                      `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            tail_of(&[(Stream::Stderr, panic)]).as_deref(),
            Some("panicked at src/lib.rs:12:9: boom")
        );
        // Written in pieces, as std does, with a line of the guest's own before it.
        let pieces: [&[u8]; 5] = [
            b"context: n=3\n",
            b"thread '<unnamed>' (1) panicked at ",
            b"src/lib.rs:12:9",
            b":\nindex out of bounds\n",
            b"\n",
        ];
        let writes: Vec<(Stream, &[u8])> = pieces.iter().map(|p| (Stream::Stderr, *p)).collect();
        assert_eq!(
            tail_of(&writes).as_deref(),
            Some("context: n=3\\npanicked at src/lib.rs:12:9: index out of bounds")
        );
    }

    #[test]
    fn the_tail_is_stderr_only_escaped_and_includes_a_last_partial_line() {
        let got = tail_of(&[
            (Stream::Stdout, b"partial stdout "),
            (Stream::Stderr, b"Traceback (most recent call last):\n"),
            (Stream::Stdout, b"more stdout\n"),
            (Stream::Stderr, b"  File \"t.py\", line 3\r\x1b[2K\n"),
            (Stream::Stderr, b"ValueError: bad"),
        ]);
        assert_eq!(
            got.as_deref(),
            Some(
                "Traceback (most recent call last):\\n  File \"t.py\", line 3\\r\\u{1b}[2K\\n\
                 ValueError: bad"
            )
        );
        assert_eq!(tail_of(&[(Stream::Stdout, b"only stdout\n")]), None);
    }

    #[test]
    fn each_call_has_its_own_tail() {
        let budget = OutputBudget::new("p".into(), 1 << 20);
        budget.write(Stream::Stderr, b"first call\n").unwrap();
        assert_eq!(budget.end_call().render().as_deref(), Some("first call"));
        assert_eq!(budget.end_call().render(), None);
        budget.write(Stream::Stderr, b"second call\n").unwrap();
        assert_eq!(budget.end_call().render().as_deref(), Some("second call"));
        // A call ended by the output limit leaves nothing for the next one either.
        let small = OutputBudget::new("p".into(), 8);
        small.write(Stream::Stderr, b"abc\n").unwrap();
        assert!(small.write(Stream::Stderr, b"0123456789").is_err());
        small.end_call();
        small.write(Stream::Stderr, b"next\n").unwrap();
        assert_eq!(small.end_call().render().as_deref(), Some("next"));
    }

    #[test]
    fn the_tail_keeps_the_last_whole_lines_within_its_bound() {
        let budget = OutputBudget::new("p".into(), 1 << 20);
        for i in 0..200 {
            let line = format!("line {i:03} {}\n", "x".repeat(90));
            budget.write(Stream::Stderr, line.as_bytes()).unwrap();
        }
        let got = budget.end_call().render().unwrap();
        assert!(got.len() <= STDERR_TAIL + 64, "{} bytes", got.len());
        assert!(got.starts_with("… line "), "{got}");
        assert!(
            got.ends_with(&format!("line 199 {}", "x".repeat(90))),
            "{got}"
        );
        // Whole lines only: every piece after the marker is a complete line.
        for piece in got.trim_start_matches("… ").split("\\n") {
            assert_eq!(piece.len(), 99, "{piece:?}");
        }
        // One line longer than the bound is cut with a marker.
        let long = format!("{}\n", "y".repeat(3 * STDERR_TAIL));
        budget.write(Stream::Stderr, long.as_bytes()).unwrap();
        let got = budget.end_call().render().unwrap();
        assert!(got.len() < STDERR_TAIL + 64, "{} bytes", got.len());
        assert!(got.contains("[truncated: "), "{got}");
    }
}
