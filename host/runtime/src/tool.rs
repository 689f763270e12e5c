//! Tools: a fresh instance for every call, so a tool keeps nothing between calls and a call
//! that traps leaves nothing behind. Arguments must be JSON, and arguments and result are
//! capped at the payload limit (1 MiB by default); an `invoke` error and the `describe` name
//! and description are capped at 64 KiB with a marker ([`crate::guest_text`]), the error's
//! control characters escaped, and a schema must fit the payload limit; the call runs under the tool's fuel,
//! deadline (host calls included), memory and output limits. A tool may send HTTP requests
//! through `wasi:http/outgoing-handler`, each checked against its `http.outbound` grants,
//! capped by [`HttpLimits`] and ended before the call's deadline (`store::http`).
//!
//! Every call's arguments are checked against the tool's input schema before an instance is
//! made ([`CallError::InvalidArguments`]), whether the tool is registered or in the plugins
//! folder: the schema is compiled when the tool describes itself (a schema that is not a
//! JSON Schema fails `describe`), and a runner that has not described itself yet does so
//! before its first call.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::bindings::tool::ToolPre;
use crate::limits::{LimitExceeded, Limits};
use crate::net::HttpLimits;
use crate::policy::Policy;
use crate::store::{CallError, HttpState, StoreState, guarded, new_store};
use crate::tools::validate::{ArgsError, compile_schema};

/// How a tool describes itself (from its `describe` export).
#[derive(Debug, Clone, Serialize)]
pub struct ToolSpec {
    /// Name agents call it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its result, if declared.
    pub output_schema: Option<serde_json::Value>,
}

/// A loaded tool, ready to call.
#[derive(Clone)]
pub struct ToolRunner {
    pre: ToolPre<StoreState>,
    name: Arc<str>,
    limits: Limits,
    policy: Arc<Policy>,
    http: HttpLimits,
    /// The compiled input schema, once the tool has described itself; shared by clones.
    input: Arc<OnceLock<Arc<jsonschema::Validator>>>,
}

impl ToolRunner {
    /// A runner for a linked tool.
    pub fn new(
        pre: ToolPre<StoreState>,
        name: Arc<str>,
        limits: Limits,
        policy: Arc<Policy>,
    ) -> ToolRunner {
        ToolRunner {
            pre,
            name,
            limits,
            policy,
            http: HttpLimits::default(),
            input: Arc::new(OnceLock::new()),
        }
    }

    /// The same runner checking arguments against `input`, the tool's input schema compiled
    /// by the caller (registration compiles it while it checks the descriptor).
    pub(crate) fn with_input_schema(self, input: Arc<jsonschema::Validator>) -> ToolRunner {
        let _ = self.input.set(input);
        self
    }

    /// The same runner with other caps on its outbound HTTP requests (the default is
    /// [`HttpLimits::default`]).
    pub fn with_http_limits(mut self, http: HttpLimits) -> ToolRunner {
        self.http = http;
        self
    }

    /// The tool's plugin name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The grants the tool runs under (replaced in place when an operator changes them).
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Calls `describe` in a fresh instance and checks the schemas are JSON, and the input
    /// schema a JSON Schema (compiled, for the argument check of every later call).
    pub async fn describe(&self) -> Result<ToolSpec, CallError> {
        let mut store = self.store();
        let pre = &self.pre;
        let spec = guarded(&mut store, "describe", async |s| {
            let tool = pre.instantiate_async(&mut *s).await?;
            tool.colony_plugin_tool_handler().call_describe(s).await
        })
        .await?;
        let bad = |what: &str, e: serde_json::Error| CallError::Guest {
            plugin: self.name.clone(),
            call: "describe",
            message: format!("{what} is not JSON: {e}"),
        };
        // What a tool says about itself reaches operators and callers: bounded like any other
        // guest text, and schemas (which cannot be cut) within the payload limit.
        for (what, text) in [
            ("input-schema", Some(&spec.input_schema)),
            ("output-schema", spec.output_schema.as_ref()),
        ] {
            if let Some(text) = text {
                self.check_payload_for("describe", text.len())
                    .map_err(|_| CallError::Guest {
                        plugin: self.name.clone(),
                        call: "describe",
                        message: format!(
                            "{what} of {} bytes exceeds the payload limit of {}",
                            text.len(),
                            crate::limits::human_bytes(self.limits.payload_bytes)
                        ),
                    })?;
            }
        }
        let input_schema =
            serde_json::from_str(&spec.input_schema).map_err(|e| bad("input-schema", e))?;
        let validator = compile_schema(&input_schema).map_err(|e| CallError::Guest {
            plugin: self.name.clone(),
            call: "describe",
            message: format!("input-schema: {e}"),
        })?;
        let _ = self.input.set(Arc::new(validator));
        let output_schema = match spec.output_schema.as_deref() {
            Some(s) => Some(serde_json::from_str(s).map_err(|e| bad("output-schema", e))?),
            None => None,
        };
        Ok(ToolSpec {
            name: cap_owned(spec.name),
            description: cap_owned(spec.description),
            input_schema,
            output_schema,
        })
    }

