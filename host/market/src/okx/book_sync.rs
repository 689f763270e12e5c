//! Book continuity (pure): the per-subscription state machine that checks `seqId` order,
//! publishes only what changed, and asks for a resubscription on a gap or a crossed book.

use super::frame::{BookAction, BookMessage};
use super::subscription::Channel;
use crate::types::{Book, BookLevel, QualityIssue, Quote, Side, ValueRule};
use colony_risk::book::L2Book;
use std::sync::Arc;

/// Where a [`BookSync`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// No snapshot yet, or the book was given up after a gap; updates are skipped.
    AwaitingSnapshot,
    /// The book is continuous; `seq_id` is the last push's `seqId` (none on `books5`).
    Synced {
        /// The `seqId` the next update must name as its `prevSeqId`.
        seq_id: Option<i64>,
    },
}

/// What one book push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookStep {
    /// Applied; the top levels and the best bid/ask, each only if it changed (or is the first
    /// since the book was created or reset).
    Applied {
        /// The top `depth` levels, if they changed.
        book: Option<Book>,
        /// Best bid and ask, if they changed and both sides have levels.
        quote: Option<Quote>,
    },
    /// An update while awaiting a snapshot (left over from before a resubscribe): dropped.
    Skipped,
    /// Continuity is lost (a sequence gap, an update crossed the book, or a push carried a
    /// price that is not positive or a negative size): the book is given up
    /// until a fresh snapshot; the caller must resubscribe and report the issue.
    Resync(QualityIssue),
    /// A snapshot left the book crossed or locked: report the issue; nothing is published until
    /// it uncrosses.
    Crossed(QualityIssue),
    /// Applied, and the book is still crossed (already reported): nothing to publish.
    StillCrossed,
}

/// One instrument's book from `books` or `books5` pushes, with the continuity check. Pure: the
/// I/O layer acts on the [`BookStep`]s.
#[derive(Debug, Clone)]
pub struct BookSync {
    book: L2Book,
    channel: Channel,
    depth: usize,
    state: SyncState,
    crossed: bool,
    /// Whether anything was published since the last snapshot.
    published: bool,
    last_bids: Vec<BookLevel>,
    last_asks: Vec<BookLevel>,
    last_best: (Option<BookLevel>, Option<BookLevel>),
    scratch_bids: Vec<BookLevel>,
    scratch_asks: Vec<BookLevel>,
}

impl BookSync {
    /// An empty book for `symbol` fed by `channel`, publishing `depth` levels a side.
    pub fn new(symbol: Arc<str>, channel: Channel, depth: usize) -> BookSync {
        BookSync {
            book: L2Book::new(symbol),
            channel,
            depth,
            state: SyncState::AwaitingSnapshot,
            crossed: false,
            published: false,
            last_bids: Vec::with_capacity(depth),
            last_asks: Vec::with_capacity(depth),
            last_best: (None, None),
            scratch_bids: Vec::with_capacity(depth),
            scratch_asks: Vec::with_capacity(depth),
        }
    }

    /// The book as last applied.
    pub fn book(&self) -> &L2Book {
        &self.book
    }

    /// Where the state machine is.
    pub fn state(&self) -> SyncState {
        self.state
    }

    /// Gives the book up until the next snapshot (as after a gap, or a new connection).
    pub fn reset(&mut self) {
        self.state = SyncState::AwaitingSnapshot;
        self.crossed = false;
        self.published = false;
    }

    /// Applies one push. A level whose price is not positive or whose size is negative (0
    /// removes a level) makes the book untrustworthy: the push is not applied, the book is
    /// given up as after a gap, and the step is [`BookStep::Resync`] with
    /// [`QualityIssue::BadValue`].
    pub fn on_message(&mut self, msg: &BookMessage) -> BookStep {
        if let Some(issue) = bad_level(msg) {
            self.reset();
            return BookStep::Resync(issue);
        }
        match msg.action {
            BookAction::Snapshot => {
                self.book.apply_snapshot(&msg.bids, &msg.asks, msg.ts);
                self.state = SyncState::Synced { seq_id: msg.seq_id };
                // `published` stays: a `books5` snapshot that changes nothing publishes nothing.
                // After a gap `reset` cleared it, so the fresh book is published whole.
                self.crossed = false;
                self.after_apply(false)
            }
            BookAction::Update => {
                let SyncState::Synced { seq_id: last } = self.state else {
                    return BookStep::Skipped;
                };
                if self.channel == Channel::Books && (last.is_none() || msg.prev_seq_id != last) {
                    self.reset();
                    return BookStep::Resync(QualityIssue::SequenceGap {
                        symbol: self.book.symbol().clone(),
                        expected: last.unwrap_or(-1),
                        got: msg.prev_seq_id.unwrap_or(-1),
                    });
                }
                for level in &msg.bids {
                    self.book
                        .apply_update(Side::Buy, level.price, level.size, msg.ts);
                }
                for level in &msg.asks {
                    self.book
                        .apply_update(Side::Sell, level.price, level.size, msg.ts);
                }
                // A "no change" push (no levels) still moves the book's time on.
                self.book.set_ts(msg.ts);
                self.state = SyncState::Synced {
                    seq_id: msg.seq_id.or(last),
                };
                self.after_apply(true)
            }
        }
    }

    fn after_apply(&mut self, from_update: bool) -> BookStep {
        if let Some(issue) = self.book.check() {
            if self.crossed {
                return BookStep::StillCrossed;
            }
            if from_update && self.channel == Channel::Books {
                self.reset();
                return BookStep::Resync(issue);
            }
            self.crossed = true;
            return BookStep::Crossed(issue);
        }
        self.crossed = false;

        let best = (self.book.best_bid(), self.book.best_ask());
        let quote_changed = !self.published || best != self.last_best;
        self.last_best = best;
        let quote = if quote_changed {
            self.book.quote()
        } else {
            None
        };

        self.book
            .top_into(self.depth, &mut self.scratch_bids, &mut self.scratch_asks);
        let book_changed = !self.published
            || self.scratch_bids != self.last_bids
            || self.scratch_asks != self.last_asks;
        let book = if book_changed {
            std::mem::swap(&mut self.scratch_bids, &mut self.last_bids);
            std::mem::swap(&mut self.scratch_asks, &mut self.last_asks);
            Some(Book {
                symbol: self.book.symbol().clone(),
                bids: self.last_bids.clone(),
                asks: self.last_asks.clone(),
                ts: self.book.ts(),
            })
        } else {
            None
        };
        self.published = true;
        BookStep::Applied { book, quote }
    }
}

/// The first level of `msg` with a price that is not positive or a negative size.
fn bad_level(msg: &BookMessage) -> Option<QualityIssue> {
    [("bids", &msg.bids), ("asks", &msg.asks)]
        .into_iter()
        .flat_map(|(side, levels)| levels.iter().enumerate().map(move |l| (side, l)))
        .find_map(|(side, (i, level))| {
            let (what, value, rule) = if !ValueRule::Positive.admits(level.price) {
                ("price", level.price, ValueRule::Positive)
            } else if !ValueRule::NotNegative.admits(level.size) {
                ("size", level.size, ValueRule::NotNegative)
            } else {
                return None;
            };
            Some(QualityIssue::BadValue {
                symbol: msg.symbol.clone(),
                field: format!("{side}[{i}].{what}"),
                value,
                rule,
            })
        })
}
