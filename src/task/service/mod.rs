//! `TaskService`: the one place where an operation on a task is carried out. MCP tools and
//! the CLI parse their input, call a method here and shape its result; only this layer talks
//! to the registry, the task files, the runtime and the workspace.

mod background;
mod checkpoint;
mod cleanup;
mod container_ops;
mod create;
mod dashboard;
mod disk;
mod doctor;
mod egress;
mod exec;
mod files;
mod gc;
mod git_worker;
mod hooks;
mod image_policy;
mod images;
mod interrupted;
mod memory;
mod metrics;
mod network_env;
mod old_images;
mod ops;
mod pool;
mod ports;
mod quota;
mod rebuild;
mod reconcile;
mod repo;
mod resources;
mod resume;
mod secrets;
mod shell;
mod startup;
mod sync;
mod tokens;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use background::{ActivityReport, ExecutionOutput, InputSent, ListedExecution};
pub use checkpoint::{CheckpointResult, RestoreResult};
pub use cleanup::{CleanupItem, CleanupRequest, parse_duration};
pub use create::{CreateTaskRequest, CreatedTask};
pub use dashboard::{LOGIN_TTL, SHOWN_OUTPUT_BYTES, ShownOutput};
pub use exec::{ExecProgress, ExecProgressUpdate, ExecRequest, ExecutionResult, PROGRESS_EVERY};
pub use files::{FileContent, ListEntry, Listing, WriteOutcome};
pub use gc::{GcItem, GcReport};
pub use hooks::PlanText;
pub use images::DoctorReport;
pub use memory::{FoundTask, Page};
pub use metrics::Health;
pub use old_images::EnvCarryingImage;
pub use ops::{AttachResult, ResumeContext, TaskStatusReport};
pub use ports::{ExposedPortReply, PortForward, PortList};
pub use reconcile::ReconcileOutcome;
pub use repo::RepoRequest;
pub use resources::{FilePage, PAGE_BYTES, TaskFile};
pub use resume::{ResumeReport, Revival};
pub use shell::ShellSession;
pub use sync::{SyncOutcome, TaskDiff};
pub use tokens::{TOKEN_PREFIX, token_hash};
pub use volumes::{VolumeEntry, VolumeRemoval};

use crate::config::Config;
use crate::domain::lifecycle::{LifecycleEvent, transition};
use crate::domain::{Event, EventKind, Owner, Task, TaskStatus};
use crate::error::{Error, Result};
use crate::registry::{Registry, RegistryError, TaskPage};
use crate::runtime::{ContainerRuntime, LABEL_HOME, LABEL_TASK_ID, LABEL_TASK_NAME, SubnetPool};
use crate::store::{ServerLease, StateSnapshot, TaskStore};

/// Receives human-readable progress of long operations (image builds).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// A no-op progress sink.
pub fn no_progress() -> Progress {
    Arc::new(|_| {})
}

pub struct TaskService {
    /// Creations and executions in flight, so shutdown can wait for them.
    in_flight: TaskTracker,
    /// Sessions being ended in the background (see `end_session_soon`).
    ending_sessions: TaskTracker,
    /// Cancelled at shutdown: running executions are killed and recorded as cancelled.
    shutting_down: CancellationToken,
    /// Cancelled when a graceful shutdown begins: no new work, running work may finish.
    draining: CancellationToken,
    config: Config,
    subnet_pool: SubnetPool,
    /// The server's working directory: the default source repository and allowed root.
    cwd: PathBuf,
    home: PathBuf,
    registry: Arc<Registry>,
    store: TaskStore,
    runtime: Arc<dyn ContainerRuntime>,
    hooks: crate::hooks::HookManager,
    /// Set while the registry is rebuilt from the task files (it was missing or damaged at
    /// open): calls that need a task are refused with `registry_rebuilding` meanwhile.
    rebuilding: std::sync::atomic::AtomicBool,
    metrics: metrics::Metrics,
    /// The certificate bundle egress tasks trust (`network.ca_certificates`), found once at
    /// open rather than looked for on every command.
    ca_bundle: Option<PathBuf>,
    /// This process's lease: executions it starts name it, so another server can tell when
    /// they were left behind by a dead one (`interrupted.rs`).
    lease: ServerLease,
    /// The supervisor on the host, mounted into task containers (`None`: it could not be
    /// written; containers are then made without it and work as before it existed).
    supervisor: Option<PathBuf>,
    /// Closed while the start's recovery runs behind the first reply (`startup.rs`).
    recovery: startup::RecoveryGate,
    /// The egress proxy's listeners for allowlist tasks (`egress.rs`).
    egress: egress::EgressProxies,
    /// The port forwards this process holds (`ports.rs`).
    forwards: crate::task::ports::Forwards,
    /// Images' users as numbers and homes, for their volumes (`volumes.rs`).
    volume_users: volumes::VolumeUsers,
    /// Wakes this process's warm-pool keeper (`pool.rs`).
    pool: pool::PoolKeeper,
}

