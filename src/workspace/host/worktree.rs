//! The developer's work tree: its root, its uncommitted changes, and a commit of them made
//! without touching it.

use std::path::{Path, PathBuf};

use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Status, StatusOptions};

use super::{open, signature};
use crate::workspace::{Result, WorkspaceError};

/// The work tree root of the repository containing `path`.
pub fn discover(path: &Path) -> Result<PathBuf> {
    let repo = Repository::discover(path).map_err(|_| WorkspaceError::NotARepository {
        path: path.to_path_buf(),
    })?;
    let root = repo.workdir().ok_or_else(|| WorkspaceError::BareRepository {
        path: path.to_path_buf(),
    })?;
    Ok(root.canonicalize().unwrap_or_else(|_| root.to_path_buf()))
}

/// A path with uncommitted changes in the developer's work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub deleted: bool,
}

/// Modified, added, deleted and untracked (not ignored) files of the work tree, against HEAD.
pub fn uncommitted(repo_path: &Path) -> Result<Vec<Change>> {
    let repo = open(repo_path)?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options))?;
    let mut changes: Vec<Change> = statuses
        .iter()
        .filter(|entry| entry.status() != Status::CURRENT)
        .filter_map(|entry| {
            let path = entry.path().ok()?.to_string();
            let deleted = entry.status().intersects(Status::WT_DELETED)
                || (entry.status().intersects(Status::INDEX_DELETED) && !repo_path.join(&path).exists());
            Some(Change { path, deleted })
        })
        .collect();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// Commits `changes`, read from the work tree, on top of `base` — without touching the
/// developer's index, work tree or any ref. Returns the new commit.
pub fn commit_changes(repo_path: &Path, base: Oid, changes: &[Change], message: &str) -> Result<Oid> {
    let repo = open(repo_path)?;
    let base_commit = repo.find_commit(base)?;
    let mut index = Index::new()?;
    index.read_tree(&base_commit.tree()?)?;
    for change in changes {
        let path = Path::new(&change.path);
        let full = repo_path.join(path);
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            index.remove_path(path)?;
            continue;
        };
        let (mode, data) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(|source| WorkspaceError::Io {
                path: full.clone(),
                source,
            })?;
            (0o120000, target.to_string_lossy().into_owned().into_bytes())
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let data = std::fs::read(&full).map_err(|source| WorkspaceError::Io {
                path: full.clone(),
                source,
            })?;
            (if exec { 0o100755 } else { 0o100644 }, data)
        } else {
            continue; // directories (nested repositories) are not files to commit
        };
        let entry = IndexEntry {
            ctime: IndexTime::new(0, 0),
            mtime: IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode,
            uid: 0,
            gid: 0,
            file_size: data.len() as u32,
            // The blob goes straight into the object database: an in-memory index cannot
            // write one itself.
            id: repo.blob(&data)?,
            flags: 0,
            flags_extended: 0,
            path: change.path.as_bytes().to_vec(),
        };
        index.add(&entry)?;
    }
    let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
    let sig = signature()?;
    Ok(repo.commit(None, &sig, &sig, message, &tree, &[&base_commit])?)
}
