//! The plugin manifest, declared in Rust and encoded to JSON at compile time.
//!
//! The export macros embed the manifest as UTF-8 JSON in a custom section named
//! `colony-manifest`; the host reads it once at load (see `docs/manifest.md`). The JSON has
//! exactly the documented fields: `schema`, `name`, `version`, `kind`, `description`,
//! `capabilities`, and `limits` when at least one limit is set (an unset limit is omitted,
//! meaning "the operator's default").
//!
//! Everything here is a `const fn` so that the encoding happens in the compiler: the
//! section is a plain byte array in the binary, and a manifest that breaks a rule below is
//! a compile error.
//!
//! | field | rule checked at compile time |
//! |---|---|
//! | `schema` | must be [`Manifest::SCHEMA`] (`1`) |
//! | `name` | 1–64 chars of `a-z`, `0-9`, `-`, starting with a letter |
//! | `version` | `MAJOR.MINOR.PATCH` with an optional `-pre` / `+build` suffix |
//! | `kind` | must match the export macro used |
//! | `description` | at most 1024 chars |
//! | `capabilities` | each non-empty, without control characters (the host checks the grammar) |
//!
//! ```
//! use colony_sdk::Manifest;
//!
//! const MANIFEST: Manifest = Manifest::agent("hello-agent", "0.1.0")
//!     .description("Says hello.")
//!     .capabilities(&["messaging.publish:demo.>"])
//!     .fuel(10_000_000);
//!
//! const LEN: usize = colony_sdk::manifest::encoded_len(&MANIFEST);
//! const JSON: [u8; LEN] = colony_sdk::manifest::encode(&MANIFEST);
//! assert_eq!(
//!     std::str::from_utf8(&JSON).unwrap(),
//!     r#"{"schema":1,"name":"hello-agent","version":"0.1.0","kind":"agent","description":"Says hello.","capabilities":["messaging.publish:demo.>"],"limits":{"fuel":10000000}}"#
//! );
//! ```

/// Which world a plugin targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A long-lived agent exporting `handler` ([`export_agent!`](crate::export_agent)).
    Agent,
    /// A stateless tool exporting `tool-handler` ([`export_tool!`](crate::export_tool)).
    Tool,
}

impl Kind {
    /// The name used in the manifest JSON: `"agent"` or `"tool"`.
    ///
    /// ```
    /// assert_eq!(colony_sdk::Kind::Tool.as_str(), "tool");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::Tool => "tool",
        }
    }
}

/// Resource limits a plugin asks for; `None` means the operator's default.
///
/// A plugin may ask for less than the default, never more: the host clamps a larger request
/// and reports it.
///
/// ```
/// use colony_sdk::Limits;
///
/// let limits = Limits { cpu_ms: Some(20), ..Limits::NONE };
/// assert!(!limits.is_empty());
/// assert!(Limits::NONE.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per event or call.
    pub fuel: Option<u64>,
    /// CPU time the plugin's own code may consume per event or call, in milliseconds,
    /// measured on the thread that runs it (waits in host calls and time the machine spends
    /// elsewhere do not count).
    pub cpu_ms: Option<u64>,
    /// Maximum linear memory, in bytes.
    pub memory_bytes: Option<u64>,
    /// Maximum size of a message, result or other output, in bytes.
    pub output_bytes: Option<u64>,
}

impl Limits {
    /// No limit requested: every limit is the operator's default.
    pub const NONE: Limits = Limits {
        fuel: None,
        cpu_ms: None,
        memory_bytes: None,
        output_bytes: None,
    };

    /// Whether no limit is set (then the JSON has no `limits` object).
    ///
    /// ```
    /// assert!(colony_sdk::Limits::NONE.is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.fuel.is_none()
            && self.cpu_ms.is_none()
            && self.memory_bytes.is_none()
            && self.output_bytes.is_none()
    }
}

