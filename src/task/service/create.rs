//! Task creation: validate, record the task as `creating`, make its files, workspace, network
//! and container, then mark it `running`. Any failure on the way undoes every step taken, so
//! nothing is left behind: no container, network, workspace, task directory or registry row.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use super::container_ops::{PrepareContainer, Prepared, is_root};
use super::repo::{ForkFrom, RepoRequest, remove_branch, remove_workspace};
use super::{Progress, TaskService, image_policy};
use crate::domain::lifecycle::LifecycleEvent;
use crate::domain::volumes::{VolumeRequest, named_volumes, overlap};
use crate::domain::{
    Event, EventKind, NetworkMode, Owner, ResourceLimits, Task, TaskStatus, VolumeKind, new_task_id, now, validate_name,
};
use crate::error::{Error, Result};
use crate::hooks::HookEvent;
use crate::registry::{PoolEntry, RegistryError};
use crate::runtime::images;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateTaskRequest {
    /// Who the task will belong to; names are unique per owner.
    pub owner: Owner,
    pub name: String,
    pub description: Option<String>,
    pub image: Option<String>,
    pub network: Option<String>,
    /// Hosts an `allowlist` task may reach, besides the config's `network.allow`.
    pub allow: Vec<String>,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub env: BTreeMap<String, String>,
    pub repo: RepoRequest,
    /// `<task>:<n>` or a checkpoint id: start from that checkpoint's workspace and container.
    pub from_checkpoint: Option<String>,
    /// Names of the config's secrets its commands get (docs/secrets.md).
    pub secrets: Vec<String>,
    /// The task's own named volumes, shared by the owner's tasks that name them.
    pub volumes: Vec<VolumeRequest>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreatedTask {
    pub task: Task,
    /// Things the caller should know (e.g. uncommitted changes that were left out).
    pub warnings: Vec<String>,
}

/// How often a creation in progress refreshes its lease (well under
/// `reconcile::STALE_CREATING`).
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// What has been made so far, for the rollback.
#[derive(Default)]
pub(super) struct Made {
    row: Option<String>,
    task_dir: Option<String>,
    pub workspace: Option<PathBuf>,
    /// (repository, branch) created in the developer's repository.
    pub branch: Option<(PathBuf, String)>,
    network: Option<String>,
    container: Option<String>,
}

impl TaskService {
    pub async fn create_task(&self, request: CreateTaskRequest, progress: Progress) -> Result<CreatedTask> {
        self.refuse_if_shutting_down()?;
        self.in_flight
            .track_future(self.create_tracked(request, progress))
            .await
    }

    async fn create_tracked(&self, request: CreateTaskRequest, progress: Progress) -> Result<CreatedTask> {
        // A name is unique only against a whole registry.
        self.refuse_while_rebuilding()?;
        let began = std::time::Instant::now();
        let fork = match &request.from_checkpoint {
            Some(reference) => Some(self.fork_source(&request.owner, reference)?),
            None => None,
        };
        let repo_request = request.repo.clone();
        let requested_volumes = request.volumes.clone();
        let mut task = self.new_task(request)?;
        if let Some(existing) = self.registry.get_task_by_name(&task.owner, &task.name)? {
            return Err(name_taken(existing));
        }
        self.check_container_runtime(&task).await?;
        // Image first: a missing Docker or image fails before anything is made.
        let (image_user, volume_ids, pool_spec) = match &fork {
            Some((fork, image)) => {
                task.image = fork.from.source.image.clone();
                task.container_image = Some(image.clone());
                task.forked_from = Some(fork.reference.clone());
                // A fork mounts its source's volumes (its caches and its own), and any more
                // it asks for; one of those displaces a cache at, above or under its path, as
                // at a creation (`cache_volumes`).
                let source = &fork.from.source;
                let requested = named_volumes(&requested_volumes, &source.volumes, &self.home_tag(), &task.owner)?;
                let mut volumes: Vec<_> = source
                    .volumes
                    .iter()
                    .filter(|v| v.kind != VolumeKind::Cache || !requested.iter().any(|r| overlap(&v.path, &r.path)))
                    .cloned()
                    .collect();
                volumes.extend(requested);
                task.volumes = volumes;
                (
                    source.exec_user.clone().unwrap_or_default(),
                    numeric_ids(source.exec_user.as_deref()),
                    None,
                )
            }
            None => {
                let info = self.ensure_image(&task.image, &progress).await?;
                // The image's user as numbers and a home, for the volumes: read from the
                // image only when it has any.
                let user = if task.volumes.is_empty() && self.config.caches.kinds()?.is_empty() {
                    None
                } else {
                    self.volume_user(&info, &task.image).await?
                };
                let mut volumes = self.cache_volumes(&task, user.as_ref()).await?;
                volumes.append(&mut task.volumes);
                task.volumes = volumes;
                // What a warm-pool entry for this very request holds (`pool.rs`), if any: a
                // pool container mounts no volumes, so a task with any takes the normal path.
                let spec = match task.volumes.is_empty() {
                    true => self.pool_spec(&task.image, &info, &task.limits, task.network),
                    false => None,
                };
                (info.user, user.and_then(|u| u.ids()), spec)
            }
        };
        if is_root(&image_user) && !self.config.security.allow_root_exec {
            return Err(Error::invalid(
                "image",
                format!(
                    "image '{}' runs as root and this server does not allow root execution \
                     (security.allow_root_exec); use an image with an unprivileged USER, e.g. taskbox-base",
                    task.image
                ),
            ));
        }

        let mut made = Made::default();
        let fork_from = fork.as_ref().map(|(f, _)| &f.from);
        let pooled = pool_spec.is_some();
        let built = self
            .build_task(
                task,
                &repo_request,
                fork_from,
                &image_user,
                (volume_ids.as_deref(), pool_spec),
                &mut made,
            )
            .await;
        if pooled {
            // Refill after a claim; after a miss, the pool may be filling already.
            self.wake_pool();
        }
        match built {
            Ok(created) => {
                self.metrics.creation(began.elapsed());
                Ok(created)
            }
            Err(error) => {
                self.roll_back(&made, &error).await;
                Err(error)
            }
        }
    }

    /// With `[container] runtime` set: the runtime must be registered with dockerd, and an
    /// `egress` task must not ask for a network the runtime switches off (gVisor's `runsc`
    /// registered with `--network=none` gives containers loopback only).
    pub(super) async fn check_container_runtime(&self, task: &Task) -> Result<()> {
        let Some(name) = &self.config.container.runtime else {
            return Ok(());
        };
        let Some(args) = self.runtime.runtime_args(name).await? else {
            return Err(Error::Config(format!(
                "container.runtime is '{name}', which dockerd does not know; install it (Debian: apt-get install \
                 {name}) and run scripts/provision-docker.sh to register it, or unset container.runtime"
            )));
        };
        if task.network != NetworkMode::None && args.iter().any(|a| a == "--network=none") {
            return Err(Error::invalid(
                "network",
                format!(
                    "this server runs tasks under the runtime '{name}', registered with --network=none, so an \
                     {} task would have no network; pass network \"none\" (an operator sets defaults.network = \
                     \"none\" for every task), or register {name} with its own networking",
                    task.network.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Refreshes the `creating` row's heartbeat every `HEARTBEAT` until aborted (the first
    /// beat is `build_task`'s, as it inserts the row).
    fn creation_lease(&self, task_id: &str) -> tokio::task::JoinHandle<()> {
        let registry = self.registry.clone();
        let task_id = task_id.to_string();
        let server = self.lease.id().to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                if let Err(e) = registry.heartbeat(&task_id, &server) {
                    tracing::warn!(task = %task_id, error = %e, "cannot refresh the creation's lease");
                }
            }
        })
    }

    /// The task and checkpoint a fork starts from, and the image its container starts from.
    fn fork_source(&self, owner: &Owner, reference: &str) -> Result<(Fork, String)> {
        let (source, checkpoint) = self.resolve_checkpoint(owner, reference, None)?;
        let image = checkpoint
            .image_id
            .clone()
            .ok_or_else(|| Error::invalid("from_checkpoint", "it has no image"))?;
        let commit = checkpoint
            .git_commit
            .clone()
            .ok_or_else(|| Error::invalid("from_checkpoint", "it has no commit"))?;
        Ok((
            Fork {
                reference: format!("{}:{}", source.name, checkpoint.seq),
                from: ForkFrom { source, commit },
            },
            image,
        ))
    }

    fn new_task(&self, request: CreateTaskRequest) -> Result<Task> {
        validate_name(&request.name)?;
        let defaults = &self.config.defaults;
        let security = &self.config.security;
        // An `allow` list alone asks for an allowlist task.
        let default_network = if request.allow.is_empty() {
            defaults.network.as_str()
        } else {
            NetworkMode::Allowlist.as_str()
        };
        let network = request
            .network
            .as_deref()
            .unwrap_or(default_network)
            .parse::<NetworkMode>()?;
        let allow = match network {
            NetworkMode::Allowlist => crate::egress::policy::merge(&self.config.network.allow, &request.allow)
                .map_err(|e| Error::invalid("allow", e))?,
            _ if !request.allow.is_empty() => {
                return Err(Error::invalid(
                    "allow",
                    format!(
                        "it applies to network \"allowlist\" only, and this task's network is \"{}\"; pass \
                         network: \"allowlist\" with it, or leave allow out",
                        network.as_str()
                    ),
                ));
            }
            _ => Vec::new(),
        };
        let memory_mb = request.memory_mb.unwrap_or(defaults.memory_mb);
        if !(64..=security.max_memory_mb).contains(&memory_mb) {
            return Err(Error::invalid(
                "memory_mb",
                format!(
                    "{memory_mb} is outside 64..={}; pass a value in that range",
                    security.max_memory_mb
                ),
            ));
        }
        let cpus = request.cpus.unwrap_or(defaults.cpus);
        if !(cpus > 0.0 && cpus <= security.max_cpus) {
            return Err(Error::invalid(
                "cpus",
                format!("{cpus} is outside (0, {}]; pass e.g. 1 or 0.5", security.max_cpus),
            ));
        }
        validate_env(&request.env)?;
        let secrets = self.check_secret_names(&request.owner, "secrets", &request.secrets)?;
        // A fork's are checked against its source's too (`create_tracked`).
        let volumes = match request.from_checkpoint {
            Some(_) => Vec::new(),
            None => named_volumes(&request.volumes, &[], &self.home_tag(), &request.owner)?,
        };
        let image = request.image.unwrap_or_else(|| defaults.image.clone());
        image_policy::check_image(&request.owner, &image, &self.config.images.allowed)?;
        let id = new_task_id();
        let at = now();
        Ok(Task {
            workspace: self.workspace_dir(&id),
            id,
            name: request.name,
            description: request.description.filter(|d| !d.trim().is_empty()),
            status: TaskStatus::Creating,
            status_reason: None,
            image,
            container_id: None,
            network,
            allow,
            network_name: None,
            shell: None,
            exec_user: None,
            limits: ResourceLimits {
                memory_mb,
                cpus,
                pids: defaults.pids,
            },
            env: request.env,
            repo: Default::default(),
            container_image: None,
            forked_from: None,
            created_at: at,
            updated_at: at,
            version: 1,
            owner: request.owner,
            secrets,
            volumes,
        })
    }

    /// Returns the image's details (its default user above all), building a built-in image
    /// when it is missing or stale.
    async fn ensure_image(&self, image: &str, progress: &Progress) -> Result<crate::runtime::ImageInfo> {
        let report = progress.clone();
        Ok(images::ensure(self.runtime.as_ref(), image, &move |line: &str| report(line)).await?)
    }

    async fn build_task(
        &self,
        mut task: Task,
        repo: &RepoRequest,
        fork: Option<&ForkFrom>,
        image_user: &str,
        (volume_ids, pool_spec): (Option<&str>, Option<String>),
        made: &mut Made,
    ) -> Result<CreatedTask> {
        // The quota is checked in the insert's transaction: two creations at once cannot both
        // take the last place. A warm-pool entry is claimed in the same transaction: the task
        // takes its id, so its container, network and workspace are the task's own.
        let quota = self.config.quotas.for_owner(&task.owner);
        let (owner, limits) = (task.owner.clone(), task.limits);
        let admit = |held: &_| super::quota::admit_task(&owner, &quota, held, &limits, true);
        let take = |task: &mut Task, entry: &PoolEntry| {
            task.id = entry.id.clone();
            task.workspace = self.workspace_dir(&entry.id);
        };
        let claimed = match self
            .registry
            .insert_task_admitted_from_pool(&mut task, pool_spec.as_deref(), take, admit)
        {
            Ok(Ok(claimed)) => {
                made.row = Some(task.id.clone());
                if let Some(entry) = &claimed {
                    made.container = entry.container_id.clone();
                    made.network = entry.network_name.clone();
                }
                self.registry.heartbeat(&task.id, self.lease.id())?;
                claimed
            }
            Ok(Err(refused)) => return Err(refused),
            // Another process took the name between our check and the insert.
            Err(taken @ RegistryError::NameTaken { .. }) => {
                return Err(match self.registry.get_task_by_name(&task.owner, &task.name)? {
                    Some(existing) => name_taken(existing),
                    None => taken.into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        // The creation's lease: refreshed while it goes on, so that a server starting meanwhile
        // does not take it for one whose server died (reconcile.rs).
        let _lease = AbortOnDrop(self.creation_lease(&task.id));
        made.task_dir = Some(task.id.clone());
        self.store.create_task_dir(&task.id)?;
        self.write_state(&task);

        let started = std::time::Instant::now();
        let warnings = self.prepare_repo(&mut task, repo, fork, made)?;
        // The workspace's root is private like the rest of the data directory (the files in
        // it keep the modes git records); the container hands it to the agent's user.
        crate::store::private_dir(&task.workspace).map_err(|source| crate::store::StoreError::Io {
            path: task.workspace.clone(),
            source,
        })?;
        tracing::debug!(task = %task.id, elapsed_ms = started.elapsed().as_millis() as u64, "create: repository and workspace ready");
        // Record the repository now: a server that dies from here on leaves a row that
        // says where the task branch is.
        task = self.update(task.clone(), |t| t.repo = task.repo.clone())?;

        let image = task.container_image.clone().unwrap_or_else(|| task.image.clone());
        let pooled = match &claimed {
            Some(entry) => self.claimed_container(entry).await?.map(|c| (c, entry)),
            None => None,
        };
        let from_pool = pooled.is_some();
        let (container, shell, exec_user) = match pooled {
            Some((container, entry)) => {
                // Prepared when the entry was made (shell, the user's ids, certificates); the
                // workspace, filled now, is handed over here.
                task.network_name = entry.network_name.clone();
                task.exec_user = entry.exec_user.clone();
                self.hand_over_claimed(&task, &container).await?;
                tracing::debug!(task = %task.id, elapsed_ms = started.elapsed().as_millis() as u64, "create: pool entry claimed");
                let shell = entry.shell.clone().unwrap_or_else(|| "sh".into());
                (container, shell, entry.exec_user.clone())
            }
            None => {
                // The claimed entry's container and network went in `claimed_container`.
                made.container = None;
                made.network = None;
                self.start_task_container(&mut task, &image, (image_user, volume_ids), made, started)
                    .await?
            }
        };
        let network_name = task.network_name.clone();
        let task = self.transition(task, LifecycleEvent::Started, None, |t| {
            t.container_id = Some(container.clone());
            t.container_image = Some(image.clone());
            t.network_name = network_name.clone();
            t.shell = Some(shell.clone());
            t.exec_user = exec_user.clone();
        })?;
        self.record(Event::new(
            &task.id,
            EventKind::TaskCreated,
            serde_json::json!({
                "name": task.name, "image": task.image, "network": task.network, "allow": task.allow,
                "limits": task.limits, "container_id": task.container_id, "repo": task.repo,
                "forked_from": task.forked_from, "secrets": task.secrets, "volumes": task.volumes,
                "warnings": warnings, "pool": from_pool,
            }),
        ))?;
        self.notify(
            HookEvent::TaskCreated,
            &task,
            serde_json::json!({ "warnings": warnings }),
        )
        .await;
        Ok(CreatedTask { task, warnings })
    }

    /// The task's network and container, made for it (not from the pool), and the prepare
    /// step; returns the container, the shell and the user commands run as.
    async fn start_task_container(
        &self,
        task: &mut Task,
        image: &str,
        (image_user, volume_ids): (&str, Option<&str>),
        made: &mut Made,
        started: std::time::Instant,
    ) -> Result<(String, String, Option<String>)> {
        if task.network != NetworkMode::None {
            let name = format!("taskbox-{}", task.id);
            // An allowlist task's network has no way out but the proxy (Docker's `Internal`).
            let internal = task.network == NetworkMode::Allowlist;
            self.runtime
                .create_network(&name, self.labels(task), &self.subnet_pool, internal)
                .await?;
            made.network = Some(name.clone());
            task.network_name = Some(name);
            if internal {
                // Listening before the container exists: its first command has its proxy.
                self.ensure_proxy(task).await?;
            }
        }
        let container = self.start_container_for(task, image).await?;
        made.container = Some(container.clone());
        tracing::debug!(task = %task.id, elapsed_ms = started.elapsed().as_millis() as u64, "create: container started");
        let prepared = self
            .prepare_container(&container, image_user, &task.volumes, volume_ids)
            .await?;
        tracing::debug!(task = %task.id, elapsed_ms = started.elapsed().as_millis() as u64, "create: container prepared");
        // Commands run as the user's numbers, fixed now (docs/security.md, "Set-id files").
        let exec_user = prepared
            .user_ids
            .or_else(|| Some(image_user.to_string()))
            .filter(|u| !u.is_empty());
        Ok((container, prepared.shell.to_string(), exec_user))
    }

    /// Hands the workspace to the image's user and finds the shell (`PrepareContainer`); with
    /// volumes, hands their roots (and the way down to the caches) to `volume_ids` (`uid:gid`),
    /// and keeps apt's downloads when its cache is mounted.
    pub(super) async fn prepare_container(
        &self,
        container: &str,
        image_user: &str,
        volumes: &[crate::domain::TaskVolume],
        volume_ids: Option<&str>,
    ) -> Result<Prepared> {
        self.prepare_container_with(container, image_user, volumes, volume_ids, true)
            .await
    }

    /// `prepare_container`; a warm-pool entry keeps its empty workspace the server's
    /// (`hand_over_workspace: false`) until a task claims it.
    pub(super) async fn prepare_container_with(
        &self,
        container: &str,
        image_user: &str,
        volumes: &[crate::domain::TaskVolume],
        volume_ids: Option<&str>,
        hand_over_workspace: bool,
    ) -> Result<Prepared> {
        let certificates = self.certificates_to_trust();
        let apt_cache = volumes
            .iter()
            .any(|v| v.kind == crate::domain::VolumeKind::Cache && v.name == "apt");
        let owned_dirs = match volume_ids {
            Some(_) => super::volumes::directories_to_own(volumes),
            None => Vec::new(),
        };
        match self
            .run_op(
                container,
                PrepareContainer {
                    image_user,
                    hand_over_workspace,
                    certificates,
                    apt_cache,
                    volume_ids,
                    owned_dirs,
                },
            )
            .await?
        {
            Ok(prepared) => Ok(prepared),
            Err(failed) => Err(Error::InContainer {
                what: "preparing the container".into(),
                message: format!("exit {:?}: {}", failed.code, failed.stderr),
            }),
        }
    }

    async fn roll_back(&self, made: &Made, error: &Error) {
        tracing::warn!(error = %error, "task creation failed; removing what was made");
        if let Some(id) = &made.row {
            self.stop_proxy(id);
        }
        if let Some(container) = &made.container
            && let Err(e) = self.runtime.remove_container(container).await
        {
            tracing::error!(container, error = %e, "rollback: cannot remove container");
        }
        if let Some(network) = &made.network
            && let Err(e) = self.runtime.remove_network(network).await
        {
            tracing::error!(network, error = %e, "rollback: cannot remove network");
        }
        if let Some(path) = &made.workspace {
            remove_workspace(path);
        }
        if let Some((repo, branch)) = &made.branch {
            remove_branch(repo, branch);
        }
        if let Some(id) = &made.task_dir
            && let Err(e) = self.store.remove_task_dir(id)
        {
            tracing::error!(task = id, error = %e, "rollback: cannot remove task directory");
        }
        if let Some(id) = &made.row
            && let Err(e) = self.registry.delete_task(id)
        {
            tracing::error!(task = id, error = %e, "rollback: cannot remove registry row");
        }
    }
}

/// Aborts the task when dropped (the creation's lease ends with the creation, however it ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fork's source, and how to name it.
struct Fork {
    reference: String,
    from: ForkFrom,
}

fn name_taken(existing: Task) -> Error {
    Error::NameTaken {
        name: existing.name,
        id: existing.id,
        status: existing.status.to_string(),
    }
}

/// `uid:gid` when a recorded exec user is two numbers other than root's (a task made since
/// users were fixed as numbers), for its volumes' ownership.
pub(super) fn numeric_ids(exec_user: Option<&str>) -> Option<String> {
    let recorded = exec_user.filter(|u| u.contains(':'));
    let (uid, gid) = super::exec::numeric_ids(recorded)?;
    (uid != 0).then(|| format!("{uid}:{gid}"))
}

pub(super) fn validate_env(env: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in env {
        let valid_key = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(Error::invalid(
                "env",
                format!("'{key}' is not a valid variable name; use letters, digits and '_', not starting with a digit"),
            ));
        }
        if key.starts_with("TASKBOX_") {
            return Err(Error::invalid(
                "env",
                format!("'{key}': names starting with TASKBOX_ are reserved for taskbox itself"),
            ));
        }
        if value.contains('\0') {
            return Err(Error::invalid(
                "env",
                format!("the value of '{key}' contains a NUL byte"),
            ));
        }
    }
    Ok(())
}
