//! The audit hash chain: the canonical encoding of one record and the link hash
//! `hash_n = blake3(prev_hash_n || encode(record_n))`, with `prev_hash_1` = 32 zero bytes.
//!
//! The encoding is unambiguous: a version byte, the fixed-width integers, then every text
//! field length-prefixed, in a fixed order, so no two different records share an encoding
//! (`plugin = "ab", digest = "c"` and `plugin = "a", digest = "bc"` differ; so do a missing
//! decision and an empty one). It covers `seq`, so a record moved to another position no
//! longer matches its hash. Pure: no I/O, no database types.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | encoding version, `1` |
//! | 8 | `seq`, u64 big-endian |
//! | 8 | `ts_ns`, i64 big-endian |
//! | 8 + n | `kind`, `plugin`, `digest`, `capability` (each: u64 BE byte length, UTF-8 bytes) |
//! | 1 (+ 8 + n) | `decision`: `0` when absent, else `1` and the length-prefixed text |
//! | 8 + n | `actor`, `detail` |

/// Length of a chain hash in bytes (blake3).
pub(crate) const HASH_LEN: usize = 32;

/// The `prev_hash` of the first record, and the head of an empty log.
pub(crate) const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// Version byte at the start of every encoding; a new encoding gets a new number.
const ENCODING_VERSION: u8 = 1;

/// The chained fields of one record, exactly as stored in `audit_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFields<'a> {
    /// Position in the chain, from 1 with no gaps.
    pub seq: u64,
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// `decision`, `grant`, `revoke`, ...
    pub kind: &'a str,
    /// Plugin name, empty when not about a plugin.
    pub plugin: &'a str,
    /// Plugin digest (blake3 hex), empty when unknown.
    pub digest: &'a str,
    /// Capability string, empty when not about a capability.
    pub capability: &'a str,
    /// `allow` or `deny` for decisions.
    pub decision: Option<&'a str>,
    /// Who did it (an operator, `policy`, `host`), empty for plugin actions.
    pub actor: &'a str,
    /// Short free text; never secrets or payloads.
    pub detail: &'a str,
}

/// Feeds the canonical encoding of `fields` to `sink`, piece by piece.
fn feed(fields: &ChainFields<'_>, sink: &mut impl FnMut(&[u8])) {
    fn text(s: &str, sink: &mut impl FnMut(&[u8])) {
        sink(&(s.len() as u64).to_be_bytes());
        sink(s.as_bytes());
    }
    sink(&[ENCODING_VERSION]);
    sink(&fields.seq.to_be_bytes());
    sink(&fields.ts_ns.to_be_bytes());
    text(fields.kind, sink);
    text(fields.plugin, sink);
    text(fields.digest, sink);
    text(fields.capability, sink);
    match fields.decision {
        None => sink(&[0]),
        Some(d) => {
            sink(&[1]);
            text(d, sink);
        }
    }
    text(fields.actor, sink);
    text(fields.detail, sink);
}

/// The canonical encoding of one record (what is hashed after the previous hash).
pub fn encode(fields: &ChainFields<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    feed(fields, &mut |b| out.extend_from_slice(b));
    out
}

/// The hash of a record that follows a record whose hash is `prev`.
pub(crate) fn link_hash(prev: &[u8; HASH_LEN], fields: &ChainFields<'_>) -> [u8; HASH_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    feed(fields, &mut |b| {
        hasher.update(b);
    });
    *hasher.finalize().as_bytes()
}

/// Lowercase hex of a hash, for reports and JSON.
pub fn to_hex(hash: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(hash.len() * 2);
    for b in hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChainFields<'static> {
        ChainFields {
            seq: 1,
            ts_ns: 2,
            kind: "decision",
            plugin: "ab",
            digest: "c",
            capability: "orders.place:BTC-USDT",
            decision: Some("allow"),
            actor: "",
            detail: "",
        }
    }

    #[test]
    fn encoding_is_the_documented_layout() {
        let f = ChainFields {
            seq: 0x0102,
            ts_ns: -1,
            kind: "k",
            plugin: "",
            digest: "d",
            capability: "",
            decision: None,
            actor: "a",
            detail: "xy",
        };
        let mut want = vec![1u8];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend_from_slice(&[0xff; 8]);
        for s in ["k", "", "d", ""] {
            want.extend_from_slice(&(s.len() as u64).to_be_bytes());
            want.extend_from_slice(s.as_bytes());
        }
        want.push(0);
        for s in ["a", "xy"] {
            want.extend_from_slice(&(s.len() as u64).to_be_bytes());
            want.extend_from_slice(s.as_bytes());
        }
        assert_eq!(encode(&f), want);
    }

    #[test]
    fn link_hash_is_blake3_of_prev_then_encoding() {
        let f = sample();
        let prev = [7u8; HASH_LEN];
        let mut bytes = prev.to_vec();
        bytes.extend_from_slice(&encode(&f));
        assert_eq!(link_hash(&prev, &f), *blake3::hash(&bytes).as_bytes());
        assert_ne!(link_hash(&prev, &f), link_hash(&GENESIS, &f));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = sample();
        let b = ChainFields {
            plugin: "a",
            digest: "bc",
            ..a
        };
        assert_ne!(encode(&a), encode(&b));
        let none = ChainFields {
            decision: None,
            ..a
        };
        let empty = ChainFields {
            decision: Some(""),
            ..a
        };
        assert_ne!(encode(&none), encode(&empty));
        // Moving text from the end of one field to the start of the next changes the encoding.
        let c = ChainFields {
            actor: "x",
            detail: "",
            ..a
        };
        let d = ChainFields {
            actor: "",
            detail: "x",
            ..a
        };
        assert_ne!(encode(&c), encode(&d));
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = sample();
        let h = link_hash(&GENESIS, &base);
        let variants = [
            ChainFields { seq: 2, ..base },
            ChainFields { ts_ns: 3, ..base },
            ChainFields {
                kind: "grant",
                ..base
            },
            ChainFields {
                plugin: "ac",
                ..base
            },
            ChainFields {
                digest: "d",
                ..base
            },
            ChainFields {
                capability: "orders.place:ETH-USDT",
                ..base
            },
            ChainFields {
                decision: Some("deny"),
                ..base
            },
            ChainFields {
                actor: "root",
                ..base
            },
            ChainFields {
                detail: "x",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(link_hash(&GENESIS, &v), h, "{v:?}");
        }
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