/// Who a plugin is and what it asks for, as embedded in its component.
///
/// Build one in a `const` with [`Manifest::agent`] or [`Manifest::tool`] and the builder
/// methods, or with a struct literal. Using `env!("CARGO_PKG_NAME")` and
/// `env!("CARGO_PKG_VERSION")` keeps the manifest in step with `Cargo.toml`:
///
/// ```
/// use colony_sdk::{Kind, Limits, Manifest};
///
/// const BUILT: Manifest = Manifest::tool("fx-rates", "1.2.0")
///     .description("Looks up FX rates.")
///     .capabilities(&["http.outbound:https://api.example.com"])
///     .cpu_ms(1500);
///
/// const LITERAL: Manifest = Manifest {
///     schema: Manifest::SCHEMA,
///     name: "fx-rates",
///     version: "1.2.0",
///     kind: Kind::Tool,
///     description: "Looks up FX rates.",
///     capabilities: &["http.outbound:https://api.example.com"],
///     limits: Limits { cpu_ms: Some(1500), ..Limits::NONE },
/// };
/// assert_eq!(BUILT, LITERAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Manifest format version; must be [`Manifest::SCHEMA`].
    pub schema: u32,
    /// Plugin name: 1–64 chars of `a-z`, `0-9`, `-`, starting with a letter.
    pub name: &'static str,
    /// Semantic version, e.g. `0.1.0`.
    pub version: &'static str,
    /// Which world the plugin targets.
    pub kind: Kind,
    /// One paragraph (at most 1024 chars) saying what the plugin does.
    pub description: &'static str,
    /// Capabilities requested (the operator decides what is granted), e.g.
    /// `messaging.publish:demo.>`.
    pub capabilities: &'static [&'static str],
    /// Limits requested; see [`Limits`].
    pub limits: Limits,
}

impl Manifest {
    /// The manifest format version this SDK writes.
    pub const SCHEMA: u32 = 1;

    /// A manifest for an agent that requests nothing.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::agent("trader", "0.1.0");
    /// assert_eq!(m.kind, colony_sdk::Kind::Agent);
    /// assert!(m.capabilities.is_empty());
    /// ```
    pub const fn agent(name: &'static str, version: &'static str) -> Manifest {
        Manifest::new(Kind::Agent, name, version)
    }

    /// A manifest for a tool that requests nothing.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::tool("echo-tool", "0.1.0");
    /// assert_eq!(m.kind, colony_sdk::Kind::Tool);
    /// ```
    pub const fn tool(name: &'static str, version: &'static str) -> Manifest {
        Manifest::new(Kind::Tool, name, version)
    }

    const fn new(kind: Kind, name: &'static str, version: &'static str) -> Manifest {
        Manifest {
            schema: Manifest::SCHEMA,
            name,
            version,
            kind,
            description: "",
            capabilities: &[],
            limits: Limits::NONE,
        }
    }

    /// Sets the description.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::agent("a", "0.1.0").description("Trades.");
    /// assert_eq!(m.description, "Trades.");
    /// ```
    pub const fn description(mut self, description: &'static str) -> Manifest {
        self.description = description;
        self
    }

