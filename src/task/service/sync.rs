//! Syncing a task's workspace to its branch, and the diff of the branch against its base.
//!
//! Syncing never opens the workspace repository on the host (its `.git` is the agent's): git
//! runs inside the container, new objects come out as a pack that libgit2 validates into the
//! host repository, and the server moves the branch.

use std::path::PathBuf;

use git2::Oid;
use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::container_ops::{ChownWorkspace, CommitWorkspace, PackCommits};
use crate::domain::{Event, EventKind, Task};
use crate::error::{Error, Result};
use crate::hooks::{HookContext, HookEvent};
use crate::task::output::StreamCapture;
use crate::workspace::{WorkspaceError, host};

/// The largest pack one sync takes from the container (it is held in memory).
const MAX_PACK_BYTES: usize = 4 << 30;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct SyncOutcome {
    /// The workspace's HEAD after committing its changes.
    pub commit: String,
    /// Whether the task branch in the host repository now points at `commit`.
    pub branch_moved: bool,
    pub warning: Option<String>,
}

/// `task_diff`'s result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskDiff {
    pub branch: String,
    pub base: String,
    pub head: String,
    pub files: Vec<host::FileDiff>,
    pub patch: String,
    pub truncated: bool,
    /// The file holding the whole patch, when it was cut.
    pub full_patch: Option<String>,
    pub warning: Option<String>,
}

impl TaskService {
    /// Commits every change in the workspace inside `container` and brings the commits into
    /// the host repository, checked complete; returns the workspace's head. Moves no branch.
    pub(super) async fn save_workspace(&self, task: &Task, container: &str, message: &str) -> Result<Oid> {
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(task))?;
        let user = task.exec_user.as_deref();

        // Files a root command left in the workspace (mode 0600, say) would make the commit,
        // which runs as the agent's user, fail: they are the agent's workspace, so hand them over.
        if let Some(chown) = ChownWorkspace::to(user.unwrap_or(""))
            && let Err(failed) = self.run_op(container, chown).await?
        {
            tracing::warn!(task = %task.id, stderr = %failed.stderr, "cannot hand the workspace to its user");
        }

        let commit = CommitWorkspace { message, user };
        let head_oid = self
            .run_op(container, commit)
            .await?
            .map_err(|failed| workspace_failed("committing the workspace", &failed.stderr))?;

        if !host::has_commit(&repo_path, head_oid)? {
            let known: Vec<Oid> = [&task.repo.synced_commit, &task.repo.base_commit]
                .into_iter()
                .flatten()
                .filter_map(|c| c.parse().ok())
                .collect();
            let pack = self
                .run_op(container, PackCommits { known: &known, user })
                .await?
                .map_err(|failed| workspace_failed("packing the workspace's commits", &failed.stderr))?;
            if pack.len() > MAX_PACK_BYTES {
                return Err(WorkspaceError::PackTooLarge {
                    size: pack.len(),
                    limit: MAX_PACK_BYTES,
                }
                .into());
            }
            // Indexing a pack and walking its commits can take long on a big one: on the
            // blocking pool, not on an async worker (docs/architecture.md, "Blocking work").
            let repo = repo_path.clone();
            tokio::task::spawn_blocking(move || {
                host::index_pack(&repo, &pack)?;
                host::verify_closure(&repo, head_oid, &known)
            })
            .await
            .map_err(|e| Error::Internal(format!("indexing the workspace's pack: {e}")))??;
        }

        Ok(head_oid)
    }

    /// Commits every change in the workspace (tracked and untracked, honouring .gitignore)
    /// inside the container, copies the new objects into the host repository and moves the
    /// task branch there. The container must be running.
    pub(super) async fn sync(&self, task: &Task, message: &str) -> Result<(Task, SyncOutcome)> {
        let container = self.require_running(task)?;
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(task))?;
        let branch = task.repo.branch.clone().ok_or_else(|| no_repo(task))?;
        let before = HookContext::new(HookEvent::BeforeSync, Some(task.clone()))
            .with_arguments(serde_json::json!({ "message": message }));
        self.fire(before).await?;
        let head_oid = self.save_workspace(task, &container, message).await?;
        let head = head_oid.to_string();

        let expected = task.repo.synced_commit.as_deref().and_then(|c| c.parse().ok());
        let (moved, warning) = match host::move_branch(&repo_path, &branch, head_oid, expected) {
            Ok(()) => (true, None),
            Err(e @ (WorkspaceError::BranchCheckedOut { .. } | WorkspaceError::BranchMoved { .. })) => (
                false,
                Some(format!("{e}; the work is safe in the task's checkpoints and workspace")),
            ),
            Err(e) => return Err(e.into()),
        };
        let outcome = SyncOutcome {
            commit: head.clone(),
            branch_moved: moved,
            warning,
        };
        let task = if moved && task.repo.synced_commit.as_deref() != Some(head.as_str()) {
            self.update(task.clone(), |t| t.repo.synced_commit = Some(head.clone()))?
        } else {
            task.clone()
        };
        self.record(Event::new(&task.id, EventKind::Synced, serde_json::json!(outcome)))?;
        Ok((task, outcome))
    }

    /// The task branch against its base, after syncing a running task's workspace to it.
    pub async fn diff(&self, task: &str) -> Result<TaskDiff> {
        let mut task = self.resolve(Some(task))?;
        let mut warning = None;
        if task.status == crate::domain::TaskStatus::Running {
            let (synced, outcome) = self.sync(&task, "taskbox: sync for task_diff").await?;
            task = synced;
            warning = outcome.warning;
        }
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(&task))?;
        let branch = task.repo.branch.clone().ok_or_else(|| no_repo(&task))?;
        let base = task.repo.base_commit.clone().ok_or_else(|| no_repo(&task))?;
        let head = task.repo.synced_commit.clone().unwrap_or_else(|| base.clone());
        let parse = |c: &str| c.parse::<Oid>().map_err(|_| no_repo(&task));
        let (base_oid, head_oid) = (parse(&base)?, parse(&head)?);
        let repo = repo_path.clone();
        let (files, patch) = tokio::task::spawn_blocking(move || host::diff(&repo, base_oid, head_oid))
            .await
            .map_err(|e| Error::Internal(format!("computing the diff: {e}")))??;
        let log = self
            .store
            .outputs_dir(&task.id)
            .join(format!("diff-{}.patch", crate::domain::new_execution_id()));
        let mut capture = StreamCapture::new(self.config.execution.output_cap_bytes, log);
        capture.push(&patch);
        let patch = capture.finish("patch");
        Ok(TaskDiff {
            branch,
            base,
            head,
            files,
            patch: patch.text,
            truncated: patch.truncated,
            full_patch: patch.full_output.map(|p| p.display().to_string()),
            warning,
        })
    }
}

fn no_repo(task: &Task) -> Error {
    Error::WrongStatus {
        task: task.name.clone(),
        status: task.status.to_string(),
        hint: "it has no task repository (it was created before workspaces were git-backed); create a new task".into(),
    }
}

/// A git step in the container that failed; the workspace is where to look.
fn workspace_failed(what: &str, stderr: &str) -> Error {
    Error::Workspace(WorkspaceError::Io {
        path: PathBuf::from("/workspace"),
        source: std::io::Error::other(format!("{what} failed: {stderr}")),
    })
}
