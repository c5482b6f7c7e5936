//! `ContainerRuntime` on a real Docker daemon through bollard.
//!
//! The connection is made lazily and the API version negotiated on first use, so the server
//! starts (and answers `tools/list`) without Docker, and reports a clear error per call
//! instead. A failed negotiation is retried on the next call.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions,
    ListNetworksOptions, RemoveContainerOptionsBuilder, RemoveImageOptions, StopContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use super::firewall;
use super::subnets::{Cidr, free_subnets};
use super::{
    ContainerRuntime, ContainerSpec, ContainerState, DuplexExec, ExecHandle, ExecSpec, ImageInfo, Isolation, Labelled,
    MountInfo, NetworkAttachment, NetworkInfo, ObjectKind, OutputChunk, ResourceSample, Result, RuntimeError,
    SampleDepth, SubnetPool, VolumeInfo, stable_hash,
};

#[derive(Default)]
pub struct DockerRuntime {
    docker: OnceCell<Docker>,
    /// The rules kept in place before a task network is made (`None`: switched off), and when
    /// they were last seen whole.
    firewall: Option<Vec<firewall::Rule>>,
    firewall_checked: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Container states followed from Docker's events (`watch.rs`).
    states: std::sync::Arc<super::watch::StateCache>,
}

/// How long a check of the firewall rules is trusted; a daemon restart keeps them, a person
/// flushing the chains does not.
const FIREWALL_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

