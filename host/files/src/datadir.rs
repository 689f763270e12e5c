//! The data directory: who may use it (mode 0700, its databases 0600) and who holds it (one
//! process at a time, by an exclusive `flock` on `DATA_DIR/colony.lock`).
//!
//! | rule | why |
//! |---|---|
//! | `colony run` takes the lock before it touches anything else in the directory | a second host would otherwise replace `admin.token`, run every agent's `init` and write audit records before it noticed the first |
//! | a command that changes the directory with no host running (`grants grant/revoke/approve`, `tools register/unregister`) takes the same lock, and retries the admin socket while a host holds it | a change written while a host starts (after it read the audit, before its socket answers) would be confirmed and never applied |
//! | the lock file records the holder's pid and role (`host` or `command`) | the refusal names the process to look at; a host that finds a command holding the lock (for the few milliseconds of a write) waits for it instead of failing |
//! | the directory is made 0700 and SQLite files 0600, existing ones included (with a warning) | another local user could otherwise read the audit, the state and the order journal |
//!
//! The lock is released by the kernel when the holder exits, however it exits, so a crashed
//! host never leaves a stale lock behind.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub(crate) const LOCK_FILE: &str = "colony.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "data directory {} is in use by another colony process ({})",
        .dir.display(),
        .pid.map_or("pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The holder's pid, as it recorded it.
        pid: Option<u32>,
    },
    /// The directory or the lock file could not be created or locked.
    #[error("data directory {}: {source}", .dir.display())]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Who holds a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `colony run`, for its whole life.
    Host,
    /// A command writing with no host running, for the length of one write.
    Command,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Command => "command",
        }
    }
}

/// How long a starting host waits for a command that holds the directory.
const COMMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// An exclusive hold on a data directory, released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// For `colony run`: creates the directory (0700) if needed and takes the lock. Fails at
    /// once if another host holds it; waits (up to a minute) while a command does.
    pub fn acquire_host(dir: &Path) -> Result<DataDirLock, LockError> {
        let deadline = std::time::Instant::now() + COMMAND_WAIT;
        let mut unknown = 0;
        loop {
            if let Some(lock) = DataDirLock::try_acquire(dir, Role::Host)? {
                return Ok(lock);
            }
            let held = || LockError::Held {
                dir: dir.to_path_buf(),
                pid: holder(dir).map(|(pid, _)| pid),
            };
            match holder(dir) {
                Some((_, Role::Host)) => return Err(held()),
                Some((_, Role::Command)) if std::time::Instant::now() < deadline => {}
                // The holder has not written its pid yet: give it a moment.
                None if unknown < 40 => unknown += 1,
                _ => return Err(held()),
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Takes the lock for `role`; `Ok(None)` when another process holds it.
    pub fn try_acquire(dir: &Path, role: Role) -> Result<Option<DataDirLock>, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        prepare(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{} {}", std::process::id(), role.as_str()).map_err(io)?;
        Ok(Some(DataDirLock { _file: file }))
    }
}

/// The pid and role the lock's holder recorded, if it did.
pub fn holder(dir: &Path) -> Option<(u32, Role)> {
    let mut text = String::new();
    File::open(dir.join(LOCK_FILE))
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    let (pid, role) = text.trim().split_once(' ')?;
    let role = match role {
        "host" => Role::Host,
        "command" => Role::Command,
        _ => return None,
    };
    Some((pid.parse().ok()?, role))
}

/// Creates `dir` with mode 0700, or narrows an existing one to 0700 (with a warning: it was
/// created by an older version or by hand).
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    restrict(dir, 0o700)
}

/// Narrows `path` to `mode` if it grants anything to the group or others.
pub(crate) fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let old = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if old & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            old = format!("{old:o}"),
            new = format!("{mode:o}"),
            "narrowing the mode of a data-directory file other local users could read"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Before SQLite opens `path`: creates it 0600 if missing (SQLite gives its `-wal` and `-shm`
/// files the mode of the database file), and narrows the database and those files to 0600 if
/// an older version created them readable by others.
pub fn private_sqlite_file(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            restrict(&p, 0o600)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_refusal_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire_host(&data).unwrap();
        assert!(
            DataDirLock::try_acquire(&data, Role::Command)
                .unwrap()
                .is_none()
        );
        let err = DataDirLock::acquire_host(&data).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(
            DataDirLock::try_acquire(&data, Role::Command)
                .unwrap()
                .is_some()
        );
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn sqlite_files_are_private_new_and_old() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        private_sqlite_file(&db).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&db), 0o600);
        let old = dir.path().join("b.db");
        let wal = dir.path().join("b.db-wal");
        for p in [&old, &wal] {
            std::fs::write(p, b"").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        private_sqlite_file(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
