//! The agent's persistent key-value store (always granted; agents only).
//!
//! Keys are UTF-8 strings, values bytes. The store is per plugin, persisted by the host, and
//! survives restarts, hot swaps and re-instantiation after a trap. Limits: a key is at most
//! 512 bytes, a value at most 1 MiB, and all of a plugin's keys and values at most 16 MiB; a
//! call over a limit returns [`Error::LimitExceeded`].
//!
//! Tools have no state (the `tool` world does not import it): calling these from a tool
//! makes a component the host refuses to load.
//!
//! Off `wasm32` (native unit tests) the store is an in-memory map per thread.
//!
//! ```
//! use colony_sdk::state;
//!
//! state::set("greeting", b"hello")?;
//! assert_eq!(state::get("greeting")?, Some(b"hello".to_vec()));
//! state::set_json("ticks", &3u64)?;
//! assert_eq!(state::get_json::<u64>("ticks")?, Some(3));
//! assert_eq!(state::keys("")?, ["greeting", "ticks"]);
//! state::delete("greeting")?;
//! assert_eq!(state::get("greeting")?, None);
//! # Ok::<(), colony_sdk::Error>(())
//! ```

use crate::Error;

/// Returns the value stored under `key`, or `None`.
///
/// ```
/// assert_eq!(colony_sdk::state::get("missing")?, None);
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    imp::get(key)
}

/// Stores `value` under `key`, replacing any previous value; durable when it returns.
///
/// ```
/// colony_sdk::state::set("k", b"v")?;
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    imp::set(key, value)
}

/// Removes `key`; removing a missing key is not an error.
///
/// ```
/// colony_sdk::state::delete("never-set")?;
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn delete(key: &str) -> Result<(), Error> {
    imp::delete(key)
}

/// Lists the keys that start with `prefix`, in byte order (at most 10,000).
///
/// ```
/// use colony_sdk::state;
/// state::set("pos/BTC", b"1")?;
/// state::set("pos/ETH", b"2")?;
/// state::set("cfg", b"3")?;
/// assert_eq!(state::keys("pos/")?, ["pos/BTC", "pos/ETH"]);
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
    imp::keys(prefix)
}

/// Returns the value under `key` decoded from JSON, or `None` when the key is missing.
///
/// A value that does not decode as `T` is [`Error::InvalidArgument`] naming the key.
///
/// ```
/// colony_sdk::state::set("n", b"not json")?;
/// assert!(colony_sdk::state::get_json::<u64>("n").is_err());
/// # Ok::<(), colony_sdk::Error>(())
/// ```
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::InvalidArgument(format!("state key {key:?}: invalid JSON: {e}"))),
    }
}

/// Stores `value` under `key` as JSON.
///
/// ```
/// colony_sdk::state::set_json("limits", &serde_json::json!({"max_qty": "0.5"}))?;
/// # Ok::<(), colony_sdk::Error>(())
/// ```
#[cfg(feature = "json")]
pub fn set_json<T: serde::Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::InvalidArgument(format!("state key {key:?}: cannot encode: {e}")))?;
    set(key, &bytes)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    pub use crate::__bindings::agent::colony::plugin::state::{delete, get, keys, set};
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    //! A stand-in for native unit tests: one map per thread, no limits.

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::Error;

    thread_local! {
        static STORE: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(STORE.with_borrow(|s| s.get(key).cloned()))
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
        STORE.with_borrow_mut(|s| s.insert(key.to_string(), value.to_vec()));
        Ok(())
    }

    pub fn delete(key: &str) -> Result<(), Error> {
        STORE.with_borrow_mut(|s| s.remove(key));
        Ok(())
    }

    pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
        Ok(STORE.with_borrow(|s| {
            s.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect()
        }))
    }
}
