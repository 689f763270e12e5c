//! Colony's files on disk, below everything that reads or writes them:
//! - reading files that a user, an operator or another process controls ([`read_regular`],
//!   [`open_regular`]): regular files only, with a hard cap on the bytes read;
//! - the data directory ([`datadir`]): its single-host lock and the private modes of what the
//!   host keeps there.
//!
//! **Architecture invariant:** no dependency on wasmtime, sqlx or tokio.

#![deny(missing_docs)]

pub mod datadir;
mod read;

pub use read::{
    MAX_TEXT_BYTES, ReadError, open_regular, read_capped, read_regular, read_regular_text,
};
