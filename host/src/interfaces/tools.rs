//! `colony:plugin/tools`: agents list, call and register tools. `call` is checked against
//! `tools.call:<name-pattern>` and `register` against `tools.register` before anything runs;
//! both decisions are audited by the policy, and a registration is audited as
//! `tool-register` (or `tool-rejected`) with the actor `agent:NAME`. `list` shows only what
//! the agent may call and audits nothing. Everything after the grant is
//! [`crate::tools::ToolAccess`]'s (the host's registry and plugins folder).
//!
//! A tool call runs under the tool's own limits; a registration's validation (compiling the
//! component and a smoke call) runs on the host's blocking pool, off the threads that run
//! agents, a few at a time. Neither counts against the calling agent's CPU budget: the agent
//! waits (bounded by its wall-clock hang guard).

use std::sync::Arc;

use crate::bindings::tools::{Host, Rejection, ToolError, ToolInfo};
use crate::policy::Refusal;
use crate::store::StoreState;
use crate::tools::{CallableTool, RegistryError, ToolAccess, ToolCallError};
use colony_caps::Request;

fn denied(r: Refusal) -> ToolError {
    match r {
        Refusal::Denied(cap) => ToolError::Denied(format!("needs {cap}")),
        Refusal::Invalid(why) => ToolError::InvalidArguments(why),
    }
}

fn info(t: CallableTool) -> ToolInfo {
    ToolInfo {
        name: t.spec.name,
        version: t.version,
        digest: t.digest,
        description: t.spec.description,
        input_schema: t.spec.input_schema.to_string(),
        output_schema: t.spec.output_schema.map(|s| s.to_string()),
    }
}

/// A call's failure as the guest sees it.
pub fn call_error(e: ToolCallError) -> ToolError {
    match e {
        ToolCallError::NotFound(t) => ToolError::NotFound(format!("no registered tool {t}")),
        ToolCallError::InvalidArguments { tool, error } => {
            ToolError::InvalidArguments(format!("{tool}: {error}"))
        }
        ToolCallError::Denied { tool, reason } => ToolError::Denied(format!("{tool}: {reason}")),
        ToolCallError::Limit { tool, limit } => ToolError::Limit(format!("{tool}: {limit}")),
        ToolCallError::Tool { tool, message } => ToolError::Tool(format!("{tool}: {message}")),
        ToolCallError::Unavailable { tool, reason } => {
            ToolError::Unavailable(format!("{tool}: {reason}"))
        }
    }
}

/// A registration's failure as the guest sees it.
pub fn register_error(e: RegistryError) -> ToolError {
    match e {
        RegistryError::Rejected(r) => ToolError::Rejected(Rejection {
            step: r.step.to_string(),
            reason: r.reason,
        }),
        RegistryError::Duplicate(why) => ToolError::Duplicate(why),
        RegistryError::NotFound(what) => ToolError::NotFound(what),
        e @ (RegistryError::Storage(_) | RegistryError::Audit(_)) => {
            ToolError::Unavailable(e.to_string())
        }
    }
}

impl StoreState {
    fn tool_access(&self) -> Result<Arc<dyn ToolAccess>, ToolError> {
        self.tools
            .clone()
            .ok_or_else(|| ToolError::Unavailable("this host serves no tools to agents".into()))
    }
}

impl Host for StoreState {
    async fn list(&mut self) -> wasmtime::Result<Vec<ToolInfo>> {
        let Ok(access) = self.tool_access() else {
            return Ok(Vec::new());
        };
        let tools = access.list(&self.policy).await;
        Ok(tools.into_iter().map(info).collect())
    }

    async fn call(
        &mut self,
        name: String,
        args_json: String,
    ) -> wasmtime::Result<Result<String, ToolError>> {
        let access = match self.tool_access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let (tool, _) = crate::tools::registry::split_id(&name);
        if let Err(r) = self.check(&Request::CallTool { name: tool }) {
            return Ok(Err(denied(r)));
        }
        Ok(access.call(&name, &args_json).await.map_err(call_error))
    }

    async fn register(
        &mut self,
        component: Vec<u8>,
    ) -> wasmtime::Result<Result<ToolInfo, ToolError>> {
        let access = match self.tool_access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(r) = self.check(&Request::RegisterTool) {
            return Ok(Err(denied(r)));
        }
        // The registry refuses a component over the file size limit at its first step (and
        // audits the refusal), as for any registration.
        let actor = format!("agent:{}", self.plugin);
        Ok(access
            .register(&component, &actor)
            .await
            .map(|t| {
                info(CallableTool {
                    spec: t.spec.clone(),
                    version: t.version.clone(),
                    digest: t.digest.clone(),
                })
            })
            .map_err(register_error))
    }
}
