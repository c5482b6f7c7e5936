//! git2 on the repositories the server trusts: the developer's repository and the private
//! repositories under `tasks/`. Never called on a workspace (see the module above).

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::build::{CloneLocal, RepoBuilder};
use git2::{BranchType, Index, IndexEntry, IndexTime, Oid, Repository, Signature, Status, StatusOptions};

use super::{AGENT_EMAIL, AGENT_NAME, Result, SERVER_EMAIL, SERVER_NAME, WorkspaceError};

fn open(path: &Path) -> Result<Repository> {
    Ok(Repository::open(path)?)
}

fn signature() -> Result<Signature<'static>> {
    Ok(Signature::now(SERVER_NAME, SERVER_EMAIL)?)
}

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

/// A private bare repository with one empty commit on `branch`; returns that commit.
pub fn init_private(path: &Path, branch: &str, message: &str) -> Result<Oid> {
    let repo = Repository::init_bare(path)?;
    let tree = repo.find_tree(Index::new()?.write_tree_to(&repo)?)?;
    let sig = signature()?;
    let refname = format!("refs/heads/{branch}");
    let commit = repo.commit(Some(&refname), &sig, &sig, message, &tree, &[])?;
    repo.set_head(&refname)?;
    Ok(commit)
}

/// A bare copy of a private repository (for a fork), sharing nothing with it.
pub fn clone_private(source: &Path, dest: &Path) -> Result<()> {
    RepoBuilder::new()
        .bare(true)
        .clone_local(CloneLocal::NoLinks)
        .clone(&source.to_string_lossy(), dest)?;
    Ok(())
}

/// Makes `dest` a new clone of `repo_path` with `branch` checked out, and nothing that points
/// back at the host (no remote). Objects are copied, never hard-linked: the agent will own
/// these files.
///
/// With `reachable_only`, only the objects the branch reaches are copied (git's pack protocol
/// instead of a copy of the object files): the repository may hold other owners' task branches
/// and checkpoints, which this owner's agent must not be able to read. It is slower on a large
/// repository, so the local owner, who can read the repository anyway, gets the fast copy.
pub fn clone_workspace(repo_path: &Path, branch: &str, dest: &Path, reachable_only: bool) -> Result<()> {
    if !clone_with_git(repo_path, branch, dest, reachable_only)? {
        clone_with_libgit2(repo_path, branch, dest, reachable_only)?;
    }
    let repo = open(dest)?;
    let _ = repo.remote_delete("origin");
    let mut config = repo.config()?;
    for key in [format!("branch.{branch}.remote"), format!("branch.{branch}.merge")] {
        let _ = config.remove(&key);
    }
    config.set_str("user.name", AGENT_NAME)?;
    config.set_str("user.email", AGENT_EMAIL)?;
    Ok(())
}

/// The git command line, when installed: on a large repository its clone is several times
/// faster than libgit2's (measured: 0.4 s against about 3 s for 10,000 files / 100 MB).
/// Returns false when there is no `git` to run. Hooks are off and nothing may prompt.
fn clone_with_git(repo_path: &Path, branch: &str, dest: &Path, reachable_only: bool) -> Result<bool> {
    let output = std::process::Command::new("git")
        .args(["-c", "core.hooksPath=/dev/null", "clone", "-q", "--single-branch"])
        .arg(if reachable_only { "--no-local" } else { "--no-hardlinks" })
        .args(["--origin", "origin", "--branch", branch, "--"])
        .arg(repo_path)
        .arg(dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(WorkspaceError::Io {
            path: dest.to_path_buf(),
            source,
        }),
        Ok(out) if out.status.success() => Ok(true),
        Ok(out) => {
            super::remove(dest)?;
            tracing::debug!(stderr = %String::from_utf8_lossy(&out.stderr), "git clone failed; using libgit2");
            Ok(false)
        }
    }
}

/// libgit2's own transports copy every object of a local repository, so a reachable-only
/// clone is made by hand: a pack of what the branch reaches, indexed into a new repository.
fn clone_reachable_with_libgit2(repo_path: &Path, branch: &str, dest: &Path) -> Result<()> {
    let source = open(repo_path)?;
    let tip = source
        .revparse_single(&format!("refs/heads/{branch}"))?
        .peel_to_commit()?
        .id();
    let mut walk = source.revwalk()?;
    walk.push(tip)?;
    let mut builder = source.packbuilder()?;
    builder.insert_walk(&mut walk)?;
    let mut pack = git2::Buf::new();
    builder.write_buf(&mut pack)?;
    let repo = Repository::init(dest)?;
    drop(repo);
    index_pack(dest, &pack)?;
    let repo = open(dest)?;
    repo.branch(branch, &repo.find_commit(tip)?, true)?;
    repo.set_head(&format!("refs/heads/{branch}"))?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
    Ok(())
}

