//! The checks a component passes before anything can call it as a registered tool, in order:
//! it is a component of the `tool` world ([`Step::Component`]); it imports nothing beyond that
//! world and what its grants cover ([`Step::Imports`]); its `describe()` gives a valid name, a
//! description, valid JSON Schemas and an example input ([`Step::Describe`]); and a call with
//! that example succeeds in the sandbox and answers JSON that fits the output schema
//! ([`Step::Smoke`]). The first failure rejects the tool and names its step.
//!
//! **Architecture invariant:** this module stores nothing and audits nothing; a
//! [`Validated`] tool exists only in memory until the registry commits it.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

pub use crate::plugin::HTTP_IMPORTS;
use crate::plugin::{Linked, Loader, TOOL_IMPORTS, WASI_IMPORTS};
use crate::policy::Policy;
use crate::store::CallError;
use crate::tool::{ToolRunner, ToolSpec};
use colony_caps::manifest::Kind;
use colony_caps::{Capability, GrantSet};

/// A validation step, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The bytes are a component of the `tool` world that links.
    Component,
    /// Its imports are within the tool world and its grants.
    Imports,
    /// `describe()` gives a name, a description, schemas and an example.
    Describe,
    /// A call with the example input succeeds under the tool limits.
    Smoke,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Component => "component",
            Step::Imports => "imports",
            Step::Describe => "describe",
            Step::Smoke => "smoke",
        })
    }
}

/// A tool refused by one validation step.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tool rejected at step {step}: {reason}")]
pub struct Rejection {
    /// The step that failed.
    pub step: Step,
    /// Why, in one line.
    pub reason: String,
}

fn reject(step: Step, reason: impl Into<String>) -> Rejection {
    Rejection {
        step,
        reason: reason.into(),
    }
}

/// Where the grants of a tool come from: the caller builds the policy of a tool name and
/// digest (the host from its grant book; offline, from the book rebuilt from the audit).
pub trait GrantSource: Send + Sync {
    /// The policy a build `digest` of tool `name` runs under.
    fn policy(&self, name: &str, digest: &str) -> Arc<Policy>;

    /// What is granted to the name `name`, approved for a build or not: what a new build
    /// would be granted, which bounds its imports.
    fn granted(&self, name: &str) -> GrantSet;
}

/// A tool's schemas, compiled once.
pub struct Schemas {
    /// Validates arguments (the runner's check, [`ToolRunner::invoke`]).
    pub input: Arc<jsonschema::Validator>,
    /// Validates results, when the tool declares an output schema.
    pub output: Option<jsonschema::Validator>,
    /// The example input (first of the input schema's `examples`).
    pub example: Value,
}

/// A tool that passed every step, not yet stored.
pub struct Validated {
    /// Name callers use (from `describe()`).
    pub name: String,
    /// Whether an embedded manifest gives that name (else only `describe()` does).
    pub named_by_manifest: bool,
    /// Version: the embedded manifest's, else the first 12 hex digits of the digest.
    pub version: String,
    /// blake3 of the bytes.
    pub digest: blake3::Hash,
    /// What `describe()` said.
    pub spec: ToolSpec,
    /// Compiled schemas and the example.
    pub schemas: Schemas,
    /// Ready to call, under the tool's grants and limits.
    pub runner: ToolRunner,
    /// What the smoke call answered.
    pub smoke_output: String,
}