    /// Calls `invoke(args_json)` in a fresh instance, once the arguments are found to be JSON
    /// that fits the input schema.
    pub async fn invoke(&self, args_json: &str) -> Result<String, CallError> {
        self.check_payload(args_json.len())?;
        self.check_args(args_json).await?;
        let mut store = self.store();
        let pre = &self.pre;
        let result = guarded(&mut store, "invoke", async |s| {
            let tool = pre.instantiate_async(&mut *s).await?;
            tool.colony_plugin_tool_handler()
                .call_invoke(s, args_json)
                .await
        })
        .await?;
        match result {
            Ok(out) => {
                self.check_payload(out.len())?;
                Ok(out)
            }
            // The error text leaves the sandbox (the caller, the CLI, the log): capped and
            // with its control characters escaped.
            Err(message) => Err(CallError::Guest {
                plugin: self.name.clone(),
                call: "invoke",
                message: crate::guest_text::sanitize_owned(message),
            }),
        }
    }

    /// The arguments must be JSON and fit the input schema (a runner that has not described
    /// itself yet does so first); the one check of every tool call, registered or not.
    async fn check_args(&self, args_json: &str) -> Result<(), CallError> {
        let invalid = |error: ArgsError| CallError::InvalidArguments {
            plugin: self.name.clone(),
            call: "invoke",
            error,
        };
        let args: serde_json::Value = serde_json::from_str(args_json).map_err(|e| {
            invalid(ArgsError {
                path: "/".into(),
                schema_path: String::new(),
                message: format!("arguments are not JSON: {e}"),
            })
        })?;
        if self.input.get().is_none() {
            self.describe().await?;
        }
        match self.input.get() {
            Some(schema) => schema
                .validate(&args)
                .map_err(|e| invalid(ArgsError::from_validation(&e))),
            None => Ok(()),
        }
    }

    /// A fresh store for one call: no state, no bus, the tool's grants, and `wasi:http`
    /// under its `http.outbound` grants (every request checked, capped and audited by
    /// `store::http`).
    fn store(&self) -> wasmtime::Store<StoreState> {
        let mut store = new_store(
            self.pre.engine(),
            self.name.clone(),
            self.limits,
            None,
            self.policy.clone(),
            None,
        );
        store.data_mut().http = Some(HttpState::new(self.policy.clone(), self.http));
        store
    }

    fn check_payload(&self, size: usize) -> Result<(), CallError> {
        self.check_payload_for("invoke", size)
    }

    fn check_payload_for(&self, call: &'static str, size: usize) -> Result<(), CallError> {
        let limit = self.limits.payload_bytes;
        if size as u64 > limit {
            return Err(CallError::Limit {
                plugin: self.name.clone(),
                call,
                limit: LimitExceeded::Payload {
                    limit,
                    size: size as u64,
                },
            });
        }
        Ok(())
    }
}

/// A `describe` field cut to [`crate::guest_text::MAX_GUEST_TEXT`] with a marker.
fn cap_owned(text: String) -> String {
    match crate::guest_text::cap(&text, crate::guest_text::MAX_GUEST_TEXT) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => cut,
    }
}
