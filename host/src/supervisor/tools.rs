//! The host's tools: those in the plugins folder and the registered ones, as operators and
//! agents call them, with validation of a registration.

use super::{Host, Running};
use crate::policy::Policy;
use crate::store::CallError;
use crate::tool::ToolSpec;
use crate::tools::{
    BookGrants, BoxFuture, CallableTool, RegisteredTool, RegistryError, Removed, ToolAccess,
    ToolCallError, ToolRegistry,
};
use crate::venues::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use colony_caps::Request;
use std::sync::Arc;

/// Tool validations that may run at once (each compiles a component and runs two calls).
pub const VALIDATIONS: usize = 2;

fn validation_gate() -> &'static tokio::sync::Semaphore {
    static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VALIDATIONS);
    &GATE
}

/// The host's tools as agents reach them: the plugins folder's and the registered ones. Holds
/// the host weakly, since the host's agents hold it.
pub(super) struct HostTools(pub(super) std::sync::Weak<Host>);

impl HostTools {
    fn host(&self) -> Option<Arc<Host>> {
        self.0.upgrade()
    }
}

impl ToolAccess for HostTools {
    fn list<'a>(&'a self, caller: &'a Policy) -> BoxFuture<'a, Vec<CallableTool>> {
        Box::pin(async move {
            let Some(host) = self.host() else {
                return Vec::new();
            };
            host.callable_tools(caller).await
        })
    }

    fn call<'a>(
        &'a self,
        spec: &'a str,
        args_json: &'a str,
    ) -> BoxFuture<'a, Result<String, ToolCallError>> {
        Box::pin(async move {
            let Some(host) = self.host() else {
                return Err(ToolCallError::NotFound(spec.to_string()));
            };
            // On a task of its own: the calling agent's event waits for the tool (under the
            // tool's own limits) without the tool's CPU time counting as the agent's.
            let (spec_owned, args) = (spec.to_owned(), args_json.to_owned());
            match tokio::spawn(async move { host.call_tool(&spec_owned, &args).await }).await {
                Ok(r) => r,
                Err(e) => Err(ToolCallError::Unavailable {
                    tool: spec.to_owned(),
                    reason: format!("the call's task ended: {e}"),
                }),
            }
        })
    }

    fn register<'a>(
        &'a self,
        bytes: &'a [u8],
        actor: &'a str,
    ) -> BoxFuture<'a, Result<Arc<RegisteredTool>, RegistryError>> {
        Box::pin(async move {
            match self.host() {
                Some(host) => host.register_tool(bytes, actor).await,
                None => Err(RegistryError::Storage("the host is shutting down".into())),
            }
        })
    }
}