/// Runs every step on `bytes`.
pub async fn validate(
    loader: &Loader,
    bytes: &[u8],
    grants: &dyn GrantSource,
) -> Result<Validated, Rejection> {
    // (a) a component of the tool world.
    let shape = loader
        .shape(bytes)
        .map_err(|r| reject(Step::Component, r))?;
    match shape.world {
        Some(Kind::Tool) => {}
        Some(Kind::Agent) => {
            return Err(reject(
                Step::Component,
                "is a component of the agent world, not the tool world",
            ));
        }
        None => {
            return Err(reject(
                Step::Component,
                format!(
                    "exports no colony:plugin/tool-handler, so it is not a tool; exports: [{}]",
                    shape.exports.join(", ")
                ),
            ));
        }
    }
    let digest = blake3::hash(bytes);
    let digest_hex = digest.to_hex().to_string();

    // (b) imports within the tool world and the grants of the name the manifest gives.
    let named = shape.manifest.as_ref().map(|m| m.name.as_str());
    let granted = match named {
        Some(n) => grants.granted(n),
        None => GrantSet::default(),
    };
    check_imports(&shape.imports, &granted).map_err(|r| reject(Step::Imports, r))?;

    let plugin = loader
        .load_bytes(bytes, Path::new("tool.wasm"), None)
        .map_err(|e| reject(Step::Component, e.reason))?;
    let Linked::Tool(pre) = plugin.linked else {
        return Err(reject(Step::Component, "did not link as a tool"));
    };
    let limits = plugin.info.limits;
    let version = match &shape.manifest {
        Some(m) => m.version.clone(),
        None => digest_hex[..12].to_string(),
    };

    // (c) describe, in a sandbox with no grants.
    let probe = ToolRunner::new(
        pre.clone(),
        Arc::from(named.unwrap_or("tool")),
        limits,
        Arc::new(Policy::deny_all(Arc::from(named.unwrap_or("tool")))),
    );
    let spec = probe
        .describe()
        .await
        .map_err(|e| reject(Step::Describe, call_reason(&e)))?;
    let schemas = check_spec(&spec, named).map_err(|r| reject(Step::Describe, r))?;

    // (d) the example, under the tool's own grants and limits.
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let runner = ToolRunner::new(pre, name, limits, grants.policy(&spec.name, &digest_hex))
        .with_input_schema(schemas.input.clone());
    let example = serde_json::to_string(&schemas.example)
        .map_err(|e| reject(Step::Smoke, format!("example is not serialisable: {e}")))?;
    let out = runner.invoke(&example).await.map_err(|e| {
        reject(
            Step::Smoke,
            format!("the example call failed: {}", call_reason(&e)),
        )
    })?;
    check_output(&out, schemas.output.as_ref()).map_err(|r| reject(Step::Smoke, r))?;

    Ok(Validated {
        name: spec.name.clone(),
        named_by_manifest: named.is_some(),
        version,
        digest,
        spec,
        schemas,
        runner,
        smoke_output: out,
    })
}

