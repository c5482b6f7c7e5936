//! The warm pool (`[pool]`, docs/architecture.md "The warm pool"): per pooled image, `size`
//! entries made ahead of any request, each a started container of the image with the default
//! limits and hardening, its task network (for the default network mode) and an empty
//! workspace directory. A creation that asks for exactly what an entry holds claims it (the
//! claim is the insert of its task's row, `Registry::insert_task_admitted_from_pool`), fills
//! the workspace and hands it over, and is ready without a container start.
//!
//! **One id for the entry and its task.** Docker fixes a container's labels and bind mounts
//! when it is created, so an entry is made under a fresh task id: its container and network
//! are `taskbox-<id>`, labelled with that id, this data directory and `taskbox.pool`; it mounts
//! `workspaces/<id>` at `/workspace` and `tasks/<id>/run`, and the task that claims it takes
//! the id. Every existing check then holds as it is: container-enforcer's labels, the
//! isolation checker's mounts, the set-id sweep's workspace, reconcile's names. The server
//! fills the workspace in place (the mount follows the directory's inode), and hands it to the
//! user's uid:gid recorded when the entry was prepared, from the host when it runs as root
//! (`workspace::owner`), else by the usual root exec in the container.
//!
//! **Shared by the data directory.** Entries are rows of `pool_entries`. A server reserves a
//! place (`filling`, naming its lease) before it makes anything, and marks the row `ready`
//! when all is made; a claim or a removal deletes the row first, so each entry goes to one
//! task or one removal, whichever server asks. Whatever carries the pool label without a
//! row, or with a `filling` row whose server is dead, is an orphan: `trim_pool` (at every
//! refill, and in `taskbox gc` and the start-up sweep) removes it, and so entries over the
//! configured size, of an image no longer pooled, or made for other settings or an older
//! image (their `spec` differs).
//!
//! **Behind the first reply.** Nothing here runs before `initialize` is answered: the keeper
//! starts after the start's recovery, and refills after each claim, in the background.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::TaskService;
use super::container_ops::{ChownWorkspace, is_root};
use super::gc::GcItem;
use crate::domain::{NetworkMode, Owner, ResourceLimits, Task, TaskRepo, TaskStatus, new_task_id, now};
use crate::error::{Error, Result};
use crate::registry::PoolEntry;
use crate::runtime::{ImageInfo, LABEL_HOME, LABEL_POOL, LABEL_TASK_ID, images};

/// How often a serving process checks the pool even when none of its own creations claimed
/// an entry (another server may have claimed, or died before refilling).
const KEEP_EVERY: Duration = Duration::from_secs(60);

/// Wakes the keeper of this process.
#[derive(Default)]
pub(super) struct PoolKeeper {
    wake: tokio::sync::Notify,
}

impl TaskService {
    /// The pooled images and their sizes (empty: the pool is off).
    fn pool_sizes(&self) -> Vec<(String, u32)> {
        self.config.pool.sizes(&self.config.defaults)
    }

    /// The limits entries are made with: the defaults, as a task that asks for none gets.
    fn pool_limits(&self) -> ResourceLimits {
        let defaults = &self.config.defaults;
        ResourceLimits {
            memory_mb: defaults.memory_mb,
            cpus: defaults.cpus,
            pids: defaults.pids,
        }
    }

    /// The network mode entries are made for: the default one, when it needs nothing per task
    /// (an allowlist task's network is internal, with its own proxy and resolver: not pooled).
    fn pool_network(&self) -> Option<NetworkMode> {
        match self.config.defaults.network.parse::<NetworkMode>() {
            Ok(mode @ (NetworkMode::Egress | NetworkMode::None)) => Some(mode),
            _ => None,
        }
    }

