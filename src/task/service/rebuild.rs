//! Rebuilding the registry from the task files (docs/architecture.md, "Rebuilding the
//! registry"): `state.json` gives the task and its attachments, `events.jsonl` the events,
//! executions and decisions, the checkpoint manifests the checkpoints. Runs at start when
//! `registry.db` was missing or damaged, and by `taskbox doctor --repair`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TaskService;
use crate::domain::{Checkpoint, Decision, Event, EventKind, Execution, ExecutionStatus, Task, Timestamp};
use crate::error::{Error, Result};
use crate::registry::{Registry, TaskRecords};

/// What a rebuild did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    pub tasks: usize,
    pub executions: usize,
    pub checkpoints: usize,
    pub decisions: usize,
    pub events: usize,
    /// Task directories that could not be restored, with why.
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct Manifest {
    checkpoint: Checkpoint,
    task: Task,
}

/// Opens the registry at `db`. Returns whether it must be rebuilt from the task files under
/// `tasks`: it was missing while task directories exist, or SQLite found it damaged, in which
/// case the damaged file (and its WAL) is kept aside as `registry.db.damaged-<time>` and a new
/// one made.
pub(super) fn open_registry(db: &Path, tasks: &Path) -> Result<(Registry, bool)> {
    if !db.exists() {
        // A kill while a damaged registry was moved aside (below) can leave its WAL behind;
        // SQLite would replay it into the new file, so it goes aside too.
        for suffix in ["-wal", "-shm"] {
            let stray = PathBuf::from(format!("{}{suffix}", db.display()));
            if stray.exists() {
                let aside = PathBuf::from(format!("{}.orphan{suffix}", db.display()));
                std::fs::rename(&stray, &aside)
                    .map_err(|e| Error::Config(format!("cannot move {} aside: {e}", stray.display())))?;
            }
        }
        let registry = Registry::open(db)?;
        let has_tasks = std::fs::read_dir(tasks).is_ok_and(|mut entries| entries.next().is_some());
        if has_tasks {
            tracing::warn!(db = %db.display(), "registry.db is missing: rebuilding it from the task files");
        }
        return Ok((registry, has_tasks));
    }
    let damage = match Registry::open(db) {
        Ok(registry) => match registry.damage() {
            Ok(None) => return Ok((registry, false)),
            Ok(Some(found)) => found,
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let aside = db.with_extension(format!("db.damaged-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
        if from.exists() {
            std::fs::rename(&from, &to)
                .map_err(|e| Error::Config(format!("cannot move the damaged {} aside: {e}", from.display())))?;
        }
    }
    tracing::error!(
        damage = %damage,
        kept = %aside.display(),
        "registry.db is damaged: it was moved aside and is being rebuilt from the task files"
    );
    Ok((Registry::open(db)?, true))
}

impl TaskService {
    /// Whether the registry must be rebuilt before tasks can be served (see `open_registry`).
    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(super) fn refuse_while_rebuilding(&self) -> Result<()> {
        if self.is_rebuilding() {
            return Err(Error::RegistryRebuilding);
        }
        Ok(())
    }

    /// The rebuild the start asked for, then lets calls through.
    pub fn finish_rebuild(&self) -> Result<RebuildReport> {
        let report = self.rebuild_registry();
        self.rebuilding.store(false, std::sync::atomic::Ordering::Release);
        report
    }

    /// Indexes the events a kill left unindexed (the file is written first, then the index;
    /// docs/architecture.md, "Write order and repair"): for each task whose events.jsonl holds
    /// more lines than the index, the index is made again from the file. Counting lines reads
    /// the files but parses none that agree.
    pub(super) fn repair_event_index(&self) {
        let Ok(ids) = self.registry.task_ids() else {
            return;
        };
        for id in ids {
            let lines = count_lines(&self.store.events_path(&id));
            match self.registry.indexed_events(&id) {
                Ok(indexed) if indexed == lines => continue,
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "cannot count the task's indexed events");
                    continue;
                }
                Ok(_) => {}
            }
            let reindexed = self
                .store
                .read_events(&id)
                .map_err(crate::error::Error::from)
                .and_then(|events| Ok(self.registry.reindex_events(&id, &events)?));
            match reindexed {
                Ok(()) => tracing::info!(task = %id, "events the index missed were indexed from events.jsonl"),
                Err(e) => tracing::warn!(task = %id, error = %e, "cannot index the task's events again"),
            }
        }
    }

    /// Restores every task found under `tasks/` into the registry.
    pub fn rebuild_registry(&self) -> Result<RebuildReport> {
        let mut report = RebuildReport::default();
        for id in self.store.task_ids()? {
            // A delete began: the task is garbage, which the start-up sweep removes (gc.rs).
            if self.store.is_deleting(&id) {
                report
                    .skipped
                    .push(format!("{id}: being deleted (taskbox gc finishes it)"));
                continue;
            }
            match self.task_records(&id) {
                Ok(records) if records.task.is_some() => {
                    self.registry.restore_task(&records)?;
                    report.tasks += 1;
                    report.executions += records.executions.len();
                    report.checkpoints += records.checkpoints.len();
                    report.decisions += records.decisions.len();
                    report.events += records.events.len();
                }
                Ok(_) => report
                    .skipped
                    .push(format!("{id}: no state.json and no checkpoint manifest")),
                Err(e) => report.skipped.push(format!("{id}: {e}")),
            }
        }
        Ok(report)
    }

    /// What the files of task `id` say the registry should hold about it.
    pub(super) fn task_records(&self, id: &str) -> Result<TaskRecords> {
        let state = match self.store.read_state(id) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(task = id, error = %e, "state.json is unreadable; using the newest manifest");
                None
            }
        };
        let mut manifests = self.read_manifests(id);
        manifests.sort_by_key(|m| m.checkpoint.seq);
        let events = self.store.read_events(id)?;
        let mut records = TaskRecords {
            executions: events.iter().filter_map(execution_from_event).collect(),
            decisions: events
                .iter()
                .filter(|e| e.kind == EventKind::DecisionRecorded)
                .filter_map(|e| serde_json::from_value::<Decision>(e.data.clone()).ok())
                .collect(),
            events,
            ..Default::default()
        };
        match state {
            Some(state) => {
                records.task = Some(state.task);
                records.attachments = state.attachments;
            }
            None => records.task = manifests.last().map(|m| m.task.clone()),
        }
        records.checkpoints = manifests.into_iter().map(|m| m.checkpoint).collect();
        Ok(records)
    }

    fn read_manifests(&self, id: &str) -> Vec<Manifest> {
        let dir = self.store.task_dir(id).join("checkpoints");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                match serde_json::from_slice(&bytes) {
                    Ok(manifest) => Some(manifest),
                    Err(error) => {
                        tracing::warn!(path = %e.path().display(), %error, "unreadable checkpoint manifest");
                        None
                    }
                }
            })
            .collect()
    }
}