/// Every import must be a tool-world interface (0.1.x), WASI 0.2, or — with an
/// `http.outbound` grant — `wasi:http` 0.2.
pub(crate) fn check_imports(imports: &[String], grants: &GrantSet) -> Result<(), String> {
    let has_http = grants
        .capabilities()
        .iter()
        .any(|c| matches!(c, Capability::HttpOutbound(_)));
    for import in imports {
        let (iface, version) = import.split_once('@').unwrap_or((import.as_str(), ""));
        let ok = if TOOL_IMPORTS.contains(&iface) {
            version.starts_with("0.1.")
        } else if WASI_IMPORTS.contains(&iface) {
            version.starts_with("0.2.")
        } else if HTTP_IMPORTS.contains(&iface) {
            if !has_http {
                return Err(format!(
                    "imports {import}, which needs an http.outbound grant (none is granted)"
                ));
            }
            version.starts_with("0.2.")
        } else {
            false
        };
        if !ok {
            return Err(format!(
                "imports {import}, which a tool is not offered (it is offered {}, WASI 0.2, \
                 and wasi:http 0.2 with an http.outbound grant)",
                TOOL_IMPORTS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Checks what `describe()` said; `manifest_name` is the embedded manifest's name, which the
/// descriptor must repeat.
pub(crate) fn check_spec(spec: &ToolSpec, manifest_name: Option<&str>) -> Result<Schemas, String> {
    colony_caps::manifest::validate_name(&spec.name).map_err(|e| format!("tool name: {e}"))?;
    if let Some(m) = manifest_name
        && m != spec.name
    {
        return Err(format!(
            "describe names the tool {:?} but its manifest names it {m:?}",
            spec.name
        ));
    }
    if spec.description.trim().is_empty() {
        return Err("description is empty".into());
    }
    let input = compile_schema(&spec.input_schema).map_err(|e| format!("input-schema: {e}"))?;
    let output = match &spec.output_schema {
        Some(s) => Some(compile_schema(s).map_err(|e| format!("output-schema: {e}"))?),
        None => None,
    };
    let example = spec
        .input_schema
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned()
        .ok_or("input-schema has no example input (its `examples` keyword needs one element)")?;
    if let Err(e) = input.validate(&example) {
        return Err(format!(
            "the example input does not fit the input schema: {}",
            ArgsError::from_validation(&e)
        ));
    }
    Ok(Schemas {
        input: Arc::new(input),
        output,
        example,
    })
}

/// Compiles a JSON Schema, checking it against its meta-schema first. Remote and file
/// references cannot be resolved (the crate is built without resolvers), so a schema can
/// never make the host fetch anything.
pub(crate) fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::meta::validate(schema).map_err(|e| {
        format!(
            "not a valid JSON Schema: {}",
            ArgsError::from_validation(&e)
        )
    })?;
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// The result must be JSON, and fit the output schema when there is one.
pub(crate) fn check_output(
    out: &str,
    schema: Option<&jsonschema::Validator>,
) -> Result<(), String> {
    let value: Value =
        serde_json::from_str(out).map_err(|e| format!("the result is not JSON: {e}"))?;
    if let Some(s) = schema
        && let Err(e) = s.validate(&value)
    {
        return Err(format!(
            "the result does not fit the output schema: {}",
            ArgsError::from_validation(&e)
        ));
    }
    Ok(())
}

/// Where a JSON value failed its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgsError {
    /// JSON Pointer to the failing part of the value (`/` for the whole value).
    pub path: String,
    /// JSON Pointer to the schema keyword that failed.
    pub schema_path: String,
    /// What is wrong.
    pub message: String,
}

impl ArgsError {
    /// From the validator's error.
    pub(crate) fn from_validation(e: &jsonschema::ValidationError<'_>) -> ArgsError {
        let path = e.instance_path().to_string();
        ArgsError {
            path: if path.is_empty() { "/".into() } else { path },
            schema_path: e.schema_path().to_string(),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {}: {} (schema {})",
            self.path, self.message, self.schema_path
        )
    }
}

/// A call failure as one line, without the plugin prefix.
fn call_reason(e: &CallError) -> String {
    match e {
        CallError::Limit { limit, .. } => format!("limit: {limit}"),
        CallError::Trap { message, .. } => format!("trapped: {message}"),
        CallError::Guest { message, .. } => format!("returned an error: {message}"),
        CallError::InvalidArguments { error, .. } => format!("invalid arguments {error}"),
        CallError::Unavailable { reason, .. } => reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, description: &str, input: Value, output: Option<Value>) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            input_schema: input,
            output_schema: output,
        }
    }

    fn good_input() -> Value {
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
               "examples": [{"n": 1}]})
    }

    #[test]
    fn spec_checks_table() {
        let cases: Vec<(ToolSpec, Option<&str>, Option<&str>)> = vec![
            (spec("adder", "Adds.", good_input(), None), None, None),
            (
                spec(
                    "adder",
                    "Adds.",
                    good_input(),
                    Some(json!({"type": "object"})),
                ),
                Some("adder"),
                None,
            ),
            (
                spec("", "Adds.", good_input(), None),
                None,
                Some("tool name"),
            ),
            (
                spec("Bad_Name", "Adds.", good_input(), None),
                None,
                Some("tool name"),
            ),
            (
                spec("adder", "Adds.", good_input(), None),
                Some("other"),
                Some("manifest names it \"other\""),
            ),
            (
                spec("adder", "  ", good_input(), None),
                None,
                Some("description is empty"),
            ),
            (
                spec("adder", "Adds.", json!({"type": 12, "examples": [1]}), None),
                None,
                Some("input-schema: not a valid JSON Schema"),
            ),
            (
                spec("adder", "Adds.", json!("not a schema"), None),
                None,
                Some("input-schema: not a valid JSON Schema"),
            ),
            (
                spec("adder", "Adds.", json!({"type": "object"}), None),
                None,
                Some("no example input"),
            ),
            (
                spec(
                    "adder",
                    "Adds.",
                    json!({"type": "object", "examples": []}),
                    None,
                ),
                None,
                Some("no example input"),
            ),
            (
                spec(
                    "adder",
                    "Adds.",
                    json!({"type": "object", "examples": [3]}),
                    None,
                ),
                None,
                Some("example input does not fit"),
            ),
            (
                spec(
                    "adder",
                    "Adds.",
                    good_input(),
                    Some(json!({"minimum": "x"})),
                ),
                None,
                Some("output-schema: not a valid JSON Schema"),
            ),
        ];
        for (s, manifest, want) in cases {
            let got = check_spec(&s, manifest);
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(w), Err(e)) => assert!(e.contains(w), "{}: {e} lacks {w}", s.name),
                (None, Err(e)) => panic!("{:?} refused: {e}", s.input_schema),
                (Some(w), Ok(_)) => panic!("{:?} accepted, wanted {w}", s.input_schema),
            }
        }
    }

    #[test]
    fn import_checks_table() {
        let none = GrantSet::default();
        let http = GrantSet::new(["http.outbound:https://api.example.com"
            .parse::<Capability>()
            .unwrap()]);
        let cases: &[(&str, &GrantSet, bool)] = &[
            ("colony:plugin/log@0.1.0", &none, true),
            ("colony:plugin/types@0.1.0", &none, true),
            ("colony:plugin/state@0.1.0", &none, false),
            ("colony:plugin/orders@0.1.0", &http, false),
            ("wasi:cli/stdout@0.2.6", &none, true),
            ("wasi:http/outgoing-handler@0.2.6", &none, false),
            ("wasi:http/types@0.2.6", &none, false),
            ("wasi:http/outgoing-handler@0.2.6", &http, true),
            ("wasi:http/types@0.3.0", &http, false),
            ("wasi:http/incoming-handler@0.2.6", &http, false),
            ("colony:evil/backdoor@0.1.0", &http, false),
        ];
        for (import, grants, ok) in cases {
            let res = check_imports(&[import.to_string()], grants);
            assert_eq!(res.is_ok(), *ok, "{import}: {res:?}");
            if let Err(msg) = res {
                assert!(msg.contains(import), "{msg}");
            }
        }
    }

    #[test]
    fn output_must_be_json_and_fit_the_schema() {
        let schema = compile_schema(&json!({"type": "object", "required": ["len"]})).unwrap();
        assert!(check_output(r#"{"len": 1}"#, Some(&schema)).is_ok());
        assert!(check_output("[1]", None).is_ok());
        let e = check_output("not json", None).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = check_output(r#"{"x": 1}"#, Some(&schema)).unwrap_err();
        assert!(e.contains("does not fit the output schema"), "{e}");
    }

    #[test]
    fn argument_errors_name_the_path() {
        let schema = compile_schema(&good_input()).unwrap();
        let args = json!({"n": "x"});
        let e = ArgsError::from_validation(&schema.validate(&args).unwrap_err());
        assert_eq!(e.path, "/n");
        assert!(e.schema_path.contains("type"), "{e}");
        let args = json!(5);
        let e = ArgsError::from_validation(&schema.validate(&args).unwrap_err());
        assert_eq!(e.path, "/");
    }
}
