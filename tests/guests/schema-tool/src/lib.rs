//! A tool fit for registration, version 1.0.0: its input schema requires an integer `n` and
//! gives an example; `invoke` answers `{"n": N, "version": "1.0.0"}`, and spins forever when
//! `spin` is true (so a test can tell a call that entered the sandbox from one that did not).

const VERSION: &str = "1.0.0";
const MANIFEST_JSON: &[u8] = br#"{"schema":1,"name":"schema-tool","version":"1.0.0","kind":"tool","description":"Registration test tool.","capabilities":[]}"#;

include!("tool.rs");
