//! Checkpoints (layer 4): the workspace as a commit on the task branch, the container as an
//! image, a manifest, a registry row and an event. Restore goes back to one, after taking a
//! "pre-restore" checkpoint so that the restore itself can be undone.

use std::io::Write;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::container_ops::{Reset, ResetWorkspace, UnpackObjects};
use crate::domain::lifecycle::LifecycleEvent;
use crate::domain::{Checkpoint, Event, EventKind, Owner, Task, TaskStatus, new_checkpoint_id, now};
use crate::error::{Error, Result};
use crate::hooks::HookEvent;
use crate::runtime::supervisor;
use crate::runtime::{BindMount, ContainerSpec, NetworkAttachment, RuntimeError};
use crate::store::atomic_write;
use crate::workspace::host::worker::WorkerRequest;
use crate::workspace::{checkpoint_ref, host};

/// The label of the automatic checkpoint a restore takes first.
const PRE_RESTORE: &str = "pre-restore";

/// What `tasks/<id>/checkpoints/<n>.json` holds.
#[derive(Debug, Clone, Serialize)]
struct Manifest<'a> {
    checkpoint: &'a Checkpoint,
    task: &'a Task,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckpointResult {
    pub checkpoint: Checkpoint,
    /// `<task name>:<seq>`, usable wherever a checkpoint is asked for.
    pub reference: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RestoreResult {
    pub task: Task,
    pub restored: Checkpoint,
    /// The checkpoint taken just before; restore it to undo this restore.
    pub pre_restore: Option<Checkpoint>,
    pub warnings: Vec<String>,
}

impl TaskService {
    pub async fn create_checkpoint(&self, task: &str, label: Option<String>) -> Result<CheckpointResult> {
        let task = self.resolve(Some(task))?;
        // Only asked-for checkpoints count against the quota: the automatic ones are pruned
        // (`checkpoints.keep_automatic`), and a restore must never fail for want of room.
        let held = self.registry.owner_usage(&task.owner, None)?;
        super::quota::admit_checkpoint(&task.owner, &self.config.quotas.for_owner(&task.owner), &held)?;
        self.checkpoint(task, label, false).await
    }

    pub(super) async fn checkpoint(
        &self,
        task: Task,
        label: Option<String>,
        automatic: bool,
    ) -> Result<CheckpointResult> {
        let container = task.container_id.clone().ok_or_else(|| Error::WrongStatus {
            task: task.name.clone(),
            status: task.status.to_string(),
            hint: "it has no container to checkpoint".into(),
        })?;
        let mut warnings = Vec::new();
        let label = label.filter(|l| !l.trim().is_empty());
        // A stopped task was synced when it stopped; a running one is synced now.
        let mut head = task.repo.synced_commit.clone();
        let task = match task.status {
            TaskStatus::Running => {
                let message = format!(
                    "taskbox: checkpoint{}",
                    label.as_deref().map(|l| format!(": {l}")).unwrap_or_default()
                );
                match self.sync(&task, &message).await {
                    Ok((task, outcome)) => {
                        warnings.extend(outcome.warning);
                        // The workspace's head, even when the branch could not be moved to it:
                        // that is the state this checkpoint keeps (its hidden ref keeps it alive).
                        head = Some(outcome.commit);
                        task
                    }
                    // A restore must not lose what is there now even when a hook refuses the
                    // sync (the agent left the task branch): keep the workspace's commit in
                    // this checkpoint only, without moving the task branch.
                    Err(e @ Error::HookDenied { .. }) if automatic && label.as_deref() == Some(PRE_RESTORE) => {
                        let saved = self.save_workspace(&task, &container, &message).await?;
                        head = Some(saved.head.to_string());
                        warnings.extend(saved.warning);
                        warnings.push(format!(
                            "{e} (the task branch was not moved; the pre-restore checkpoint keeps the workspace)"
                        ));
                        task
                    }
                    Err(e) => return Err(e),
                }
            }
            TaskStatus::Stopped => task,
            // A completed task's container is kept until cleanup; the hook that checkpoints
            // on completion needs this.
            TaskStatus::Completed if automatic => task,
            status => {
                return Err(Error::WrongStatus {
                    task: task.name.clone(),
                    status: status.to_string(),
                    hint: "only running or stopped tasks can be checkpointed".into(),
                });
            }
        };
        let id = new_checkpoint_id();
        let mut labels = self.labels(&task);
        labels.insert("taskbox.checkpoint".into(), id.clone());
        let image_id = self
            .runtime
            .commit_container(&container, &format!("taskbox-checkpoint:{id}"), labels)
            .await?;
        let mut checkpoint = Checkpoint {
            id,
            task_id: task.id.clone(),
            seq: 0,
            label,
            automatic,
            git_commit: head,
            image_id: Some(image_id),
            created_at: now(),
        };
        checkpoint.seq = self.registry.insert_checkpoint(&checkpoint)?;
        if let (Some(repo), Some(commit)) = (&task.repo.path, &checkpoint.git_commit)
            && let Ok(oid) = commit.parse()
        {
            host::set_ref(repo, &checkpoint_ref(&task.id, checkpoint.seq), oid)?;
        }
        self.write_manifest(&checkpoint, &task)?;
        self.record(Event::new(
            &task.id,
            EventKind::CheckpointCreated,
            serde_json::json!(checkpoint),
        ))?;
        if automatic && checkpoint.label.as_deref() != Some(PRE_RESTORE) {
            self.prune_automatic(&task, None);
        }
        self.notify(HookEvent::CheckpointCreated, &task, serde_json::json!(checkpoint))
            .await;
        Ok(CheckpointResult {
            reference: format!("{}:{}", task.name, checkpoint.seq),
            checkpoint,
            warnings,
        })
    }