impl DockerRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps these host firewall rules in place before each task network is made.
    pub fn with_firewall(mut self, rules: Option<Vec<firewall::Rule>>) -> Self {
        self.firewall = rules;
        self
    }

    async fn ensure_firewall(&self) -> Result<()> {
        let Some(rules) = &self.firewall else {
            return Ok(());
        };
        let mut checked = self.firewall_checked.lock().await;
        if checked.is_some_and(|at| at.elapsed() < FIREWALL_RECHECK) {
            return Ok(());
        }
        let rules = rules.clone();
        let report = tokio::task::spawn_blocking(move || firewall::ensure(&rules))
            .await
            .map_err(|e| RuntimeError::Firewall(e.to_string()))?
            .map_err(RuntimeError::Firewall)?;
        if report.inserted > 0 {
            tracing::info!(
                inserted = report.inserted,
                "host firewall rules for task networks installed"
            );
        }
        *checked = Some(std::time::Instant::now());
        Ok(())
    }

    /// The environment a checkpoint image of container `id` keeps: its image's own, with every
    /// variable the container added (a task made before taskbox passed `env` per command had
    /// it in its configuration) kept as an empty value, and every variable the container's
    /// configuration cleared (set back from a 0.1.0 checkpoint image, which carried its task's
    /// `env`) still cleared. Docker's commit merges the container's variables back into any it
    /// is not given, so each one must be named to be dropped.
    async fn image_env_only(&self, id: &str) -> Result<Vec<String>> {
        let docker = self.docker().await?;
        let container = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(map_err(format!("container {id}")))?;
        let container_env = container.config.and_then(|c| c.env).unwrap_or_default();
        let image_env = match container.image {
            Some(image) => docker
                .inspect_image(&image)
                .await
                .map_err(map_err(format!("image {image}")))?
                .config
                .and_then(|c| c.env)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(env_without_additions(&image_env, &container_env))
    }

    /// The container's full id and state; `None` when it does not exist.
    async fn inspect_with_id(&self, id: &str) -> Result<Option<(String, ContainerState)>> {
        let inspect = match self
            .docker()
            .await?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(map_err(format!("container {id}")))
        {
            Ok(inspect) => inspect,
            Err(RuntimeError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let state = inspect.state.unwrap_or_default();
        let host = inspect.host_config.unwrap_or_default();
        // What Docker says of each volume, for isolation-checker (labels, driver options).
        // Inspected only when the container is (watch.rs keeps the result between changes).
        let mut mounts = Vec::new();
        for m in inspect.mounts.unwrap_or_default() {
            let kind = m.typ.map(|t| t.to_string()).unwrap_or_default();
            let volume = match (kind.as_str(), &m.name) {
                ("volume", Some(name)) => self.inspect_volume(name).await?,
                _ => None,
            };
            mounts.push(MountInfo {
                kind,
                source: m.source.unwrap_or_default(),
                destination: m.destination.unwrap_or_default(),
                volume,
            });
        }
        let isolation = Isolation {
            privileged: host.privileged.unwrap_or(false),
            network_mode: host.network_mode.unwrap_or_default(),
            pid_mode: host.pid_mode.unwrap_or_default(),
            ipc_mode: host.ipc_mode.unwrap_or_default(),
            uts_mode: host.uts_mode.unwrap_or_default(),
            userns_mode: host.userns_mode.unwrap_or_default(),
            cgroupns_mode: host.cgroupns_mode.map(|m| m.to_string()).unwrap_or_default(),
            mounts,
            devices: host
                .devices
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.path_on_host.unwrap_or_default())
                .collect(),
            cap_add: host.cap_add.unwrap_or_default(),
            cap_drop: host.cap_drop.unwrap_or_default(),
            security_opt: host.security_opt.unwrap_or_default(),
        };
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        Ok(Some((
            full_id,
            ContainerState {
                running: state.running.unwrap_or(false),
                status: state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                exit_code: state.exit_code,
                oom_killed: state.oom_killed.unwrap_or(false),
                error: state.error.filter(|e| !e.is_empty()),
                labels: inspect.config.and_then(|c| c.labels).unwrap_or_default(),
                isolation,
            },
        )))
    }

    /// Creates and starts an exec attached to its output (and to its input when `stdin`);
    /// returns its id, its demultiplexed output and its input's write half.
    async fn start_exec(
        &self,
        container: &str,
        spec: ExecSpec,
        stdin: bool,
    ) -> Result<(
        String,
        futures_util::stream::BoxStream<'static, Result<OutputChunk>>,
        std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    )> {
        let docker = self.docker().await?;
        // Root by its numbers: a name is looked up in the container's /etc/passwd, which root
        // in the container may have changed (docs/security.md, "Set-id files").
        let user = match spec.user.as_deref() {
            Some("root") => Some("0:0".to_string()),
            _ => spec.user,
        };
        let options = CreateExecOptions {
            cmd: Some(spec.cmd),
            env: Some(spec.env),
            working_dir: spec.workdir,
            user,
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        // A container paused by someone else (`docker pause`, a `docker commit` from the
        // command line) is waited for a while instead of failing at once.
        let paused_until = std::time::Instant::now() + PAUSE_WAIT;
        let created = loop {
            match docker.create_exec(container, options.clone()).await {
                Err(BollardError::DockerResponseServerError { message, .. })
                    if message.contains("is paused") && std::time::Instant::now() < paused_until =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    // Gone or stopped: what was followed of it is behind (`watch.rs`).
                    self.states.forget_all();
                    return Err(map_err(format!("container {container}"))(e));
                }
                Ok(created) => break created,
            }
        };
        let started = docker
            .start_exec(&created.id, Some(StartExecOptions::default()))
            .await
            .map_err(map_err(format!("exec {}", created.id)))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Api("exec started detached".into()));
        };
        let output = output
            .map_err(|e| RuntimeError::Api(e.to_string()))
            .try_filter_map(|chunk| async move {
                Ok(match chunk {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        Some(OutputChunk::Stdout(message))
                    }
                    LogOutput::StdErr { message } => Some(OutputChunk::Stderr(message)),
                    LogOutput::StdIn { .. } => None,
                })
            })
            .boxed();
        Ok((created.id, output, input))
    }

    async fn docker(&self) -> Result<&Docker> {
        self.docker
            .get_or_try_init(|| async {
                let docker = Docker::connect_with_local_defaults().map_err(unavailable)?;
                docker.negotiate_version().await.map_err(unavailable)
            })
            .await
    }
}

fn unavailable(e: BollardError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}

/// Maps a bollard error, turning 404s into `NotFound` and transport failures into `Unavailable`.
/// How long an exec waits for a paused container (a checkpoint in progress) to go on.
const PAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

