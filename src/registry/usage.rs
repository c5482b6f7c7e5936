//! What one owner holds, for quotas (docs/security.md, "Another owner over HTTP"): counted in the same
//! transaction that adds a task, so two servers creating at once cannot both pass.

use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::pool::PoolEntry;
use super::tasks::{COLUMNS, bind, placeholders};
use super::{Cached, Registry, RegistryError, Result};
use crate::domain::{Owner, Task};

/// An owner's tasks and what their limits reserve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnerUsage {
    /// Tasks in any status (each holds a workspace until deleted).
    pub tasks: u64,
    /// Tasks creating or running (each holds a container).
    pub running_tasks: u64,
    /// Memory and CPUs reserved by the limits of the tasks creating or running.
    pub memory_mb: u64,
    pub cpus: f64,
    /// Checkpoints that have an image.
    pub checkpoint_images: u64,
}

const RUNNING: &str = "status IN ('creating', 'running')";

fn usage(conn: &Connection, owner: &Owner, except_task: Option<&str>) -> Result<OwnerUsage> {
    let except = except_task.unwrap_or("");
    let (tasks, running_tasks, memory_mb, cpus) = conn.query_row_cached(
        &format!(
            "SELECT COUNT(*),
                    COALESCE(SUM({RUNNING}), 0),
                    COALESCE(SUM(CASE WHEN {RUNNING} THEN memory_mb ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN {RUNNING} THEN cpus ELSE 0 END), 0.0)
             FROM tasks WHERE owner = ?1 AND id != ?2"
        ),
        (owner.as_str(), except),
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
            ))
        },
    )?;
    let checkpoint_images: i64 = conn.query_row_cached(
        "SELECT COUNT(*) FROM checkpoints c JOIN tasks t ON t.id = c.task_id
         WHERE t.owner = ?1 AND c.image_id IS NOT NULL",
        [owner.as_str()],
        |r| r.get(0),
    )?;
    Ok(OwnerUsage {
        tasks: tasks.max(0) as u64,
        running_tasks: running_tasks.max(0) as u64,
        memory_mb: memory_mb.max(0) as u64,
        cpus,
        checkpoint_images: checkpoint_images.max(0) as u64,
    })
}

impl Registry {
    /// What `owner` holds, leaving out `except_task` (a task about to start again).
    pub fn owner_usage(&self, owner: &Owner, except_task: Option<&str>) -> Result<OwnerUsage> {
        usage(&self.conn(), owner, except_task)
    }

    /// Inserts a new task if `admit`, given what its owner holds without it, lets it in;
    /// otherwise returns `admit`'s refusal and inserts nothing. `NameTaken` as `insert_task`.
    pub fn insert_task_admitted<E>(
        &self,
        task: &Task,
        admit: impl FnOnce(&OwnerUsage) -> Result<(), E>,
    ) -> Result<Result<(), E>> {
        let mut task = task.clone();
        Ok(self
            .insert_task_admitted_from_pool(&mut task, None, |_, _| {}, admit)?
            .map(drop))
    }

    /// `insert_task_admitted`, claiming in the same transaction the oldest ready pool entry
    /// of `pool_spec` when there is one: `take` then gives the task what the entry holds (its
    /// id above all) before the row is inserted, and the entry is returned. The claim and the
    /// task's row are one write, so no other server claims the entry, and no sweep finds it
    /// neither pooled nor a task's. A refused creation claims nothing.
    pub fn insert_task_admitted_from_pool<E>(
        &self,
        task: &mut Task,
        pool_spec: Option<&str>,
        take: impl FnOnce(&mut Task, &PoolEntry),
        admit: impl FnOnce(&OwnerUsage) -> Result<(), E>,
    ) -> Result<Result<Option<PoolEntry>, E>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held = usage(&tx, &task.owner, None)?;
        if let Err(refused) = admit(&held) {
            return Ok(Err(refused));
        }
        let taken: Option<String> = tx
            .query_row_cached(
                "SELECT id FROM tasks WHERE owner = ?1 AND name = ?2",
                (task.owner.as_str(), &task.name),
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(RegistryError::NameTaken {
                owner: task.owner.as_str().to_string(),
                name: task.name.clone(),
            });
        }
        let entry = match pool_spec {
            Some(spec) => super::pool::claim_in(&tx, spec)?,
            None => None,
        };
        if let Some(entry) = &entry {
            take(task, entry);
        }
        tx.execute_cached(
            &format!("INSERT INTO tasks ({COLUMNS}) VALUES ({})", placeholders(1)),
            params_from_iter(bind(task)),
        )?;
        tx.commit()?;
        Ok(Ok(entry))
    }
}
