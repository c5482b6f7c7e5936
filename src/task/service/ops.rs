//! Attach/detach, status, stop/resume and delete.

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::exec::describe_exit;
use crate::domain::ExecutionCounts;
use crate::domain::lifecycle::{LifecycleEvent, can_delete};
use crate::domain::{Attachment, Decision, Event, EventKind, Execution, Task};
use crate::error::{Error, Result};
use crate::hooks::HookEvent;
use crate::workspace;

/// How many executions attach returns as context.
const RESUME_EXECUTIONS: u32 = 10;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AttachResult {
    pub task: Task,
    pub attachment: Attachment,
    pub resume: ResumeContext,
}

/// What an agent picking up a task needs to carry on.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ResumeContext {
    /// The task's plan (goal, progress, decisions, result), kept by the plan hooks.
    pub plan: Option<super::PlanText>,
    /// Newest first.
    pub recent_executions: Vec<Execution>,
    /// Newest first.
    pub recent_decisions: Vec<Decision>,
    pub active_attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskStatusReport {
    pub task: Task,
    /// The container as Docker sees it now; `null` when the task has none or Docker could
    /// not be asked (see `container_error`).
    pub container: Option<LiveContainer>,
    pub container_error: Option<String>,
    pub attachments: Vec<Attachment>,
    pub executions: ExecutionCounts,
    /// Running executions first, then the newest.
    pub last_execution: Option<Execution>,
    /// Executions running now (background ones included), oldest first; a background one with
    /// its activity (waiting_for_input, stalled, last_line, advice).
    pub running_executions: Vec<super::ListedExecution>,
    /// What the task takes on disk.
    pub disk: super::disk::DiskUse,
    /// What the task may reach.
    pub network: NetworkPolicy,
}

/// A task's network policy, as get_task_status shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NetworkPolicy {
    /// `none`, `egress` (anything the host reaches but the host itself, link-local and other
    /// tasks) or `allowlist` (only `allow`, through the proxy).
    pub mode: crate::domain::NetworkMode,
    /// The hosts an allowlist task's proxy lets through.
    pub allow: Vec<String>,
    /// The proxy an allowlist task's commands use (HTTP_PROXY/HTTPS_PROXY), when this server
    /// listens for it.
    pub proxy: Option<String>,
    /// In a sentence, for people.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LiveContainer {
    pub id: String,
    /// running, exited, created, paused, dead … or `missing` when it no longer exists.
    pub state: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
}

impl TaskService {
    pub async fn attach(&self, task: &str, agent: &str, session_id: &str) -> Result<AttachResult> {
        let task = self.resolve(Some(task))?;
        let attachment = self.registry.attach(&task.id, agent, session_id)?;
        let data = serde_json::json!({ "agent": agent, "session_id": session_id });
        self.record(Event::new(&task.id, EventKind::AgentAttached, data.clone()))?;
        self.write_state(&task);
        self.notify(HookEvent::AgentAttached, &task, data).await;
        Ok(AttachResult {
            resume: ResumeContext {
                plan: self.plan(&task.id)?,
                recent_executions: self.registry.recent_executions(&task.id, RESUME_EXECUTIONS)?,
                recent_decisions: self.registry.list_decisions(&task.id, RESUME_EXECUTIONS, 0)?.0,
                active_attachments: self.registry.active_attachments(&task.id)?,
            },
            task,
            attachment,
        })
    }

    /// Ends this session's attachment(s) to the task; `agent` narrows it to one agent.
    pub async fn detach(&self, task: &str, agent: Option<&str>, session_id: &str) -> Result<(Task, Vec<Attachment>)> {
        let task = self.resolve(Some(task))?;
        let ended = self.registry.detach(&task.id, agent, session_id)?;
        for attachment in &ended {
            let data = serde_json::json!({ "agent": attachment.agent, "session_id": session_id });
            self.record(Event::new(&task.id, EventKind::AgentDetached, data.clone()))?;
            self.notify(HookEvent::AgentDetached, &task, data).await;
        }
        self.write_state(&task);
        Ok((task, ended))
    }

