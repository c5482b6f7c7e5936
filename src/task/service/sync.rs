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
use super::container_ops::{ChownWorkspace, CommitWorkspace, Failed, PackCommits, Packed};
use crate::domain::{Event, EventKind, Task};
use crate::error::{Error, Result};
use crate::hooks::{HookContext, HookEvent};
use std::io::Read;

use crate::task::bounded::RemoveOnDrop;
use crate::task::redact::{MIN_SECRET_BYTES, Redactor};
use crate::workspace::host::worker::WorkerRequest;
use crate::workspace::{WorkspaceError, host};

/// The largest pack one sync takes from the container. It streams to a file under the task's
/// directory and the command is killed past this, so it costs disk, never memory.
const MAX_PACK_BYTES: u64 = 4 << 30;
/// The most objects one sync's pack may hold: libgit2 keeps an index entry (about 100 bytes)
/// per object while indexing (docs/security.md, "Memory budget").
const MAX_PACK_OBJECTS: u32 = 500_000;

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
    /// More files changed than were compared (`files` stops at 20000).
    pub files_truncated: bool,
    /// The start of the patch (64 KiB).
    pub patch: String,
    pub truncated: bool,
    /// The file holding the whole patch, when it was cut (up to `execution.spill_limit_bytes`).
    pub full_patch: Option<String>,
    pub warning: Option<String>,
}

impl TaskService {
    /// Commits every change in the workspace inside `container` (but files holding a secret's
    /// value) and brings the commits into the host repository, checked complete; returns the
    /// workspace's head. Moves no branch.
    pub(super) async fn save_workspace(&self, task: &Task, container: &str, message: &str) -> Result<Saved> {
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(task))?;
        let user = task.exec_user.as_deref();

        // Files a root command left in the workspace (mode 0600, say) would make the commit,
        // which runs as the agent's user, fail: they are the agent's workspace, so hand them over.
        if let Some(chown) = ChownWorkspace::to(user.unwrap_or(""))
            && let Err(failed) = self.run_op(container, chown).await?
        {
            tracing::warn!(task = %task.id, stderr = %failed.stderr, "cannot hand the workspace to its user");
        }

        let scan = scan_patterns(&self.commit_redactor(task)?);
        let commit = CommitWorkspace { message, user, scan };
        let committed = self
            .run_op(container, commit)
            .await?
            .map_err(|failed| workspace_failed("committing the workspace", &failed))?;
        let head_oid = committed.head;
        let warning = left_out_warning(&committed.left_out);

        if !host::has_commit(&repo_path, head_oid)? {
            let known: Vec<Oid> = [&task.repo.synced_commit, &task.repo.base_commit]
                .into_iter()
                .flatten()
                .filter_map(|c| c.parse().ok())
                .collect();
            let pack_file = self
                .store
                .task_dir(&task.id)
                .join(format!("sync-{}.pack", crate::domain::new_execution_id()));
            let _remove = RemoveOnDrop(pack_file.clone());
            let pack = PackCommits {
                known: &known,
                user,
                to: &pack_file,
                limit: MAX_PACK_BYTES,
            };
            match self.run_op(container, pack).await? {
                Packed::Written(_) => {}
                Packed::TooLarge => return Err(WorkspaceError::PackTooLarge { limit: MAX_PACK_BYTES }.into()),
                Packed::Failed(failed) => {
                    return Err(workspace_failed("packing the workspace's commits", &failed));
                }
            }
            // Indexing maps the pack into memory page by page: in the git worker, a process
            // of its own, so those pages never count against the server (docs/security.md,
            // "Memory budget").
            if std::fs::metadata(&pack_file).is_ok_and(|m| m.len() > 0) {
                let index = WorkerRequest::IndexPack {
                    repo: repo_path.clone(),
                    pack: pack_file.clone(),
                    max_objects: MAX_PACK_OBJECTS,
                    head: head_oid.to_string(),
                    known: known.iter().map(Oid::to_string).collect(),
                };
                self.git_worker(&index).await?;
            }
        }

        Ok(Saved {
            head: head_oid,
            warning,
        })
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
        let saved = self.save_workspace(task, &container, message).await?;
        let head_oid = saved.head;
        let head = head_oid.to_string();

