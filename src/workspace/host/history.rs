//! What a task branch did: its commits and its diff against the base.

use std::path::Path;

use git2::Oid;

use super::open;
use crate::workspace::Result;

/// The commits of `base..head`, newest first: (id, first line of the message), at most `limit`.
pub fn commits_between(repo_path: &Path, base: Oid, head: Oid, limit: usize) -> Result<Vec<(String, String)>> {
    let repo = open(repo_path)?;
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    walk.hide(base)?;
    let mut commits = Vec::new();
    for oid in walk.take(limit) {
        let commit = repo.find_commit(oid?)?;
        let summary = commit.summary().ok().flatten().unwrap_or_default().to_string();
        commits.push((commit.id().to_string(), summary));
    }
    Ok(commits)
}

/// One file of a diff.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct FileDiff {
    pub path: String,
    /// added, deleted, modified, renamed, typechange …
    pub status: String,
    pub added: usize,
    pub removed: usize,
}

/// `base..head`: per-file line counts and the whole patch.
pub fn diff(repo_path: &Path, base: Oid, head: Oid) -> Result<(Vec<FileDiff>, Vec<u8>)> {
    let repo = open(repo_path)?;
    let base_tree = repo.find_commit(base)?.tree()?;
    let head_tree = repo.find_commit(head)?.tree()?;
    let diff = repo.diff_tree_to_tree(Some(&base_tree), Some(&head_tree), None)?;
    let mut files = Vec::new();
    for (idx, delta) in diff.deltas().enumerate() {
        let (_, added, removed) = match git2::Patch::from_diff(&diff, idx)? {
            Some(patch) => patch.line_stats()?,
            None => (0, 0, 0),
        };
        let path = delta
            .new_file()
            .path()
            .or_else(|| delta.old_file().path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push(FileDiff {
            path,
            status: format!("{:?}", delta.status()).to_lowercase(),
            added,
            removed,
        });
    }
    let mut patch = Vec::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            patch.push(line.origin() as u8);
        }
        patch.extend_from_slice(line.content());
        true
    })?;
    Ok((files, patch))
}