impl Host {
    /// The running tools and their specs.
    pub async fn tools(&self) -> Vec<ToolSpec> {
        let reg = self.registry.read().await;
        let mut out: Vec<ToolSpec> = reg
            .by_name
            .values()
            .filter_map(|e| match &e.running {
                Running::Tool(_, spec) => Some((**spec).clone()),
                Running::Agent(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Calls a tool by plugin name (or by the name its spec gives).
    pub async fn invoke_tool(&self, name: &str, args_json: &str) -> Result<String, CallError> {
        let runner = {
            let reg = self.registry.read().await;
            reg.by_name
                .values()
                .find_map(|e| match &e.running {
                    Running::Tool(r, spec) if e.info.name == name || spec.name == name => {
                        Some(r.clone())
                    }
                    _ => None,
                })
                .ok_or_else(|| CallError::Unavailable {
                    plugin: Arc::from(name),
                    reason: "no such tool is loaded".into(),
                })?
        };
        runner.invoke(args_json).await
    }

    /// The tools `caller` may call (its `tools.call` grants; nothing is audited): the plugins
    /// folder's, then the registered ones, sorted by name.
    pub async fn callable_tools(&self, caller: &Policy) -> Vec<CallableTool> {
        let grants = caller.grants();
        let may_call = |name: &str| grants.check(&Request::CallTool { name }).is_allowed();
        let mut out: Vec<CallableTool> = {
            let reg = self.registry.read().await;
            reg.by_name
                .values()
                .filter_map(|e| match &e.running {
                    Running::Tool(_, spec) if may_call(&spec.name) => Some(CallableTool {
                        spec: (**spec).clone(),
                        version: e.info.version.clone(),
                        digest: e.info.digest.clone(),
                    }),
                    _ => None,
                })
                .collect()
        };
        for listing in self.tools.list() {
            if !may_call(&listing.name) || out.iter().any(|t| t.spec.name == listing.name) {
                continue;
            }
            if let Some(t) = self.tools.get(&listing.name) {
                out.push(CallableTool {
                    spec: t.spec.clone(),
                    version: t.version.clone(),
                    digest: t.digest.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        out
    }

    /// The tools registered at run time.
    pub fn registered_tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Validates and registers a tool component (see [`crate::tools`]); audited as `actor`.
    ///
    /// Validation compiles the component and runs its `describe` and an example call, which
    /// can take a second of CPU: it runs on a background thread at a low CPU priority
    /// ([`crate::engine::run_in_background`]), [`VALIDATIONS`] at a time, never on the threads
    /// that deliver agents' events, so a registration cannot delay another agent (and costs
    /// the registering agent, which waits, no CPU budget).
    pub async fn register_tool(
        &self,
        bytes: &[u8],
        actor: &str,
    ) -> Result<Arc<RegisteredTool>, RegistryError> {
        let Some(host) = self.this.upgrade() else {
            return Err(RegistryError::Storage("the host is shutting down".into()));
        };
        let gate = validation_gate();
        let _permit = gate
            .acquire()
            .await
            .map_err(|e| RegistryError::Storage(format!("validation: {e}")))?;
        let (bytes, actor) = (bytes.to_vec(), actor.to_owned());
        crate::engine::run_in_background(
            async move { host.register_tool_here(&bytes, &actor).await },
        )
        .await
        .map_err(|e| RegistryError::Storage(format!("validation: {e}")))?
    }

    async fn register_tool_here(
        &self,
        bytes: &[u8],
        actor: &str,
    ) -> Result<Arc<RegisteredTool>, RegistryError> {
        let grants = self.tool_grants().await;
        let reserved: Vec<String> = self.registry.read().await.by_name.keys().cloned().collect();
        let writer = self.audit.writer();
        self.tools
            .register(
                &self.loader,
                &grants,
                bytes,
                &reserved,
                Some(&writer),
                actor,
            )
            .await
    }

    /// Unregisters `NAME` (every version) or `NAME@VERSION`; audited as `actor`.
    pub async fn unregister_tool(
        &self,
        spec: &str,
        actor: &str,
    ) -> Result<Vec<Removed>, RegistryError> {
        let writer = self.audit.writer();
        self.tools.unregister(spec, Some(&writer), actor).await
    }

    /// Calls a tool as the operator: a tool from the plugins folder by name, else a registered
    /// tool (`NAME` or `NAME@VERSION`); either way its arguments are checked against its input
    /// schema first (by its `ToolRunner`, with the same error).
    ///
    /// Each tool name has a circuit breaker ([`BreakerConfig::default`]: five failures in a
    /// row open it for 2 s, doubling to a minute): while it is open a call is refused at once
    /// (`unavailable`) instead of spending another instance on a tool that keeps failing. A
    /// failure is the tool not working (a limit, a trap, an error or a bad answer); refused
    /// arguments or grants are not. Its transitions are logged and audited (kind `breaker`).
    pub async fn call_tool(&self, spec: &str, args_json: &str) -> Result<String, ToolCallError> {
        let key = spec.split('@').next().unwrap_or(spec).to_string();
        let permit = {
            let mut breakers = self.tool_breakers.lock().unwrap_or_else(|p| p.into_inner());
            let breaker = breakers
                .entry(key.clone())
                .or_insert_with(|| CircuitBreaker::new(BreakerConfig::default()));
            match breaker.allow(std::time::Instant::now()) {
                Ok(p) => p,
                Err(open) => {
                    return Err(ToolCallError::Unavailable {
                        tool: spec.to_string(),
                        reason: format!(
                            "circuit open after repeated failures; retry in {} ms",
                            open.retry_after.as_millis()
                        ),
                    });
                }
            }
        };
        let result = self.call_tool_unguarded(spec, args_json).await;
        let change = {
            let mut breakers = self.tool_breakers.lock().unwrap_or_else(|p| p.into_inner());
            breakers.get_mut(&key).and_then(|breaker| {
                let before = breaker.state();
                match &result {
                    Ok(_) => breaker.on_success(permit),
                    Err(ToolCallError::Limit { .. } | ToolCallError::Tool { .. }) => {
                        breaker.on_failure(permit, std::time::Instant::now())
                    }
                    Err(_) => breaker.release(permit),
                }
                let after = breaker.state();
                (before != after).then(|| (before, after, breaker.config().cool_down))
            })
        };
        if let Some((before, after, cool_down)) = change {
            let detail = format!(
                "circuit {} -> {} (cool-down {} ms)",
                before.as_str(),
                after.as_str(),
                cool_down.as_millis()
            );
            if after == BreakerState::Open {
                tracing::error!(tool = %key, "{detail}");
            } else {
                tracing::info!(tool = %key, "{detail}");
            }
            self.audit
                .writer()
                .record(crate::audit::AuditRecord::breaker(&key, detail));
        }
        result
    }

    async fn call_tool_unguarded(
        &self,
        spec: &str,
        args_json: &str,
    ) -> Result<String, ToolCallError> {
        let in_folder = {
            let reg = self.registry.read().await;
            reg.by_name.values().any(|e| match &e.running {
                Running::Tool(_, s) => e.info.name == spec || s.name == spec,
                Running::Agent(_) => false,
            })
        };
        if !in_folder {
            return self.tools.invoke(spec, args_json, None).await;
        }
        self.invoke_tool(spec, args_json).await.map_err(|e| {
            let tool = spec.to_string();
            match e {
                CallError::Limit { limit, .. } => ToolCallError::Limit { tool, limit },
                CallError::InvalidArguments { error, .. } => {
                    ToolCallError::InvalidArguments { tool, error }
                }
                CallError::Guest {
                    message,
                    call: "invoke",
                    ..
                } => ToolCallError::Tool { tool, message },
                other => ToolCallError::Tool {
                    tool,
                    message: other.to_string(),
                },
            }
        })
    }

    async fn tool_grants(&self) -> BookGrants {
        BookGrants {
            book: self.book.lock().await.clone(),
            audit: Some(self.audit.writer()),
            sample_allows: self.config.audit_sample_allows,
        }
    }
}
