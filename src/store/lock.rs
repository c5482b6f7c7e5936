//! A per-task lock across server processes (`tasks/<id>/.lock`, an advisory file lock) for the
//! operations that replace or stop a task's container: stop, complete, restore, and bringing a
//! container back. Without it, a server starting up could restart a container another server is
//! stopping at that moment.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Result, StoreError, TaskStore, io_err};

/// Held until dropped.
pub struct TaskLock {
    _file: File,
}

/// How long to wait for another server's operation on the same task (a restore of a large
/// workspace takes seconds).
const WAIT: Duration = Duration::from_secs(120);

impl TaskStore {
    pub async fn lock_task(&self, task_id: &str) -> Result<TaskLock> {
        let path = self.task_dir(task_id).join(".lock");
        let file = open_lock_file(&path)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(TaskLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Io {
                        path,
                        source: std::io::Error::other(format!(
                            "another taskbox server has been working on this task for over {WAIT:?}; retry later"
                        )),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
        }
    }
}

impl TaskStore {
    /// The task's lock if nobody holds it now (`None` when another operation does, or the
    /// task has no directory).
    pub fn try_lock_task(&self, task_id: &str) -> Option<TaskLock> {
        let dir = self.task_dir(task_id);
        if !dir.is_dir() {
            return None;
        }
        let file = open_lock_file(&dir.join(".lock")).ok()?;
        file.try_lock().ok()?;
        Some(TaskLock { _file: file })
    }
}

/// Opens (creating) a file that exists only to be locked.
pub(super) fn open_lock_file(path: &Path) -> Result<File> {
    super::private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::new(dir.path().to_path_buf());
        store.create_task_dir("t-1").unwrap();
        let first = store.lock_task("t-1").await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), store.lock_task("t-1")).await;
        assert!(waiting.is_err(), "the second lock must wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), store.lock_task("t-1"))
            .await
            .unwrap()
            .unwrap();
    }
}
