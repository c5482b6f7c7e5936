//! Bringing tasks back after their containers stopped behind taskbox's back: at server start
//! (host reboot, daemon restart, `docker stop`) and before a command. These are the service's
//! own recovery steps; the config of the hooks named after them switches them
//! (`[hooks.task-resumer]`, `[hooks.container-enforcer] resume_stopped`), and their runs are
//! recorded under those names (docs/hooks.md). A container that vanished is recreated from the
//! task's newest checkpoint image; the workspace is a host directory and survives on its own.

use std::fmt;
use std::time::Instant;

use super::TaskService;
use super::exec::describe_exit;
use super::reconcile::ReconcileOutcome;
use crate::domain::lifecycle::LifecycleEvent;
use crate::domain::{Event, EventKind, Task, TaskStatus};
use crate::error::{Error, Result};
use crate::hooks::{CONTAINER_ENFORCER, Decision, HookEvent, foreign_labels, scope, step_run};
use crate::runtime::{ContainerState, RuntimeError};

const TASK_RESUMER: &str = "task-resumer";

/// What task-resumer did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeReport {
    pub checked: usize,
    pub restarted: usize,
    pub recreated: usize,
    pub failed: usize,
}

impl fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} task(s) checked: {} container(s) started again, {} recreated from checkpoints, {} task(s) marked failed",
            self.checked, self.restarted, self.recreated, self.failed
        )
    }
}

/// What bringing a task's container back did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revival {
    Unchanged,
    Restarted,
    /// From the checkpoint with this sequence number.
    Recreated(i64),
    /// It could not be brought back; the task is marked failed with the reason.
    Failed,
}