fn map_err(what: impl Into<String>) -> impl FnOnce(BollardError) -> RuntimeError {
    move |e| match e {
        BollardError::DockerResponseServerError { status_code: 404, .. } => {
            RuntimeError::NotFound { what: what.into() }
        }
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Api(message),
        BollardError::HyperLegacyError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError => RuntimeError::Unavailable(e.to_string()),
        other => RuntimeError::Api(other.to_string()),
    }
}

/// `image_env`, but `KEY=` where `container_env` clears a variable of the image, plus `KEY=`
/// for each key of `container_env` the image does not set.
fn env_without_additions(image_env: &[String], container_env: &[String]) -> Vec<String> {
    let key = |entry: &String| entry.split_once('=').map_or(entry.clone(), |(k, _)| k.to_string());
    let image_keys: std::collections::HashSet<String> = image_env.iter().map(key).collect();
    let cleared: std::collections::HashSet<String> = container_env
        .iter()
        .filter(|entry| entry.split_once('=').is_some_and(|(_, value)| value.is_empty()))
        .map(key)
        .collect();
    let mut env: Vec<String> = image_env
        .iter()
        .map(|entry| {
            let k = key(entry);
            if cleared.contains(&k) {
                format!("{k}=")
            } else {
                entry.clone()
            }
        })
        .collect();
    for entry in container_env {
        let k = key(entry);
        if !image_keys.contains(&k) {
            env.push(format!("{k}="));
        }
    }
    env
}

fn volume_info(volume: bollard::models::Volume) -> VolumeInfo {
    VolumeInfo {
        name: volume.name,
        driver: volume.driver,
        options: volume.options,
        labels: volume.labels,
        mountpoint: volume.mountpoint,
        created_at: volume.created_at.map(|at| at.to_string()).unwrap_or_default(),
    }
}

/// One file of a (created, not started) container, from its archive: `None` when it is
/// missing, not a regular file, or larger than `limit`. The tar stream is read while it
/// comes, and never past `limit` plus one tar header and block.
async fn read_file_from(docker: &Docker, container: &str, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
    let mut stream = docker.download_from_container(container, Some(options));
    let cap = limit.saturating_add(2048);
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if tar_bytes.len() as u64 + chunk.len() as u64 > cap {
                    return Ok(None);
                }
                tar_bytes.extend_from_slice(&chunk);
            }
            Err(e) => {
                return match map_err(format!("{path} in container {container}"))(e) {
                    RuntimeError::NotFound { .. } => Ok(None),
                    other => Err(other),
                };
            }
        }
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let Ok(mut entries) = archive.entries() else {
        return Ok(None);
    };
    let Some(Ok(mut entry)) = entries.next() else {
        return Ok(None);
    };
    if !entry.header().entry_type().is_file() || entry.size() > limit {
        return Ok(None);
    }
    let mut contents = Vec::new();
    if entry.by_ref().take(limit).read_to_end(&mut contents).is_err() {
        return Ok(None);
    }
    Ok(Some(contents))
}