    /// Sets the requested capabilities.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::agent("a", "0.1.0").capabilities(&["market.read:BTC-*"]);
    /// assert_eq!(m.capabilities, ["market.read:BTC-*"]);
    /// ```
    pub const fn capabilities(mut self, capabilities: &'static [&'static str]) -> Manifest {
        self.capabilities = capabilities;
        self
    }

    /// Sets all requested limits at once.
    ///
    /// ```
    /// use colony_sdk::{Limits, Manifest};
    /// let m = Manifest::agent("a", "0.1.0").limits(Limits { fuel: Some(1_000), ..Limits::NONE });
    /// assert_eq!(m.limits.fuel, Some(1_000));
    /// ```
    pub const fn limits(mut self, limits: Limits) -> Manifest {
        self.limits = limits;
        self
    }

    /// Asks for a fuel budget per event or call.
    ///
    /// ```
    /// assert_eq!(colony_sdk::Manifest::agent("a", "0.1.0").fuel(5).limits.fuel, Some(5));
    /// ```
    pub const fn fuel(mut self, fuel: u64) -> Manifest {
        self.limits.fuel = Some(fuel);
        self
    }

    /// Asks for a CPU-time budget per event or call, in milliseconds.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::agent("a", "0.1.0").cpu_ms(50);
    /// assert_eq!(m.limits.cpu_ms, Some(50));
    /// ```
    pub const fn cpu_ms(mut self, cpu_ms: u64) -> Manifest {
        self.limits.cpu_ms = Some(cpu_ms);
        self
    }

    /// The old name of [`Manifest::cpu_ms`], from when the limit was a wall-clock deadline.
    #[deprecated(note = "the limit is CPU time now: use `cpu_ms`")]
    pub const fn deadline_ms(self, ms: u64) -> Manifest {
        self.cpu_ms(ms)
    }

    /// Asks for a linear-memory cap, in bytes.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::agent("a", "0.1.0").memory_bytes(32 << 20);
    /// assert_eq!(m.limits.memory_bytes, Some(33_554_432));
    /// ```
    pub const fn memory_bytes(mut self, memory_bytes: u64) -> Manifest {
        self.limits.memory_bytes = Some(memory_bytes);
        self
    }

    /// Asks for an output-size cap, in bytes.
    ///
    /// ```
    /// let m = colony_sdk::Manifest::tool("t", "0.1.0").output_bytes(4096);
    /// assert_eq!(m.limits.output_bytes, Some(4096));
    /// ```
    pub const fn output_bytes(mut self, output_bytes: u64) -> Manifest {
        self.limits.output_bytes = Some(output_bytes);
        self
    }
}

/// Checks `manifest` against the rules in the [module docs](self) and against the `kind`
/// of the export macro; panics (a compile error when evaluated in a `const`) with a message
/// naming the broken rule.
///
/// ```
/// use colony_sdk::{Kind, Manifest};
/// colony_sdk::manifest::check(&Manifest::tool("echo-tool", "0.1.0"), Kind::Tool);
/// ```
///
/// ```should_panic
/// use colony_sdk::{Kind, Manifest};
/// colony_sdk::manifest::check(&Manifest::tool("Echo Tool", "0.1.0"), Kind::Tool);
/// ```
pub const fn check(manifest: &Manifest, kind: Kind) {
    if manifest.schema != Manifest::SCHEMA {
        panic!("colony manifest: `schema` must be 1");
    }
    if manifest.kind as u8 != kind as u8 {
        match kind {
            Kind::Agent => panic!("colony manifest: export_agent! needs a manifest of kind agent"),
            Kind::Tool => panic!("colony manifest: export_tool! needs a manifest of kind tool"),
        }
    }
    if !valid_name(manifest.name) {
        panic!(
            "colony manifest: `name` must be 1-64 chars of a-z, 0-9 and -, starting with a letter"
        );
    }
    if !valid_version(manifest.version) {
        panic!("colony manifest: `version` must be semver (MAJOR.MINOR.PATCH[-pre][+build])");
    }
    if char_count(manifest.description) > 1024 {
        panic!("colony manifest: `description` must be at most 1024 chars");
    }
    let mut i = 0;
    while i < manifest.capabilities.len() {
        let cap = manifest.capabilities[i].as_bytes();
        if cap.is_empty() {
            panic!("colony manifest: a capability is empty");
        }
        let mut j = 0;
        while j < cap.len() {
            if cap[j] < 0x20 || cap[j] == 0x7f {
                panic!("colony manifest: a capability contains a control character");
            }
            j += 1;
        }
        i += 1;
    }
}

/// Number of bytes [`encode`] writes for `manifest`.
///
/// ```
/// let m = colony_sdk::Manifest::agent("a", "0.1.0");
/// assert_eq!(colony_sdk::manifest::encoded_len(&m), colony_sdk::manifest::to_json(&m).len());
/// ```
pub const fn encoded_len(manifest: &Manifest) -> usize {
    let mut out = Out {
        buf: &mut [],
        len: 0,
    };
    write_manifest(&mut out, manifest);
    out.len
}

/// Encodes `manifest` as compact JSON into an array of exactly `N` bytes, where `N` must be
/// [`encoded_len`]`(manifest)` (otherwise this panics). Meant for `const` evaluation; see
/// the [module docs](self) for an example.
pub const fn encode<const N: usize>(manifest: &Manifest) -> [u8; N] {
    let mut buf = [0u8; N];
    let mut out = Out {
        buf: &mut buf,
        len: 0,
    };
    write_manifest(&mut out, manifest);
    if out.len != N {
        panic!("colony manifest: encode::<N> called with N != encoded_len(manifest)");
    }
    buf
}

