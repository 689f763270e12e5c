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

use wasmtime::component::{HasData, Linker};

use super::{Fault, Gate, GuestError, HostResult, answer};
use crate::bindings::tools::{self, Host, Rejection, ToolError, ToolInfo};
use crate::policy::Refusal;
use crate::tools::{CallableTool, RegistryError, ToolAccess, ToolCallError};
use colony_caps::Request;

/// What the `tools` interface works on: the agent's name and grants, and the host's tools,
/// if it serves them to agents.
pub struct ToolsCtx<'a> {
    /// The calling agent, the actor of its registrations.
    pub plugin: &'a str,
    /// The agent's grant checks.
    pub gate: Gate<'a>,
    /// The host's registry and plugins folder.
    pub access: Option<&'a dyn ToolAccess>,
}

struct HasTools;

impl HasData for HasTools {
    type Data<'a> = ToolsCtx<'a>;
}

/// Links `colony:plugin/tools`; `ctx` hands out the store's [`ToolsCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> ToolsCtx<'_>,
) -> wasmtime::Result<()> {
    tools::add_to_linker::<T, HasTools>(linker, ctx)
}

impl GuestError for ToolError {
    fn unavailable(why: &str) -> Self {
        ToolError::Unavailable(why.into())
    }

    fn refused(r: Refusal) -> Self {
        match r {
            Refusal::Denied(cap) => ToolError::Denied(format!("needs {cap}")),
            Refusal::Invalid(why) => ToolError::InvalidArguments(why),
        }
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
pub(crate) fn call_error(e: ToolCallError) -> ToolError {
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
pub(crate) fn register_error(e: RegistryError) -> ToolError {
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

impl<'a> ToolsCtx<'a> {
    fn access(&self) -> HostResult<&'a dyn ToolAccess, ToolError> {
        self.access
            .ok_or_else(|| Fault::unavailable("this host serves no tools to agents"))
    }

    async fn call_tool(&mut self, name: &str, args_json: &str) -> HostResult<String, ToolError> {
        let access = self.access()?;
        let (tool, _) = crate::tools::registry::split_id(name);
        self.gate.check(&Request::CallTool { name: tool })?;
        Ok(access.call(name, args_json).await.map_err(call_error)?)
    }

    async fn register_tool(&mut self, component: &[u8]) -> HostResult<ToolInfo, ToolError> {
        let access = self.access()?;
        self.gate.check(&Request::RegisterTool)?;
        // The registry refuses a component over the file size limit at its first step (and
        // audits the refusal), as for any registration.
        let actor = format!("agent:{}", self.plugin);
        let t = access
            .register(component, &actor)
            .await
            .map_err(register_error)?;
        Ok(info(CallableTool {
            spec: t.spec.clone(),
            version: t.version.clone(),
            digest: t.digest.clone(),
        }))
    }
}

impl Host for ToolsCtx<'_> {
    async fn list(&mut self) -> wasmtime::Result<Vec<ToolInfo>> {
        let Some(access) = self.access else {
            return Ok(Vec::new());
        };
        let tools = access.list(self.gate.policy).await;
        Ok(tools.into_iter().map(info).collect())
    }

    async fn call(
        &mut self,
        name: String,
        args_json: String,
    ) -> wasmtime::Result<Result<String, ToolError>> {
        answer(self.call_tool(&name, &args_json).await)
    }

    async fn register(
        &mut self,
        component: Vec<u8>,
    ) -> wasmtime::Result<Result<ToolInfo, ToolError>> {
        answer(self.register_tool(&component).await)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::audit::Decision;
    use crate::interfaces::testing::{audit_store, decisions, policy};
    use crate::policy::{CheckCache, Policy};
    use crate::tools::{BoxFuture, RegisteredTool};

    /// Tools that echo their arguments and refuse every registration as a duplicate,
    /// counting what reached them.
    #[derive(Default)]
    struct Echo {
        calls: AtomicUsize,
        registrations: AtomicUsize,
    }

    impl ToolAccess for Echo {
        fn list<'a>(&'a self, _caller: &'a Policy) -> BoxFuture<'a, Vec<CallableTool>> {
            Box::pin(async { Vec::new() })
        }

        fn call<'a>(
            &'a self,
            spec: &'a str,
            args_json: &'a str,
        ) -> BoxFuture<'a, Result<String, ToolCallError>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move { Ok(format!("{spec}: {args_json}")) })
        }

        fn register<'a>(
            &'a self,
            _bytes: &'a [u8],
            actor: &'a str,
        ) -> BoxFuture<'a, Result<Arc<RegisteredTool>, RegistryError>> {
            self.registrations.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move { Err(RegistryError::Duplicate(format!("by {actor}"))) })
        }
    }

    fn ctx<'a>(
        policy: &'a Policy,
        checks: &'a mut CheckCache,
        access: Option<&'a Echo>,
    ) -> ToolsCtx<'a> {
        ToolsCtx {
            plugin: "p",
            gate: Gate { policy, checks },
            access: access.map(|a| a as &dyn ToolAccess),
        }
    }

    #[tokio::test]
    async fn a_call_without_a_grant_is_denied_audited_and_never_reaches_the_tool() {
        let dir = tempfile::tempdir().unwrap();
        let audit = audit_store(dir.path()).await;
        let policy = policy(&["tools.call:other"], Some(&audit));
        let (mut checks, echo) = (CheckCache::default(), Echo::default());
        let got = ctx(&policy, &mut checks, Some(&echo))
            .call("echo@1.0.0".into(), "{}".into())
            .await
            .unwrap();
        match got {
            Err(ToolError::Denied(m)) => assert_eq!(m, "needs tools.call:echo"),
            other => panic!("expected denied, got {other:?}"),
        }
        assert_eq!(echo.calls.load(Ordering::Relaxed), 0);
        let recs = decisions(&audit, "tools.call").await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0].decision, Some(Decision::Deny));
    }

    #[tokio::test]
    async fn a_granted_call_returns_the_tools_answer() {
        let policy = policy(&["tools.call:echo"], None);
        let (mut checks, echo) = (CheckCache::default(), Echo::default());
        let got = ctx(&policy, &mut checks, Some(&echo))
            .call("echo".into(), "{\"a\":1}".into())
            .await
            .unwrap();
        assert_eq!(got.unwrap(), "echo: {\"a\":1}");
    }

    #[tokio::test]
    async fn a_registration_needs_its_grant_and_is_made_as_the_agent() {
        let denied_policy = policy(&[], None);
        let (mut checks, echo) = (CheckCache::default(), Echo::default());
        let denied = ctx(&denied_policy, &mut checks, Some(&echo))
            .register(b"wasm".to_vec())
            .await
            .unwrap();
        assert!(matches!(denied, Err(ToolError::Denied(_))), "{denied:?}");
        assert_eq!(echo.registrations.load(Ordering::Relaxed), 0);

        let granted = policy(&["tools.register"], None);
        let mut checks = CheckCache::default();
        let got = ctx(&granted, &mut checks, Some(&echo))
            .register(b"wasm".to_vec())
            .await
            .unwrap();
        match got {
            Err(ToolError::Duplicate(m)) => assert_eq!(m, "by agent:p"),
            other => panic!("expected the registry's answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn without_tools_a_call_is_unavailable_and_the_list_empty() {
        let policy = policy(&["tools.call:*"], None);
        let mut checks = CheckCache::default();
        let mut ctx = ctx(&policy, &mut checks, None);
        assert!(ctx.list().await.unwrap().is_empty());
        let got = ctx.call("echo".into(), "{}".into()).await.unwrap();
        assert!(
            matches!(&got, Err(ToolError::Unavailable(m)) if m == "this host serves no tools to agents"),
            "{got:?}"
        );
    }
}
