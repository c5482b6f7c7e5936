//! `taskbox gc [--dry-run]` and the sweep at every start: remove what carries this data
//! directory's label (Docker) or lives in it (workspaces, task directories) but belongs to no
//! live task. Such leftovers come from work killed half-way (a delete, a creation), from
//! checkpoint images Docker refused to remove while a fork still ran from them, and from a
//! crashed archive.
//!
//! A task is live while its registry row exists (an archived task keeps only its records), or,
//! without a row, while its directory holds its `state.json` and no delete began: the task
//! files are the record the registry is rebuilt from, so a lost registry never makes them
//! garbage. A task directory marked `deleting` is a delete to finish: everything of it goes,
//! its registry row included.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use crate::domain::{Task, TaskStatus};
use crate::error::Result;
use crate::runtime::{Labelled, ObjectKind};

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GcItem {
    /// container, network, image, workspace, task_dir or task (a registry row).
    pub kind: &'static str,
    pub id: String,
    /// The task it belonged to.
    pub task_id: Option<String>,
    /// Removed (false on a dry run, or when removing it failed: see `error`).
    pub removed: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct GcReport {
    pub dry_run: bool,
    pub items: Vec<GcItem>,
}

/// What the registry and the task files say about the tasks.
struct Live {
    tasks: HashMap<String, Task>,
    /// Images live tasks' containers run from (a fork's is its source's checkpoint image).
    images_in_use: Vec<String>,
}

impl Live {
    /// Whether the task's Docker objects and workspace are in use: a live task that is not
    /// archived (archiving removed them) and not being deleted, or a warm-pool entry.
    fn owns_objects(&self, service: &TaskService, task_id: &str) -> bool {
        if service.store.is_deleting(task_id) {
            return false;
        }
        match self.tasks.get(task_id) {
            Some(task) => task.status != TaskStatus::Archived,
            None => match Self::recorded_since(service, task_id) {
                Some(status) => status != TaskStatus::Archived,
                None => service.store.has_record(task_id),
            },
        }
    }

    /// An id the sweep's list of tasks does not hold, read again now: a warm-pool entry (its
    /// objects are in use) or a task made since, perhaps by claiming an entry. The pool's row
    /// is read first: a claim deletes it in the write that inserts the task's row, so one of
    /// the two reads sees it. An unreadable registry counts as live.
    /// Returns the status it is recorded with (an entry counts as `creating`).
    fn recorded_since(service: &TaskService, id: &str) -> Option<TaskStatus> {
        if service.registry.is_pool_entry(id).unwrap_or(true) {
            return Some(TaskStatus::Creating);
        }
        match service.registry.get_task(id) {
            Ok(task) => task.map(|t| t.status),
            Err(_) => Some(TaskStatus::Creating),
        }
    }
}

impl TaskService {
    /// Removes (or, on a dry run, lists) everything of this data directory that belongs to no
    /// live task. Removals that fail (an image a container still uses) are reported and left
    /// for the next run.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport> {
        // Warm-pool entries that should not be there first (`pool.rs`): orphans of a dead
        // server, entries over the size, of an image no longer pooled or made for other
        // settings; then the rest of the data directory.
        let pool = self.trim_pool(dry_run).await?;
        let mut report = self
            .sweep(
                dry_run,
                &[ObjectKind::Container, ObjectKind::Network, ObjectKind::Image],
                true,
            )
            .await?;
        report.items.splice(0..0, pool);
        Ok(report)
    }

    /// Removes the checkpoint images no live task needs (after a delete: its fork's source's
    /// image may be free now).
    pub(super) async fn gc_images(&self) -> Result<GcReport> {
        self.sweep(false, &[ObjectKind::Image], false).await
    }

    async fn sweep(&self, dry_run: bool, kinds: &[ObjectKind], files: bool) -> Result<GcReport> {
        let tasks: HashMap<String, Task> = self
            .registry
            .list_tasks(None, u32::MAX, 0)?
            .tasks
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        let images_in_use = tasks.values().filter_map(|t| t.container_image.clone()).collect();
        let live = Live { tasks, images_in_use };
        let mut report = GcReport {
            dry_run,
            items: Vec::new(),
        };
        // Containers before the networks and images they use.
        for &kind in kinds {
            let home = self.home.to_string_lossy();
            for object in self.runtime.list_labelled(kind, &home).await? {
                // A second container of a live task (a restore or recreation killed before it
                // recorded its new container, or after, before it removed the old one) goes
                // too, under the task's lock so that a restore going on is not undercut.
                let mut _stray_lock = None;
                if self.object_is_live(&live, kind, &object) {
                    match self.stray_container(&live, kind, &object) {
                        Some(lock) => _stray_lock = Some(lock),
                        None => continue,
                    }
                }
                let removed = if dry_run {
                    None
                } else {
                    Some(match kind {
                        ObjectKind::Container => self.runtime.remove_container(&object.id).await,
                        ObjectKind::Network => self.runtime.remove_network(&object.id).await,
                        ObjectKind::Image => self.runtime.remove_image(&object.id).await,
                    })
                };
                let name = match kind {
                    ObjectKind::Container => "container",
                    ObjectKind::Network => "network",
                    ObjectKind::Image => "image",
                };
                let id = if object.name.is_empty() { object.id } else { object.name };
                report.items.push(item(
                    name,
                    id,
                    object.task_id,
                    removed.map(|r| r.map_err(|e| e.to_string())),
                ));
            }
        }
        if files {
            self.gc_files(&live, dry_run, &mut report)?;
        }
        Ok(report)
    }

    /// The task's lock, held, when `object` is a container of a live task other than the one
    /// its row records; `None` when it is the task's container, or the task is busy.
    fn stray_container(&self, live: &Live, kind: ObjectKind, object: &Labelled) -> Option<crate::store::TaskLock> {
        let task_id = object.task_id.as_deref()?;
        let task = live.tasks.get(task_id)?;
        if kind != ObjectKind::Container || task.status == TaskStatus::Creating {
            return None;
        }
        let lock = self.store.try_lock_task(task_id)?;
        // Read again under the lock: a restore may have just recorded this container.
        let task = self.registry.get_task(task_id).ok()??;
        let recorded = task.container_id.as_deref()?;
        let is_recorded = object.id.starts_with(recorded) || object.name == recorded;
        (!is_recorded && task.status != TaskStatus::Creating).then_some(lock)
    }

    fn object_is_live(&self, live: &Live, kind: ObjectKind, object: &Labelled) -> bool {
        let Some(task_id) = &object.task_id else {
            // taskbox labels everything it makes with its task, or, a helper of no task, with
            // the server that made it (`LABEL_SERVER`): that goes once its server is gone.
            // Leave anything else alone.
            return object.server.as_deref().is_none_or(|server| {
                server == self.lease.id() || crate::store::server_alive(&self.home.join("servers"), server)
            });
        };
        if kind == ObjectKind::Image {
            let in_use = live
                .images_in_use
                .iter()
                .any(|image| *image == object.id || *image == object.name);
            if in_use {
                return true;
            }
            // A live task's checkpoints keep their images; an archived task's were removed.
            return live.owns_objects(self, task_id);
        }
        live.owns_objects(self, task_id)
    }

    /// Workspaces and task directories of no live task; the registry rows of deletes that
    /// were killed half-way.
    fn gc_files(&self, live: &Live, dry_run: bool, report: &mut GcReport) -> Result<()> {
        let workspaces = self.home.join("workspaces");
        for id in dir_names(&workspaces) {
            if live.owns_objects(self, &id) {
                continue;
            }
            let removed =
                (!dry_run).then(|| crate::workspace::remove(&workspaces.join(&id)).map_err(|e| e.to_string()));
            report.items.push(item("workspace", id.clone(), Some(id), removed));
        }
        for id in self.store.task_ids()? {
            let deleting = self.store.is_deleting(&id);
            if !deleting
                && (live.tasks.contains_key(&id)
                    || self.store.has_record(&id)
                    || Live::recorded_since(self, &id).is_some())
            {
                continue;
            }
            if deleting && live.tasks.contains_key(&id) {
                let removed = (!dry_run).then(|| self.registry.delete_task(&id).map(drop).map_err(|e| e.to_string()));
                report.items.push(item("task", id.clone(), Some(id.clone()), removed));
            }
            let removed = (!dry_run).then(|| self.store.remove_task_dir(&id).map_err(|e| e.to_string()));
            report.items.push(item("task_dir", id.clone(), Some(id), removed));
        }
        Ok(())
    }
}

fn item(
    kind: &'static str,
    id: String,
    task_id: Option<String>,
    removed: Option<std::result::Result<(), String>>,
) -> GcItem {
    GcItem {
        kind,
        id,
        task_id,
        removed: matches!(removed, Some(Ok(()))),
        error: removed.and_then(|r| r.err()),
    }
}

/// The names of the directories in `dir` that look like task ids.
fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|name| name.starts_with("t-"))
        .collect()
}