impl TaskService {
    /// What a server does when it starts, before its tool calls (`startup.rs`): bring back the containers of running and stopped
    /// tasks (task-resumer's step, when enabled), fire `server_started`, then reconcile the
    /// rest with Docker (what was brought back is not marked failed). Returns what the
    /// reconciliation changed.
    pub async fn recover_at_start(&self) -> Result<Vec<ReconcileOutcome>> {
        if self.config.hooks.task_resumer.enabled {
            let started = Instant::now();
            let decision = match self.resume_after_restart(TASK_RESUMER).await {
                Ok(report) if report.failed == 0 => Decision::done(report.to_string()),
                Ok(report) => Decision::Warn(report.to_string()),
                Err(e) => Decision::Warn(format!("cannot check the tasks' containers: {e}")),
            };
            if let Decision::Warn(message) = &decision {
                tracing::warn!("{TASK_RESUMER}: {message}");
            }
            let run = step_run(TASK_RESUMER, HookEvent::ServerStarted, started, &decision);
            self.record_hook_runs(None, &[run]);
        }
        self.server_started().await;
        // Executions a dead server left running: killed where they still run, recorded.
        self.resolve_interrupted(None).await;
        crate::store::sweep_dead_servers(&self.home.join("servers"));
        let outcomes = self.reconcile().await?;
        // What no live task owns any more (a delete or a creation killed half-way).
        match self.gc(false).await {
            Ok(report) if !report.items.is_empty() => {
                tracing::warn!(
                    removed = report.items.len(),
                    "start-up sweep: removed what belonged to no live task"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "start-up sweep skipped"),
        }
        Ok(outcomes)
    }

    /// Before a command, while container-enforcer is enabled: a stopped task is resumed and a
    /// stopped or vanished container brought back (`resume_stopped`), else a vanished container
    /// fails the task with the reason. Returns the task as it is now, and the container's
    /// state when it was inspected and nothing changed, so the hooks need not inspect again.
    pub(super) async fn recover_before_command(&self, task: Task) -> Result<(Task, Option<Option<ContainerState>>)> {
        // Not switched by the hook: an execution a dead server left running never stays so.
        self.resolve_interrupted(Some(&task.id)).await;
        let switch = &self.config.hooks.container_enforcer;
        if !switch.enabled {
            return Ok((task, None));
        }
        let started = Instant::now();
        let (decision, seen) = self.container_recovery(&task, switch.resume_stopped).await?;
        let Some(decision) = decision else {
            return Ok((task, seen));
        };
        let run = step_run(CONTAINER_ENFORCER, HookEvent::BeforeExec, started, &decision);
        self.record_hook_runs(Some(&task.id), &[run]);
        match decision {
            Decision::Deny(reason) => Err(Error::HookDenied {
                hook: CONTAINER_ENFORCER.to_string(),
                event: HookEvent::BeforeExec.as_str(),
                reason,
            }),
            Decision::Warn(message) => {
                scope::warn(format!("{CONTAINER_ENFORCER}: {message}"));
                Ok((self.resolve(Some(&task.id))?, None))
            }
            Decision::Allow(_) => Ok((self.resolve(Some(&task.id))?, None)),
        }
    }

    /// What the recovery before a command did (`None`: nothing), and the container's state
    /// when it was inspected and left alone.
    async fn container_recovery(
        &self,
        task: &Task,
        resume_stopped: bool,
    ) -> Result<(Option<Decision>, Option<Option<ContainerState>>)> {
        let Some(container) = task.container_id.as_deref() else {
            return Ok((None, None));
        };
        match task.status {
            TaskStatus::Running => {}
            TaskStatus::Stopped if resume_stopped => {
                let could_not = |e: Error| format!("task '{}' is stopped and could not be resumed: {e}", task.name);
                // A vanished container is recreated (and left stopped) first, so the resume
                // below can start it.
                if let Err(e) = self.revive_task(task.clone(), CONTAINER_ENFORCER, true).await {
                    return Ok((Some(Decision::Deny(could_not(e))), None));
                }
                let decision = match self.resume(&task.id).await {
                    Ok(_) => Decision::Warn(format!("task '{}' was stopped; it was resumed first", task.name)),
                    Err(e) => Decision::Deny(could_not(e)),
                };
                return Ok((Some(decision), None));
            }
            // The service refuses these with the status and what to do.
            _ => return Ok((None, None)),
        }
        let state = match self.runtime.inspect_container_followed(container).await {
            Ok(state) => state,
            // The daemon is away (restarting): nothing can run, and the caller should hear
            // that, with what to do, rather than a hook's refusal.
            Err(e @ RuntimeError::Unavailable(_)) => return Err(e.into()),
            // container-enforcer reports it, with the rest of its checks.
            Err(_) => return Ok((None, None)),
        };
        let leave_alone = match &state {
            // Not this task's container: container-enforcer refuses it; never restart it.
            Some(s) if foreign_labels(s, task, &self.home).is_some() => true,
            Some(s) => s.running || !resume_stopped,
            None => false,
        };
        if leave_alone {
            return Ok((None, Some(state)));
        }
        // Stopped or gone behind taskbox's back. Without resume_stopped a vanished container
        // still fails the task (the command could not run anyway), so the agent is told why.
        let decision = match self.revive_task(task.clone(), CONTAINER_ENFORCER, resume_stopped).await {
            Ok(Revival::Unchanged) => return Ok((None, None)),
            Ok(Revival::Restarted) => Decision::Warn(
                "the task's container had stopped outside taskbox; it was started again (processes that ran in it are gone)"
                    .into(),
            ),
            Ok(Revival::Recreated(seq)) => Decision::Warn(format!(
                "the task's container no longer existed; it was recreated from checkpoint {}:{seq} (the workspace is \
                 as it was; changes outside /workspace since that checkpoint are gone)",
                task.name
            )),
            // The task is failed now; the operation refuses it with the reason.
            Ok(Revival::Failed) => Decision::done("the container could not be brought back; task marked failed"),
            Err(e) => Decision::Deny(format!("the task's container is not running and could not be started: {e}")),
        };
        Ok((Some(decision), None))
    }

    /// Reconciles every running or stopped task with Docker: a running task's stopped
    /// container is started again; a vanished container is recreated from the newest
    /// checkpoint (and left stopped for a stopped task); without one the task is marked failed.
    async fn resume_after_restart(&self, hook: &str) -> Result<ResumeReport> {
        self.runtime.ping().await?;
        let mut report = ResumeReport::default();
        for status in [TaskStatus::Running, TaskStatus::Stopped] {
            for task in self.registry.list_tasks(Some(status), u32::MAX, 0)?.tasks {
                report.checked += 1;
                let (id, name) = (task.id.clone(), task.name.clone());
                match self.revive_task(task, hook, true).await {
                    Ok(Revival::Unchanged) => {}
                    Ok(Revival::Restarted) => report.restarted += 1,
                    Ok(Revival::Recreated(_)) => report.recreated += 1,
                    Ok(Revival::Failed) => report.failed += 1,
                    Err(e) => {
                        tracing::warn!(task = %id, %name, error = %e, "task-resumer: cannot check task");
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// A new container for the task from a checkpoint image, prepared (and stopped again for
    /// a stopped task); returns it and its shell. Nothing is left behind on failure.
    async fn container_from_checkpoint(&self, task: &Task, image: &str) -> Result<(String, String)> {
        if self.runtime.image_info(image).await?.is_none() {
            return Err(crate::error::Error::Runtime(RuntimeError::NotFound {
                what: format!("checkpoint image {image}"),
            }));
        }
        let name = super::checkpoint::fresh_container_name(task);
        let container = match self.start_container_named(task, image, &name).await {
            Ok(container) => container,
            // The image exists, so a 404 means the daemon lost the task's network too.
            Err(crate::error::Error::Runtime(RuntimeError::NotFound { .. })) if task.network_name.is_some() => {
                let network = task.network_name.clone().unwrap_or_default();
                let internal = task.network == crate::domain::NetworkMode::Allowlist;
                self.runtime
                    .create_network(&network, self.labels(task), &self.subnet_pool, internal)
                    .await?;
                // A new network has a new gateway: the proxy listens there from the next use.
                self.stop_proxy(&task.id);
                self.start_container_named(task, image, &name).await?
            }
            Err(e) => return Err(e),
        };
        let prepared = async {
            let shell = self
                .prepare_container(
                    &container,
                    task.exec_user.as_deref().unwrap_or(""),
                    &task.volumes,
                    super::create::numeric_ids(task.exec_user.as_deref()).as_deref(),
                )
                .await?
                .shell
                .to_string();
            if task.status == TaskStatus::Stopped {
                self.runtime.stop_container(&container, 10).await?;
            }
            Ok::<_, crate::error::Error>(shell)
        };
        match prepared.await {
            Ok(shell) => Ok((container, shell)),
            Err(e) => {
                let _ = self.runtime.remove_container(&container).await;
                Err(e)
            }
        }
    }

    /// Starts the task's stopped container, or recreates a vanished one from its newest
    /// checkpoint when `recreate` allows (else the task is marked failed).
    pub(super) async fn revive_task(&self, task: Task, hook: &str, recreate: bool) -> Result<Revival> {
        // Another server may be stopping or restoring this task right now: wait for it, then
        // act only on a task whose row still says what it said when the caller looked.
        let _lock = self.store.lock_task(&task.id).await?;
        let task = match self.registry.get_task(&task.id)? {
            Some(now) if now.version == task.version => now,
            _ => return Ok(Revival::Unchanged),
        };
        let Some(container) = task.container_id.clone() else {
            return Ok(Revival::Unchanged);
        };
        // Before the container comes back: what a dead server left running in it is recorded
        // as ended by the stop, not killed in the new run.
        self.resolve_interrupted(Some(&task.id)).await;
        match self.runtime.inspect_container(&container).await? {
            Some(state) if state.running || task.status == TaskStatus::Stopped => Ok(Revival::Unchanged),
            Some(state) => {
                let reason = describe_exit(&state);
                match self.runtime.start_container(&container).await {
                    Ok(()) => {
                        self.record(Event::new(
                            &task.id,
                            EventKind::ContainerRestarted,
                            serde_json::json!({ "reason": reason, "by": hook }),
                        ))?;
                        tracing::info!(task = %task.id, name = %task.name, %reason, "container started again");
                        Ok(Revival::Restarted)
                    }
                    Err(e) => {
                        let why = format!("{reason}, and starting it again failed: {e}");
                        self.transition(task, LifecycleEvent::ContainerDied, Some(why), |_| {})?;
                        Ok(Revival::Failed)
                    }
                }
            }
            None if recreate => self.recreate(task, &container, hook).await,
            None => {
                let reason = format!("its container {container} no longer exists");
                self.transition(task, LifecycleEvent::ContainerDied, Some(reason), |_| {})?;
                Ok(Revival::Failed)
            }
        }
    }

    async fn recreate(&self, task: Task, old: &str, hook: &str) -> Result<Revival> {
        let checkpoint = self
            .registry
            .list_checkpoints(&task.id)?
            .into_iter()
            .find(|c| c.image_id.is_some());
        let Some((checkpoint, image)) = checkpoint.and_then(|c| c.image_id.clone().map(|i| (c, i))) else {
            let reason = format!("its container {old} no longer exists and it has no checkpoint to recreate it from");
            self.transition(task, LifecycleEvent::ContainerDied, Some(reason), |_| {})?;
            return Ok(Revival::Failed);
        };
        let (container, shell) = match self.container_from_checkpoint(&task, &image).await {
            Ok(made) => made,
            Err(e) => {
                let reason = format!("its container {old} no longer exists and recreating it failed: {e}");
                self.transition(task, LifecycleEvent::ContainerDied, Some(reason), |_| {})?;
                return Ok(Revival::Failed);
            }
        };
        let task = self.update(task, |t| {
            t.container_id = Some(container.clone());
            t.container_image = Some(image.clone());
            t.shell = Some(shell.clone());
        })?;
        self.record(Event::new(
            &task.id,
            EventKind::ContainerRecreated,
            serde_json::json!({
                "old_container": old, "container": container, "checkpoint": checkpoint.id,
                "seq": checkpoint.seq, "by": hook,
            }),
        ))?;
        tracing::info!(task = %task.id, name = %task.name, seq = checkpoint.seq, "container recreated from checkpoint");
        Ok(Revival::Recreated(checkpoint.seq))
    }
}
