//! Reading files that a user, an operator or another process controls (plugins, manifests,
//! sidecars, configuration, replay data, component files handed to `tools register`): regular
//! files only, with a hard cap on the bytes actually read.
//!
//! | rule | why |
//! |---|---|
//! | opened with `O_NONBLOCK` | opening a FIFO would otherwise wait for a writer forever |
//! | the opened file (not the path) must be a regular file | a symlink to `/dev/zero`, a FIFO or a device is refused after `open`, so a swap between check and open cannot slip one in |
//! | at most `limit + 1` bytes are read | a file that grows while it is read (or lies about its size) still cannot make the host read without bound |
//!
//! **Architecture invariant:** every read of such a file goes through [`read_regular`] or
//! [`open_regular`]; nothing else in the host calls `std::fs::read` on them.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The open or read failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The path is not a regular file.
    #[error("not a regular file (a {0})")]
    NotRegular(&'static str),
    /// The file holds more than the limit.
    #[error("more than the {0}-byte limit")]
    TooLarge(u64),
}

impl ReadError {
    /// Whether the file does not exist (an optional file such as a sidecar).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading if it is a regular file (symlinks are followed to what they name),
/// without blocking on a FIFO.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let ty = file.metadata()?.file_type();
    if !ty.is_file() {
        let kind = if ty.is_fifo() {
            "fifo"
        } else if ty.is_char_device() {
            "character device"
        } else if ty.is_block_device() {
            "block device"
        } else if ty.is_socket() {
            "socket"
        } else if ty.is_dir() {
            "directory"
        } else {
            "special file"
        };
        return Err(ReadError::NotRegular(kind));
    }
    Ok(file)
}

/// Reads the regular file `path`, refusing it if it holds more than `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    if hint > limit {
        return Err(ReadError::TooLarge(limit));
    }
    read_capped(file, limit)
}

/// Reads at most `limit` bytes from `reader`; more is an error.
pub fn read_capped(reader: impl Read, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(out)
}

/// Reads the regular text file `path` (UTF-8), refusing it over `limit` bytes.
pub fn read_regular_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_regular(path, limit)?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// Largest text file (manifest sidecar, configuration, credentials) the host reads.
pub const MAX_TEXT_BYTES: u64 = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_regular(&zero, 10),
            Err(ReadError::NotRegular("character device"))
        ));
        let fifo = dir.path().join("x.wasm");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(ReadError::NotRegular("fifo"))
        ));
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(ReadError::NotRegular("directory"))
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, [0u8; 11]).unwrap();
        assert!(matches!(
            read_regular(&big, 10),
            Err(ReadError::TooLarge(10))
        ));
        assert_eq!(read_regular(&big, 11).unwrap().len(), 11);
        assert!(
            read_regular(&dir.path().join("none"), 10)
                .unwrap_err()
                .is_not_found()
        );
        // A reader that never ends stops at the cap.
        assert!(matches!(
            read_capped(std::io::repeat(0), 1000),
            Err(ReadError::TooLarge(1000))
        ));
    }
}
