//! What a task branch did: its commits and its diff against the base.

use std::path::Path;

use git2::Oid;

use super::open;
use crate::workspace::{Result, WorkspaceError};

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FileDiff {
    pub path: String,
    /// added, deleted, modified, typechange
    pub status: String,
    pub added: usize,
    pub removed: usize,
    /// Why the file's lines were not compared, when they were not: binary, or over the
    /// per-file limits (`DiffLimits`); its `added`/`removed` are then 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_diffed: Option<String>,
}

/// What one diff may cost. The content of a branch comes from the container, so every size is
/// hostile: these bound the memory of a diff whatever the branch holds (docs/security.md,
/// "Memory budget").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffLimits {
    /// Files compared and listed; the walk stops past this.
    pub max_files: usize,
    /// The listed files' paths, in bytes (paths can be 4 KiB each).
    pub max_listed_bytes: usize,
    /// A side of a file larger than this is not compared line by line (xdiff holds both
    /// sides and a record per line).
    pub max_file_bytes: usize,
    pub max_file_lines: usize,
    /// The trees open at once along the walk's path, in bytes (a directory with a million
    /// entries is one large tree object).
    pub max_open_tree_bytes: usize,
}

impl Default for DiffLimits {
    fn default() -> Self {
        Self {
            max_files: 20_000,
            max_listed_bytes: 4 << 20,
            max_file_bytes: 8 << 20,
            max_file_lines: 100_000,
            max_open_tree_bytes: 32 << 20,
        }
    }
}

/// What `diff` found; the patch went to the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffSummary {
    pub files: Vec<FileDiff>,
    /// The walk stopped at `max_files`: there are more changed files than `files`.
    pub more_files: bool,
}

/// `base..head`: per-file line counts, and the patch written to `patch` as it is made, one
/// file at a time. Never holds more than the limits allow: the trees along one path, one
/// file's two sides and their diff.
pub fn diff(
    repo_path: &Path,
    base: Oid,
    head: Oid,
    limits: DiffLimits,
    patch: &mut dyn std::io::Write,
) -> Result<DiffSummary> {
    let repo = open(repo_path)?;
    let odb = repo.odb()?;
    let base_tree = repo.find_commit(base)?.tree_id();
    let head_tree = repo.find_commit(head)?.tree_id();
    let mut summary = DiffSummary {
        files: Vec::new(),
        more_files: false,
    };
    let write_err = |source: std::io::Error| WorkspaceError::Io {
        path: repo_path.to_path_buf(),
        source,
    };
    let mut walk = TreeWalk::new(&repo, &odb, limits.max_open_tree_bytes);
    walk.enter(String::new(), Some(base_tree), Some(head_tree))?;
    let mut listed_bytes = 0;
    while let Some(change) = walk.next_change()? {
        listed_bytes += change.path.len();
        if summary.files.len() == limits.max_files || listed_bytes > limits.max_listed_bytes {
            summary.more_files = true;
            break;
        }
        let file = file_patch(&repo, &odb, &change, limits, patch).map_err(|e| match e {
            PatchError::Git(e) => WorkspaceError::Git(e),
            PatchError::Write(e) => write_err(e),
        })?;
        summary.files.push(file);
    }
    Ok(summary)
}

/// One side of a changed path: its object and mode.
type Side = Option<(Oid, i32)>;

struct Change {
    path: String,
    old: Side,
    new: Side,
}

/// A walk over two trees in git's entry order (a tree's name sorts as if it ended in '/'),
/// depth first, holding only the trees along the current path.
struct TreeWalk<'r> {
    repo: &'r git2::Repository,
    odb: &'r git2::Odb<'r>,
    stack: Vec<Frame<'r>>,
    open_bytes: usize,
    max_open_bytes: usize,
}

struct Frame<'r> {
    prefix: String,
    old: Option<git2::Tree<'r>>,
    new: Option<git2::Tree<'r>>,
    i: usize,
    j: usize,
    bytes: usize,
}

const TREE_MODE: i32 = 0o040000;

fn entry_key(entry: &git2::TreeEntry<'_>) -> Vec<u8> {
    let mut key = entry.name_bytes().to_vec();
    if entry.filemode() == TREE_MODE {
        key.push(b'/');
    }
    key
}