    pub async fn status(&self, task: &str) -> Result<TaskStatusReport> {
        let task = self.resolve(Some(task))?;
        self.settle_background(Some(&task.id)).await;
        let (container, container_error) = match &task.container_id {
            None => (None, None),
            Some(id) => match self.runtime.inspect_container(id).await {
                Ok(Some(state)) => (
                    Some(LiveContainer {
                        id: id.clone(),
                        state: if state.oom_killed && !state.running {
                            "oom_killed".into()
                        } else {
                            state.status.clone()
                        },
                        running: state.running,
                        exit_code: state.exit_code,
                        oom_killed: state.oom_killed,
                        error: state.error,
                    }),
                    None,
                ),
                Ok(None) => (
                    Some(LiveContainer {
                        id: id.clone(),
                        state: "missing".into(),
                        running: false,
                        exit_code: None,
                        oom_killed: false,
                        error: None,
                    }),
                    None,
                ),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        let disk = self.disk_use(&task).await;
        let network = self.network_policy(&task).await;
        Ok(TaskStatusReport {
            network,
            disk,
            attachments: self.registry.active_attachments(&task.id)?,
            executions: self.registry.execution_counts(&task.id)?,
            last_execution: self.registry.recent_executions(&task.id, 1)?.into_iter().next(),
            running_executions: self.listed(&task, self.registry.task_running_executions(&task.id)?),
            task,
            container,
            container_error,
        })
    }

    /// Syncs the workspace to the task branch, then stops the container. Returns warnings
    /// (a sync that could not move the branch, say); the files stay either way.
    pub async fn stop(&self, task: &str, timeout_s: Option<u64>) -> Result<(Task, Vec<String>)> {
        let (task, warnings) = self
            .finish_work(task, timeout_s, LifecycleEvent::Stop, "taskbox: sync on stop")
            .await?;
        self.notify(HookEvent::TaskStopped, &task, serde_json::Value::Null)
            .await;
        Ok((task, warnings))
    }

    /// Finalises the task: its work committed on the task branch, the container stopped, the
    /// status `completed` (the workspace and checkpoints stay until cleanup or delete).
    pub async fn complete(&self, task: &str) -> Result<(Task, Vec<String>)> {
        let (task, warnings) = self
            .finish_work(task, None, LifecycleEvent::Complete, "taskbox: complete task")
            .await?;
        self.notify(HookEvent::TaskCompleted, &task, serde_json::Value::Null)
            .await;
        // The hooks may have checkpointed it: return the task as it is now.
        Ok((self.resolve(Some(&task.id))?, warnings))
    }

    async fn finish_work(
        &self,
        task: &str,
        timeout_s: Option<u64>,
        event: LifecycleEvent,
        message: &str,
    ) -> Result<(Task, Vec<String>)> {
        let task = self.resolve(Some(task))?;
        let _lock = self.store.lock_task(&task.id).await?;
        // Read again under the lock: another server may have changed it meanwhile.
        let mut task = self.resolve(Some(&task.id))?;
        // Check the move first so a stopped task is not stopped "again" in Docker.
        crate::domain::lifecycle::transition(task.status, event)?;
        let timeout = timeout_s.unwrap_or(10).min(300) as i32;
        let mut warnings = Vec::new();
        if task.status == crate::domain::TaskStatus::Running {
            let why = match event {
                LifecycleEvent::Complete => "the task was completed",
                _ => "the task was stopped",
            };
            self.end_background(&task, why).await;
        }
        if task.repo.path.is_some() && task.status == crate::domain::TaskStatus::Running {
            match self.sync(&task, message).await {
                Ok((synced, outcome)) => {
                    task = synced;
                    warnings.extend(outcome.warning);
                }
                // Completing says "the work is on the task branch": not when a hook refused
                // to put it there. A stop goes ahead (the files stay in the workspace).
                Err(e @ Error::HookDenied { .. }) if event == LifecycleEvent::Complete => return Err(e),
                Err(e) => warnings.push(format!(
                    "the workspace could not be synced to the task branch ({e}); its files are kept in the workspace"
                )),
            }
        }
        if let Some(container) = &task.container_id
            && task.status == crate::domain::TaskStatus::Running
        {
            self.runtime.stop_container(container, timeout).await?;
            // A root process left running may have made set-id files since the last root
            // command; with the container stopped, nothing can make more after this sweep.
            self.clear_setid_bits(&task.id).await;
        }
        let task = self.transition(task, event, None, |_| {})?;
        // After the status changed: a keeper pass reading the task as running could open
        // the forward again otherwise.
        self.close_ports(&task.id).await;
        Ok((task, warnings))
    }

    pub async fn resume(&self, task: &str) -> Result<Task> {
        let task = self.resolve(Some(task))?;
        crate::domain::lifecycle::transition(task.status, LifecycleEvent::Resume)?;
        let held = self.registry.owner_usage(&task.owner, Some(&task.id))?;
        let quota = self.config.quotas.for_owner(&task.owner);
        super::quota::admit_task(&task.owner, &quota, &held, &task.limits, false)?;
        let container = task.container_id.clone().ok_or_else(|| Error::WrongStatus {
            task: task.name.clone(),
            status: task.status.to_string(),
            hint: "it has no container; delete it and create a new task".into(),
        })?;
        // Executions a dead server left running ended when the container stopped: record so.
        self.resolve_interrupted(Some(&task.id)).await;
        match self.runtime.start_container(&container).await {
            Ok(()) => {
                let task = self.transition(task, LifecycleEvent::Resume, None, |_| {})?;
                self.reopen_ports(&task).await;
                Ok(task)
            }
            Err(crate::runtime::RuntimeError::NotFound { .. }) => {
                let reason = format!("its container {container} no longer exists");
                let task = self.transition(task, LifecycleEvent::ContainerDied, Some(reason.clone()), |_| {})?;
                Err(Error::WrongStatus {
                    task: task.name,
                    status: task.status.to_string(),
                    hint: format!("{reason}; delete it and create a new task"),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the container, network, workspace, task directory and registry rows. Each
    /// removal tolerates what is already gone, and the task directory is marked `deleting`
    /// before anything goes, so a delete killed half-way is finished by the next sweep
    /// (`gc.rs`) or by deleting again. It takes the task's lock (a stop, restore or revival
    /// in progress finishes first), then ends the executions still running in the container.
    pub async fn delete(&self, task: &str, confirm: bool) -> Result<String> {
        let task = self.resolve(Some(task))?;
        if !confirm {
            return Err(Error::invalid(
                "confirm",
                format!(
                    "deleting '{}' removes its container and workspace for good; call again with confirm: true",
                    task.name
                ),
            ));
        }
        can_delete(task.status)?;
        // A delete killed after the directory went (before schema 6 it went before the row)
        // still has a lock to take.
        self.store.create_task_dir(&task.id)?;
        let _lock = self.store.lock_task(&task.id).await?;
        // Read again under the lock: the operation we waited for may have changed it.
        let task = self.resolve(Some(&task.id))?;
        can_delete(task.status)?;
        self.store.mark_deleting(&task.id)?;
        self.end_executions(&task).await;
        self.end_background(&task, "the task was deleted").await;
        if let Some(container) = &task.container_id {
            self.runtime.remove_container(container).await?;
        }
        self.stop_proxy(&task.id);
        if let Some(network) = &task.network_name {
            self.runtime.remove_network(network).await?;
        }
        // Checkpoint images and refs go; the task branch in the developer's repository stays.
        self.remove_checkpoints(&task).await?;
        workspace::remove(&task.workspace)?;
        self.registry.delete_task(&task.id)?;
        // Its exposed ports went with the row: no keeper can open them again now.
        self.close_ports(&task.id).await;
        self.store.remove_task_dir(&task.id)?;
        tracing::info!(task = %task.id, name = %task.name, "task deleted");
        // Checkpoint images Docker kept while this task's container ran from them (it was a
        // fork) belong to no live task now; neither do those of tasks deleted before.
        if let Err(e) = self.gc_images().await {
            tracing::warn!(error = %e, "cannot remove unused checkpoint images");
        }
        Ok(task.id)
    }

    /// Kills the process trees of the task's executions still running (this server's and
    /// others'): the container is about to go, and their output with it.
    async fn end_executions(&self, task: &Task) {
        let Some(container) = task.container_id.as_deref() else {
            return;
        };
        let Ok(running) = self.registry.running_executions(Some(&task.id)) else {
            return;
        };
        for row in running {
            let execution = row.execution;
            if let Err(e) = self
                .kill_tree(container, &execution.id, execution.user.as_deref())
                .await
            {
                tracing::debug!(execution = %execution.id, error = %e, "delete: cannot kill an execution; removing the container ends it");
            }
        }
    }
}

impl TaskService {
    /// The running task, with an agent attached, whose source repository contains `dir`:
    /// while there is one, the agent should work in it, not on the host.
    pub fn sandboxed_task_for(&self, dir: &std::path::Path) -> Result<Option<Task>> {
        let Ok(root) = crate::workspace::host::discover(dir) else {
            return Ok(None);
        };
        // The hook runs for the developer at this machine: the local owner's tasks only.
        let running = self.registry.list_owner_tasks(
            &crate::domain::Owner::local(),
            Some(crate::domain::TaskStatus::Running),
            10_000,
            0,
        )?;
        for task in running.tasks {
            let same_repo = !task.repo.private && task.repo.path.as_deref() == Some(root.as_path());
            if same_repo && !self.registry.active_attachments(&task.id)?.is_empty() {
                return Ok(Some(task));
            }
        }
        Ok(None)
    }
}

pub(super) fn died_reason(container: &str, state: Option<&crate::runtime::ContainerState>) -> String {
    match state {
        None => format!("its container {container} no longer exists"),
        Some(state) => describe_exit(state),
    }
}