/// A status change, as recorded in the event log.
#[derive(Debug, Clone, Serialize, JsonSchema)]
struct StatusChange<'a> {
    from: TaskStatus,
    to: TaskStatus,
    reason: Option<&'a str>,
}

impl TaskService {
    /// Opens (creating when needed) the data dir: `registry.db`, `tasks/`, `workspaces/`.
    pub fn open(config: Config, runtime: Arc<dyn ContainerRuntime>) -> Result<Self> {
        let home = config.home_dir()?;
        // 0700: the data directory holds every task's outputs, events and workspaces.
        for dir in [home.clone(), home.join("tasks"), home.join("workspaces")] {
            crate::store::private_dir(&dir)
                .map_err(|e| Error::Config(format!("cannot create data directory {}: {e}", dir.display())))?;
        }
        // Labels name the home canonically so two spellings of one path agree.
        let home = home.canonicalize().unwrap_or(home);
        let (registry, rebuild) = rebuild::open_registry(&home.join("registry.db"), &home.join("tasks"))?;
        let registry = Arc::new(registry);
        let hooks = crate::hooks::HookManager::new(&config.hooks)?;
        let ca_bundle = config.network.ca_bundle_path();
        let lease = ServerLease::take(&home.join("servers"), crate::domain::new_server_id())?;
        let supervisor = crate::runtime::supervisor::install(&home)
            .inspect_err(
                |e| tracing::warn!(error = %e, "cannot write the process supervisor; new containers go without it"),
            )
            .ok();
        let egress = egress::EgressProxies::new(config.network.proxy_port, config.network.egress_upstreams()?);
        let forwards =
            crate::task::ports::Forwards::new(crate::task::ports::Connector::new(runtime.clone(), registry.clone()));
        Ok(Self {
            forwards,
            lease,
            hooks,
            supervisor,
            in_flight: TaskTracker::new(),
            ending_sessions: TaskTracker::new(),
            shutting_down: CancellationToken::new(),
            draining: CancellationToken::new(),
            subnet_pool: config.network.subnet_pool()?,
            cwd: std::env::current_dir()
                .map_err(|e| Error::Config(format!("cannot read the working directory: {e}")))?,
            store: TaskStore::new(home.join("tasks")),
            config,
            home,
            registry,
            runtime,
            rebuilding: std::sync::atomic::AtomicBool::new(rebuild),
            metrics: Default::default(),
            ca_bundle,
            recovery: Default::default(),
            egress,
            volume_users: Default::default(),
            pool: Default::default(),
        })
    }

