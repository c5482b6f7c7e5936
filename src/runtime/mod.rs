//! The container runtime behind a narrow trait: `TaskService` talks to Docker only through
//! `ContainerRuntime`. `docker.rs` is the real implementation (bollard); unit tests of service
//! logic, and in-process tests of the MCP layer (the `test-support` feature), use `fake.rs`.

pub mod cgroup;
pub mod docker;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod firewall;
pub mod images;
pub mod subnets;
pub mod supervisor;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use docker::DockerRuntime;

/// Labels put on everything taskbox creates, so orphans can be found and cleaned.
pub const LABEL_TASK_ID: &str = "taskbox.task-id";
pub const LABEL_HOME: &str = "taskbox.home";
pub const LABEL_TASK_NAME: &str = "taskbox.task-name";
/// On volumes: the owner whose tasks may mount it, and what it is (`cache` or `named`, with the
/// cache's kind or the name the task gave it in `taskbox.volume-name`).
pub const LABEL_OWNER: &str = "taskbox.owner";
pub const LABEL_VOLUME_KIND: &str = "taskbox.volume-kind";
pub const LABEL_VOLUME_NAME: &str = "taskbox.volume-name";
/// On the container and network of a warm-pool entry (the value is the image pooled): made
/// before any task claimed them, named after the id the claiming task takes.
pub const LABEL_POOL: &str = "taskbox.pool";
/// On a short-lived helper that belongs to no task (the never-started container an image's
/// files are read from): the server that made it. A server killed before removing it leaves it
/// behind; the sweep removes it once that server is gone.
pub const LABEL_SERVER: &str = "taskbox.server";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "cannot reach the Docker daemon ({0}); start Docker (as root: scripts/provision-docker.sh), or wait for a restarting daemon to come back, then retry: tasks whose containers stopped meanwhile are started again by their next command"
    )]
    Unavailable(String),
    #[error("{what} not found in Docker")]
    NotFound { what: String },
    #[error("Docker: {0}")]
    Api(String),
    #[error("building image {image} failed: {message}")]
    Build { image: String, message: String },
    #[error("the host firewall rules for task networks are not in place: {0}")]
    Firewall(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// FNV-1a: a hash that is stable across Rust versions and platforms, unlike `DefaultHasher`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether a volume is one taskbox made in data directory `home` for `owner` (its labels say
/// so) and a plain local one: a `local` volume with driver options can bind any host path
/// (`type=none,o=bind,device=/etc`), and another driver can be anything.
pub fn volume_belongs(info: &VolumeInfo, home: &str, owner: &str) -> bool {
    info.labels.get(LABEL_HOME).map(String::as_str) == Some(home)
        && info.labels.get(LABEL_OWNER).map(String::as_str) == Some(owner)
        && info.driver == "local"
        && info.options.is_empty()
}

/// Where per-task networks get their subnets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubnetPool {
    pub pool: subnets::Cidr,
    pub subnet_prefix: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NetworkAttachment {
    /// Join this (per-task) bridge network.
    Bridge(String),
    None,
}

/// Everything needed to create a task container with the hardened defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub workspace: PathBuf,
    pub network: NetworkAttachment,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub cap_add: Vec<String>,
    /// A Docker runtime other than the daemon's default (e.g. `runsc`).
    pub runtime: Option<String>,
    /// The container's own user. Root, so that `root` execs keep the added capabilities
    /// (Docker clears effective capabilities of containers configured with a non-root user);
    /// commands run as the image's user through `ExecSpec::user`.
    pub user: String,
    /// Host files or directories mounted besides the workspace (the supervisor, read-only;
    /// the task's run directory).
    pub mounts: Vec<BindMount>,
    /// Name servers Docker's embedded DNS forwards to (empty: the host's), and resolver
    /// options for the container's resolv.conf. An allowlist task's point nowhere.
    pub dns: Vec<String>,
    pub dns_options: Vec<String>,
    /// `KEY=value` entries set over the image's own in the container's configuration. Empty
    /// for every image but a checkpoint image of taskbox 0.1.0, whose configuration kept its
    /// task's `env`: those variables are set back here (task/service/old_images.rs).
    pub env: Vec<String>,
    /// Named Docker volumes, made beforehand by `create_volume`.
    pub volumes: Vec<VolumeMount>,
}