        let expected = task.repo.synced_commit.as_deref().and_then(|c| c.parse().ok());
        let (moved, branch_warning) = match host::move_branch(&repo_path, &branch, head_oid, expected) {
            Ok(()) => (true, None),
            Err(e @ (WorkspaceError::BranchCheckedOut { .. } | WorkspaceError::BranchMoved { .. })) => (
                false,
                Some(format!("{e}; the work is safe in the task's checkpoints and workspace")),
            ),
            Err(e) => return Err(e.into()),
        };
        let warning = match (saved.warning, branch_warning) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
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
        let path = self
            .store
            .outputs_dir(&task.id)
            .join(format!("diff-{}.patch", crate::domain::new_execution_id()));
        // The diff runs in the git worker, which writes the patch to the file as it makes it;
        // the reply takes the file's first `output_cap_bytes`.
        let cap = self.config.execution.output_cap_bytes;
        let request = WorkerRequest::Diff {
            repo: repo_path.clone(),
            base: base_oid.to_string(),
            head: head_oid.to_string(),
            patch: path.clone(),
            patch_limit: self.config.execution.spill_limit_bytes.max(cap as u64),
        };
        let reply = match self.git_worker(&request).await {
            Ok(reply) => reply,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let mut start = Vec::with_capacity(cap.min(reply.patch_kept as usize));
        std::fs::File::open(&path)
            .and_then(|file| std::io::Read::take(file, cap as u64).read_to_end(&mut start))
            .map_err(crate::store::io_err(&path))?;
        let truncated = reply.patch_bytes > cap as u64;
        let mut patch = String::from_utf8_lossy(&start).into_owned();
        if truncated {
            let whole = if reply.patch_kept < reply.patch_bytes {
                format!(
                    "the first {} bytes are in {}; the rest passed the spill limit",
                    reply.patch_kept,
                    path.display()
                )
            } else {
                format!("the whole patch is in {}", path.display())
            };
            patch.push_str(&format!(
                "\n[... taskbox: the patch is {} bytes, cut here; {whole} ...]\n",
                reply.patch_bytes
            ));
        } else {
            let _ = std::fs::remove_file(&path);
        }
        Ok(TaskDiff {
            branch,
            base,
            head,
            files: reply.files,
            files_truncated: reply.more_files,
            patch,
            truncated,
            full_patch: truncated.then(|| path.display().to_string()),
            warning,
        })
    }
}

/// What `save_workspace` did.
pub(super) struct Saved {
    /// The workspace's HEAD after its commit.
    pub head: Oid,
    /// Files left out of the commit, said without the values they hold.
    pub warning: Option<String>,
}

/// The commit scan's patterns, one per line (`CommitWorkspace::scan`): git grep matches within
/// a line, so a value with line breaks is looked for by each of its lines long enough not to
/// match ordinary text. `None` when there is nothing to look for.
fn scan_patterns(redactor: &Redactor) -> Option<Vec<u8>> {
    let mut lines: Vec<&[u8]> = redactor
        .patterns()
        .flat_map(|(pattern, _)| pattern.split(|&b| b == b'\n' || b == b'\r'))
        .filter(|line| line.len() >= MIN_SECRET_BYTES)
        .collect();
    lines.sort();
    lines.dedup();
    (!lines.is_empty()).then(|| lines.join(&b'\n'))
}

/// The warning for files a commit left out (their names only).
fn left_out_warning(left_out: &[String]) -> Option<String> {
    const NAMED: usize = 20;
    if left_out.is_empty() {
        return None;
    }
    let mut names: Vec<String> = left_out.iter().take(NAMED).map(|p| format!("'{p}'")).collect();
    if left_out.len() > NAMED {
        names.push(format!("and {} more", left_out.len() - NAMED));
    }
    Some(format!(
        "left out of the commit because they hold the value of one of the task's secrets: {}; they stay in the \
         workspace, uncommitted (remove the value, read it from the environment instead; the operator can allow \
         it with allow_in_commits)",
        names.join(", ")
    ))
}

fn no_repo(task: &Task) -> Error {
    Error::WrongStatus {
        task: task.name.clone(),
        status: task.status.to_string(),
        hint: "it has no task repository (it was created before workspaces were git-backed); create a new task".into(),
    }
}

/// A git step in the container that failed; the workspace is where to look.
fn workspace_failed(what: &str, failed: &Failed) -> Error {
    let exit = match failed.code {
        Some(137) => "killed (exit 137: out of memory in the container?)".to_string(),
        Some(code) => format!("exit {code}"),
        None => "no exit code".to_string(),
    };
    Error::Workspace(WorkspaceError::Io {
        path: PathBuf::from("/workspace"),
        source: std::io::Error::other(format!("{what} failed ({exit}): {}", failed.stderr)),
    })
}
