//! `colony:plugin/state`: the plugin's own durable key-value space (always granted).
//!
//! Limits: key 512 bytes, value 1 MiB, 16 MiB per plugin, 10,000 keys per listing (see
//! [`crate::state_store::StateQuota`]); over a limit the call returns
//! `error::limit-exceeded` naming it. A store failure is `error::unavailable`, never a trap.

use crate::bindings::state::Host;
use crate::bindings::types::Error;
use crate::state_store::StateError;
use crate::store::StoreState;

fn to_wit(e: StateError) -> Error {
    match e {
        StateError::Quota(m) => Error::LimitExceeded(m),
        other => {
            tracing::error!(error = %other, "state store failure");
            Error::Unavailable("state store failure".into())
        }
    }
}

impl StoreState {
    fn kv(&self) -> Result<&crate::state_store::StateStore, Error> {
        self.state
            .as_ref()
            .ok_or_else(|| Error::Unavailable("state is not available to this plugin".into()))
    }
}

impl Host for StoreState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(match self.kv() {
            Ok(kv) => kv.get(&self.plugin, &key).await.map_err(to_wit),
            Err(e) => Err(e),
        })
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        Ok(match self.kv() {
            Ok(kv) => kv.set(&self.plugin, &key, &value).await.map_err(to_wit),
            Err(e) => Err(e),
        })
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(match self.kv() {
            Ok(kv) => kv.delete(&self.plugin, &key).await.map_err(to_wit),
            Err(e) => Err(e),
        })
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(match self.kv() {
            Ok(kv) => kv.keys(&self.plugin, &prefix).await.map_err(to_wit),
            Err(e) => Err(e),
        })
    }
}
