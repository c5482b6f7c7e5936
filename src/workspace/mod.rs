//! Task repositories and workspaces (docs/architecture.md, "Data layout"; docs/workspaces.md).
//!
//! Every task has a *host repository* that only the server writes: the developer's repository,
//! or a private bare repository under `tasks/<id>/repo.git`. The task's work lives there as
//! commits on `taskbox/<name>`. The *workspace* is a separate clone, mounted at `/workspace`;
//! the agent owns it, `.git` included.
//!
//! The server never runs git2 on a workspace: its `.git` is agent-controlled (a `core.worktree`
//! or a symlink there could make a server-side checkout write anywhere on the host). git in
//! the workspace runs inside the container; commits come out of it as a pack that libgit2
//! validates into the host repository (`host::index_pack`), and the server moves the branch.

pub mod host;
pub mod owner;
pub mod setid;
pub mod walk;

use std::path::{Path, PathBuf};

use crate::domain::Owner;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not inside a git repository; pass a repository's path as repo_path")]
    NotARepository { path: PathBuf },
    #[error("{path} is a bare repository; pass a repository with a work tree as repo_path")]
    BareRepository { path: PathBuf },
    #[error(
        "branch {branch} already exists in {repo} and is not this task's; pick another task name, or delete the branch (git branch -D {branch})"
    )]
    BranchExists { branch: String, repo: PathBuf },
    #[error("'{rev}' does not name a commit in {repo}: {message}")]
    UnknownRevision {
        rev: String,
        repo: PathBuf,
        message: String,
    },
    #[error(
        "branch {branch} is checked out in {repo}, so taskbox will not move it under your work tree; switch that work tree to another branch"
    )]
    BranchCheckedOut { branch: String, repo: PathBuf },
    #[error("branch {branch} in {repo} was moved by someone else since taskbox last wrote it; it was left alone")]
    BranchMoved { branch: String, repo: PathBuf },
    #[error(
        "the workspace's commits reached the host incomplete ({what} is missing); the task branch was not moved. Check `git fsck` in the workspace, or restore a checkpoint"
    )]
    IncompletePack { what: String },
    #[error(
        "the workspace's new commits make a pack of more than {limit} bytes, the limit for one sync; the task branch was not moved. Commit less at once (generated or downloaded files belong in .gitignore)"
    )]
    PackTooLarge { limit: u64 },
    #[error(
        "the workspace's new commits hold {count} objects, over the {limit} one sync takes; the task branch was not moved. Commit less at once (generated or downloaded files belong in .gitignore)"
    )]
    PackTooManyObjects { count: u32, limit: u32 },
    /// An error of the git worker process (`host::worker`), as it said it.
    #[error("{0}")]
    Worker(String),
    #[error(
        "the diff was not computed: {what}; look at the task's work with execute_in_task (git diff --stat) instead"
    )]
    DiffTooLarge { what: String },
}

pub type Result<T, E = WorkspaceError> = std::result::Result<T, E>;

/// Who the server's own commits are by.
pub const SERVER_NAME: &str = "taskbox";
pub const SERVER_EMAIL: &str = "taskbox@localhost";
/// Identity for commits the agent makes inside the container, so `git commit` works there
/// without any global git config.
pub const AGENT_NAME: &str = "taskbox agent";
pub const AGENT_EMAIL: &str = "agent@taskbox.local";

/// The branch a task's work lives on.
pub fn task_branch(owner: &Owner, task_name: &str) -> String {
    // Other owners get a prefix of their own, so equal task names of two owners never meet in
    // one repository (and `taskbox-<owner>/` cannot clash with a local `taskbox/<name>`).
    if owner.is_local() {
        format!("taskbox/{task_name}")
    } else {
        format!("taskbox-{owner}/{task_name}")
    }
}

/// Whether git accepts `branch` as a branch name.
pub fn is_valid_branch_name(branch: &str) -> bool {
    git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
}

/// The hidden ref that keeps a checkpoint's commit alive in the host repository.
pub fn checkpoint_ref(task_id: &str, seq: i64) -> String {
    format!("refs/taskbox/{task_id}/checkpoints/{seq}")
}

/// Removes what `path` holds but keeps the directory itself: a warm-pool entry's workspace is
/// bind-mounted into its container by inode, so a clone that failed half-way must leave the
/// same directory for the next attempt.
pub fn empty(path: &Path) -> Result<()> {
    let io = |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let removed = match entry.file_type().map_err(io)?.is_dir() {
            true => std::fs::remove_dir_all(entry.path()),
            false => std::fs::remove_file(entry.path()),
        };
        removed.map_err(io)?;
    }
    Ok(())
}

pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(WorkspaceError::Io {
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}
