//! Task lifecycle tools: create, list, status, stop, resume, delete.

use std::collections::BTreeMap;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Tool;
use super::params::{Limit, TaskRef};
use crate::domain::{Task, TaskStatus};
use crate::error::{Error, Result};
use crate::hooks::scope;
use crate::mcp::logging::progress_to_client;
use crate::mcp::progress::{Reporter, ticking};
use crate::mcp::server::{TaskboxServer, reply};

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskParams {
    /// Handle for the task, unique among existing tasks: lowercase letters, digits and '-',
    /// starting with a letter or digit, at most 63 characters (e.g. "fix-login").
    pub name: String,
    /// What the task is for; shown to agents that attach later.
    pub description: Option<String>,
    /// Container image (default "taskbox-base", built automatically on first use;
    /// "taskbox-developer" adds compilers, Python and Node.js).
    pub image: Option<String>,
    /// "egress" (default): outbound network, isolated from other tasks. "allowlist": only the
    /// hosts on `allow` (plus the server's default list), through an HTTP(S) proxy set in every
    /// command's HTTP_PROXY/HTTPS_PROXY; other connections and DNS lookups fail. "none": no
    /// network.
    pub network: Option<String>,
    /// Hosts an "allowlist" task may reach, e.g. ["pypi.org", "*.npmjs.org",
    /// "example.com:8443"] ("*." covers subdomains; no port: any port). Giving it implies
    /// network "allowlist".
    pub allow: Option<Vec<String>>,
    /// Memory limit in MB (default 2048).
    pub memory_mb: Option<u64>,
    /// CPU limit in cores, fractions allowed (default 2).
    pub cpus: Option<f64>,
    /// Environment variables set in the container for every command.
    pub env: Option<BTreeMap<String, String>>,
    /// Source git repository (default: the server's working directory, when it is inside a
    /// git repository). The task gets branch `taskbox/<name>` there, and a workspace holding
    /// it. It must lie inside the server's allowed repository roots. Without any repository,
    /// the task gets a private one.
    pub repo_path: Option<String>,
    /// Commit, branch or tag the task starts from (default HEAD).
    pub base_ref: Option<String>,
    /// Bring the repository's uncommitted changes into the task as its first commit (they
    /// are left out, with a warning, otherwise).
    #[serde(default)]
    pub include_uncommitted: bool,
    /// Start from a checkpoint instead ("<task>:<n>" or a checkpoint id): a fork with its own
    /// branch, whose workspace and container begin as the checkpoint's.
    pub from_checkpoint: Option<String>,
    /// Names of secrets the server's operator declared (e.g. ["NPM_TOKEN"]): each command
    /// gets each as an environment variable of that name. Values are never stored, and are
    /// replaced by `[secret:NAME]` in output; files holding one are left out of commits.
    pub secrets: Option<Vec<String>>,
    /// Named volumes of your own to mount, e.g. [{"name": "pgdata", "path":
    /// "/var/lib/postgresql/data"}]: they outlive the task, and your other tasks that name
    /// the same volume share its files (not other owners'). At most 16; a name is lowercase
    /// letters, digits and '-'; a path is absolute and not /workspace or a system directory.
    /// Volumes are not part of checkpoints: a restore keeps their current files.
    pub volumes: Option<Vec<VolumeParam>>,
}