fn ignore_not_found(result: Result<()>) -> Result<()> {
    match result {
        Err(RuntimeError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<()> {
        self.docker().await?.ping().await.map(|_| ()).map_err(unavailable)
    }

    async fn image_info(&self, image: &str) -> Result<Option<ImageInfo>> {
        match self.docker().await?.inspect_image(image).await {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    id: inspect.id.unwrap_or_default(),
                    user: config.user.unwrap_or_default(),
                    labels: config.labels.unwrap_or_default(),
                    env: config.env.unwrap_or_default(),
                }))
            }
            Err(e) => match map_err(image)(e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn build_image(
        &self,
        tag: &str,
        context_tar: Vec<u8>,
        labels: HashMap<String, String>,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<()> {
        let docker = self.docker().await?;
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .build();
        let mut stream = docker.build_image(options, None, Some(bollard::body_full(context_tar.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match map_err(tag)(e) {
                RuntimeError::Api(message) => RuntimeError::Build {
                    image: tag.to_string(),
                    message,
                },
                other => other,
            })?;
            if let Some(detail) = info.error_detail {
                return Err(RuntimeError::Build {
                    image: tag.to_string(),
                    message: detail.message.unwrap_or_else(|| "unknown error".into()),
                });
            }
            for line in info.stream.iter().chain(info.status.iter()) {
                let line = line.trim_end();
                if !line.is_empty() {
                    progress(line);
                }
            }
        }
        Ok(())
    }

    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        pool: &SubnetPool,
        internal: bool,
    ) -> Result<()> {
        let docker = self.docker().await?;
        // A network from the pool is one the rules must already cover.
        self.ensure_firewall().await?;
        let used: Vec<Cidr> = docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(map_err("networks"))?
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|ipam| ipam.config).unwrap_or_default())
            .filter_map(|config| config.subnet?.parse().ok())
            .collect();
        // A handful of tries: a subnet can be taken by another server between our listing
        // and our create, which Docker reports as an overlap.
        for subnet in free_subnets(pool.pool, pool.subnet_prefix, &used, stable_hash(name.as_bytes())).take(8) {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(internal),
                labels: Some(labels.clone()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match docker.create_network(request).await {
                Ok(_) => return Ok(()),
                Err(BollardError::DockerResponseServerError { message, .. }) if message.contains("overlap") => continue,
                Err(e) => return Err(map_err(format!("network {name}"))(e)),
            }
        }
        Err(RuntimeError::Api(format!(
            "no free /{} subnet left in {} for the task network; delete tasks you no longer need, or set [network] subnet_pool to a larger range",
            pool.subnet_prefix, pool.pool
        )))
    }

    async fn network_info(&self, name: &str) -> Result<Option<NetworkInfo>> {
        let docker = self.docker().await?;
        let network = match docker.inspect_network(name, None).await {
            Ok(network) => network,
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
            Err(e) => return Err(map_err(format!("network {name}"))(e)),
        };
        let config = network
            .ipam
            .and_then(|ipam| ipam.config)
            .and_then(|configs| configs.into_iter().next());
        let Some(subnet) = config
            .as_ref()
            .and_then(|c| c.subnet.as_deref())
            .and_then(|s| s.parse::<Cidr>().ok())
        else {
            return Err(RuntimeError::Api(format!("network {name} has no IPv4 subnet")));
        };
        // Docker puts the first address on the bridge when the network names no gateway.
        let gateway = config
            .and_then(|c| c.gateway)
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| std::net::Ipv4Addr::from(subnet.base.wrapping_add(1)));
        Ok(Some(NetworkInfo {
            subnet,
            gateway,
            internal: network.internal.unwrap_or(false),
        }))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        ignore_not_found(
            self.docker()
                .await?
                .remove_network(name)
                .await
                .map_err(map_err(format!("network {name}"))),
        )
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let memory = (spec.memory_mb * 1024 * 1024) as i64;
        let mut binds = vec![format!("{}:/workspace", spec.workspace.display())];
        binds.extend(spec.mounts.iter().map(|m| {
            let mode = if m.read_only { ":ro" } else { "" };
            format!("{}:{}{mode}", m.source.display(), m.target)
        }));
        let host_config = HostConfig {
            binds: Some(binds),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(spec.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            init: Some(true),
            memory: Some(memory),
            // Equal to memory: no swap, so the limit is real and OOM is reported as such.
            memory_swap: Some(memory),
            nano_cpus: Some((spec.cpus * 1e9) as i64),
            pids_limit: Some(spec.pids),
            ipc_mode: Some("private".into()),
            // Docker's default on cgroup v1 hosts is the host's cgroup namespace.
            cgroupns_mode: Some(bollard::models::HostConfigCgroupnsModeEnum::PRIVATE),
            runtime: spec.runtime.clone(),
            network_mode: Some(match &spec.network {
                NetworkAttachment::Bridge(name) => name.clone(),
                NetworkAttachment::None => "none".into(),
            }),
            dns: (!spec.dns.is_empty()).then(|| spec.dns.clone()),
            dns_options: (!spec.dns_options.is_empty()).then(|| spec.dns_options.clone()),
            mounts: (!spec.volumes.is_empty()).then(|| {
                spec.volumes
                    .iter()
                    .map(|v| bollard::models::Mount {
                        target: Some(v.target.clone()),
                        source: Some(v.volume.clone()),
                        typ: Some(bollard::models::MountType::VOLUME),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // The container only has to stay up; commands arrive through exec.
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            entrypoint: Some(vec![]),
            // No task variables here: a checkpoint (`docker commit`) would keep them in its
            // image. Commands get them per exec (task/service/exec.rs). `spec.env` only sets
            // back what an old checkpoint image carried.
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            working_dir: Some("/workspace".into()),
            user: Some(spec.user.clone()),
            labels: Some(spec.labels.clone()),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = self
            .docker()
            .await?
            .create_container(Some(options), body)
            .await
            .map_err(map_err(format!("image {}", spec.image)))?;
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let started = self
            .docker()
            .await?
            .start_container(id, None)
            .await
            .map_err(map_err(format!("container {id}")));
        self.states.forget_all();
        started
    }

    async fn stop_container(&self, id: &str, timeout_s: i32) -> Result<()> {
        let options = StopContainerOptionsBuilder::default().t(timeout_s).build();
        let stopped = self.docker().await?.stop_container(id, Some(options)).await;
        self.states.forget_all();
        match stopped {
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            other => other.map_err(map_err(format!("container {id}"))),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let removed = self
            .docker()
            .await?
            .remove_container(id, Some(options))
            .await
            .map_err(map_err(format!("container {id}")));
        self.states.forget_all();
        ignore_not_found(removed)
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerState>> {
        Ok(self.inspect_with_id(id).await?.map(|(_, state)| state))
    }

    async fn inspect_container_followed(&self, id: &str) -> Result<Option<ContainerState>> {
        let docker = self.docker().await?;
        self.states.follow(docker);
        if let Some(state) = self.states.get(id) {
            return Ok(Some(state));
        }
        let seen_at = self.states.generation();
        let inspected = self.inspect_with_id(id).await?;
        if let Some((full_id, state)) = &inspected {
            self.states.keep(id, full_id.clone(), state.clone(), seen_at);
        }
        Ok(inspected.map(|(_, state)| state))
    }

    async fn resource_sample(&self, id: &str, depth: SampleDepth) -> Result<Option<ResourceSample>> {
        // The cgroup files are read directly: an exec or a stats call would cost tens of
        // milliseconds on every execution, a file read costs microseconds.
        Ok(super::cgroup::sample(id, depth))
    }

    async fn runtime_args(&self, name: &str) -> Result<Option<Vec<String>>> {
        let info = self.docker().await?.info().await.map_err(map_err("daemon info"))?;
        Ok(info
            .runtimes
            .and_then(|mut runtimes| runtimes.remove(name))
            .map(|runtime| runtime.runtime_args.unwrap_or_default()))
    }

    async fn container_layer_bytes(&self, id: &str) -> Result<Option<u64>> {
        let options = InspectContainerOptions { size: true };
        match self.docker().await?.inspect_container(id, Some(options)).await {
            Ok(inspect) => Ok(Some(inspect.size_rw.unwrap_or(0).max(0) as u64)),
            Err(e) => match map_err(format!("container {id}"))(e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn image_layer_bytes(&self, image: &str) -> Result<Option<u64>> {
        match self.docker().await?.image_history(image).await {
            // Newest layer first.
            Ok(history) => Ok(Some(history.first().map_or(0, |layer| layer.size.max(0) as u64))),
            Err(e) => match map_err(format!("image {image}"))(e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn commit_container(&self, id: &str, tag: &str, labels: HashMap<String, String>) -> Result<String> {
        let (repo, tag) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let options = CommitContainerOptionsBuilder::default()
            .container(id)
            .repo(repo)
            .tag(tag)
            .comment("taskbox checkpoint")
            // Not paused: a `docker exec` starting while the container is frozen joins the
            // frozen cgroup, and on Docker 20.10 the unpause then never comes (seen with
            // concurrent executions and automatic checkpoints: containers stuck "Paused").
            // The workspace, the state that matters, is committed through git separately; a
            // file written outside it during the copy may be caught half-written.
            .pause(false)
            .build();
        let docker = self.docker().await?;
        let config = ContainerConfig {
            labels: Some(labels),
            env: Some(self.image_env_only(id).await?),
            ..Default::default()
        };
        let created = docker
            .commit_container(options, config)
            .await
            .map_err(map_err(format!("container {id}")))?;
        Ok(created.id)
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        ignore_not_found(
            self.docker()
                .await?
                .remove_image(image, None::<RemoveImageOptions>, None)
                .await
                .map(|_| ())
                .map_err(map_err(format!("image {image}"))),
        )
    }

    async fn list_labelled(&self, kind: ObjectKind, home: &str) -> Result<Vec<Labelled>> {
        use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
        let docker = self.docker().await?;
        let filters = Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{}={home}", super::LABEL_HOME)],
        )]));
        let label = |labels: Option<&HashMap<String, String>>, key: &str| labels.and_then(|l| l.get(key)).cloned();
        Ok(match kind {
            ObjectKind::Container => docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters,
                    ..Default::default()
                }))
                .await
                .map_err(map_err("containers"))?
                .into_iter()
                .map(|c| Labelled {
                    task_id: label(c.labels.as_ref(), super::LABEL_TASK_ID),
                    server: label(c.labels.as_ref(), super::LABEL_SERVER),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    id: c.id.unwrap_or_default(),
                })
                .collect(),
            ObjectKind::Network => docker
                .list_networks(Some(ListNetworksOptions { filters }))
                .await
                .map_err(map_err("networks"))?
                .into_iter()
                .map(|n| Labelled {
                    task_id: label(n.labels.as_ref(), super::LABEL_TASK_ID),
                    server: label(n.labels.as_ref(), super::LABEL_SERVER),
                    name: n.name.unwrap_or_default(),
                    id: n.id.unwrap_or_default(),
                })
                .collect(),
            ObjectKind::Image => {
                // An image another image is committed on (a fork's checkpoint on its source's)
                // cannot be removed before it: it is left out until its children are gone.
                let parents: std::collections::HashSet<String> = docker
                    .list_images(Some(ListImagesOptions {
                        all: true,
                        ..Default::default()
                    }))
                    .await
                    .map_err(map_err("images"))?
                    .into_iter()
                    .map(|i| i.parent_id)
                    .filter(|p| !p.is_empty())
                    .collect();
                docker
                    .list_images(Some(ListImagesOptions {
                        filters,
                        ..Default::default()
                    }))
                    .await
                    .map_err(map_err("images"))?
                    .into_iter()
                    .filter(|i| !parents.contains(&i.id))
                    .map(|i| Labelled {
                        task_id: label(Some(&i.labels), super::LABEL_TASK_ID),
                        server: label(Some(&i.labels), super::LABEL_SERVER),
                        name: i.repo_tags.into_iter().next().unwrap_or_default(),
                        id: i.id,
                    })
                    .collect()
            }
        })
    }

    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<VolumeInfo> {
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".into()),
            labels: Some(labels),
            ..Default::default()
        };
        // Docker answers a create of an existing local volume with that volume, as it is.
        let volume = self
            .docker()
            .await?
            .create_volume(request)
            .await
            .map_err(map_err(format!("volume {name}")))?;
        Ok(volume_info(volume))
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>> {
        match self.docker().await?.inspect_volume(name).await {
            Ok(volume) => Ok(Some(volume_info(volume))),
            Err(e) => match map_err(format!("volume {name}"))(e) {
                RuntimeError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list_volumes(&self, home: &str) -> Result<Vec<VolumeInfo>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{}={home}", super::LABEL_HOME)])]);
        let list = self
            .docker()
            .await?
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(map_err("volumes"))?;
        Ok(list.volumes.unwrap_or_default().into_iter().map(volume_info).collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        ignore_not_found(
            self.docker()
                .await?
                .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await
                .map_err(map_err(format!("volume {name}"))),
        )
    }

    async fn read_image_files(
        &self,
        image: &str,
        paths: &[&str],
        limit: u64,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let docker = self.docker().await?;
        // Never started: nothing of the image runs. No network, and the caller's labels (the
        // home's and the server's, `LABEL_SERVER`), so that a server killed before the removal
        // leaves something the sweep removes.
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["true".into()]),
            entrypoint: Some(vec![]),
            network_disabled: Some(true),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(None::<bollard::query_parameters::CreateContainerOptions>, body)
            .await
            .map_err(map_err(format!("image {image}")))?;
        let mut files = Vec::with_capacity(paths.len());
        let mut failure = None;
        for path in paths {
            match read_file_from(docker, &created.id, path, limit).await {
                Ok(file) => files.push(file),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        if let Err(e) = docker.remove_container(&created.id, Some(options)).await {
            tracing::warn!(container = %created.id, error = %e, "cannot remove the container an image's files were read from");
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(files),
        }
    }

    async fn exec(&self, container: &str, spec: ExecSpec) -> Result<ExecHandle> {
        let stdin = spec.stdin.clone();
        let stdin_file = spec.stdin_file.clone();
        let attach = stdin.is_some() || stdin_file.is_some();
        let (exec_id, output, mut input) = self.start_exec(container, spec, attach).await?;
        if let Some(stdin) = stdin {
            // Feed stdin from its own task so a command that writes before reading all of
            // its input cannot deadlock against us; closing the write half sends EOF.
            tokio::spawn(async move {
                let _ = input.write_all(&stdin).await;
                let _ = input.shutdown().await;
            });
        } else if let Some(path) = stdin_file {
            // The same, streamed from the file in pieces.
            tokio::spawn(async move {
                match tokio::fs::File::open(&path).await {
                    Ok(mut file) => {
                        let _ = tokio::io::copy(&mut file, &mut input).await;
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot open an exec's stdin"),
                }
                let _ = input.shutdown().await;
            });
        } else {
            drop(input);
        }
        Ok(ExecHandle { exec_id, output })
    }

    async fn exec_duplex(&self, container: &str, spec: ExecSpec) -> Result<DuplexExec> {
        let (exec_id, output, input) = self.start_exec(container, spec, true).await?;
        Ok(DuplexExec { exec_id, output, input })
    }

    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>> {
        // The output stream can close a moment before Docker records the exit (a loaded
        // daemon): ask again for up to a second before saying it is unknown.
        for attempt in 0..20 {
            let inspect = self
                .docker()
                .await?
                .inspect_exec(exec_id)
                .await
                .map_err(map_err(format!("exec {exec_id}")))?;
            if !inspect.running.unwrap_or(false) {
                return Ok(inspect.exit_code);
            }
            if attempt < 19 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::env_without_additions;

    #[test]
    fn a_commit_keeps_the_images_variables_and_blanks_the_containers_own() {
        let image = vec!["PATH=/usr/bin".to_string(), "LANG=C".to_string()];
        let container = vec![
            "PATH=/usr/bin".to_string(),
            "LANG=C.UTF-8".to_string(),
            "API_KEY=hunter2".to_string(),
        ];
        assert_eq!(
            env_without_additions(&image, &container),
            vec!["PATH=/usr/bin", "LANG=C", "API_KEY="]
        );
    }

    #[test]
    fn a_commit_keeps_what_the_container_cleared_of_an_old_checkpoints_variables() {
        // A 0.1.0 checkpoint image kept its task's env; the container made from it cleared it.
        let image = vec!["PATH=/usr/bin".to_string(), "API_KEY=hunter2".to_string()];
        let container = vec!["PATH=/usr/bin".to_string(), "API_KEY=".to_string()];
        assert_eq!(
            env_without_additions(&image, &container),
            vec!["PATH=/usr/bin", "API_KEY="]
        );
    }
}
