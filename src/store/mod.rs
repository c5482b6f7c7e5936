//! The per-task files under `tasks/<id>/` (docs/architecture.md, "Data layout" and
//! "Persistence layers"): the state snapshot, the event log and the full outputs of executions.
//! These are the record the registry can be rebuilt from.
//!
//! Everything taskbox writes here is private to the user the server runs as: directories 0700,
//! files 0600 (`private_dir`, `private_file`), since outputs and events can hold anything a
//! command printed.

mod decisions;
mod durable;
mod events;
mod lock;
mod plan;
mod servers;
mod state_json;

use std::path::{Path, PathBuf};

pub use durable::syncing_once;
pub use lock::TaskLock;
pub use servers::{ServerLease, server_alive, sweep_dead_servers};
pub use state_json::{StateSnapshot, atomic_write};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Creates a directory and any missing parents with mode 0700; an existing one is made 0700.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Options that create a file with mode 0600 (an existing file keeps its mode).
pub fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The marker file of a task being deleted.
const DELETING: &str = "deleting";

/// Paths and writers for the task directories of one data dir.
#[derive(Debug, Clone)]
pub struct TaskStore {
    root: PathBuf,
}

impl TaskStore {
    /// `root` is the `tasks/` directory of the data dir.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join(task_id)
    }

    pub fn state_path(&self, task_id: &str) -> PathBuf {
        self.task_dir(task_id).join("state.json")
    }

    pub fn events_path(&self, task_id: &str) -> PathBuf {
        self.task_dir(task_id).join("events.jsonl")
    }

    pub fn outputs_dir(&self, task_id: &str) -> PathBuf {
        self.task_dir(task_id).join("outputs")
    }

    /// Creates `tasks/<id>/` and `tasks/<id>/outputs/`, both 0700.
    pub fn create_task_dir(&self, task_id: &str) -> Result<()> {
        let dir = self.task_dir(task_id);
        private_dir(&dir).map_err(io_err(&dir))?;
        let outputs = self.outputs_dir(task_id);
        private_dir(&outputs).map_err(io_err(&outputs))
    }

    /// Marks the task as being deleted, before anything of it is removed: a delete killed
    /// half-way is then finished by `taskbox gc` (and the start-up sweep) instead of the
    /// task's files bringing a half-removed task back.
    pub fn mark_deleting(&self, task_id: &str) -> Result<()> {
        let path = self.task_dir(task_id).join(DELETING);
        match private_file().create(true).truncate(false).write(true).open(&path) {
            Ok(file) => file.sync_all().map_err(io_err(&path)),
            // The directory is gone already: so is the task's record.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Whether a delete of the task began (see `mark_deleting`).
    pub fn is_deleting(&self, task_id: &str) -> bool {
        self.task_dir(task_id).join(DELETING).exists()
    }

    /// Whether the task's files hold its record (`state.json`), from which the registry can be
    /// rebuilt: such a task is never garbage, whatever the registry says.
    pub fn has_record(&self, task_id: &str) -> bool {
        self.state_path(task_id).exists()
    }

    pub fn remove_task_dir(&self, task_id: &str) -> Result<()> {
        let dir = self.task_dir(task_id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }
}