    /// What an entry made for a task of `image` (as `info` describes it), `limits` and
    /// `network` holds; `None` when the pool serves no such task. A creation claims only an
    /// entry whose spec is the one its own request gives, so anything else (another image, an
    /// image rebuilt since, other limits, another network mode, a changed runtime, capability
    /// list or certificate bundle) takes the normal path.
    pub(super) fn pool_spec(
        &self,
        image: &str,
        info: &ImageInfo,
        limits: &ResourceLimits,
        network: NetworkMode,
    ) -> Option<String> {
        self.pool_sizes().iter().find(|(pooled, _)| pooled == image)?;
        if Some(network) != self.pool_network() || *limits != self.pool_limits() {
            return None;
        }
        let certificates = self
            .certificates_to_trust()
            .map(|c| crate::runtime::stable_hash(&c))
            .unwrap_or(0);
        Some(format!(
            "v1 image={image}@{} user={} memory_mb={} cpus={} pids={} network={} runtime={} cap_add={} supervisor={} certificates={certificates:016x}",
            info.id,
            info.user,
            limits.memory_mb,
            limits.cpus,
            limits.pids,
            network.as_str(),
            self.config.container.runtime.as_deref().unwrap_or("default"),
            self.config.security.cap_add.join(","),
            self.supervisor.is_some(),
        ))
    }

    /// Tells this process's keeper to look at the pool now (after a claim, or a miss).
    pub(super) fn wake_pool(&self) {
        self.pool.wake.notify_one();
    }

    /// Starts the keeper: a refill now, then after every claim of this process and every
    /// `KEEP_EVERY`, until shutdown. Called once the start's recovery is done, so it never
    /// delays the first reply.
    pub(super) fn start_pool_keeper(self: &Arc<Self>) {
        if self.pool_sizes().is_empty() {
            return;
        }
        let service = self.clone();
        self.in_flight.spawn(async move {
            loop {
                if let Err(e) = service.refill_pool().await {
                    tracing::warn!(error = %e, "cannot refill the warm pool");
                }
                tokio::select! {
                    _ = service.pool.wake.notified() => {}
                    _ = tokio::time::sleep(KEEP_EVERY) => {}
                    _ = service.shutting_down.cancelled() => break,
                    _ = service.draining.cancelled() => break,
                }
            }
        });
    }

    fn stopping(&self) -> bool {
        self.shutting_down.is_cancelled() || self.draining.is_cancelled()
    }