    /// Stops serving work: running executions are killed and recorded, creations in flight
    /// finish (or roll back); waits for them up to `grace`.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.shutting_down.cancel();
        self.release_ports();
        self.in_flight.close();
        if tokio::time::timeout(grace, self.in_flight.wait()).await.is_err() {
            tracing::warn!(
                left = self.in_flight.len(),
                "shutdown: work still in flight after {grace:?}"
            );
        }
    }

    /// Graceful shutdown of a server many clients share: takes no new work, lets executions
    /// and creations in flight finish for up to `grace`, then kills what is still running
    /// (recorded as cancelled) and waits up to `kill_wait` for those records.
    pub async fn drain(&self, grace: std::time::Duration, kill_wait: std::time::Duration) {
        self.draining.cancel();
        self.in_flight.close();
        if tokio::time::timeout(grace, self.in_flight.wait()).await.is_err() {
            tracing::warn!(
                left = self.in_flight.len(),
                "shutdown: work still running after the {grace:?} grace period is killed"
            );
        }
        self.shutdown(kill_wait).await;
    }

    fn refuse_if_shutting_down(&self) -> Result<()> {
        if self.shutting_down.is_cancelled() || self.draining.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// `end_session` from a place that cannot wait for it (a session being dropped): it runs
    /// on the runtime, and `wait_for_ended_sessions` lets a shutdown wait for it (its hooks may
    /// take a checkpoint).
    pub fn end_session_soon(self: &Arc<Self>, session_id: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(session_id, "no runtime left to end the session's attachments");
            return;
        };
        let service = self.clone();
        runtime.spawn(self.ending_sessions.track_future(async move {
            service.end_session(&session_id).await;
        }));
    }

    /// Waits up to `limit` for sessions being ended in the background.
    pub async fn wait_for_ended_sessions(&self, limit: std::time::Duration) {
        self.ending_sessions.close();
        if tokio::time::timeout(limit, self.ending_sessions.wait()).await.is_err() {
            tracing::warn!(
                left = self.ending_sessions.len(),
                "sessions still ending after {limit:?}"
            );
        }
    }

    /// Ends every attachment an MCP session still holds (the session is over).
    pub async fn end_session(&self, session_id: &str) {
        let ended = match self.registry.detach_session(session_id) {
            Ok(ended) => ended,
            Err(e) => {
                tracing::warn!(session_id, error = %e, "cannot end the session's attachments");
                return;
            }
        };
        for attachment in ended {
            let data = serde_json::json!({
                "agent": attachment.agent, "session_id": session_id, "reason": "session ended",
            });
            if let Err(e) = self.record(Event::new(&attachment.task_id, EventKind::AgentDetached, data.clone())) {
                tracing::warn!(task = %attachment.task_id, error = %e, "cannot record detach");
            }
            if let Ok(Some(task)) = self.registry.get_task(&attachment.task_id) {
                self.write_state(&task);
                self.notify(crate::hooks::HookEvent::AgentDetached, &task, data).await;
            }
        }
    }

    /// Where a task's workspace lives: `workspaces/<id>` in the data directory.
    pub(super) fn workspace_dir(&self, task_id: &str) -> PathBuf {
        self.home.join("workspaces").join(task_id)
    }

    /// How many HTTP sessions one of `owner`'s tokens may hold open (`None`: no limit).
    pub fn http_session_quota(&self, owner: &Owner) -> Option<u64> {
        self.config.quotas.for_owner(owner).http_sessions
    }

    /// The configured directory of extra slash commands.
    pub fn commands_dir(&self) -> Option<&Path> {
        self.config.commands.dir.as_deref()
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Finds a task by id, whoever owns it: the methods taking a task get ids their caller
    /// resolved with `resolve_for`. A name is not looked up here (names are unique per owner
    /// only), so a caller that skipped `resolve_for` fails instead of reaching another
    /// owner's task. `None` means "the session's current task" and is refused by the caller
    /// before it gets here.
    pub fn resolve(&self, task: Option<&str>) -> Result<Task> {
        self.refuse_while_rebuilding()?;
        let task = task.ok_or(Error::NoCurrentTask)?;
        self.registry
            .get_task(task)?
            .ok_or_else(|| Error::TaskNotFound { task: task.to_string() })
    }

    /// The owner's task with this id or name. Another owner's task gives the same error as a
    /// task that does not exist.
    pub fn resolve_for(&self, owner: &Owner, task: &str) -> Result<Task> {
        self.refuse_while_rebuilding()?;
        self.registry
            .find_task(owner, task)?
            .ok_or_else(|| Error::TaskNotFound { task: task.to_string() })
    }

    /// The owner's tasks, newest first.
    pub fn list(&self, owner: &Owner, status: Option<TaskStatus>, limit: u32, offset: u64) -> Result<TaskPage> {
        self.refuse_while_rebuilding()?;
        Ok(self.registry.list_owner_tasks(owner, status, limit, offset)?)
    }

    /// Runs one tool call's work with the event lines it records synced once and indexed once,
    /// together, at its end, before the reply (`store/durable.rs`, `registry/events.rs`): an
    /// acknowledged call is on disk and searchable. The error is a failed sync, for the caller
    /// to report instead of the work's result.
    pub async fn recording_once<F: std::future::Future>(
        &self,
        work: F,
    ) -> (F::Output, std::result::Result<(), crate::store::StoreError>) {
        crate::store::syncing_once(crate::registry::indexing_once(self.registry.clone(), work)).await
    }

    /// Appends an event to the task's log and indexes it. The log is the record: an index
    /// failure is logged, not fatal.
    pub fn record(&self, event: Event) -> Result<()> {
        self.store.append_event(&event)?;
        if let Err(e) = self.registry.insert_event(&event) {
            tracing::warn!(task = %event.task_id, error = %e, "cannot index event");
        }
        Ok(())
    }

    /// Records a tool call on a task (the MCP layer calls this for every call naming a task).
    pub fn record_tool_call(&self, task_id: &str, tool: &str, ok: bool, error: Option<&str>, duration_ms: u64) {
        let data = serde_json::json!({ "tool": tool, "ok": ok, "error": error, "duration_ms": duration_ms });
        if let Err(e) = self.record(Event::new(task_id, EventKind::ToolCall, data)) {
            tracing::warn!(task = %task_id, error = %e, "cannot record tool call");
        }
    }

    /// Applies a lifecycle event to the task and persists the result (registry row, then
    /// state.json, then the event log). `update` adjusts other fields in the same write. On an
    /// optimistic-version conflict the task is re-read and the transition re-checked.
    fn transition(
        &self,
        task: Task,
        event: LifecycleEvent,
        reason: Option<String>,
        update: impl Fn(&mut Task),
    ) -> Result<Task> {
        self.save(task, Some((event, reason)), update)
    }

    /// Changes fields of the task other than its status, with the same conflict handling.
    fn update(&self, task: Task, update: impl Fn(&mut Task)) -> Result<Task> {
        self.save(task, None, update)
    }

    fn save(
        &self,
        mut task: Task,
        event: Option<(LifecycleEvent, Option<String>)>,
        update: impl Fn(&mut Task),
    ) -> Result<Task> {
        for _ in 0..5 {
            let from = task.status;
            let mut next = task.clone();
            if let Some((event, reason)) = &event {
                next.status = transition(from, *event)?;
                next.status_reason = reason.clone();
            }
            update(&mut next);
            match self.registry.update_task(&next) {
                Ok(saved) => {
                    self.write_state(&saved);
                    if let Some((_, reason)) = &event {
                        let change = StatusChange {
                            from,
                            to: saved.status,
                            reason: reason.as_deref(),
                        };
                        self.record(Event::new(
                            &saved.id,
                            EventKind::StatusChanged,
                            serde_json::json!(change),
                        ))?;
                    }
                    return Ok(saved);
                }
                Err(RegistryError::Conflict { .. }) => {
                    task = self.registry.get_task(&task.id)?.ok_or_else(|| Error::TaskNotFound {
                        task: task.name.clone(),
                    })?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Registry(RegistryError::Conflict {
            task: task.id,
            expected: task.version,
        }))
    }

    /// Rewrites state.json; failures are logged, not fatal: the registry holds the same facts
    /// and the next change rewrites the file.
    fn write_state(&self, task: &Task) {
        // Another server may have written a newer version since `task` was read: snapshot
        // the row as it is now, so the file never goes back to an older state.
        let task = match self.registry.get_task(&task.id) {
            Ok(Some(latest)) if latest.version > task.version => latest,
            _ => task.clone(),
        };
        let attachments = self.registry.active_attachments(&task.id).unwrap_or_default();
        let snapshot = StateSnapshot { task, attachments };
        if let Err(e) = self.store.write_state(&snapshot) {
            tracing::warn!(task = %snapshot.task.id, error = %e, "cannot write state.json");
        }
    }

    fn labels(&self, task: &Task) -> std::collections::HashMap<String, String> {
        [
            (LABEL_TASK_ID, task.id.clone()),
            (LABEL_TASK_NAME, task.name.clone()),
            (LABEL_HOME, self.home.to_string_lossy().into_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn require_running(&self, task: &Task) -> Result<String> {
        if task.status != TaskStatus::Running {
            let hint = match (&task.status_reason, task.status) {
                (Some(reason), TaskStatus::Failed) => format!("{reason}; delete it and create a new task"),
                _ => status_hint(task.status).into(),
            };
            return Err(Error::WrongStatus {
                task: task.name.clone(),
                status: task.status.to_string(),
                hint,
            });
        }
        task.container_id.clone().ok_or_else(|| Error::WrongStatus {
            task: task.name.clone(),
            status: task.status.to_string(),
            hint: "it has no container; delete it and create a new task".into(),
        })
    }
}

/// What to do when a task is not running and the caller needs it to be.
fn status_hint(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Stopped => "call resume_task to start it again",
        TaskStatus::Creating => "it is still being created; retry in a moment",
        TaskStatus::Completed => "it is completed; create a new task to continue the work",
        TaskStatus::Failed => "it failed (see get_task_status for why); delete it and create a new task",
        TaskStatus::Archived => "it is archived; create a new task",
        TaskStatus::Running => "it is running",
    }
}

#[cfg(test)]
mod tests;
