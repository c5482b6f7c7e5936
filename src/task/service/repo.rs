//! The task's repository at creation: choosing and checking the source repository, the task
//! branch (or a private repository), the workspace clone and its submodules; undoing them when
//! a creation fails. Syncing is `sync.rs`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use git2::Oid;

use super::TaskService;
use super::create::Made;
use crate::domain::{Task, TaskRepo};
use crate::error::{Error, Result};
use crate::hooks::git::{BRANCH_CREATOR, SUBMODULE_CREATOR};
use crate::hooks::{Decision, HookEvent, step_run};
use crate::workspace::{self, WorkspaceError, host, task_branch};

/// Where a new task's work starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoRequest {
    pub repo_path: Option<PathBuf>,
    pub base_ref: Option<String>,
    pub include_uncommitted: bool,
}

/// A fork's starting point: a checkpoint of another task.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ForkFrom {
    pub source: Task,
    pub commit: String,
}

impl TaskService {
    /// Sets up the task's host repository, branch and workspace clone; returns warnings
    /// (uncommitted changes left out, submodules that could not be checked out).
    pub(super) fn prepare_repo(
        &self,
        task: &mut Task,
        request: &RepoRequest,
        fork: Option<&ForkFrom>,
        made: &mut Made,
    ) -> Result<Vec<String>> {
        let branch = task_branch(&task.owner, &task.name);
        let mut warnings = Vec::new();
        let branch_creator = self.config.workspace.create_branch;
        let started = Instant::now();
        // The developer's repository, for submodules, when the task works in a private copy.
        let mut submodule_source = None;
        let (repo, start) = match fork {
            Some(fork) => self.fork_repo(task, fork)?,
            None => match self.source_repo(request.repo_path.as_deref())? {
                Some(root) if !branch_creator => {
                    let copy = self.private_copy(task, &root, request, &mut warnings)?;
                    submodule_source = Some(root);
                    copy
                }
                Some(root) => self.user_repo(task, &root, request, &mut warnings)?,
                None => {
                    let path = self.store.task_dir(&task.id).join("repo.git");
                    let message = start_message(&task.name, task.description.as_deref());
                    let commit = host::init_private(&path, &branch, &message)?;
                    (
                        TaskRepo {
                            path: Some(path),
                            private: true,
                            ..Default::default()
                        },
                        commit,
                    )
                }
            },
        };
        let repo_path = repo.path.clone().unwrap_or_default();
        if !repo.private {
            host::create_branch(&repo_path, &branch, start)?;
            made.branch = Some((repo_path.clone(), branch.clone()));
            let note = format!("branch {branch} created in {}", repo_path.display());
            self.record_step(task, BRANCH_CREATOR, started, Decision::done(note));
        } else if fork.is_some() || submodule_source.is_some() {
            host::create_branch(&repo_path, &branch, start)?;
        }
        task.repo = TaskRepo {
            branch: Some(branch.clone()),
            synced_commit: Some(start.to_string()),
            base_commit: repo.base_commit.or(Some(start.to_string())),
            ..repo
        };
        made.workspace = Some(task.workspace.clone());
        let started = std::time::Instant::now();
        host::clone_workspace(&repo_path, &branch, &task.workspace, !task.owner.is_local())?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "create: workspace cloned"
        );
        let submodule_source = match task.repo.private {
            false => Some(repo_path.clone()),
            true => submodule_source,
        };
        if let Some(source) = submodule_source.filter(|_| self.config.workspace.checkout_submodules) {
            let started = Instant::now();
            let decision = match host::init_submodules(&source, &task.workspace) {
                Ok(skipped) if !skipped.is_empty() => Decision::Warn(format!(
                    "submodules with a local path and no copy in the repository's .git/modules were not checked out: {}",
                    skipped.join(", ")
                )),
                Ok(_) => Decision::done("submodules checked out"),
                Err(e) => Decision::Warn(format!("submodules could not be checked out: {e}")),
            };
            if let Decision::Warn(message) = &decision {
                warnings.push(message.clone());
            }
            self.record_step(task, SUBMODULE_CREATOR, started, decision);
        }
        Ok(warnings)
    }

    /// With branch-creator switched off the developer's repository is only read: the task
    /// works in a private copy of it (under tasks/<id>/), where its branch lives.
    fn private_copy(
        &self,
        task: &Task,
        root: &Path,
        request: &RepoRequest,
        warnings: &mut Vec<String>,
    ) -> Result<(TaskRepo, Oid)> {
        let (source, start) = self.user_repo(task, root, request, warnings)?;
        let path = self.store.task_dir(&task.id).join("repo.git");
        host::clone_private(root, &path)?;
        // The start may be a commit of uncommitted changes that no ref of the source holds.
        if !host::has_commit(&path, start)? {
            host::index_pack(&path, &host::pack_commit(root, start)?)?;
        }
        warnings.push(format!(
            "branch-creator is off: {} was not changed; the task's branch lives in its private repository {}",
            root.display(),
            path.display()
        ));
        Ok((
            TaskRepo {
                path: Some(path),
                private: true,
                ..source
            },
            start,
        ))
    }

    /// Records a built-in hook that runs as a step of creation.
    fn record_step(&self, task: &Task, hook: &str, started: Instant, decision: Decision) {
        let run = step_run(hook, HookEvent::TaskCreated, started, &decision);
        self.record_hook_runs(Some(&task.id), &[run]);
    }

    /// The source repository: `repo_path`, else the server's working directory when that is
    /// inside a git repository. It must lie inside an allowed root.
    fn source_repo(&self, requested: Option<&Path>) -> Result<Option<PathBuf>> {
        let root = match requested {
            Some(path) => {
                let path = if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    self.cwd.join(path)
                };
                // Workspaces and task repositories are agent-owned or agent-fed: never a
                // source, whatever uid the server runs as.
                let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
                let ours = [self.home.join("workspaces"), self.home.join("tasks")];
                if ours.iter().any(|dir| canonical.starts_with(dir)) {
                    return Err(Error::invalid(
                        "repo_path",
                        format!(
                            "{} is a taskbox workspace or task repository; pass your own repository",
                            path.display()
                        ),
                    ));
                }
                host::discover(&path)?
            }
            None => match host::discover(&self.cwd) {
                Ok(root) => root,
                Err(_) => return Ok(None),
            },
        };
        let allowed = self.allowed_repo_roots();
        if !allowed.iter().any(|a| root.starts_with(a)) {
            if requested.is_none() {
                return Ok(None);
            }
            let list = allowed
                .iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::invalid(
                "repo_path",
                format!(
                    "{} is outside the allowed repository roots ({list}); add it to workspace.allowed_repo_roots in the server's config",
                    root.display()
                ),
            ));
        }
        Ok(Some(root))
    }

    fn allowed_repo_roots(&self) -> Vec<PathBuf> {
        let roots = &self.config.workspace.allowed_repo_roots;
        let roots = if roots.is_empty() {
            std::slice::from_ref(&self.cwd)
        } else {
            roots.as_slice()
        };
        roots
            .iter()
            .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
            .collect()
    }

    fn user_repo(
        &self,
        task: &Task,
        root: &Path,
        request: &RepoRequest,
        warnings: &mut Vec<String>,
    ) -> Result<(TaskRepo, Oid)> {
        let base_ref = request.base_ref.as_deref().unwrap_or("HEAD");
        let base = host::resolve_commit(root, base_ref)?;
        // Not another task's work (another owner's above all): only what the developer's own
        // branches and tags, or this owner's task branches, reach. A name that does not
        // resolve and one that is refused get the same answer, so nothing can be probed.
        let own_prefix = crate::workspace::task_branch(&task.owner, "");
        if !host::reachable_outside_tasks(root, base, &own_prefix)? {
            return Err(Error::Workspace(WorkspaceError::UnknownRevision {
                rev: base_ref.to_string(),
                repo: root.to_path_buf(),
                // libgit2's own words for a revision that does not exist.
                message: format!("revspec '{base_ref}' not found"),
            }));
        }
        let on_head = host::resolve_commit(root, "HEAD").ok() == Some(base);
        let started = std::time::Instant::now();
        let changes = if on_head { host::uncommitted(root)? } else { Vec::new() };
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "create: uncommitted changes checked"
        );
        if request.include_uncommitted && !on_head {
            return Err(Error::invalid(
                "include_uncommitted",
                format!(
                    "uncommitted changes sit on HEAD, but base_ref '{base_ref}' is another commit; omit one of the two"
                ),
            ));
        }
        let start = if changes.is_empty() {
            base
        } else if request.include_uncommitted {
            let message = format!("taskbox: uncommitted changes from {}\n", root.display());
            host::commit_changes(root, base, &changes, &message)?
        } else {
            let shown: Vec<&str> = changes.iter().take(5).map(|c| c.path.as_str()).collect();
            warnings.push(format!(
                "{} uncommitted change(s) in {} are not in the task ({}{}); they stay in your work tree. Pass include_uncommitted: true to bring them in as the task's first commit",
                changes.len(),
                root.display(),
                shown.join(", "),
                if changes.len() > shown.len() { ", …" } else { "" }
            ));
            base
        };
        Ok((
            TaskRepo {
                path: Some(root.to_path_buf()),
                private: false,
                base_commit: Some(base.to_string()),
                ..Default::default()
            },
            start,
        ))
    }

    fn fork_repo(&self, task: &Task, fork: &ForkFrom) -> Result<(TaskRepo, Oid)> {
        let source_path = fork.source.repo.path.clone().unwrap_or_default();
        let commit: Oid = fork
            .commit
            .parse()
            .map_err(|_| Error::invalid("from_checkpoint", "the checkpoint has no valid commit"))?;
        let path = if fork.source.repo.private {
            let path = self.store.task_dir(&task.id).join("repo.git");
            host::clone_private(&source_path, &path)?;
            path
        } else {
            source_path
        };
        Ok((
            TaskRepo {
                path: Some(path),
                private: fork.source.repo.private,
                base_commit: Some(commit.to_string()),
                ..Default::default()
            },
            commit,
        ))
    }
}

/// The message of a task's first commit in a private repository.
pub(super) fn start_message(name: &str, description: Option<&str>) -> String {
    let mut message = format!("taskbox: start task {name}\n");
    if let Some(description) = description.filter(|d| !d.trim().is_empty()) {
        message.push('\n');
        message.push_str(description.trim());
        message.push('\n');
    }
    message
}

/// Removes the task branch a failed creation made in the developer's repository.
pub(super) fn remove_branch(repo: &Path, branch: &str) {
    if let Err(e) = host::delete_ref(repo, &format!("refs/heads/{branch}")) {
        tracing::error!(repo = %repo.display(), branch, error = %e, "rollback: cannot remove branch");
    }
}

pub(super) fn remove_workspace(path: &Path) {
    if let Err(e) = workspace::remove(path) {
        tracing::error!(error = %e, "rollback: cannot remove workspace");
    }
}