/// One named volume of create_task_sandbox.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeParam {
    /// The volume's name, e.g. "pgdata": [a-z0-9][a-z0-9-]{0,62}.
    pub name: String,
    /// Where it is mounted in the container, e.g. "/data".
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    #[serde(default)]
    pub task: TaskRef,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTaskSecretParams {
    #[serde(default)]
    pub task: TaskRef,
    /// The secret's name, as the server's operator declared it (e.g. "NPM_TOKEN").
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasksParams {
    /// Only tasks in this status: creating, running, stopped, completed, failed or archived.
    pub status: Option<String>,
    #[serde(default)]
    pub limit: Limit,
    /// Tasks to skip, for paging (default 0).
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopTaskParams {
    #[serde(default)]
    pub task: TaskRef,
    /// Seconds to wait for processes to exit before they are killed (default 10).
    pub timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTaskParams {
    /// Task name or id (required: deletion never applies to an implied task).
    pub task: String,
    /// Must be true: deletion removes the container and the workspace for good.
    #[serde(default)]
    pub confirm: bool,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupTaskParams {
    /// One task (name or id) to archive; omit to select by `status` and/or `older_than`.
    pub task: Option<String>,
    /// Only tasks in this status: stopped, completed or failed (default: all three).
    pub status: Option<String>,
    /// Only tasks last changed longer ago than this: e.g. 30m, 12h, 7d, 2w.
    pub older_than: Option<String>,
    /// List what would be archived without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
struct TaskReply<'a> {
    task: &'a Task,
}

#[derive(Debug, Serialize)]
struct StoppedReply<'a> {
    task: &'a Task,
    warnings: &'a [String],
}

#[derive(Debug, Serialize)]
struct ListReply<'a> {
    tasks: &'a [Task],
    total: u64,
    limit: u32,
    offset: u64,
}

#[derive(Debug, Serialize)]
struct DeletedReply<'a> {
    deleted: &'a str,
}

/// The reply of stop and complete: where the work is, and any warnings.
fn with_warnings(mut text: String, task: &Task, warnings: &[String]) -> Result<CallToolResult> {
    if let (Some(branch), Some(commit)) = (&task.repo.branch, &task.repo.synced_commit) {
        text.push_str(&format!(" Its work is committed on branch {branch} at {commit}."));
    }
    for warning in warnings {
        text.push_str(&format!("\nWarning: {warning}"));
    }
    reply(text, &StoppedReply { task, warnings })
}

pub(crate) fn task_line(task: &Task) -> String {
    let mut line = format!("{} ({}) is {}", task.name, task.id, task.status);
    if let Some(reason) = &task.status_reason {
        line.push_str(&format!(": {reason}"));
    }
    line
}

#[tool_router(router = task_tools, vis = "pub(crate)")]
impl TaskboxServer {
    /// Create a task sandbox and make it this session's current task.
    #[tool(
        description = "Create a task sandbox: a hardened Docker container (no privileges, all capabilities dropped but a few, resource limits, its own network) with a git workspace mounted at /workspace. Use it once per piece of work, before running anything. Returns the task (id, name, status). The new task becomes this session's current task, so later calls may omit `task`, and you are attached to it. The first call may take a minute while the image is built.",
        annotations(destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn create_task_sandbox(
        &self,
        Parameters(p): Parameters<CreateTaskParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult> {
        let started = std::time::Instant::now();
        let logged = progress_to_client(context.peer.clone(), self.session.log_level.clone(), "taskbox.images");
        // Each line of an image build also goes out as progress, with the time so far; so
        // does the time every few seconds (a clone, a fork's image) while nothing else does.
        let reporter = Reporter::for_request(&context);
        let progress: crate::task::service::Progress = match reporter.clone() {
            Some(reporter) => std::sync::Arc::new(move |line: &str| {
                logged(line);
                reporter.report(line);
            }),
            None => logged,
        };
        let request = p.into_request(self.session.owner.clone());
        // Run creation on its own task: if the client goes away mid-way, creation still
        // finishes or rolls back instead of being dropped half-done.
        let service = self.service.clone();
        let call = scope::current();
        let creating = tokio::spawn(scope::carry(call, async move {
            service.create_task(request, progress).await
        }));
        let created = ticking(reporter, "creating the task", creating)
            .await
            .unwrap_or_else(|e| Err(Error::Internal(format!("task creation panicked: {e}"))));
        let agent = Self::client_name(&context);
        self.created(created, &agent, started).await
    }

    /// The creating session's side of a creation: current task, attachment, reply.
    async fn created(
        &self,
        created: Result<crate::task::service::CreatedTask>,
        agent: &str,
        started: std::time::Instant,
    ) -> Result<CallToolResult> {
        let created = created?;
        let task = &created.task;
        self.set_current_task(Some(task.id.clone()));
        // The creating agent works in the task: it is attached, like after attach_agent_to_task.
        self.service.attach(&task.id, agent, &self.session.id).await?;
        self.service.record_tool_call(
            &task.id,
            Tool::CreateTaskSandbox.as_str(),
            true,
            None,
            started.elapsed().as_millis() as u64,
        );
        let mut text = format!(
            "Created {}. Workspace: /workspace, on branch {}. It is now this session's current task.",
            task_line(task),
            task.repo.branch.as_deref().unwrap_or("-")
        );
        for warning in &created.warnings {
            text.push_str(&format!("\nWarning: {warning}"));
        }
        reply(text, &created)
    }

    #[tool(
        description = "List tasks, newest first, with an optional status filter and paging. Returns `tasks` and `total` (the number matching the filter).",
        annotations(read_only_hint = true)
    )]
    async fn list_tasks(&self, Parameters(p): Parameters<ListTasksParams>) -> Result<CallToolResult> {
        let status = p.status.as_deref().map(str::parse::<TaskStatus>).transpose()?;
        let limit = p.limit.get();
        if limit == 0 || limit > 500 {
            return Err(Error::invalid("limit", format!("{limit} is outside 1..=500")));
        }
        let offset = p.offset.unwrap_or(0);
        let page = self.service.list(&self.session.owner, status, limit, offset)?;
        let mut text = format!("{} task(s) match; showing {}.", page.total, page.tasks.len());
        for task in &page.tasks {
            text.push_str(&format!("\n- {}", task_line(task)));
        }
        reply(
            text,
            &ListReply {
                tasks: &page.tasks,
                total: page.total,
                limit,
                offset,
            },
        )
    }

    #[tool(
        description = "Show a task's status: the task record, its container's live state from Docker (running / exited / oom_killed / missing, exit code), attached agents, execution counts and the last execution.",
        annotations(read_only_hint = true)
    )]
    async fn get_task_status(&self, Parameters(p): Parameters<TaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::GetTaskStatus, p.task, |id| async move {
            let report = self.service.status(&id).await?;
            let container = match &report.container {
                Some(c) => format!("container {}", c.state),
                None => format!(
                    "container unknown{}",
                    report
                        .container_error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            };
            let mut text = format!(
                "{}; {container}; {} execution(s), {} failed; {} agent(s) attached; network {}.",
                task_line(&report.task),
                report.executions.total,
                report.executions.failed,
                report.attachments.len(),
                report.network.summary
            );
            if !report.task.secrets.is_empty() {
                text.push_str(&format!(" Secrets (names only): {}.", report.task.secrets.join(", ")));
            }
            reply(text, &report)
        })
        .await
    }

    #[tool(
        description = "Give a task's commands one more secret the server's operator declared: from the next command on, each gets it as the environment variable `name`. The value is never shown or stored: output showing it reads `[secret:NAME]`, and files holding it are left out of the task's commits. Returns the task, whose `secrets` lists the names it has.",
        annotations(destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn add_task_secret(&self, Parameters(p): Parameters<AddTaskSecretParams>) -> Result<CallToolResult> {
        self.on_task(Tool::AddTaskSecret, p.task, |id| async move {
            let task = self.service.add_secret(&id, &p.name).await?;
            let text = format!(
                "{} now gives its commands the secret(s) {}.",
                task_line(&task),
                task.secrets.join(", ")
            );
            reply(text, &TaskReply { task: &task })
        })
        .await
    }

    #[tool(
        description = "Stop a task's container. Files in /workspace and in the container are kept; resume_task starts it again. Running commands are killed after `timeout_s`.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn stop_task(&self, Parameters(p): Parameters<StopTaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::StopTask, p.task, |id| async move {
            let (task, warnings) = self.service.stop(&id, p.timeout_s).await?;
            let text = format!("Stopped {}. Call resume_task to continue.", task_line(&task));
            with_warnings(text, &task, &warnings)
        })
        .await
    }

    #[tool(
        description = "Complete the task: commits the workspace's work on the task branch `taskbox/<name>` in the host repository (where a human reviews and merges it), stops the container and marks the task completed. Use it when the work is done.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn complete_task(&self, Parameters(p): Parameters<TaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::CompleteTask, p.task, |id| async move {
            let (task, warnings) = self.service.complete(&id).await?;
            let text = format!("Completed {}.", task_line(&task));
            with_warnings(text, &task, &warnings)
        })
        .await
    }

    #[tool(
        description = "Archive finished tasks (stopped, completed or failed): removes their containers, networks, workspaces and checkpoint images; keeps their records and the task branches with their work. One task, or a filter (status, older_than). Use dry_run first to see what would go.",
        annotations(destructive_hint = true, idempotent_hint = true)
    )]
    async fn cleanup_task(&self, Parameters(p): Parameters<CleanupTaskParams>) -> Result<CallToolResult> {
        let request = p.into_request(self.session.owner.clone())?;
        let items = self.service.cleanup(&request).await?;
        let verb = if request.dry_run { "Would archive" } else { "Archived" };
        let mut text = format!("{verb} {} task(s).", items.len());
        for item in &items {
            text.push_str(&format!("\n- {} ({})", item.name, item.task_id));
            if let Some(error) = &item.error {
                text.push_str(&format!(": not archived: {error}"));
            }
        }
        reply(text, &serde_json::json!({ "dry_run": request.dry_run, "tasks": items }))
    }

    #[tool(
        description = "Start a stopped task's container again, with its files as they were. The task becomes this session's current task.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn resume_task(&self, Parameters(p): Parameters<TaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::ResumeTask, p.task, |id| async move {
            let task = self.service.resume(&id).await?;
            self.set_current_task(Some(task.id.clone()));
            reply(format!("Resumed {}.", task_line(&task)), &TaskReply { task: &task })
        })
        .await
    }

    #[tool(
        description = "Delete a task for good: removes its container, network, workspace and records. Requires confirm: true. Use only when the work is not wanted any more.",
        annotations(destructive_hint = true, idempotent_hint = false)
    )]
    async fn delete_task(&self, Parameters(p): Parameters<DeleteTaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::DeleteTask, Some(p.task), |id| async move {
            let deleted = self.service.delete(&id, p.confirm).await?;
            let mut current = self.session.current_task.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_deref() == Some(deleted.as_str()) {
                *current = None;
            }
            drop(current);
            reply(format!("Deleted task {deleted}."), &DeletedReply { deleted: &deleted })
        })
        .await
    }
}
