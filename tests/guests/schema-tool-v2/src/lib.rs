//! schema-tool at version 2.0.0 (same name and schemas, answers `"version": "2.0.0"`), for
//! versioning and rollback tests.

const VERSION: &str = "2.0.0";
const MANIFEST_JSON: &[u8] = br#"{"schema":1,"name":"schema-tool","version":"2.0.0","kind":"tool","description":"Registration test tool.","capabilities":[]}"#;

include!("../../schema-tool/src/tool.rs");
