//! Task workspaces: every workspace is a git repository (so checkpoints, diffs and history work
//! the same for every task), mounted into the container at `/workspace`.

use std::path::{Path, PathBuf};

use git2::{Repository, RepositoryInitOptions, Signature};

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
}

pub type Result<T, E = WorkspaceError> = std::result::Result<T, E>;

/// Who the server's own commits are by.
const SERVER_NAME: &str = "taskbox";
const SERVER_EMAIL: &str = "taskbox@localhost";
/// Identity for commits the agent makes inside the container, so `git commit` works there
/// without any global git config.
const AGENT_NAME: &str = "taskbox agent";
const AGENT_EMAIL: &str = "agent@taskbox.local";

/// The branch a task's work lives on.
pub fn task_branch(task_name: &str) -> String {
    format!("taskbox/{task_name}")
}

/// Creates `path` as a fresh git repository on the task branch with one empty commit, so the
/// agent starts with a `git log` and later checkpoints have a base to diff against.
pub fn init(path: &Path, task_name: &str, description: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let branch = task_branch(task_name);
    let mut options = RepositoryInitOptions::new();
    options.initial_head(&branch).no_reinit(true);
    let repo = Repository::init_opts(path, &options)?;
    {
        let mut config = repo.config()?;
        config.set_str("user.name", AGENT_NAME)?;
        config.set_str("user.email", AGENT_EMAIL)?;
    }
    let signature = Signature::now(SERVER_NAME, SERVER_EMAIL)?;
    let tree_id = repo.index()?.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let mut message = format!("taskbox: start task {task_name}\n");
    if let Some(description) = description.filter(|d| !d.trim().is_empty()) {
        message.push('\n');
        message.push_str(description.trim());
        message.push('\n');
    }
    repo.commit(Some("HEAD"), &signature, &signature, &message, &tree, &[])?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_repo_on_the_task_branch_with_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        init(&ws, "fix-login", Some("Fix the login form")).unwrap();
        let repo = Repository::open(&ws).unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.shorthand().unwrap(), "taskbox/fix-login");
        let commit = head.peel_to_commit().unwrap();
        assert_eq!(commit.parent_count(), 0);
        assert_eq!(
            commit.message().unwrap(),
            "taskbox: start task fix-login\n\nFix the login form\n"
        );
        assert_eq!(repo.config().unwrap().get_string("user.name").unwrap(), AGENT_NAME);

        remove(&ws).unwrap();
        assert!(!ws.exists());
        remove(&ws).unwrap();
    }
}