fn clone_with_libgit2(repo_path: &Path, branch: &str, dest: &Path, reachable_only: bool) -> Result<()> {
    if reachable_only {
        return clone_reachable_with_libgit2(repo_path, branch, dest);
    }
    // A local clone copies the object files; a `git gc` running in the developer's
    // repository at the same time can pack them away mid-copy. Start again when that happens.
    let mut attempt = 0;
    loop {
        match RepoBuilder::new()
            .clone_local(CloneLocal::NoLinks)
            .branch(branch)
            .clone(&repo_path.to_string_lossy(), dest)
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 3 && e.class() == git2::ErrorClass::Os => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "local clone raced with the source repository; retrying");
                super::remove(dest)?;
                std::thread::sleep(std::time::Duration::from_millis(200 * attempt));
            }
            Err(e) => return Err(e.into()),
        }
    }
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

/// Checks out the submodules of a fresh workspace clone, each from the developer's own copy
/// (`<repo>/.git/modules/<name>`) when it has one, else from the URL in `.gitmodules` when that
/// is a remote URL. A local path there is skipped and reported: `.gitmodules` may come from an
/// agent's commit (a fork, or a base_ref on another task's branch), and cloning a path the
/// server can read into the agent's workspace would hand the agent any repository on the host.
pub fn init_submodules(repo_path: &Path, workspace: &Path) -> Result<Vec<String>> {
    let host = open(repo_path)?;
    let repo = open(workspace)?;
    let submodules: Vec<(String, String)> = repo
        .submodules()?
        .iter()
        .filter_map(|s| {
            Some((
                s.name().ok()?.to_string(),
                s.url().ok().flatten().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let mut skipped = Vec::new();
    for (name, url) in &submodules {
        let local_copy = host.path().join("modules").join(name);
        repo.find_submodule(name)?.init(false)?;
        if local_copy.exists() {
            // In .git/config, not .gitmodules: the workspace's tracked files stay as the
            // developer committed them, so the task branch never carries a host path.
            repo.config()?
                .set_str(&format!("submodule.{name}.url"), &local_copy.to_string_lossy())?;
        } else if !is_remote_url(url) {
            skipped.push(format!("{name} ({url})"));
            continue;
        }
        repo.find_submodule(name)?.update(false, None)?;
    }
    Ok(skipped)
}

fn is_remote_url(url: &str) -> bool {
    ["https://", "http://", "ssh://", "git://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        || (url.contains('@') && url.contains(':') && !url.starts_with('/'))
}

/// Writes a pack (from `git pack-objects` in the container) into the host repository's
/// object database; libgit2 checks every object as it indexes the pack.
pub fn index_pack(repo_path: &Path, pack: &[u8]) -> Result<()> {
    if pack.is_empty() {
        return Ok(());
    }
    let repo = open(repo_path)?;
    let odb = repo.odb()?;
    let mut writer = odb.packwriter()?;
    writer.write_all(pack).map_err(|source| WorkspaceError::Io {
        path: repo_path.to_path_buf(),
        source,
    })?;
    writer.commit()?;
    Ok(())
}

/// Checks that every object `head` needs is in the repository, down to the `known` commits:
/// the parents of each new commit, and every tree and blob its tree names. A pack from the
/// container is only hash-checked when indexed; a hand-made one could leave the branch on a
/// commit whose tree or parent is missing, which breaks `git log`, `gc` and pushes.
pub fn verify_closure(repo_path: &Path, head: Oid, known: &[Oid]) -> Result<()> {
    let repo = open(repo_path)?;
    let odb = repo.odb()?;
    let missing = |what: String| WorkspaceError::IncompletePack { what };
    let mut walk = repo.revwalk()?;
    walk.push(head).map_err(|_| missing(format!("commit {head}")))?;
    for known in known {
        if repo.find_commit(*known).is_ok() {
            walk.hide(*known)?;
        }
    }
    let mut seen_trees = std::collections::HashSet::new();
    for commit in walk {
        let commit = repo.find_commit(commit.map_err(|e| missing(e.message().to_string()))?)?;
        for parent in commit.parent_ids() {
            if !odb.exists(parent) {
                return Err(missing(format!("commit {parent}, a parent of {}", commit.id())));
            }
        }
        let mut trees = vec![commit.tree_id()];
        while let Some(tree_id) = trees.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = repo
                .find_tree(tree_id)
                .map_err(|_| missing(format!("tree {tree_id}")))?;
            for entry in tree.iter() {
                match entry.kind() {
                    Some(git2::ObjectType::Tree) => trees.push(entry.id()),
                    Some(git2::ObjectType::Blob) if !odb.exists(entry.id()) => {
                        return Err(missing(format!(
                            "blob {} ({})",
                            entry.id(),
                            entry.name().unwrap_or("?")
                        )));
                    }
                    _ => {} // blobs present, gitlinks (submodule commits live elsewhere)
                }
            }
        }
    }
    Ok(())
}

/// Whether `commit` is a commit the host repository has.
pub fn has_commit(repo_path: &Path, commit: Oid) -> Result<bool> {
    Ok(open(repo_path)?.find_commit(commit).is_ok())
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

/// A pack holding `commit` and its tree, to give a workspace a commit it lost.
pub fn pack_commit(repo_path: &Path, commit: Oid) -> Result<Vec<u8>> {
    let repo = open(repo_path)?;
    let mut builder = repo.packbuilder()?;
    builder.insert_commit(commit)?;
    let mut buf = git2::Buf::new();
    builder.write_buf(&mut buf)?;
    Ok(buf.to_vec())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn repo_with_commit() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
        std::fs::write(dir.path().join(".gitignore"), "*.log\n").unwrap();
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-qm", "first"]);
        dir
    }

    #[test]
    fn uncommitted_changes_become_a_commit_without_touching_the_work_tree() {
        let dir = repo_with_commit();
        let root = dir.path();
        std::fs::write(root.join("a.txt"), "two\n").unwrap();
        std::fs::write(root.join("new.txt"), "new\n").unwrap();
        std::fs::write(root.join("noise.log"), "ignored\n").unwrap();
        std::fs::remove_file(root.join(".gitignore")).unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        git(root, &["rm", "-q", "--cached", ".gitignore"]);
        let changes = uncommitted(root).unwrap();
        assert_eq!(
            changes.iter().map(|c| (c.path.as_str(), c.deleted)).collect::<Vec<_>>(),
            [(".gitignore", false), ("a.txt", false), ("new.txt", false)]
        );
        let base = resolve_commit(root, "HEAD").unwrap();
        let commit = commit_changes(root, base, &changes, "wip").unwrap();
        assert_eq!(git(root, &["show", &format!("{commit}:a.txt")]), "two");
        assert_eq!(git(root, &["show", &format!("{commit}:new.txt")]), "new");
        // The developer's branch and index are untouched.
        assert_eq!(resolve_commit(root, "HEAD").unwrap(), base);
        assert!(git(root, &["status", "--porcelain"]).contains("?? new.txt"));
    }

    #[test]
    fn branches_are_created_once_and_moved_only_when_expected() {
        let dir = repo_with_commit();
        let root = dir.path();
        let base = resolve_commit(root, "HEAD").unwrap();
        create_branch(root, "taskbox/x", base).unwrap();
        assert!(matches!(
            create_branch(root, "taskbox/x", base),
            Err(WorkspaceError::BranchExists { .. })
        ));
        let next = commit_changes(root, base, &[], "empty").unwrap();
        move_branch(root, "taskbox/x", next, Some(base)).unwrap();
        assert_eq!(resolve_commit(root, "taskbox/x").unwrap(), next);
        // Someone else moved it: taskbox leaves it alone.
        assert!(matches!(
            move_branch(root, "taskbox/x", base, Some(base)),
            Err(WorkspaceError::BranchMoved { .. })
        ));
        // Never under a checked-out work tree.
        git(root, &["checkout", "-q", "taskbox/x"]);
        assert!(matches!(
            move_branch(root, "taskbox/x", base, Some(next)),
            Err(WorkspaceError::BranchCheckedOut { .. })
        ));
    }

    #[test]
    fn a_pack_missing_objects_is_caught_before_the_branch_moves() {
        let source = repo_with_commit();
        let target = repo_with_commit();
        let base = resolve_commit(source.path(), "HEAD").unwrap();
        std::fs::write(source.path().join("new.txt"), "new\n").unwrap();
        git(source.path(), &["add", "."]);
        git(source.path(), &["commit", "-qm", "second"]);
        let head: Oid = git(source.path(), &["rev-parse", "HEAD"]).parse().unwrap();
        // A pack with the commit alone: no tree, no blob, no parent.
        let pack = std::process::Command::new("sh")
            .args(["-c", &format!("echo {head} | git pack-objects --stdout -q")])
            .current_dir(source.path())
            .output()
            .unwrap()
            .stdout;
        index_pack(target.path(), &pack).unwrap();
        assert!(has_commit(target.path(), head).unwrap());
        let err = verify_closure(target.path(), head, &[base]).unwrap_err();
        assert!(matches!(err, WorkspaceError::IncompletePack { .. }), "{err}");
        // The whole history makes it complete.
        let pack = std::process::Command::new("sh")
            .args(["-c", "git rev-list --objects --all | git pack-objects --stdout -q"])
            .current_dir(source.path())
            .output()
            .unwrap()
            .stdout;
        index_pack(target.path(), &pack).unwrap();
        verify_closure(target.path(), head, &[]).unwrap();
    }

    #[test]
    fn other_owners_work_is_neither_a_base_nor_in_a_reachable_only_clone() {
        let dir = repo_with_commit();
        let root = dir.path();
        let base = resolve_commit(root, "HEAD").unwrap();
        // Alice's task branch has a commit no branch of the developer reaches.
        git(root, &["checkout", "-q", "-b", "taskbox-alice/secret"]);
        std::fs::write(root.join("secret.txt"), "alice's\n").unwrap();
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "secret"]);
        git(root, &["checkout", "-q", "-"]);
        let secret = resolve_commit(root, "taskbox-alice/secret").unwrap();
        set_ref(root, "refs/taskbox/t-1/checkpoints/1", secret).unwrap();
        assert!(reachable_outside_tasks(root, base, "taskbox-bob/").unwrap());
        assert!(!reachable_outside_tasks(root, secret, "taskbox-bob/").unwrap());
        assert!(!reachable_outside_tasks(root, secret, "taskbox/").unwrap());
        assert!(reachable_outside_tasks(root, secret, "taskbox-alice/").unwrap());

        create_branch(root, "taskbox-bob/mine", base).unwrap();
        for libgit2 in [false, true] {
            let ws = tempfile::tempdir().unwrap();
            let dest = ws.path().join("ws");
            if libgit2 {
                clone_with_libgit2(root, "taskbox-bob/mine", &dest, true).unwrap();
            } else {
                clone_workspace(root, "taskbox-bob/mine", &dest, true).unwrap();
            }
            assert!(has_commit(&dest, base).unwrap());
            assert!(!has_commit(&dest, secret).unwrap(), "libgit2: {libgit2}");
        }
    }

    #[test]
    fn the_libgit2_fallback_clones_the_same_way() {
        let dir = repo_with_commit();
        let root = dir.path();
        let base = resolve_commit(root, "HEAD").unwrap();
        create_branch(root, "taskbox/l", base).unwrap();
        let ws = tempfile::tempdir().unwrap();
        let dest = ws.path().join("ws");
        clone_with_libgit2(root, "taskbox/l", &dest, false).unwrap();
        assert_eq!(git(&dest, &["rev-parse", "--abbrev-ref", "HEAD"]), "taskbox/l");
        assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "one\n");
    }

    #[test]
    fn workspace_clones_have_no_way_back_and_packs_round_trip() {
        let dir = repo_with_commit();
        let root = dir.path();
        let base = resolve_commit(root, "HEAD").unwrap();
        create_branch(root, "taskbox/w", base).unwrap();
        let ws = tempfile::tempdir().unwrap();
        let ws_path = ws.path().join("ws");
        clone_workspace(root, "taskbox/w", &ws_path, false).unwrap();
        assert_eq!(git(&ws_path, &["remote"]), "");
        assert_eq!(git(&ws_path, &["rev-parse", "--abbrev-ref", "HEAD"]), "taskbox/w");
        assert_eq!(std::fs::read_to_string(ws_path.join("a.txt")).unwrap(), "one\n");

        // A commit made in the workspace reaches the host only as a pack.
        std::fs::write(ws_path.join("b.txt"), "b\n").unwrap();
        git(&ws_path, &["add", "."]);
        git(&ws_path, &["commit", "-qm", "agent work"]);
        let head: Oid = git(&ws_path, &["rev-parse", "HEAD"]).parse().unwrap();
        assert!(!has_commit(root, head).unwrap());
        let pack = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("git rev-list --objects HEAD --not {base} | git pack-objects --stdout -q"),
            ])
            .current_dir(&ws_path)
            .output()
            .unwrap()
            .stdout;
        index_pack(root, &pack).unwrap();
        assert!(has_commit(root, head).unwrap());
        move_branch(root, "taskbox/w", head, Some(base)).unwrap();
        let (files, patch) = diff(root, base, head).unwrap();
        assert_eq!(
            files,
            [FileDiff {
                path: "b.txt".into(),
                status: "added".into(),
                added: 1,
                removed: 0
            }]
        );
        assert!(String::from_utf8_lossy(&patch).contains("+b\n"));

        // A private repository starts with an empty commit on its branch.
        let private = ws.path().join("repo.git");
        let first = init_private(&private, "taskbox/p", "start").unwrap();
        assert_eq!(resolve_commit(&private, "taskbox/p").unwrap(), first);
        let pack = pack_commit(root, head).unwrap();
        index_pack(&private, &pack).unwrap();
        assert!(has_commit(&private, head).unwrap());
    }
}