impl<'r> TreeWalk<'r> {
    fn new(repo: &'r git2::Repository, odb: &'r git2::Odb<'r>, max_open_bytes: usize) -> Self {
        Self {
            repo,
            odb,
            stack: Vec::new(),
            open_bytes: 0,
            max_open_bytes,
        }
    }

    fn load(&self, id: Option<Oid>) -> Result<(Option<git2::Tree<'r>>, usize)> {
        let Some(id) = id else { return Ok((None, 0)) };
        // The size from the object's header, before the tree is read into memory.
        let (size, _) = self.odb.read_header(id)?;
        if self.open_bytes + size > self.max_open_bytes {
            return Err(WorkspaceError::DiffTooLarge {
                what: format!(
                    "its directories along one path hold more than {} bytes of entries (tree {id})",
                    self.max_open_bytes
                ),
            });
        }
        Ok((Some(self.repo.find_tree(id)?), size))
    }

    fn enter(&mut self, prefix: String, old: Option<Oid>, new: Option<Oid>) -> Result<()> {
        let (old, old_bytes) = self.load(old)?;
        self.open_bytes += old_bytes;
        let (new, new_bytes) = match self.load(new) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.open_bytes -= old_bytes;
                return Err(e);
            }
        };
        self.open_bytes += new_bytes;
        self.stack.push(Frame {
            prefix,
            old,
            new,
            i: 0,
            j: 0,
            bytes: old_bytes + new_bytes,
        });
        Ok(())
    }

    /// The next path whose blob, mode or kind differs; entering changed subtrees on the way.
    fn next_change(&mut self) -> Result<Option<Change>> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            // Owned copies of the two entries, so the frame can change below.
            let entry = |tree: &Option<git2::Tree<'r>>, at: usize| {
                tree.as_ref()
                    .and_then(|t| t.get(at))
                    .map(|e| (entry_key(&e), e.id(), e.filemode()))
            };
            let (old, new) = match (entry(&frame.old, frame.i), entry(&frame.new, frame.j)) {
                (None, None) => {
                    let bytes = frame.bytes;
                    self.stack.pop();
                    self.open_bytes -= bytes;
                    continue;
                }
                (Some(o), Some(n)) => match o.0.cmp(&n.0) {
                    std::cmp::Ordering::Less => (Some(o), None),
                    std::cmp::Ordering::Greater => (None, Some(n)),
                    std::cmp::Ordering::Equal => (Some(o), Some(n)),
                },
                (o, n) => (o, n),
            };
            frame.i += usize::from(old.is_some());
            frame.j += usize::from(new.is_some());
            let Some((key, _, _)) = old.as_ref().or(new.as_ref()) else {
                continue; // (None, None) was handled above
            };
            let name = String::from_utf8_lossy(key.strip_suffix(b"/").unwrap_or(key));
            let path = format!("{}{name}", frame.prefix);
            let (old, new): (Side, Side) = (old.map(|e| (e.1, e.2)), new.map(|e| (e.1, e.2)));
            if old == new {
                continue;
            }
            let is_tree = |s: Side| s.is_some_and(|(_, mode)| mode == TREE_MODE);
            if is_tree(old) || is_tree(new) {
                // Same key on both sides means both are trees.
                self.enter(format!("{path}/"), old.map(|s| s.0), new.map(|s| s.0))?;
                continue;
            }
            return Ok(Some(Change { path, old, new }));
        }
    }
}

enum PatchError {
    Git(git2::Error),
    Write(std::io::Error),
}

impl From<git2::Error> for PatchError {
    fn from(e: git2::Error) -> Self {
        Self::Git(e)
    }
}

impl From<std::io::Error> for PatchError {
    fn from(e: std::io::Error) -> Self {
        Self::Write(e)
    }
}

const LINK_MODE: i32 = 0o120000;
const GITLINK_MODE: i32 = 0o160000;

