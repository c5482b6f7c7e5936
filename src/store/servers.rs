//! Server leases: every server process holds `servers/<id>.lock` (an advisory file lock) for as
//! long as it lives. The kernel drops the lock when the process dies, however it dies (kill -9
//! included), so another server can tell at once whether the server that started an execution
//! is still there: a lock it can take belongs to a dead server.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Result, io_err, lock::open_lock_file, private_dir};

/// This process's lease, held until dropped (then its file is removed).
#[derive(Debug)]
pub struct ServerLease {
    id: String,
    path: PathBuf,
    _file: File,
}

impl ServerLease {
    /// Takes a new lease under `dir` (`<home>/servers`).
    pub fn take(dir: &Path, id: String) -> Result<Self> {
        private_dir(dir).map_err(io_err(dir))?;
        let path = dir.join(format!("{id}.lock"));
        let file = open_lock_file(&path)?;
        // A fresh id: nobody else holds it, so this does not wait.
        file.lock().map_err(io_err(&path))?;
        Ok(Self { id, path, _file: file })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for ServerLease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the server with this lease id is alive: its lock file exists and is locked. A
/// dead server's file is removed on the way (nothing else cleans it).
pub fn server_alive(dir: &Path, id: &str) -> bool {
    // Ids come from the registry: never let one name a path outside `dir`.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return false;
    }
    let path = dir.join(format!("{id}.lock"));
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell: assume alive, so its executions are not killed under it.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

/// Removes the files of dead servers' leases (a kill -9 leaves them behind).
pub fn sweep_dead_servers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".lock")) {
            server_alive(dir, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_alive_while_held_and_dead_after() {
        let dir = tempfile::tempdir().unwrap();
        let servers = dir.path().join("servers");
        let lease = ServerLease::take(&servers, "s-1".into()).unwrap();
        assert!(server_alive(&servers, "s-1"));
        assert!(!server_alive(&servers, "s-2"), "no such server");
        assert!(!server_alive(&servers, "../s-1"), "an id is never a path");
        drop(lease);
        assert!(!server_alive(&servers, "s-1"));

        // A lease whose process died (its lock released, its file left behind) is dead, and
        // its file is swept.
        std::fs::write(servers.join("s-3.lock"), "").unwrap();
        sweep_dead_servers(&servers);
        assert!(!servers.join("s-3.lock").exists());
    }
}
