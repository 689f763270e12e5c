//! `colony:plugin/state`: the plugin's own durable key-value space (always granted).
//!
//! Limits: key 512 bytes, value 1 MiB, 16 MiB per plugin, 10,000 keys per listing (see
//! [`crate::state_store::StateQuota`]); over a limit the call returns
//! `error::limit-exceeded` naming it. A store failure is `error::unavailable`, never a trap.

use wasmtime::component::{HasData, Linker};

use super::{Fault, HostResult, answer};
use crate::bindings::state::{self, Host};
use crate::bindings::types::Error;
use crate::state_store::{StateError, StateStore};

/// What the `state` interface works on: the plugin's name and its state store, if it has one
/// (agents do; tools do not).
pub struct StateCtx<'a> {
    /// The plugin whose key space this is.
    pub plugin: &'a str,
    /// The store, if the plugin has one.
    pub store: Option<&'a StateStore>,
}

struct HasState;

impl HasData for HasState {
    type Data<'a> = StateCtx<'a>;
}

/// Links `colony:plugin/state`; `ctx` hands out the store's [`StateCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> StateCtx<'_>,
) -> wasmtime::Result<()> {
    state::add_to_linker::<T, HasState>(linker, ctx)
}

/// A store failure as the guest sees it: over a quota `limit-exceeded` naming it, anything
/// else `unavailable` (logged on the host, not shown to the guest).
impl From<StateError> for Fault<Error> {
    fn from(e: StateError) -> Self {
        Fault::Guest(match e {
            StateError::Quota(m) => Error::LimitExceeded(m),
            other => {
                tracing::error!(error = %other, "state store failure");
                Error::Unavailable("state store failure".into())
            }
        })
    }
}

impl StateCtx<'_> {
    fn kv(&self) -> HostResult<&StateStore> {
        self.store
            .ok_or_else(|| Fault::unavailable("state is not available to this plugin"))
    }
}

impl Host for StateCtx<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        answer(async { Ok(self.kv()?.get(self.plugin, &key).await?) }.await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        answer(async { Ok(self.kv()?.set(self.plugin, &key, &value).await?) }.await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), Error>> {
        answer(async { Ok(self.kv()?.delete(self.plugin, &key).await?) }.await)
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, Error>> {
        answer(async { Ok(self.kv()?.keys(self.plugin, &prefix).await?) }.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_store::StateQuota;

    async fn open(dir: &std::path::Path) -> StateStore {
        StateStore::open(&dir.join("state.db"), StateQuota::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn without_a_store_every_call_is_unavailable() {
        let mut ctx = StateCtx {
            plugin: "p",
            store: None,
        };
        let unavailable = |e: &Error| matches!(e, Error::Unavailable(m) if m == "state is not available to this plugin");
        let got = ctx.get("k".into()).await.unwrap();
        assert!(got.as_ref().is_err_and(unavailable), "{got:?}");
        let set = ctx.set("k".into(), b"v".to_vec()).await.unwrap();
        assert!(set.as_ref().is_err_and(unavailable), "{set:?}");
        let keys = ctx.keys(String::new()).await.unwrap();
        assert!(keys.as_ref().is_err_and(unavailable), "{keys:?}");
    }

    #[tokio::test]
    async fn a_plugin_reads_back_what_it_wrote_in_its_own_key_space() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let mut mine = StateCtx {
            plugin: "p",
            store: Some(&store),
        };
        mine.set("k".into(), b"v".to_vec()).await.unwrap().unwrap();
        assert_eq!(
            mine.get("k".into()).await.unwrap().unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(mine.keys(String::new()).await.unwrap().unwrap(), ["k"]);
        let mut other = StateCtx {
            plugin: "q",
            store: Some(&store),
        };
        assert_eq!(other.get("k".into()).await.unwrap().unwrap(), None);
        mine.delete("k".into()).await.unwrap().unwrap();
        assert_eq!(mine.get("k".into()).await.unwrap().unwrap(), None);
    }

    #[tokio::test]
    async fn over_a_quota_is_limit_exceeded_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let mut ctx = StateCtx {
            plugin: "p",
            store: Some(&store),
        };
        let too_long = "k".repeat(StateQuota::default().max_key_bytes + 1);
        let got = ctx.set(too_long, Vec::new()).await.unwrap();
        assert!(matches!(got, Err(Error::LimitExceeded(_))), "{got:?}");
    }
}
