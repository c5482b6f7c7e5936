//! The task's git side: choosing and checking the source repository, the task branch and the
//! workspace clone at creation; syncing the workspace to the branch; the diff.
//!
//! Syncing never opens the workspace repository on the host (its `.git` is the agent's): git
//! runs inside the container, new objects come out as a pack that libgit2 validates into the
//! host repository, and the server moves the branch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use git2::Oid;
use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::container_ops::{ChownWorkspace, CommitWorkspace, PackCommits};
use super::create::Made;
use crate::domain::{Event, Task, TaskRepo};
use crate::error::{Error, Result};
use crate::hooks::git::{BRANCH_CREATOR, SUBMODULE_CREATOR};
use crate::hooks::{Decision, HookContext, HookEvent, step_run};
use crate::task::output::StreamCapture;
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

/// The largest pack one sync takes from the container (it is held in memory).
const MAX_PACK_BYTES: usize = 4 << 30;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct SyncOutcome {
    /// The workspace's HEAD after committing its changes.
    pub commit: String,
    /// Whether the task branch in the host repository now points at `commit`.
    pub branch_moved: bool,
    pub warning: Option<String>,
}

/// `task_diff`'s result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskDiff {
    pub branch: String,
    pub base: String,
    pub head: String,
    pub files: Vec<host::FileDiff>,
    pub patch: String,
    pub truncated: bool,
    /// The file holding the whole patch, when it was cut.
    pub full_patch: Option<String>,
    pub warning: Option<String>,
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

    /// Commits every change in the workspace inside `container` and brings the commits into
    /// the host repository, checked complete; returns the workspace's head. Moves no branch.
    pub(super) async fn save_workspace(&self, task: &Task, container: &str, message: &str) -> Result<Oid> {
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(task))?;
        let user = task.exec_user.as_deref();

        // Files a root command left in the workspace (mode 0600, say) would make the commit,
        // which runs as the agent's user, fail: they are the agent's workspace, so hand them over.
        if let Some(chown) = ChownWorkspace::to(user.unwrap_or(""))
            && let Err(failed) = self.run_op(container, chown).await?
        {
            tracing::warn!(task = %task.id, stderr = %failed.stderr, "cannot hand the workspace to its user");
        }

        let commit = CommitWorkspace { message, user };
        let head_oid = self
            .run_op(container, commit)
            .await?
            .map_err(|failed| workspace_failed("committing the workspace", &failed.stderr))?;

        if !host::has_commit(&repo_path, head_oid)? {
            let known: Vec<Oid> = [&task.repo.synced_commit, &task.repo.base_commit]
                .into_iter()
                .flatten()
                .filter_map(|c| c.parse().ok())
                .collect();
            let pack = self
                .run_op(container, PackCommits { known: &known, user })
                .await?
                .map_err(|failed| workspace_failed("packing the workspace's commits", &failed.stderr))?;
            if pack.len() > MAX_PACK_BYTES {
                return Err(WorkspaceError::PackTooLarge {
                    size: pack.len(),
                    limit: MAX_PACK_BYTES,
                }
                .into());
            }
            host::index_pack(&repo_path, &pack)?;
            host::verify_closure(&repo_path, head_oid, &known)?;
        }

        Ok(head_oid)
    }

    /// Commits every change in the workspace (tracked and untracked, honouring .gitignore)
    /// inside the container, copies the new objects into the host repository and moves the
    /// task branch there. The container must be running.
    pub(super) async fn sync(&self, task: &Task, message: &str) -> Result<(Task, SyncOutcome)> {
        let container = self.require_running(task)?;
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(task))?;
        let branch = task.repo.branch.clone().ok_or_else(|| no_repo(task))?;
        let before = HookContext::new(HookEvent::BeforeSync, Some(task.clone()))
            .with_arguments(serde_json::json!({ "message": message }));
        self.fire(before).await?;
        let head_oid = self.save_workspace(task, &container, message).await?;
        let head = head_oid.to_string();

        let expected = task.repo.synced_commit.as_deref().and_then(|c| c.parse().ok());
        let (moved, warning) = match host::move_branch(&repo_path, &branch, head_oid, expected) {
            Ok(()) => (true, None),
            Err(e @ (WorkspaceError::BranchCheckedOut { .. } | WorkspaceError::BranchMoved { .. })) => (
                false,
                Some(format!("{e}; the work is safe in the task's checkpoints and workspace")),
            ),
            Err(e) => return Err(e.into()),
        };
        let outcome = SyncOutcome {
            commit: head.clone(),
            branch_moved: moved,
            warning,
        };
        let task = if moved && task.repo.synced_commit.as_deref() != Some(head.as_str()) {
            self.update(task.clone(), |t| t.repo.synced_commit = Some(head.clone()))?
        } else {
            task.clone()
        };
        self.record(Event::new(&task.id, "synced", serde_json::json!(outcome)))?;
        Ok((task, outcome))
    }

    /// The task branch against its base, after syncing a running task's workspace to it.
    pub async fn diff(&self, task: &str) -> Result<TaskDiff> {
        let mut task = self.resolve(Some(task))?;
        let mut warning = None;
        if task.status == crate::domain::TaskStatus::Running {
            let (synced, outcome) = self.sync(&task, "taskbox: sync for task_diff").await?;
            task = synced;
            warning = outcome.warning;
        }
        let repo_path = task.repo.path.clone().ok_or_else(|| no_repo(&task))?;
        let branch = task.repo.branch.clone().ok_or_else(|| no_repo(&task))?;
        let base = task.repo.base_commit.clone().ok_or_else(|| no_repo(&task))?;
        let head = task.repo.synced_commit.clone().unwrap_or_else(|| base.clone());
        let parse = |c: &str| c.parse::<Oid>().map_err(|_| no_repo(&task));
        let (files, patch) = host::diff(&repo_path, parse(&base)?, parse(&head)?)?;
        let log = self
            .store
            .outputs_dir(&task.id)
            .join(format!("diff-{}.patch", crate::domain::new_execution_id()));
        let mut capture = StreamCapture::new(self.config.execution.output_cap_bytes, log);
        capture.push(&patch);
        let patch = capture.finish("patch");
        Ok(TaskDiff {
            branch,
            base,
            head,
            files,
            patch: patch.text,
            truncated: patch.truncated,
            full_patch: patch.full_output.map(|p| p.display().to_string()),
            warning,
        })
    }
}

fn no_repo(task: &Task) -> Error {
    Error::WrongStatus {
        task: task.name.clone(),
        status: task.status.to_string(),
        hint: "it has no task repository (it was created before workspaces were git-backed); create a new task".into(),
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

/// A git step in the container that failed; the workspace is where to look.
fn workspace_failed(what: &str, stderr: &str) -> Error {
    Error::Workspace(WorkspaceError::Io {
        path: PathBuf::from("/workspace"),
        source: std::io::Error::other(format!("{what} failed: {stderr}")),
    })
}