/// Encodes `manifest` as compact JSON at run time (the same bytes as [`encode`]).
///
/// ```
/// let json = colony_sdk::manifest::to_json(&colony_sdk::Manifest::tool("t", "1.0.0"));
/// assert_eq!(
///     json,
///     r#"{"schema":1,"name":"t","version":"1.0.0","kind":"tool","description":"","capabilities":[]}"#
/// );
/// ```
pub fn to_json(manifest: &Manifest) -> String {
    let mut buf = vec![0u8; encoded_len(manifest)];
    let mut out = Out {
        buf: &mut buf,
        len: 0,
    };
    write_manifest(&mut out, manifest);
    // Only whole `&str`s and ASCII are written, so the bytes are valid UTF-8.
    String::from_utf8_lossy(&buf).into_owned()
}

/// A byte sink usable in `const fn`: counts every byte and stores those that fit in `buf`
/// (none when measuring).
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    const fn byte(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
        }
        self.len += 1;
    }

    const fn raw(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    /// A JSON string literal, escaping `"`, `\` and control characters.
    const fn string(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.byte(b'"');
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'"' => self.raw("\\\""),
                b'\\' => self.raw("\\\\"),
                b'\n' => self.raw("\\n"),
                b'\r' => self.raw("\\r"),
                b'\t' => self.raw("\\t"),
                0..=0x1f => {
                    self.raw("\\u00");
                    self.byte(HEX[(b >> 4) as usize]);
                    self.byte(HEX[(b & 0xf) as usize]);
                }
                _ => self.byte(b),
            }
            i += 1;
        }
        self.byte(b'"');
    }

    const fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while count > 0 {
            count -= 1;
            self.byte(digits[count]);
        }
    }

    /// `,"key":value` (or without the comma for the first field) for a set limit.
    const fn limit(&mut self, first: &mut bool, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            if !*first {
                self.byte(b',');
            }
            *first = false;
            self.string(key);
            self.byte(b':');
            self.number(v);
        }
    }
}

const fn write_manifest(out: &mut Out<'_>, m: &Manifest) {
    out.raw("{\"schema\":");
    out.number(m.schema as u64);
    out.raw(",\"name\":");
    out.string(m.name);
    out.raw(",\"version\":");
    out.string(m.version);
    out.raw(",\"kind\":");
    out.string(m.kind.as_str());
    out.raw(",\"description\":");
    out.string(m.description);
    out.raw(",\"capabilities\":[");
    let mut i = 0;
    while i < m.capabilities.len() {
        if i > 0 {
            out.byte(b',');
        }
        out.string(m.capabilities[i]);
        i += 1;
    }
    out.byte(b']');
    if !m.limits.is_empty() {
        out.raw(",\"limits\":{");
        let mut first = true;
        out.limit(&mut first, "fuel", m.limits.fuel);
        out.limit(&mut first, "cpu_ms", m.limits.cpu_ms);
        out.limit(&mut first, "memory_bytes", m.limits.memory_bytes);
        out.limit(&mut first, "output_bytes", m.limits.output_bytes);
        out.byte(b'}');
    }
    out.byte(b'}');
}

const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 64 || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// `MAJOR.MINOR.PATCH`, each a number without leading zeros, then optionally `-` and/or
/// `+` followed by non-empty dot-separated `[0-9A-Za-z-]` identifiers.
const fn valid_version(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    let mut part = 0;
    while part < 3 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || (b[start] == b'0' && i - start > 1) {
            return false;
        }
        part += 1;
        if part < 3 {
            if i >= b.len() || b[i] != b'.' {
                return false;
            }
            i += 1;
        }
    }
    if i == b.len() {
        return true;
    }
    if b[i] != b'-' && b[i] != b'+' {
        return false;
    }
    // The rest: identifiers of [0-9A-Za-z-] separated by `.`, with at most one `+`
    // switching from pre-release to build metadata.
    let mut seen_plus = b[i] == b'+';
    i += 1;
    let mut ident_len = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'.' || (c == b'+' && !seen_plus) {
            if ident_len == 0 {
                return false;
            }
            if c == b'+' {
                seen_plus = true;
            }
            ident_len = 0;
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            ident_len += 1;
        } else {
            return false;
        }
        i += 1;
    }
    ident_len > 0
}