/// Newline-terminated lines in a file (0 when it cannot be read), read in pieces.
fn count_lines(path: &Path) -> usize {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buffer = vec![0u8; 64 * 1024];
    let mut lines = 0;
    while let Ok(n) = file.read(&mut buffer) {
        if n == 0 {
            break;
        }
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count();
    }
    lines
}

/// The execution an `execution` event records. Events written before they carried the whole
/// row lack the workdir, user and explanation, and their start is worked out from the
/// duration.
fn execution_from_event(event: &Event) -> Option<Execution> {
    if event.kind != EventKind::Execution {
        return None;
    }
    let data = &event.data;
    let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(String::from);
    let number = |key: &str| data.get(key).and_then(|v| v.as_u64());
    let time = |key: &str| -> Option<Timestamp> { serde_json::from_value(data.get(key)?.clone()).ok() };
    let duration_ms = number("duration_ms");
    let finished_at = time("finished_at").unwrap_or(event.at);
    let started_at = time("started_at")
        .unwrap_or_else(|| finished_at - chrono::TimeDelta::milliseconds(duration_ms.unwrap_or(0) as i64));
    Some(Execution {
        id: text("execution_id")?,
        task_id: event.task_id.clone(),
        command: text("command").unwrap_or_default(),
        workdir: text("workdir"),
        user: text("user"),
        explanation: text("explanation"),
        status: serde_json::from_value::<ExecutionStatus>(data.get("status")?.clone()).ok()?,
        exit_code: data.get("exit_code").and_then(|v| v.as_i64()),
        timed_out: data.get("timed_out").and_then(|v| v.as_bool()).unwrap_or(false),
        stdout_bytes: number("stdout_bytes").unwrap_or(0),
        stderr_bytes: number("stderr_bytes").unwrap_or(0),
        truncated: data.get("truncated").and_then(|v| v.as_bool()).unwrap_or(false),
        started_at,
        finished_at: Some(finished_at),
        duration_ms,
        background: data.get("background").and_then(|v| v.as_bool()).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_left_without_its_registry_goes_aside_before_a_new_one_is_made() {
        let home = tempfile::tempdir().unwrap();
        let (db, tasks) = (home.path().join("registry.db"), home.path().join("tasks"));
        std::fs::create_dir_all(tasks.join("t-1")).unwrap();
        std::fs::write(home.path().join("registry.db-wal"), vec![7u8; 4096]).unwrap();
        let (registry, rebuild) = open_registry(&db, &tasks).unwrap();
        assert!(rebuild, "task directories exist: the registry is rebuilt");
        assert!(home.path().join("registry.db.orphan-wal").exists());
        assert_eq!(registry.damage().unwrap(), None);
    }
}