    fn write_manifest(&self, checkpoint: &Checkpoint, task: &Task) -> Result<()> {
        let dir = self.store.task_dir(&task.id).join("checkpoints");
        let path = dir.join(format!("{}.json", checkpoint.seq));
        let manifest = serde_json::to_vec_pretty(&Manifest { checkpoint, task })
            .map_err(|e| Error::Internal(format!("cannot serialise the manifest: {e}")))?;
        crate::store::private_dir(&dir).map_err(|source| crate::store::StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        atomic_write(&path, |f| f.write_all(&manifest))?;
        Ok(())
    }

    pub fn list_checkpoints(&self, task: &str) -> Result<(Task, Vec<Checkpoint>)> {
        let task = self.resolve(Some(task))?;
        let checkpoints = self.registry.list_checkpoints(&task.id)?;
        Ok((task, checkpoints))
    }

    /// One of the owner's checkpoints, by id (`c-…`) or as `<task>:<seq>`; `task` is the
    /// default for a bare number. Another owner's checkpoint is not found.
    pub fn resolve_checkpoint(&self, owner: &Owner, reference: &str, task: Option<&str>) -> Result<(Task, Checkpoint)> {
        let not_found = || {
            Error::invalid(
                "checkpoint",
                format!(
                    "no checkpoint '{reference}'; pass an id from create_checkpoint or list_checkpoints, or <task>:<n>"
                ),
            )
        };
        if let Some(checkpoint) = self.registry.get_checkpoint(reference)? {
            let task = self.resolve_for(owner, &checkpoint.task_id).map_err(|_| not_found())?;
            return Ok((task, checkpoint));
        }
        let (task_ref, seq) = match reference.rsplit_once(':') {
            Some((t, n)) => (Some(t), n),
            None => (task, reference),
        };
        let seq: i64 = seq.parse().map_err(|_| not_found())?;
        let task = self.resolve_for(owner, task_ref.ok_or(Error::NoCurrentTask)?)?;
        let checkpoint = self
            .registry
            .get_checkpoint_by_seq(&task.id, seq)?
            .ok_or_else(not_found)?;
        Ok((task, checkpoint))
    }

    /// Restores a checkpoint, named by id or `<task>:<n>`.
    pub async fn restore_checkpoint(&self, owner: &Owner, reference: &str) -> Result<RestoreResult> {
        let (task, _) = self.resolve_checkpoint(owner, reference, None)?;
        let _lock = self.store.lock_task(&task.id).await?;
        let (task, checkpoint) = self.resolve_checkpoint(owner, reference, None)?;
        let image = checkpoint
            .image_id
            .clone()
            .ok_or_else(|| Error::invalid("checkpoint", "it has no image"))?;
        let commit = checkpoint
            .git_commit
            .clone()
            .ok_or_else(|| Error::invalid("checkpoint", "it has no commit"))?;
        crate::domain::lifecycle::transition(task.status, LifecycleEvent::Restore)?;
        let mut warnings = Vec::new();
        let started = std::time::Instant::now();

        // 0. The task's background executions end with the container they run in.
        self.end_background(&task, "the task was restored to a checkpoint")
            .await;

        // 1. Keep what is there now, so the restore can be undone.
        let container_alive = match &task.container_id {
            Some(id) => self.runtime.inspect_container(id).await?.is_some(),
            None => false,
        };
        let pre_restore = if container_alive && matches!(task.status, TaskStatus::Running | TaskStatus::Stopped) {
            // Taken even when a hook refuses its sync (see `checkpoint`): restoring without it
            // would lose the container's state for good.
            let result = self.checkpoint(task.clone(), Some(PRE_RESTORE.into()), true).await?;
            warnings.extend(result.warnings);
            Some(result.checkpoint)
        } else {
            warnings
                .push("the task's container was not running (or gone), so no pre-restore checkpoint was taken".into());
            None
        };
        let task = self.resolve(Some(&task.id))?;
        tracing::debug!(task = %task.id, elapsed_ms = started.elapsed().as_millis() as u64, "restore: pre-restore checkpoint");

        // 2. A new container from the checkpoint's image, with the task's configuration, under
        //    a name of its own. The old container is stopped, not removed, until the new one
        //    is recorded: a restore that fails (or is killed) at any step leaves the task with
        //    its old container, and never a container holding a name the next restore needs.
        //    What a killed restore left unrecorded, the start-up sweep removes (gc.rs).
        let old = match &task.container_id {
            Some(id) => self
                .runtime
                .inspect_container(id)
                .await?
                .map(|state| (id.clone(), state.running)),
            None => None,
        };
        if let Some((old, true)) = &old {
            self.runtime.stop_container(old, 10).await?;
        }
        let prepared = self.restore_into_new_container(&task, &image, &commit, pre_restore.is_none(), &mut warnings);
        let (container, shell) = match prepared.await {
            Ok(made) => made,
            Err((made, error)) => {
                if let Some(container) = made {
                    let _ = self.runtime.remove_container(&container).await;
                }
                if let Some((old, true)) = &old
                    && let Err(e) = self.runtime.start_container(old).await
                {
                    tracing::warn!(task = %task.id, error = %e, "restore failed and the old container could not be started again");
                }
                return Err(error);
            }
        };
        tracing::debug!(task = %task.id, elapsed_ms = started.elapsed().as_millis() as u64, "restore: workspace reset");

        // 4. The branch follows; the commits after it stay reachable from the pre-restore
        //    checkpoint's ref.
        let mut synced = task.repo.synced_commit.clone();
        if let (Some(repo), Some(branch), Ok(oid)) = (&task.repo.path, &task.repo.branch, commit.parse()) {
            let expected = task.repo.synced_commit.as_deref().and_then(|c| c.parse().ok());
            match host::move_branch(repo, branch, oid, expected) {
                Ok(()) => synced = Some(commit.clone()),
                Err(e) => warnings.push(format!("{e}; the workspace was restored anyway")),
            }
        }
        let task = self.transition(task, LifecycleEvent::Restore, None, |t| {
            t.container_id = Some(container.clone());
            t.container_image = Some(image.clone());
            t.shell = Some(shell.clone());
            t.repo.synced_commit = synced.clone();
        })?;
        // The new container is recorded: only now does the old one go.
        if let Some((old, _)) = &old
            && let Err(e) = self.runtime.remove_container(old).await
        {
            tracing::warn!(task = %task.id, error = %e, "restore: the old container is left for the start-up sweep");
        }
        // Pruning waits until now, so it can never remove the checkpoint being restored.
        self.prune_automatic(&task, Some(&checkpoint.id));
        self.record(Event::new(
            &task.id,
            EventKind::CheckpointRestored,
            serde_json::json!({ "checkpoint": checkpoint.id, "seq": checkpoint.seq, "pre_restore": pre_restore.as_ref().map(|c| c.seq) }),
        ))?;
        self.notify(
            HookEvent::TaskRestored,
            &task,
            serde_json::json!({ "checkpoint": checkpoint.id }),
        )
        .await;
        Ok(RestoreResult {
            task,
            restored: checkpoint,
            pre_restore,
            warnings,
        })
    }

    /// Steps 2 and 3 of a restore: a new container from `image`, prepared, with the workspace
    /// reset to `commit` (saved first when `save_first`). Returns the container and its shell;
    /// on failure, the container made so far (for the caller to remove) and the error.
    async fn restore_into_new_container(
        &self,
        task: &Task,
        image: &str,
        commit: &str,
        save_first: bool,
        warnings: &mut Vec<String>,
    ) -> std::result::Result<(String, String), (Option<String>, Error)> {
        let container = self
            .start_container_named(task, image, &fresh_container_name(task))
            .await
            .map_err(|e| (None, e))?;
        let failed = |e: Error| (Some(container.clone()), e);
        let shell = self
            .prepare_container(
                &container,
                task.exec_user.as_deref().unwrap_or(""),
                &task.volumes,
                super::create::numeric_ids(task.exec_user.as_deref()).as_deref(),
            )
            .await
            .map_err(failed)?
            .shell
            .to_string();

        // Without a pre-restore checkpoint, the workspace's current state is saved first (as a
        // commit kept by a hidden ref), so the reset below cannot destroy the only copy.
        if save_first && let Some(repo) = &task.repo.path {
            match self
                .save_workspace(task, &container, "taskbox: workspace before restore")
                .await
            {
                Ok(saved) => {
                    let refname = format!("refs/taskbox/{}/before-restore/{}", task.id, now().timestamp_millis());
                    host::set_ref(repo, &refname, saved.head).map_err(|e| failed(e.into()))?;
                    warnings.push(format!(
                        "the workspace as it was is kept as commit {} ({refname})",
                        saved.head
                    ));
                    warnings.extend(saved.warning);
                }
                Err(e) => warnings.push(format!("the workspace as it was could not be saved: {e}")),
            }
        }

        // 3. The workspace back at the checkpoint's commit; only when the workspace lost that
        //    commit does it get it from the host repository first.
        let user = task.exec_user.as_deref();
        let reset = || ResetWorkspace { commit, user };
        let mut outcome = self.run_op(&container, reset()).await.map_err(failed)?;
        if outcome == Reset::MissingCommit
            && let (Some(repo), Ok(oid)) = (&task.repo.path, commit.parse::<git2::Oid>())
        {
            // The pack is made by the git worker into a file and streamed to the container:
            // its size is the checkpoint's whole tree, never held by the server.
            let pack = self
                .store
                .task_dir(&task.id)
                .join(format!("restore-{}.pack", crate::domain::new_execution_id()));
            let _remove = crate::task::bounded::RemoveOnDrop(pack.clone());
            let request = WorkerRequest::PackCommit {
                repo: repo.clone(),
                commit: oid.to_string(),
                pack: pack.clone(),
            };
            self.git_worker(&request).await.map_err(failed)?;
            let unpack = UnpackObjects { pack: &pack, user };
            if let Err(e) = self.run_op(&container, unpack).await.map_err(failed)? {
                return Err(failed(restore_failed(
                    "giving the workspace the checkpoint's commit",
                    &e.stderr,
                )));
            }
            outcome = self.run_op(&container, reset()).await.map_err(failed)?;
        }
        match outcome {
            Reset::Done => Ok((container, shell)),
            Reset::MissingCommit => Err(failed(restore_failed(
                "resetting the workspace",
                "it lacks the checkpoint's commit",
            ))),
            Reset::Failed(e) => Err(failed(restore_failed("resetting the workspace", &e.stderr))),
        }
    }

    /// Creates and starts the task's first container from `image` (its network must exist).
    pub(super) async fn start_container_for(&self, task: &Task, image: &str) -> Result<String> {
        self.start_container_named(task, image, &format!("taskbox-{}", task.id))
            .await
    }

    /// Creates and starts a container for the task named `name`; nothing is left on failure.
    pub(super) async fn start_container_named(&self, task: &Task, image: &str, name: &str) -> Result<String> {
        self.start_container_labelled(task, image, name, self.labels(task))
            .await
    }

    /// `start_container_named` with the labels given (a warm-pool entry's mark it as one):
    /// every task container, pooled or not, is made here, with the same hardening and mounts.
    pub(super) async fn start_container_labelled(
        &self,
        task: &Task,
        image: &str,
        name: &str,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<String> {
        let network = match &task.network_name {
            Some(name) => NetworkAttachment::Bridge(name.clone()),
            None => NetworkAttachment::None,
        };
        let (dns, dns_options) = self.container_dns(task).await?;
        // Made (or checked) before every container of the task, so a volume removed behind
        // taskbox's back comes back with its labels rather than as Docker's unlabelled one.
        // Volumes stay when a creation rolls back: other tasks may share them.
        self.ensure_volumes(task).await?;
        let env = self.env_set_back(task, image).await?;
        let spec = ContainerSpec {
            env,
            dns,
            dns_options,
            name: name.to_string(),
            image: image.to_string(),
            labels,
            workspace: task.workspace.clone(),
            network,
            memory_mb: task.limits.memory_mb,
            cpus: task.limits.cpus,
            pids: task.limits.pids,
            cap_add: self.config.security.cap_add.clone(),
            runtime: self.config.container.runtime.clone(),
            user: "0".into(),
            mounts: self.supervisor_mounts(&task.id)?,
            volumes: task
                .volumes
                .iter()
                .map(|v| crate::runtime::VolumeMount {
                    volume: v.volume.clone(),
                    target: v.path.clone(),
                })
                .collect(),
        };
        let container = self.runtime.create_container(&spec).await?;
        if let Err(e) = self.runtime.start_container(&container).await {
            let _ = self.runtime.remove_container(&container).await;
            return Err(e.into());
        }
        Ok(container)
    }

    /// The supervisor, read-only, and the task's run directory (background executions'
    /// files, outside the container's filesystem so that checkpoint images never hold them).
    fn supervisor_mounts(&self, task_id: &str) -> Result<Vec<BindMount>> {
        let Some(binary) = &self.supervisor else {
            return Ok(Vec::new());
        };
        let run = self.run_dir(task_id);
        crate::store::private_dir(&run).map_err(|source| crate::store::StoreError::Io {
            path: run.clone(),
            source,
        })?;
        // Enter-only for the container's users: they reach their executions' directories
        // by name but cannot list, add or rename entries (docs/security.md).
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o711)).map_err(|source| {
            crate::store::StoreError::Io {
                path: run.clone(),
                source,
            }
        })?;
        Ok(vec![
            BindMount {
                source: binary.clone(),
                target: supervisor::SUPERVISOR_PATH.into(),
                read_only: true,
            },
            BindMount {
                source: run,
                target: supervisor::RUN_DIR.into(),
                read_only: false,
            },
        ])
    }