/// A named volume mounted at `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeMount {
    pub volume: String,
    pub target: String,
}

/// A Docker volume as Docker reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    /// The driver's options: a `local` volume with options can be a bind of any host path
    /// (`type=none,o=bind,device=/etc`).
    pub options: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    /// Where its files are on the host (in Docker's data root).
    pub mountpoint: String,
    /// RFC 3339, as Docker gives it; empty when unknown.
    pub created_at: String,
}

/// A task network as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkInfo {
    pub subnet: subnets::Cidr,
    /// The host's address on the network's bridge.
    pub gateway: std::net::Ipv4Addr,
    /// No route out (Docker's `Internal`).
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub running: bool,
    /// Docker's status word: created, running, paused, restarting, removing, exited, dead.
    pub status: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub labels: HashMap<String, String>,
    pub isolation: Isolation,
}

/// What the container may reach beyond itself, as Docker reports it (isolation-checker).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Isolation {
    pub privileged: bool,
    /// Namespace modes: "host" means shared with the host.
    pub network_mode: String,
    pub pid_mode: String,
    pub ipc_mode: String,
    pub uts_mode: String,
    pub userns_mode: String,
    pub cgroupns_mode: String,
    pub mounts: Vec<MountInfo>,
    pub devices: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountInfo {
    /// bind, volume, tmpfs …
    pub kind: String,
    pub source: String,
    pub destination: String,
    /// A volume's name and what Docker says of it (`None`: not a volume, or gone).
    pub volume: Option<VolumeInfo>,
}

/// How much of a container's resource use `resource_sample` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDepth {
    /// Only the counters of limits hit (OOM kills, failed forks), the rest left at zero: the
    /// baseline before each command, two small files instead of seven (`memory.stat`, the
    /// costly one, is not read).
    LimitHits,
    /// Everything, for what a command used.
    Full,
}

/// A container's resource use and the counters of limits it hit (since it started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSample {
    /// Memory in use, without reclaimable file cache.
    pub memory_bytes: u64,
    pub memory_limit: Option<u64>,
    /// Processes the kernel's OOM killer ended in this container.
    pub oom_kills: u64,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// Times a fork failed because the container was at its pids limit.
    pub pids_limit_hits: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInfo {
    /// Docker's id of the image (`sha256:…`): a pool entry holds the image it was made from.
    pub id: String,
    /// The image's default user; empty when it runs as root.
    pub user: String,
    pub labels: HashMap<String, String>,
    /// The image's configured environment (`KEY=value`).
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub stdin: Option<Vec<u8>>,
    /// stdin streamed from this file instead, for input too large to hold in memory (a pack).
    pub stdin_file: Option<std::path::PathBuf>,
}

/// The Docker objects taskbox makes for tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Container,
    Network,
    Image,
}

/// A container, network or image labelled with a data directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub id: String,
    /// Its name (a container's or network's) or first tag (an image's); may be empty.
    pub name: String,
    /// `taskbox.task-id`, when it has one.
    pub task_id: Option<String>,
    /// `taskbox.server`, when it has one (`LABEL_SERVER`).
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A started execution: its output streams until the process exits.
pub struct ExecHandle {
    pub exec_id: String,
    pub output: BoxStream<'static, Result<OutputChunk>>,
}

/// An exec whose standard input stays open: what the caller writes reaches the process as
/// it comes, and shutting `input` down is its end-of-input (a port forward's relay).
pub struct DuplexExec {
    pub exec_id: String,
    pub output: BoxStream<'static, Result<OutputChunk>>,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Checks that the daemon answers.
    async fn ping(&self) -> Result<()>;
    /// The image's user and labels; `None` when the image is missing.
    async fn image_info(&self, image: &str) -> Result<Option<ImageInfo>>;
    /// Builds `tag` from a tar build context, with `labels` on the image; `progress` gets each
    /// line of build output.
    async fn build_image(
        &self,
        tag: &str,
        context_tar: Vec<u8>,
        labels: HashMap<String, String>,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<()>;

    /// Creates a bridge network on a free subnet of `pool` (subnets of size `subnet_prefix`);
    /// `internal`: one with no route beyond its bridge.
    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        pool: &SubnetPool,
        internal: bool,
    ) -> Result<()>;
    /// The network's subnet and gateway; `None` when it does not exist.
    async fn network_info(&self, name: &str) -> Result<Option<NetworkInfo>>;
    /// Removing a network that does not exist succeeds.
    async fn remove_network(&self, name: &str) -> Result<()>;

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    async fn stop_container(&self, id: &str, timeout_s: i32) -> Result<()>;
    /// Force-removes the container; removing one that does not exist succeeds.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// `None` when the container does not exist.
    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerState>>;
    /// `inspect_container`, answered from the state followed from Docker's events while
    /// nothing happened to the container since it was last inspected (`watch.rs`): the check
    /// before every command.
    async fn inspect_container_followed(&self, id: &str) -> Result<Option<ContainerState>> {
        self.inspect_container(id).await
    }
    /// The container's memory and pids use and limit counters; `None` when they cannot be
    /// read (the container is not running, or its cgroup is not visible to this process).
    async fn resource_sample(&self, id: &str, depth: SampleDepth) -> Result<Option<ResourceSample>>;

