//! Checkpoints and the task diff: create_checkpoint, list_checkpoints, restore_checkpoint,
//! task_diff.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TaskParams;
use super::Tool;
use super::params::TaskRef;
use super::tasks::task_line;
use crate::domain::Checkpoint;
use crate::error::Result;
use crate::mcp::progress::{Reporter, ticking};
use crate::mcp::server::{TaskboxServer, reply};

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCheckpointParams {
    #[serde(default)]
    pub task: TaskRef,
    /// A name for the checkpoint (e.g. "tests pass").
    pub label: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreCheckpointParams {
    /// Task name or id; omit to use this session's current task (or give `<task>:<n>`).
    pub task: Option<String>,
    /// The checkpoint: the id create_checkpoint returned, `<task>:<n>`, or `<n>` of the task.
    pub checkpoint: String,
}

#[derive(Debug, Serialize)]
struct CheckpointList<'a> {
    task_id: &'a str,
    checkpoints: &'a [Checkpoint],
}

fn checkpoint_line(c: &Checkpoint) -> String {
    format!(
        "#{} {}{} — commit {}",
        c.seq,
        c.label.as_deref().unwrap_or("(no label)"),
        if c.automatic { " [automatic]" } else { "" },
        c.git_commit.as_deref().map(|g| &g[..g.len().min(12)]).unwrap_or("-")
    )
}

#[tool_router(router = checkpoint_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "Checkpoint the task: commits every workspace change (honouring .gitignore) on the task branch, moves the branch in the host repository, and snapshots the container (installed packages included) as an image. Returns the checkpoint (id, seq, commit); restore_checkpoint goes back to it. Take one before risky changes.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn create_checkpoint(
        &self,
        Parameters(p): Parameters<CreateCheckpointParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult> {
        let reporter = Reporter::for_request(&context);
        self.on_task(Tool::CreateCheckpoint, p.task, |id| async move {
            let checkpointing = self.service.create_checkpoint(&id, p.label);
            let created = ticking(reporter, "checkpointing", checkpointing).await?;
            let mut text = format!(
                "Checkpoint {} created: {}.",
                created.reference,
                checkpoint_line(&created.checkpoint)
            );
            for warning in &created.warnings {
                text.push_str(&format!("\nWarning: {warning}"));
            }
            reply(text, &created)
        })
        .await
    }

    #[tool(
        description = "List the task's checkpoints, newest first: seq, label, automatic or not, commit, image, time.",
        annotations(read_only_hint = true)
    )]
    async fn list_checkpoints(&self, Parameters(p): Parameters<TaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::ListCheckpoints, p.task, |id| async move {
            let (task, checkpoints) = self.service.list_checkpoints(&id)?;
            let mut text = format!("{} checkpoint(s) of {}.", checkpoints.len(), task.name);
            for c in &checkpoints {
                text.push_str(&format!("\n- {}", checkpoint_line(c)));
            }
            reply(
                text,
                &CheckpointList {
                    task_id: &task.id,
                    checkpoints: &checkpoints,
                },
            )
        })
        .await
    }

    #[tool(
        description = "Roll the task back to a checkpoint: first takes an automatic 'pre-restore' checkpoint (restore that one to undo), then resets the workspace to the checkpoint's commit (untracked files removed, ignored ones kept) and recreates the container from the checkpoint's image. Also brings a failed task back.",
        annotations(destructive_hint = true, idempotent_hint = false)
    )]
    async fn restore_checkpoint(
        &self,
        Parameters(p): Parameters<RestoreCheckpointParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult> {
        let reporter = Reporter::for_request(&context);
        // Find the checkpoint first: `<task>:<n>` and ids name their task; a bare `<n>`
        // belongs to `task` or the session's current task.
        let default_task = p.task.clone().or_else(|| self.task_ref(None).ok());
        let (task, checkpoint) =
            self.service
                .resolve_checkpoint(&self.session.owner, &p.checkpoint, default_task.as_deref())?;
        self.on_task(Tool::RestoreCheckpoint, Some(task.id), |_| async move {
            let restoring = self.service.restore_checkpoint(&self.session.owner, &checkpoint.id);
            let restored = ticking(reporter, "restoring", restoring).await?;
            let mut text = format!(
                "Restored checkpoint #{} of {}.",
                restored.restored.seq,
                task_line(&restored.task)
            );
            if let Some(pre) = &restored.pre_restore {
                text.push_str(&format!(
                    " To undo, restore checkpoint {}:{}.",
                    restored.task.name, pre.seq
                ));
            }
            for warning in &restored.warnings {
                text.push_str(&format!("\nWarning: {warning}"));
            }
            reply(text, &restored)
        })
        .await
    }

    #[tool(
        description = "Show the task's work: the task branch against the commit the task started from, after committing the workspace's current changes to the branch. Returns the changed files with added/removed line counts, and the patch (cut in the middle when over 64 KiB, the whole patch kept on disk).",
        annotations(read_only_hint = false, idempotent_hint = true)
    )]
    async fn task_diff(&self, Parameters(p): Parameters<TaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::TaskDiff, p.task, |id| async move {
            let diff = self.service.diff(&id).await?;
            let mut text = format!("{} file(s) changed on {}:", diff.files.len(), diff.branch);
            for f in &diff.files {
                text.push_str(&format!("\n  {} {} (+{} -{})", f.status, f.path, f.added, f.removed));
            }
            if let Some(warning) = &diff.warning {
                text.push_str(&format!("\nWarning: {warning}"));
            }
            text.push_str("\n\n");
            text.push_str(&diff.patch);
            reply(text, &diff)
        })
        .await
    }
}
