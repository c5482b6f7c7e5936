//! git2 on the repositories the server trusts: the developer's repository and the private
//! repositories under `tasks/`. Never called on a workspace (see the module above), except to
//! make a fresh clone before any agent has it.

mod clone;
mod history;
mod packs;
mod refs;
pub mod worker;
mod worktree;

#[cfg(test)]
mod tests;

use std::path::Path;

use git2::{Repository, Signature};

pub use clone::{clone_private, clone_workspace, init_private, init_submodules};
pub use history::{DiffLimits, DiffSummary, FileDiff, commits_between, diff};
pub use packs::{has_commit, index_pack, index_pack_file, pack_commit, verify_closure};
pub use refs::{create_branch, delete_ref, move_branch, reachable_outside_tasks, resolve_commit, set_ref};
pub use worktree::{Change, commit_changes, discover, uncommitted};

use super::{Result, SERVER_EMAIL, SERVER_NAME};

fn open(path: &Path) -> Result<Repository> {
    Ok(Repository::open(path)?)
}

fn signature() -> Result<Signature<'static>> {
    Ok(Signature::now(SERVER_NAME, SERVER_EMAIL)?)
}