    /// Keeps the newest `checkpoints.keep_automatic` automatic checkpoints of the task (and
    /// `keep_also`, one being restored).
    fn prune_automatic(&self, task: &Task, keep_also: Option<&str>) {
        let keep = self.config.checkpoints.keep_automatic;
        let Ok(checkpoints) = self.registry.list_checkpoints(&task.id) else {
            return;
        };
        let stale: Vec<Checkpoint> = checkpoints
            .into_iter()
            .filter(|c| c.automatic)
            .skip(keep)
            .filter(|c| Some(c.id.as_str()) != keep_also)
            .collect();
        if stale.is_empty() {
            return;
        }
        let runtime = self.runtime.clone();
        let images: Vec<String> = stale.iter().filter_map(|c| c.image_id.clone()).collect();
        for checkpoint in &stale {
            self.forget_checkpoint(task, checkpoint);
        }
        // Image removal is slow and may fail while a container still uses the image (the
        // task restored from it); neither should hold up the caller.
        tokio::spawn(async move {
            for image in images {
                if let Err(e) = runtime.remove_image(&image).await {
                    tracing::debug!(image, error = %e, "pruned checkpoint image kept");
                }
            }
        });
    }

    /// Removes a checkpoint's row, manifest and ref (not its image).
    pub(super) fn forget_checkpoint(&self, task: &Task, checkpoint: &Checkpoint) {
        if let Some(repo) = &task.repo.path
            && let Err(e) = host::delete_ref(repo, &checkpoint_ref(&task.id, checkpoint.seq))
        {
            tracing::warn!(task = %task.id, error = %e, "cannot delete checkpoint ref");
        }
        let manifest = self
            .store
            .task_dir(&task.id)
            .join("checkpoints")
            .join(format!("{}.json", checkpoint.seq));
        let _ = std::fs::remove_file(manifest);
        if let Err(e) = self.registry.delete_checkpoint(&checkpoint.id) {
            tracing::warn!(task = %task.id, error = %e, "cannot delete checkpoint row");
        }
    }

    /// On delete: every checkpoint's image and ref goes with the task.
    pub(super) async fn remove_checkpoints(&self, task: &Task) -> Result<()> {
        for checkpoint in self.registry.list_checkpoints(&task.id)? {
            if let Some(image) = &checkpoint.image_id {
                match self.runtime.remove_image(image).await {
                    Err(e @ RuntimeError::Unavailable(_)) => return Err(e.into()),
                    // A fork's container may still run from it; Docker keeps it then.
                    Err(e) => tracing::warn!(image, error = %e, "checkpoint image kept"),
                    Ok(()) => {}
                }
            }
            self.forget_checkpoint(task, &checkpoint);
        }
        Ok(())
    }
}

/// A name no container of the task has had: a replacement (restore, recreation) never
/// conflicts with a container a killed operation left behind.
pub(super) fn fresh_container_name(task: &Task) -> String {
    format!("taskbox-{}-{}", task.id, now().timestamp_millis())
}

/// A restore step in the container that failed.
fn restore_failed(what: &str, stderr: &str) -> Error {
    Error::InContainer {
        what: what.to_string(),
        message: stderr.to_string(),
    }
}