    /// The arguments dockerd passes to runtime `name`; `None` when it is not registered.
    async fn runtime_args(&self, name: &str) -> Result<Option<Vec<String>>>;
    /// Bytes in the container's own writable layer (`docker inspect --size`); `None` when
    /// the container does not exist.
    async fn container_layer_bytes(&self, id: &str) -> Result<Option<u64>>;
    /// Bytes of the image's top layer (for a checkpoint: what its commit added); `None` when
    /// the image does not exist.
    async fn image_layer_bytes(&self, image: &str) -> Result<Option<u64>>;

    /// `docker commit`: the container's file system (not its mounts) as image `tag`; returns
    /// the image id.
    async fn commit_container(&self, id: &str, tag: &str, labels: HashMap<String, String>) -> Result<String>;
    /// Removes an image; one that does not exist is fine, one in use by a container is an error.
    async fn remove_image(&self, image: &str) -> Result<()>;

    /// Every object of `kind` labelled `taskbox.home=<home>` (containers running or not;
    /// images other images are committed on are left out, as Docker cannot remove them yet).
    async fn list_labelled(&self, kind: ObjectKind, home: &str) -> Result<Vec<Labelled>>;

    /// Makes a local volume with `labels`, or finds the one of that name; returns what Docker
    /// says of it (an existing volume keeps the labels it was made with).
    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<VolumeInfo>;
    /// `None` when it does not exist.
    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>>;
    /// Every volume labelled `taskbox.home=<home>`.
    async fn list_volumes(&self, home: &str) -> Result<Vec<VolumeInfo>>;
    /// Removing one that does not exist succeeds; one a container uses is an error.
    async fn remove_volume(&self, name: &str) -> Result<()>;
    /// The files at `paths` in `image` (each at most `limit` bytes; `None` when missing,
    /// not a regular file or larger), read without running anything: from a container that
    /// is created (with `labels`, so the sweep knows a leftover), never started, and removed.
    async fn read_image_files(
        &self,
        image: &str,
        paths: &[&str],
        limit: u64,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Option<Vec<u8>>>>;

    async fn exec(&self, container: &str, spec: ExecSpec) -> Result<ExecHandle>;
    /// An exec with its standard input streamed (`spec.stdin` and `stdin_file` are ignored).
    async fn exec_duplex(&self, container: &str, spec: ExecSpec) -> Result<DuplexExec>;
    /// The exit code once the exec has finished.
    async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_local_volumes_labelled_for_the_owner_here_belong_to_it() {
        let labels = |home: &str, owner: &str| {
            HashMap::from([
                (LABEL_HOME.to_string(), home.to_string()),
                (LABEL_OWNER.to_string(), owner.to_string()),
            ])
        };
        let ours = VolumeInfo {
            name: "v".into(),
            driver: "local".into(),
            labels: labels("/data", "alice"),
            ..Default::default()
        };
        assert!(volume_belongs(&ours, "/data", "alice"));
        assert!(!volume_belongs(&ours, "/data", "bob"));
        assert!(!volume_belongs(&ours, "/other", "alice"));
        let bind = VolumeInfo {
            options: HashMap::from([("device".to_string(), "/etc".to_string())]),
            ..ours.clone()
        };
        assert!(!volume_belongs(&bind, "/data", "alice"));
        let plugin = VolumeInfo {
            driver: "nfs".into(),
            ..ours
        };
        assert!(!volume_belongs(&plugin, "/data", "alice"));
    }
}
