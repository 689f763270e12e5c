//! Tools registered at run time (`colony tools register`, the admin API): validation
//! ([`validate`]), the versioned registry kept in `DATA_DIR/tools/` ([`registry`]), and calls
//! through it with arguments checked against the tool's JSON Schema before the sandbox.
//! Tools in the plugins folder are not here: the supervisor runs those.
//!
//! **Architecture invariant:** this module does not know the supervisor; the host hands it
//! a [`GrantSource`] and an audit writer.

pub mod registry;
pub mod validate;

use std::sync::Arc;

pub use registry::{
    RegisteredTool, RegistryError, Removed, ToolCallError, ToolListing, ToolRegistry,
    VersionListing,
};
pub use validate::{ArgsError, GrantSource, Rejection, Step};

use crate::audit::AuditWriter;
use crate::caps::GrantSet;
use crate::grants::GrantBook;
use crate::policy::Policy;

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
