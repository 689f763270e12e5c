//! Tools registered at run time (`colony tools register`, the admin API): validation
//! ([`validate`]), the versioned registry kept in `DATA_DIR/tools/` ([`registry`]), and calls
//! through it with arguments checked against the tool's JSON Schema before the sandbox.
//! Tools in the plugins folder are not here: the supervisor runs those.
//!
//! **Architecture invariant:** this module does not know the supervisor; the host hands it
//! a [`GrantSource`] and an audit writer.

pub mod registry;
pub mod validate;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use registry::{
    RegisteredTool, RegistryError, Removed, ToolCallError, ToolListing, ToolRegistry,
    VersionListing,
};
pub use validate::{ArgsError, GrantSource, Rejection, Step};

use crate::audit::AuditWriter;
use crate::policy::Policy;
use colony_caps::GrantSet;
use colony_caps::grants::GrantBook;

/// A boxed future, so [`ToolAccess`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One tool an agent may call, as the WIT `tools.list` shows it.
#[derive(Debug, Clone)]
pub struct CallableTool {
    /// The descriptor (name, description, schemas).
    pub spec: crate::tool::ToolSpec,
    /// The active version (a plugins-folder tool: its manifest's version).
    pub version: String,
    /// blake3 of the component, hex.
    pub digest: String,
}

/// How an agent reaches tools (the WIT `tools` interface): the host implements it over the
/// registered tools and the plugins folder's tools. The grant checks are the caller's
/// (`tools.call`, `tools.register` on the agent's [`Policy`]); this only lists, calls and
/// registers.
pub trait ToolAccess: Send + Sync {
    /// The tools `caller` may call, sorted by name.
    fn list<'a>(&'a self, caller: &'a Policy) -> BoxFuture<'a, Vec<CallableTool>>;

    /// Calls `spec` (`name` or `name@version`); the caller has checked the grant.
    fn call<'a>(
        &'a self,
        spec: &'a str,
        args_json: &'a str,
    ) -> BoxFuture<'a, Result<String, ToolCallError>>;

    /// Validates and registers `bytes`, audited with `actor` (e.g. `agent:NAME`).
    fn register<'a>(
        &'a self,
        bytes: &'a [u8],
        actor: &'a str,
    ) -> BoxFuture<'a, Result<Arc<RegisteredTool>, RegistryError>>;
}

/// Grants from a [`GrantBook`]: a build gets what is granted to its name once approved
/// (`GrantBook::effective`).
pub struct BookGrants {
    /// The grant book.
    pub book: GrantBook,
    /// Where the policies audit decisions.
    pub audit: Option<AuditWriter>,
    /// 1 in N allows are audited.
    pub sample_allows: u64,
}

impl GrantSource for BookGrants {
    fn policy(&self, name: &str, digest: &str) -> Arc<Policy> {
        let effective = self.book.effective(name, digest);
        Arc::new(Policy::new(
            Arc::from(name),
            digest.to_string(),
            GrantSet::new(effective.capabilities().iter().cloned()),
            self.audit.clone(),
            self.sample_allows,
        ))
    }

    fn granted(&self, name: &str) -> GrantSet {
        GrantSet::new(
            self.book
                .get(name)
                .into_iter()
                .flat_map(|g| g.capabilities.iter())
                .filter_map(|c| c.parse().ok()),
        )
    }
}
