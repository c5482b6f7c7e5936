//! Repositories the server makes: private bare repositories, and workspace clones with their
//! submodules.

use std::path::Path;

use git2::build::{CloneLocal, RepoBuilder};
use git2::{Index, Oid, Repository};

use super::{index_pack, open, signature};
use crate::workspace::{AGENT_EMAIL, AGENT_NAME, Result, WorkspaceError, empty, remove};

/// A private bare repository with one empty commit on `branch`; returns that commit.
pub fn init_private(path: &Path, branch: &str, message: &str) -> Result<Oid> {
    let repo = Repository::init_bare(path)?;
    let tree = repo.find_tree(Index::new()?.write_tree_to(&repo)?)?;
    let sig = signature()?;
    let refname = format!("refs/heads/{branch}");
    let commit = repo.commit(Some(&refname), &sig, &sig, message, &tree, &[])?;
    repo.set_head(&refname)?;
    private(path)?;
    Ok(commit)
}

/// A repository the server keeps under the data directory is readable by its user only.
fn private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(|source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A bare copy of a private repository (for a fork), sharing nothing with it.
pub fn clone_private(source: &Path, dest: &Path) -> Result<()> {
    RepoBuilder::new()
        .bare(true)
        .clone_local(CloneLocal::NoLinks)
        .clone(&source.to_string_lossy(), dest)?;
    private(dest)
}

/// Makes `dest` a new clone of `repo_path` with `branch` checked out, and nothing that points
/// back at the host (no remote). `dest` may exist as an empty directory (a warm-pool entry's
/// workspace): it is filled in place, never replaced. Objects are copied, never hard-linked: the agent will own
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

/// Undoes a clone that failed: the directory goes, unless it was there before (an empty
/// warm-pool workspace, mounted into its container by inode), which is only emptied.
fn discard(dest: &Path, keep: bool) -> Result<()> {
    if keep { empty(dest) } else { remove(dest) }
}

/// The git command line, when installed: on a large repository its clone is several times
/// faster than libgit2's (measured: 0.4 s against about 3 s for 10,000 files / 100 MB).
/// Returns false when there is no `git` to run. Hooks are off and nothing may prompt.
fn clone_with_git(repo_path: &Path, branch: &str, dest: &Path, reachable_only: bool) -> Result<bool> {
    let keep = dest.is_dir();
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
            discard(dest, keep)?;
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

pub(super) fn clone_with_libgit2(repo_path: &Path, branch: &str, dest: &Path, reachable_only: bool) -> Result<()> {
    if reachable_only {
        return clone_reachable_with_libgit2(repo_path, branch, dest);
    }
    // A local clone copies the object files; a `git gc` running in the developer's
    // repository at the same time can pack them away mid-copy. Start again when that happens.
    let keep = dest.is_dir();
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
                discard(dest, keep)?;
                std::thread::sleep(std::time::Duration::from_millis(200 * attempt));
            }
            Err(e) => return Err(e.into()),
        }
    }
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
