//! Revisions and refs of a host repository: resolving a base, checking it is not another
//! task's work, creating and moving task branches, the hidden checkpoint refs.

use std::path::Path;

use git2::{BranchType, Oid};

use super::open;
use crate::workspace::{Result, WorkspaceError};

pub fn resolve_commit(repo_path: &Path, rev: &str) -> Result<Oid> {
    let repo = open(repo_path)?;
    let unknown = |e: git2::Error| WorkspaceError::UnknownRevision {
        rev: rev.to_string(),
        repo: repo_path.to_path_buf(),
        message: e.message().to_string(),
    };
    let object = repo.revparse_single(rev).map_err(unknown)?;
    Ok(object.peel_to_commit().map_err(unknown)?.id())
}

/// Whether `commit` is reachable from a ref of the repository that belongs to no other task:
/// HEAD, the developer's branches and tags, or branches under `own_prefix` (the caller's own
/// task branches). Other tasks' branches (`taskbox/…`, `taskbox-<owner>/…`) and checkpoint refs
/// (`refs/taskbox/…`) do not count, so a base_ref cannot reach another owner's work.
pub fn reachable_outside_tasks(repo_path: &Path, commit: Oid, own_prefix: &str) -> Result<bool> {
    let repo = open(repo_path)?;
    let own = format!("refs/heads/{own_prefix}");
    let mut tips = Vec::new();
    if let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) {
        tips.push(head.id());
    }
    for reference in repo.references()?.flatten() {
        let Ok(name) = reference.name() else { continue };
        let other_task = name.starts_with("refs/taskbox/")
            || ((name.starts_with("refs/heads/taskbox/") || name.starts_with("refs/heads/taskbox-"))
                && !name.starts_with(&own));
        if other_task {
            continue;
        }
        if let Ok(tip) = reference.peel_to_commit() {
            tips.push(tip.id());
        }
    }
    for tip in tips {
        if tip == commit || repo.graph_descendant_of(tip, commit)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates `branch` at `commit`; refuses when it exists already.
pub fn create_branch(repo_path: &Path, branch: &str, commit: Oid) -> Result<()> {
    let repo = open(repo_path)?;
    if repo.find_branch(branch, BranchType::Local).is_ok() {
        return Err(WorkspaceError::BranchExists {
            branch: branch.to_string(),
            repo: repo_path.to_path_buf(),
        });
    }
    repo.branch(branch, &repo.find_commit(commit)?, false)?;
    Ok(())
}

/// Moves `branch` to `commit`, if it still points where taskbox last put it (`expected`), and
/// never while it is checked out in the developer's work tree.
pub fn move_branch(repo_path: &Path, branch: &str, commit: Oid, expected: Option<Oid>) -> Result<()> {
    let repo = open(repo_path)?;
    repo.find_commit(commit)?;
    let refname = format!("refs/heads/{branch}");
    if !repo.is_bare()
        && let Ok(head) = repo.find_reference("HEAD")
        && head.symbolic_target().ok().flatten() == Some(refname.as_str())
    {
        return Err(WorkspaceError::BranchCheckedOut {
            branch: branch.to_string(),
            repo: repo_path.to_path_buf(),
        });
    }
    let message = format!("taskbox: move {branch}");
    let current = repo.refname_to_id(&refname).ok();
    match (expected, current) {
        (_, Some(current)) if current == commit => Ok(()),
        (Some(expected), Some(_)) => repo
            .reference_matching(&refname, commit, true, expected, &message)
            .map(|_| ())
            .map_err(|_| WorkspaceError::BranchMoved {
                branch: branch.to_string(),
                repo: repo_path.to_path_buf(),
            }),
        _ => repo
            .reference(&refname, commit, true, &message)
            .map(|_| ())
            .map_err(Into::into),
    }
}

pub fn set_ref(repo_path: &Path, refname: &str, commit: Oid) -> Result<()> {
    open(repo_path)?.reference(refname, commit, true, "taskbox: checkpoint")?;
    Ok(())
}

/// Deletes a ref; one that does not exist is fine.
pub fn delete_ref(repo_path: &Path, refname: &str) -> Result<()> {
    let repo = open(repo_path)?;
    if let Ok(mut reference) = repo.find_reference(refname) {
        reference.delete()?;
    }
    Ok(())
}
