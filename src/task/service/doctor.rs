//! `taskbox doctor`: the layers compared with each other and with Docker
//! (docs/architecture.md, "Rebuilding the registry"). Each mismatch says what `--repair`
//! does about it; `--repair` does it.

use std::collections::BTreeSet;

use serde::Serialize;

use super::TaskService;
use crate::domain::TaskStatus;
use crate::error::Result;
use crate::workspace::{checkpoint_ref, host};

/// One disagreement between layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub task_id: String,
    pub found: String,
    /// What `--repair` does about it.
    pub repair: String,
    #[serde(skip)]
    action: Repair,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Repair {
    /// Put the task's rows back from its files.
    RestoreFromFiles,
    /// Write state.json from the registry's newer row.
    RewriteState,
    /// Remove a row whose task has no files left.
    RemoveRow,
    /// Point a checkpoint's hidden ref at its commit again.
    RestoreRef,
    /// Remove what belongs to no live task (`taskbox gc`).
    CollectGarbage,
    /// Nothing taskbox can remake; reported only.
    None,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerReport {
    pub tasks_checked: usize,
    pub mismatches: Vec<Mismatch>,
}

impl TaskService {
    /// Compares the registry, the task files and Docker, task by task.
    pub async fn check_layers(&self) -> Result<LayerReport> {
        let mut ids: BTreeSet<String> = self.store.task_ids()?.into_iter().collect();
        ids.extend(self.registry.task_ids()?);
        // A warm-pool entry's directory (its run directory only) is no task's yet.
        let pooled: BTreeSet<String> = self.registry.pool_entries()?.into_iter().map(|e| e.id).collect();
        ids.retain(|id| !pooled.contains(id));
        let mut report = LayerReport::default();
        for id in ids {
            report.tasks_checked += 1;
            self.check_task(&id, &mut report.mismatches).await?;
        }
        // Docker objects, workspaces and directories of no live task; without Docker the
        // sweep cannot look, which `doctor` already reports.
        if let Ok(orphans) = self.gc(true).await {
            for item in orphans.items {
                report.mismatches.push(Mismatch {
                    task_id: item.task_id.clone().unwrap_or_else(|| "-".into()),
                    found: format!("{} {} belongs to no live task", item.kind, item.id),
                    repair: "remove it (as taskbox gc does)".into(),
                    action: Repair::CollectGarbage,
                });
            }
        }
        Ok(report)
    }

    /// Checks, then repairs what can be repaired; returns what was found.
    pub async fn repair_layers(&self) -> Result<LayerReport> {
        let report = self.check_layers().await?;
        let mut done = BTreeSet::new();
        // Removing rows can leave objects of no live task: the sweep runs after the rest.
        let mut sweep = false;
        for m in &report.mismatches {
            if !done.insert((m.task_id.clone(), m.action as u8)) {
                continue;
            }
            match m.action {
                Repair::RestoreFromFiles => self.registry.restore_task(&self.task_records(&m.task_id)?)?,
                Repair::RewriteState => {
                    if let Some(task) = self.registry.get_task(&m.task_id)? {
                        self.write_state(&task);
                    }
                }
                Repair::RemoveRow => {
                    self.registry.delete_task(&m.task_id)?;
                    sweep = true;
                }
                Repair::RestoreRef => self.restore_checkpoint_refs(&m.task_id)?,
                Repair::CollectGarbage => sweep = true,
                Repair::None => {}
            }
        }
        if sweep {
            self.gc(false).await?;
        }
        Ok(report)
    }

    async fn check_task(&self, id: &str, out: &mut Vec<Mismatch>) -> Result<()> {
        let mut found = |found: String, repair: &str, action: Repair| {
            out.push(Mismatch {
                task_id: id.to_string(),
                found,
                repair: repair.to_string(),
                action,
            })
        };
        if self.store.is_deleting(id) {
            found(
                "a delete of the task was interrupted".into(),
                "nothing: taskbox gc (and the next start) finishes it",
                Repair::None,
            );
            return Ok(());
        }
        let row = self.registry.get_task(id)?;
        let has_files = self.store.task_dir(id).is_dir();
        let Some(row) = row else {
            found(
                "the task's files exist but the registry has no row for it".into(),
                "restore it from the files",
                Repair::RestoreFromFiles,
            );
            return Ok(());
        };
        if !has_files {
            found(
                format!("the registry has task '{}' but tasks/{id}/ is gone", row.name),
                "remove the row (the files cannot be remade)",
                Repair::RemoveRow,
            );
            return Ok(());
        }
        let records = self.task_records(id)?;
        match &records.task {
            Some(file) if file.version < row.version => found(
                format!(
                    "state.json is at version {} and the registry at {}",
                    file.version, row.version
                ),
                "rewrite state.json from the registry",
                Repair::RewriteState,
            ),
            Some(file) if file.version > row.version => found(
                format!(
                    "the registry is at version {} and state.json at {}",
                    row.version, file.version
                ),
                "restore the task from its files",
                Repair::RestoreFromFiles,
            ),
            Some(_) => {}
            None => found(
                "state.json is missing or unreadable and no manifest holds the task".into(),
                "rewrite state.json from the registry",
                Repair::RewriteState,
            ),
        }
        let (files, rows) = (records.summary(), self.registry.task_summary(id)?);
        for (what, in_files, in_rows) in [
            (
                "finished executions",
                &files.finished_executions,
                &rows.finished_executions,
            ),
            ("checkpoints", &files.checkpoints, &rows.checkpoints),
            ("decisions", &files.decisions, &rows.decisions),
        ] {
            if in_files != in_rows {
                found(
                    format!(
                        "{what}: {} in the files, {} in the registry",
                        in_files.len(),
                        in_rows.len()
                    ),
                    "restore the task from its files",
                    Repair::RestoreFromFiles,
                );
            }
        }
        if files.events != rows.events {
            found(
                format!("events: {} in events.jsonl, {} indexed", files.events, rows.events),
                "restore the task from its files",
                Repair::RestoreFromFiles,
            );
        }
        self.check_git(&row, out);
        self.check_docker(&row, out).await;
        Ok(())
    }

    /// The task's branch exists, and each checkpoint's hidden ref names its commit. (A branch
    /// that moved is not a mismatch: the developer may commit to it.)
    fn check_git(&self, task: &crate::domain::Task, out: &mut Vec<Mismatch>) {
        let (Some(repo), Some(branch)) = (&task.repo.path, &task.repo.branch) else {
            return;
        };
        if task.status != TaskStatus::Archived && host::resolve_commit(repo, &format!("refs/heads/{branch}")).is_err() {
            out.push(Mismatch {
                task_id: task.id.clone(),
                found: format!("the task branch {branch} is gone from {}", repo.display()),
                repair: "none; the work since is in the workspace and the checkpoints' hidden refs".into(),
                action: Repair::None,
            });
        }
        for (checkpoint, wanted) in self.checkpoint_commits(task) {
            let refname = checkpoint_ref(&task.id, checkpoint);
            if host::resolve_commit(repo, &refname).ok() != Some(wanted) {
                out.push(Mismatch {
                    task_id: task.id.clone(),
                    found: format!("{refname} does not name the checkpoint's commit {wanted}"),
                    repair: "point it at the commit again, while the repository still has it".into(),
                    action: Repair::RestoreRef,
                });
            }
        }
    }

    /// (sequence number, commit) of the task's checkpoints that have a commit.
    fn checkpoint_commits(&self, task: &crate::domain::Task) -> Vec<(i64, git2::Oid)> {
        self.registry
            .list_checkpoints(&task.id)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| Some((c.seq, git2::Oid::from_str(c.git_commit.as_deref()?).ok()?)))
            .collect()
    }

    fn restore_checkpoint_refs(&self, task_id: &str) -> Result<()> {
        let Some(task) = self.registry.get_task(task_id)? else {
            return Ok(());
        };
        let Some(repo) = &task.repo.path else {
            return Ok(());
        };
        for (seq, commit) in self.checkpoint_commits(&task) {
            let refname = checkpoint_ref(&task.id, seq);
            if host::resolve_commit(repo, &refname).ok() != Some(commit)
                && host::has_commit(repo, commit).unwrap_or(false)
            {
                host::set_ref(repo, &refname, commit)?;
            }
        }
        Ok(())
    }

    /// The task's container and checkpoint images, as Docker has them. Docker being away is
    /// not a mismatch: the check is skipped.
    async fn check_docker(&self, task: &crate::domain::Task, out: &mut Vec<Mismatch>) {
        let mut found = |found: String, repair: &str| {
            out.push(Mismatch {
                task_id: task.id.clone(),
                found,
                repair: repair.to_string(),
                action: Repair::None,
            })
        };
        if let (Some(container), TaskStatus::Running | TaskStatus::Stopped) = (&task.container_id, task.status)
            && let Ok(None) = self.runtime.inspect_container(container).await
        {
            found(
                format!("the {} task's container {container} does not exist", task.status),
                "none here; the next server start recreates it from the newest checkpoint, or marks the task failed",
            );
        }
        let Ok(checkpoints) = self.registry.list_checkpoints(&task.id) else {
            return;
        };
        for checkpoint in checkpoints {
            if let Some(image) = &checkpoint.image_id
                && let Ok(None) = self.runtime.image_info(image).await
            {
                found(
                    format!("checkpoint {}:{} has lost its image {image}", task.name, checkpoint.seq),
                    "none; restoring it would fail: delete the task or use another checkpoint",
                );
            }
        }
    }
}
