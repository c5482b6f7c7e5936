//! Layer 1: `state.json`, the current snapshot of a task, replaced atomically on every change
//! (write a temp file, fsync it, rename it over the old one, fsync the directory), so a crash
//! leaves either the old or the new snapshot, never a torn one.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Result, StoreError, TaskStore, io_err};
use crate::domain::{Attachment, Task};

/// What `state.json` holds: the task row and the agents attached to it. Executions are not
/// part of it (they are in the event log), so running a command does not rewrite this file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub task: Task,
    pub attachments: Vec<Attachment>,
}

impl TaskStore {
    pub fn write_state(&self, snapshot: &StateSnapshot) -> Result<()> {
        let path = self.state_path(&snapshot.task.id);
        let bytes = serde_json::to_vec_pretty(snapshot).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        atomic_write(&path, |file| file.write_all(&bytes))
    }
}

impl TaskStore {
    /// The task's `state.json`; `None` when there is none.
    pub fn read_state(&self, task_id: &str) -> Result<Option<StateSnapshot>> {
        let path = self.state_path(task_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json { path, source })
    }

    /// The ids of the task directories under `tasks/`.
    pub fn task_ids(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.root).map_err(io_err(&self.root))?;
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.starts_with("t-"))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Replaces `path` with what `write` puts in a temp file beside it. If `write` fails, `path`
/// is untouched and the temp file removed.
pub fn atomic_write(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    write(tmp.as_file_mut()).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    // The rename is durable only once the directory entry is on disk.
    if let Ok(dir_handle) = std::fs::File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        atomic_write(&path, |f| f.write_all(b"{\"old\": true}")).unwrap();

        // A writer that dies half-way through the new content.
        let err = atomic_write(&path, |f| {
            f.write_all(b"{\"new\": tr")?;
            Err(std::io::Error::other("simulated crash"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"old\": true}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("state.json")]);

        atomic_write(&path, |f| f.write_all(b"{\"new\": true}")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"new\": true}");
    }

    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let a = vec![b'a'; 256 * 1024];
        let b = vec![b'b'; 256 * 1024];
        atomic_write(&path, |f| f.write_all(&a)).unwrap();
        std::thread::scope(|s| {
            for content in [&a, &b] {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        atomic_write(path, |f| f.write_all(content)).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    let read = std::fs::read(&path).unwrap();
                    assert!(read == a || read == b, "torn read of {} bytes", read.len());
                }
            });
        });
    }
}
