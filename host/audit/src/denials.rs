//! Aggregated denials: a guest with no grants can be refused millions of times a minute, and
//! a row per refusal would let it fill the disk. [`Denials`] keeps the evidence without that:
//!
//! - the **first refusal of each distinct capability** of a plugin build (up to
//!   [`DENY_FIRST_IN_FULL`] distinct capabilities per build) is recorded in full, as an
//!   ordinary `decision` `deny` record;
//! - every later refusal is **counted** per plugin build and capability name
//!   (`messaging.publish`, `market.read`, …), and at the end of each window
//!   ([`DENY_WINDOW`] after the first counted one), when the writer is flushed, and at
//!   shutdown, one `deny-summary` record per name says how many were refused in it.
//!
//! So a build writes at most `DENY_FIRST_IN_FULL` full records in its life, plus one summary
//! per capability name it is refused per window, whatever the guest does. The counts add up:
//! full `deny` records plus the counts of the summaries are every refusal.
//!
//! Pure bookkeeping: no I/O and no tasks; the writer task ([`super::writer`]) asks it what is
//! due and appends the summaries to the chain like any other record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::{AuditKind, AuditRecord, Decision};

/// How long a window of counted denials lasts before its summary is written.
pub const DENY_WINDOW: Duration = Duration::from_secs(10);
/// Distinct capability strings per plugin build whose first refusal is recorded in full.
pub const DENY_FIRST_IN_FULL: usize = 32;
/// Capability names counted apart per build; refusals under further names are counted under
/// [`OTHER_NAME`] (the host's capability names are far fewer; this only bounds memory).
const MAX_NAMES_PER_BUILD: usize = 64;
/// The name refusals are counted under past [`MAX_NAMES_PER_BUILD`].
const OTHER_NAME: &str = "other";
/// Longest capability name kept, in bytes.
const MAX_NAME_BYTES: usize = 64;

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Write it as it is: the first refusal of this capability for this build.
    InFull,
    /// Counted; `opened` is true when it opened a window (the writer must learn the new
    /// deadline).
    Counted {
        /// This refusal started a window.
        opened: bool,
    },
}

/// The denial bookkeeping of one audit writer.
#[derive(Debug)]
pub(super) struct Denials {
    window: Duration,
    builds: HashMap<(String, String), Build>,
}

#[derive(Debug, Default)]
struct Build {
    in_full: HashSet<String>,
    windows: BTreeMap<String, Window>,
}

#[derive(Debug)]
struct Window {
    count: u64,
    opened: Instant,
    opened_ns: i64,
    /// The capability counted, while only one was; `None` once several were.
    only: Option<String>,
}

impl Denials {
    pub(super) fn new(window: Duration) -> Denials {
        Denials {
            window,
            builds: HashMap::new(),
        }
    }

    /// Sets the window length (for tests and for an operator who wants another one).
    pub(super) fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Decides about one refusal record (`decision` `deny`) at `now`.
    pub(super) fn admit(&mut self, rec: &AuditRecord, now: Instant) -> Admit {
        let build = self
            .builds
            .entry((rec.plugin.clone(), rec.digest.clone()))
            .or_default();
        if build.in_full.contains(&rec.capability) {
            // Seen: counted below.
        } else if build.in_full.len() < DENY_FIRST_IN_FULL {
            build.in_full.insert(rec.capability.clone());
            return Admit::InFull;
        }
        let mut name = capability_name(&rec.capability);
        if !build.windows.contains_key(name) && build.windows.len() >= MAX_NAMES_PER_BUILD {
            name = OTHER_NAME;
        }
        match build.windows.get_mut(name) {
            Some(w) => {
                w.count += 1;
                if w.only.as_deref() != Some(rec.capability.as_str()) {
                    w.only = None;
                }
                Admit::Counted { opened: false }
            }
            None => {
                build.windows.insert(
                    name.to_string(),
                    Window {
                        count: 1,
                        opened: now,
                        opened_ns: rec.ts_ns,
                        only: Some(rec.capability.clone()),
                    },
                );
                Admit::Counted { opened: true }
            }
        }
    }

    /// When the earliest open window ends, if any is open.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.builds
            .values()
            .flat_map(|b| b.windows.values())
            .map(|w| w.opened + self.window)
            .min()
    }

    /// Closes the windows that have ended by `now` (every open one when `all`) and returns
    /// their summaries, stamped `now_ns`.
    pub(super) fn take(&mut self, now: Instant, now_ns: i64, all: bool) -> Vec<AuditRecord> {
        let window = self.window;
        let mut out = Vec::new();
        for ((plugin, digest), build) in &mut self.builds {
            build.windows.retain(|name, w| {
                if !all && w.opened + window > now {
                    return true;
                }
                let capability = w.only.take().unwrap_or_else(|| name.clone());
                let elapsed_ms = (now_ns.saturating_sub(w.opened_ns)).max(0) / 1_000_000;
                out.push(AuditRecord::deny_summary(
                    plugin,
                    digest,
                    &capability,
                    w.count,
                    elapsed_ms,
                    now_ns,
                ));
                false
            });
        }
        out.sort_by(|a, b| (&a.plugin, &a.capability).cmp(&(&b.plugin, &b.capability)));
        out
    }
}