const fn char_count(s: &str) -> usize {
    let b = s.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while i < b.len() {
        // Count every byte that does not continue a UTF-8 sequence.
        if b[i] & 0xc0 != 0x80 {
            count += 1;
        }
        i += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(m: &Manifest) -> Value {
        let text = to_json(m);
        assert_eq!(text.len(), encoded_len(m));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON {text:?}: {e}"))
    }

    #[test]
    fn encodes_the_documented_example() {
        const M: Manifest = Manifest::agent("hello-agent", "0.1.0")
            .description("Logs every event it receives and counts them in its state.")
            .capabilities(&["messaging.publish:demo.>"])
            .fuel(10_000_000)
            .cpu_ms(50)
            .memory_bytes(33_554_432);
        assert_eq!(
            parse(&M),
            json!({
              "schema": 1,
              "name": "hello-agent",
              "version": "0.1.0",
              "kind": "agent",
              "description": "Logs every event it receives and counts them in its state.",
              "capabilities": ["messaging.publish:demo.>"],
              "limits": { "fuel": 10000000, "cpu_ms": 50, "memory_bytes": 33554432 }
            })
        );
    }

    #[test]
    fn omits_limits_when_none_is_set() {
        let v = parse(&Manifest::tool("echo-tool", "0.1.0"));
        assert_eq!(
            v,
            json!({"schema": 1, "name": "echo-tool", "version": "0.1.0", "kind": "tool",
                   "description": "", "capabilities": []})
        );
    }

    #[test]
    fn encodes_each_limit_alone_and_extremes() {
        let cases: [(Limits, Value); 5] = [
            (
                Limits {
                    fuel: Some(0),
                    ..Limits::NONE
                },
                json!({"fuel": 0}),
            ),
            (
                Limits {
                    cpu_ms: Some(u64::MAX),
                    ..Limits::NONE
                },
                json!({"cpu_ms": u64::MAX}),
            ),
            (
                Limits {
                    memory_bytes: Some(1),
                    ..Limits::NONE
                },
                json!({"memory_bytes": 1}),
            ),
            (
                Limits {
                    output_bytes: Some(1_048_576),
                    ..Limits::NONE
                },
                json!({"output_bytes": 1048576}),
            ),
            (
                Limits {
                    fuel: Some(1),
                    cpu_ms: Some(2),
                    memory_bytes: Some(3),
                    output_bytes: Some(4),
                },
                json!({"fuel": 1, "cpu_ms": 2, "memory_bytes": 3, "output_bytes": 4}),
            ),
        ];
        for (limits, expected) in cases {
            let v = parse(&Manifest::agent("a", "0.1.0").limits(limits));
            assert_eq!(v["limits"], expected, "{limits:?}");
        }
    }

    #[test]
    fn escapes_strings() {
        let cases = [
            "plain",
            "quote \" and backslash \\",
            "newline\nreturn\rtab\t",
            "nul \u{0} bell \u{7} esc \u{1b} us \u{1f} del \u{7f}",
            "unicode: µ → 🐜",
            "",
        ];
        for description in cases {
            let v = parse(&Manifest::agent("a", "0.1.0").description(description));
            assert_eq!(v["description"], description, "{description:?}");
        }
        const CAPS: &[&str] = &["http.outbound:https://x.example/\"q\"", "a\\b", "state"];
        let v = parse(&Manifest::tool("t", "0.1.0").capabilities(CAPS));
        assert_eq!(v["capabilities"], json!(CAPS));
    }

    #[test]
    fn const_encoding_matches_run_time_encoding() {
        const M: Manifest = Manifest::tool("t", "1.0.0-rc.1+b5")
            .description("d\"\u{1}")
            .capabilities(&["log"])
            .output_bytes(7);
        const LEN: usize = encoded_len(&M);
        const BYTES: [u8; LEN] = encode(&M);
        assert_eq!(BYTES.as_slice(), to_json(&M).as_bytes());
    }

    #[test]
    fn names() {
        let good = ["a", "hello-agent", "x1", "a-b-c-0", &"a".repeat(64)];
        let bad = [
            "",
            "1a",
            "-a",
            "Hello",
            "a_b",
            "a b",
            "a.b",
            "é",
            &"a".repeat(65),
        ];
        for n in good {
            assert!(valid_name(n), "{n:?} should be valid");
        }
        for n in bad {
            assert!(!valid_name(n), "{n:?} should be invalid");
        }
    }

    #[test]
    fn versions() {
        let good = [
            "0.1.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0.3.7",
            "1.0.0+build.5",
            "1.0.0-rc.1+build-5",
        ];
        let bad = [
            "",
            "1",
            "1.2",
            "1.2.x",
            "01.2.3",
            "1.02.3",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.3 ",
            "v1.2.3",
            "1.2.3-a_b",
            "1.2.3.4",
        ];
        for v in good {
            assert!(valid_version(v), "{v:?} should be valid");
        }
        for v in bad {
            assert!(!valid_version(v), "{v:?} should be invalid");
        }
    }

    #[test]
    fn check_accepts_a_good_manifest_and_counts_chars_not_bytes() {
        let long = "é".repeat(1024);
        let long: &'static str = Box::leak(long.into_boxed_str());
        check(
            &Manifest::agent("a", "0.1.0")
                .description(long)
                .capabilities(&["state"]),
            Kind::Agent,
        );
    }

    #[test]
    fn check_rejects_each_broken_rule() {
        let too_long: &'static str = Box::leak("x".repeat(1025).into_boxed_str());
        let ok = Manifest::agent("a", "0.1.0");
        let cases: [(Manifest, Kind, &str); 7] = [
            (ok, Kind::Tool, "export_tool!"),
            (Manifest { schema: 2, ..ok }, Kind::Agent, "schema"),
            (Manifest { name: "A", ..ok }, Kind::Agent, "`name`"),
            (Manifest { version: "1", ..ok }, Kind::Agent, "`version`"),
            (ok.description(too_long), Kind::Agent, "`description`"),
            (ok.capabilities(&[""]), Kind::Agent, "empty"),
            (ok.capabilities(&["a\nb"]), Kind::Agent, "control"),
        ];
        for (m, kind, needle) in cases {
            let err = std::panic::catch_unwind(|| check(&m, kind))
                .expect_err("check should have panicked");
            let msg = err
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| err.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever text a plugin author puts in the description and capabilities (quotes,
        /// backslashes, control and invisible characters, any Unicode), the encoder writes
        /// valid JSON that reads back as exactly that text, at exactly `encoded_len` bytes.
        #[test]
        fn fuzz_encoder_writes_json_that_reads_back(
            description in proptest::prelude::any::<String>(),
            capabilities in proptest::collection::vec(proptest::prelude::any::<String>(), 0..4),
            fuel in proptest::option::of(proptest::prelude::any::<u64>()),
            memory in proptest::option::of(proptest::prelude::any::<u64>()),
        ) {
            let caps: Vec<&'static str> = capabilities.iter().cloned().map(leak).collect();
            let m = Manifest::agent("a", "0.1.0")
                .description(leak(description.clone()))
                .capabilities(Box::leak(caps.into_boxed_slice()))
                .limits(Limits { fuel, memory_bytes: memory, ..Limits::NONE });
            let v = parse(&m);
            proptest::prop_assert_eq!(v["description"].as_str(), Some(description.as_str()));
            let back: Vec<&str> = v["capabilities"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            proptest::prop_assert_eq!(back, capabilities.iter().map(String::as_str).collect::<Vec<_>>());
            proptest::prop_assert_eq!(v["limits"]["fuel"].as_u64(), fuel);
            proptest::prop_assert_eq!(v["limits"]["memory_bytes"].as_u64(), memory);
        }
    }
}