    /// Removes what should not be in the pool, then makes entries until every pooled image
    /// has `size` of them ready or being made (across every server of the data directory).
    pub async fn refill_pool(&self) -> Result<()> {
        let sizes = self.pool_sizes();
        if sizes.is_empty() {
            return Ok(());
        }
        self.trim_pool(false).await?;
        let Some(network) = self.pool_network() else {
            tracing::warn!(
                network = %self.config.defaults.network,
                "the warm pool holds entries for the default network mode, and this one needs a network per task; \
                 no entries are made"
            );
            return Ok(());
        };
        for (image, size) in sizes {
            let info = match self.runtime.image_info(&image).await? {
                Some(info) if images::is_ready(&image, Some(&info)) => info,
                // Building is a creation's job (it reports the build's progress); the pool
                // fills once the image is there.
                _ => {
                    tracing::debug!(image, "pool: image missing or stale; entries wait for it");
                    continue;
                }
            };
            if is_root(&info.user) && !self.config.security.allow_root_exec {
                continue;
            }
            let Some(spec) = self.pool_spec(&image, &info, &self.pool_limits(), network) else {
                continue;
            };
            let probe = self.pool_task("t-probe", &image, network);
            if let Err(e) = self.check_container_runtime(&probe).await {
                tracing::warn!(error = %e, "the warm pool makes no entries");
                return Ok(());
            }
            while !self.stopping() {
                let id = new_task_id();
                if !self
                    .registry
                    .reserve_pool_entry(&id, &image, &spec, size, self.lease.id())?
                {
                    break;
                }
                let started = std::time::Instant::now();
                match self.fill_entry(&id, &image, &info, network).await {
                    Ok(()) => tracing::debug!(
                        entry = %id,
                        image,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "pool: entry ready"
                    ),
                    Err(e) => {
                        tracing::warn!(entry = %id, image, error = %e, "pool: cannot make an entry");
                        if self.registry.take_pool_entry(&id, "filling")? {
                            self.remove_entry_objects(&id).await;
                        }
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// What an entry is made as: a task with no name, the default limits and network, whose
    /// id the claiming task will take. Only the container's and network's creation see it.
    fn pool_task(&self, id: &str, image: &str, network: NetworkMode) -> Task {
        let at = now();
        Task {
            workspace: self.workspace_dir(id),
            id: id.to_string(),
            name: String::new(),
            description: None,
            status: TaskStatus::Creating,
            status_reason: None,
            image: image.to_string(),
            container_id: None,
            network,
            allow: Vec::new(),
            network_name: None,
            shell: None,
            exec_user: None,
            limits: self.pool_limits(),
            env: Default::default(),
            repo: TaskRepo::default(),
            container_image: None,
            forked_from: None,
            created_at: at,
            updated_at: at,
            version: 1,
            owner: Owner::local(),
            secrets: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// The labels of an entry's container and network: the id its task will have, this data
    /// directory, and the pool mark (no task name: there is no task yet).
    fn pool_labels(&self, id: &str, image: &str) -> HashMap<String, String> {
        [
            (LABEL_TASK_ID, id.to_string()),
            (LABEL_HOME, self.home.to_string_lossy().into_owned()),
            (LABEL_POOL, image.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Makes a reserved entry: the empty workspace, the network, the container (through the
    /// same code as a task's, so with the same hardening and mounts), prepared but for the
    /// workspace's owner; then marks it ready. On error the caller removes what was made.
    async fn fill_entry(&self, id: &str, image: &str, info: &ImageInfo, network: NetworkMode) -> Result<()> {
        let mut task = self.pool_task(id, image, network);
        crate::store::private_dir(&task.workspace).map_err(|source| crate::store::StoreError::Io {
            path: task.workspace.clone(),
            source,
        })?;
        let name = format!("taskbox-{id}");
        let labels = self.pool_labels(id, image);
        if network != NetworkMode::None {
            self.runtime
                .create_network(&name, labels.clone(), &self.subnet_pool, false)
                .await?;
            task.network_name = Some(name.clone());
        }
        let container = self.start_container_labelled(&task, image, &name, labels).await?;
        let prepared = self
            .prepare_container_with(&container, &info.user, &[], None, false)
            .await?;
        let exec_user = prepared
            .user_ids
            .or_else(|| Some(info.user.clone()))
            .filter(|u| !u.is_empty());
        let ready = self.registry.pool_entry_ready(
            id,
            &container,
            task.network_name.as_deref(),
            prepared.shell,
            exec_user.as_deref(),
        )?;
        if !ready {
            return Err(Error::Config(format!(
                "pool entry {id} was removed while it was being made (the pool shrank or was turned off)"
            )));
        }
        Ok(())
    }

    /// Removes an entry's container, network, workspace and task directory (its row is gone
    /// already); what cannot be removed now is an orphan the next sweep removes.
    async fn remove_entry_objects(&self, id: &str) -> Vec<(&'static str, std::result::Result<(), String>)> {
        let name = format!("taskbox-{id}");
        vec![
            (
                "container",
                self.runtime.remove_container(&name).await.map_err(|e| e.to_string()),
            ),
            (
                "network",
                self.runtime.remove_network(&name).await.map_err(|e| e.to_string()),
            ),
            (
                "workspace",
                crate::workspace::remove(&self.workspace_dir(id)).map_err(|e| e.to_string()),
            ),
            ("task_dir", self.store.remove_task_dir(id).map_err(|e| e.to_string())),
        ]
    }

    /// Removes (or, on a dry run, lists) entries that should not be there: made by a server
    /// that died before it finished, of an image no longer pooled (or the pool is off), made
    /// for other settings or an older image, whose container stopped or is gone (a Docker
    /// restart stops them all: left, each would only send its claim down the slow path), or
    /// beyond `size`. Each is taken from the registry first, so a claim going on in another
    /// server is never undercut.
    pub(super) async fn trim_pool(&self, dry_run: bool) -> Result<Vec<GcItem>> {
        let entries = self.registry.pool_entries()?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let sizes = self.pool_sizes();
        let network = self.pool_network();
        let mut current: HashMap<String, (u32, Option<String>)> = HashMap::new();
        for (image, size) in &sizes {
            let info = self.runtime.image_info(image).await?;
            let spec = match (info, network) {
                (Some(info), Some(network)) if images::is_ready(image, Some(&info)) => {
                    self.pool_spec(image, &info, &self.pool_limits(), network)
                }
                _ => None,
            };
            current.insert(image.clone(), (*size, spec));
        }
        let servers = self.home.join("servers");
        let mut kept: HashMap<String, u32> = HashMap::new();
        let mut items = Vec::new();
        for entry in entries {
            if !entry.is_ready() {
                let filler_alive =
                    entry.server_id == self.lease.id() || crate::store::server_alive(&servers, &entry.server_id);
                if filler_alive {
                    continue;
                }
            } else if let Some((size, Some(spec))) = current.get(&entry.image)
                && *spec == entry.spec
                && self.entry_runs(&entry).await?
            {
                let held = kept.entry(entry.image.clone()).or_default();
                if *held < *size {
                    *held += 1;
                    continue;
                }
            }
            items.extend(self.remove_entry(&entry, dry_run).await?);
        }
        Ok(items)
    }

    /// Whether a ready entry's container still runs (Docker's followed state: no inspection
    /// while nothing happened to it).
    async fn entry_runs(&self, entry: &PoolEntry) -> Result<bool> {
        let Some(container) = &entry.container_id else {
            return Ok(false);
        };
        Ok(self
            .runtime
            .inspect_container_followed(container)
            .await?
            .is_some_and(|state| state.running))
    }

    /// Takes one entry out of the pool and removes what it holds; `None` when another server
    /// claimed or took it meanwhile (not ours to remove).
    async fn remove_entry(&self, entry: &PoolEntry, dry_run: bool) -> Result<Option<GcItem>> {
        let mut item = GcItem {
            kind: "pool_entry",
            id: entry.id.clone(),
            task_id: None,
            removed: false,
            error: None,
        };
        if dry_run {
            return Ok(Some(item));
        }
        if !self.registry.take_pool_entry(&entry.id, &entry.state)? {
            return Ok(None);
        }
        let failed: Vec<String> = self
            .remove_entry_objects(&entry.id)
            .await
            .into_iter()
            .filter_map(|(what, result)| result.err().map(|e| format!("{what}: {e}")))
            .collect();
        item.removed = failed.is_empty();
        item.error = (!failed.is_empty()).then(|| failed.join("; "));
        Ok(Some(item))
    }

    /// A claimed entry's container, when it still runs; `None` when Docker lost or stopped
    /// it since it was made (then the creation makes its own, as without the pool, and what
    /// is left of the entry goes).
    pub(super) async fn claimed_container(&self, entry: &PoolEntry) -> Result<Option<String>> {
        let Some(container) = entry.container_id.clone() else {
            return Ok(None);
        };
        match self.runtime.inspect_container_followed(&container).await? {
            Some(state) if state.running => Ok(Some(container)),
            _ => {
                tracing::warn!(entry = %entry.id, "pool: the claimed entry's container is gone or stopped; making one");
                self.runtime.remove_container(&container).await?;
                if let Some(network) = &entry.network_name {
                    self.runtime.remove_network(network).await?;
                }
                Ok(None)
            }
        }
    }

    /// Hands a claimed entry's workspace, now filled, to the user commands run as: from the
    /// host when this process may give files away and the user's ids are known, else through
    /// the same root exec a new container's prepare step runs.
    pub(super) async fn hand_over_claimed(&self, task: &Task, container: &str) -> Result<()> {
        let user = task.exec_user.clone().unwrap_or_default();
        let ids = super::exec::numeric_ids(Some(user.as_str()).filter(|u| u.contains(':')));
        if let Some((uid, gid)) = ids
            && crate::workspace::owner::can_hand_over()
        {
            let workspace = task.workspace.clone();
            let handed = tokio::task::spawn_blocking(move || crate::workspace::owner::hand_over(&workspace, uid, gid))
                .await
                .map_err(|e| Error::Internal(format!("handing the workspace over: {e}")))?;
            return handed.map(drop).map_err(|source| {
                Error::Store(crate::store::StoreError::Io {
                    path: task.workspace.clone(),
                    source,
                })
            });
        }
        let Some(chown) = ChownWorkspace::to(&user) else {
            return Ok(());
        };
        match self.run_op(container, chown).await? {
            Ok(()) => Ok(()),
            Err(failed) => Err(Error::InContainer {
                what: "handing the workspace to the task's user".into(),
                message: format!("exit {:?}: {}", failed.code, failed.stderr),
            }),
        }
    }
}