/// One file's stats, its patch written to `out`.
fn file_patch(
    repo: &git2::Repository,
    odb: &git2::Odb<'_>,
    change: &Change,
    limits: DiffLimits,
    out: &mut dyn std::io::Write,
) -> std::result::Result<FileDiff, PatchError> {
    let status = match (change.old, change.new) {
        (None, _) => "added",
        (_, None) => "deleted",
        (Some((_, a)), Some((_, b))) if (a == LINK_MODE) != (b == LINK_MODE) => "typechange",
        _ => "modified",
    };
    let mut file = FileDiff {
        path: change.path.clone(),
        status: status.into(),
        added: 0,
        removed: 0,
        not_diffed: None,
    };
    let path = &change.path;
    writeln!(out, "diff --git a/{path} b/{path}")?;
    match (change.old, change.new) {
        (None, Some((_, mode))) => writeln!(out, "new file mode {mode:o}")?,
        (Some((_, mode)), None) => writeln!(out, "deleted file mode {mode:o}")?,
        (Some((_, a)), Some((_, b))) if a != b => writeln!(out, "old mode {a:o}\nnew mode {b:o}")?,
        _ => {}
    }
    let gitlink = |s: Side| s.is_some_and(|(_, mode)| mode == GITLINK_MODE);
    if gitlink(change.old) || gitlink(change.new) {
        let id = |s: Side| s.map(|(id, _)| id.to_string()).unwrap_or_else(|| "none".into());
        writeln!(out, "Submodule {path} {}..{}", id(change.old), id(change.new))?;
        file.not_diffed = Some("submodule".into());
        return Ok(file);
    }
    // Sizes from the objects' headers: a side over the limit is never read.
    let size = |s: Side| -> std::result::Result<usize, git2::Error> {
        s.map_or(Ok(0), |(id, _)| odb.read_header(id).map(|(size, _)| size))
    };
    let (old_size, new_size) = (size(change.old)?, size(change.new)?);
    if old_size.max(new_size) > limits.max_file_bytes {
        let note = format!(
            "{old_size} -> {new_size} bytes, over the {}-byte limit per file for a line diff",
            limits.max_file_bytes
        );
        writeln!(out, "taskbox: {path} not diffed: {note}")?;
        file.not_diffed = Some(note);
        return Ok(file);
    }
    let blob = |s: Side| -> std::result::Result<Option<git2::Blob<'_>>, git2::Error> {
        s.map(|(id, _)| repo.find_blob(id)).transpose()
    };
    let (old_blob, new_blob) = (blob(change.old)?, blob(change.new)?);
    let (old_bytes, new_bytes) = (
        old_blob.as_ref().map_or(&[][..], git2::Blob::content),
        new_blob.as_ref().map_or(&[][..], git2::Blob::content),
    );
    let binary = [&old_blob, &new_blob].into_iter().flatten().any(git2::Blob::is_binary);
    if binary {
        writeln!(out, "Binary files a/{path} and b/{path} differ")?;
        file.not_diffed = Some("binary".into());
        return Ok(file);
    }
    let lines = |b: &[u8]| b.iter().filter(|c| **c == b'\n').count();
    let most_lines = lines(old_bytes).max(lines(new_bytes));
    if most_lines > limits.max_file_lines {
        let note = format!(
            "{most_lines} lines, over the {}-line limit per file for a line diff",
            limits.max_file_lines
        );
        writeln!(out, "taskbox: {path} not diffed: {note}")?;
        file.not_diffed = Some(note);
        return Ok(file);
    }
    let from = |s: Side| {
        if s.is_some() {
            format!("a/{path}")
        } else {
            "/dev/null".into()
        }
    };
    let to = |s: Side| {
        if s.is_some() {
            format!("b/{path}")
        } else {
            "/dev/null".into()
        }
    };
    writeln!(out, "--- {}\n+++ {}", from(change.old), to(change.new))?;
    let as_path = std::path::Path::new(path);
    let mut patch = git2::Patch::from_buffers(old_bytes, Some(as_path), new_bytes, Some(as_path), None)?;
    let (_, added, removed) = patch.line_stats()?;
    (file.added, file.removed) = (added, removed);
    let mut written = Ok(());
    let printed = patch.print(&mut |_, _, line| {
        // The file header ('F') is ours, above; hunks and lines as git prints them.
        if line.origin() == 'F' {
            return true;
        }
        let origin = matches!(line.origin(), '+' | '-' | ' ').then_some([line.origin() as u8]);
        written = out
            .write_all(origin.as_ref().map_or(&[][..], |o| &o[..]))
            .and_then(|()| out.write_all(line.content()));
        written.is_ok()
    });
    written?;
    printed?;
    Ok(file)
}