/// `messaging.publish:a.b` → `messaging.publish`, cut to [`MAX_NAME_BYTES`].
fn capability_name(capability: &str) -> &str {
    let name = capability.split(':').next().unwrap_or(capability);
    let mut cut = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    &name[..cut]
}

impl AuditRecord {
    /// `count` refusals of `capability` (a whole capability when only one was refused, else
    /// its name) to the plugin build, over the `elapsed_ms` before `ts_ns`, that were not
    /// recorded one by one (kind `deny-summary`, decision `deny`, actor `host`).
    pub(crate) fn deny_summary(
        plugin: &str,
        digest: &str,
        capability: &str,
        count: u64,
        elapsed_ms: i64,
        ts_ns: i64,
    ) -> AuditRecord {
        AuditRecord {
            plugin: plugin.to_string(),
            digest: digest.to_string(),
            capability: capability.to_string(),
            decision: Some(Decision::Deny),
            actor: "host".into(),
            detail: format!("{count} more refused in {elapsed_ms} ms, not recorded one by one"),
            ..AuditRecord::new(AuditKind::DenySummary)
        }
        .at(ts_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(plugin: &str, cap: &str) -> AuditRecord {
        AuditRecord::decision(plugin, "d", cap, Decision::Deny)
    }

    /// Full records plus summary counts, as a reader of the audit would add them up.
    fn refusals(full: usize, summaries: &[AuditRecord]) -> u64 {
        full as u64
            + summaries
                .iter()
                .map(|s| super::super::summary_count(&s.detail).unwrap())
                .sum::<u64>()
    }

    #[test]
    fn the_first_of_each_capability_is_in_full_and_the_rest_is_counted_per_name() {
        let mut d = Denials::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut full = 0;
        for i in 0..1000 {
            let cap = format!("messaging.publish:x.{}", i % 50);
            if d.admit(&deny("p", &cap), t0) == Admit::InFull {
                full += 1;
            }
        }
        assert_eq!(full, DENY_FIRST_IN_FULL);
        assert_eq!(d.next_due(), Some(t0 + Duration::from_secs(10)));
        // Nothing is due before the window ends.
        assert!(d.take(t0 + Duration::from_secs(9), 0, false).is_empty());
        let s = d.take(t0 + Duration::from_secs(10), 10_000_000_000, false);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].kind, AuditKind::DenySummary);
        assert_eq!(s[0].capability, "messaging.publish", "several were counted");
        assert_eq!(refusals(full, &s), 1000);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_single_repeated_capability_is_named_whole_and_windows_are_per_name_and_build() {
        let mut d = Denials::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..5 {
            d.admit(&deny("p", "market.read:BTC"), t0);
            d.admit(&deny("q", "market.read:BTC"), t0);
            d.admit(&deny("p", "orders.place:BTC"), t0);
        }
        let s = d.take(t0, 0, true);
        let got: Vec<(&str, &str, Option<u64>)> = s
            .iter()
            .map(|r| {
                (
                    r.plugin.as_str(),
                    r.capability.as_str(),
                    super::super::summary_count(&r.detail),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("p", "market.read:BTC", Some(4)),
                ("p", "orders.place:BTC", Some(4)),
                ("q", "market.read:BTC", Some(4)),
            ]
        );
        // A new window after the summary: the capability stays "seen", so it is counted.
        assert_eq!(
            d.admit(&deny("p", "market.read:BTC"), t0),
            Admit::Counted { opened: true }
        );
    }

    #[test]
    fn names_are_bounded() {
        let mut d = Denials::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(DENY_FIRST_IN_FULL + 2 * MAX_NAMES_PER_BUILD) {
            d.admit(&deny("p", &format!("n{i}:x")), t0);
        }
        let s = d.take(t0, 0, true);
        // Every name up to the bound, and one `other` for the rest.
        assert_eq!(s.len(), MAX_NAMES_PER_BUILD + 1);
        assert!(s.iter().any(|r| r.capability == OTHER_NAME));
        assert_eq!(
            refusals(DENY_FIRST_IN_FULL, &s) as usize,
            DENY_FIRST_IN_FULL + 2 * MAX_NAMES_PER_BUILD
        );
        assert_eq!(
            capability_name("é".repeat(100).as_str()).len(),
            MAX_NAME_BYTES
        );
    }
}
