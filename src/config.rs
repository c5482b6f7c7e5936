//! Server configuration: a TOML file, then environment variables, then CLI flags, each
//! overriding the one before. Every key has a default, so no file is needed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hooks::HooksConfig;
use crate::runtime::SubnetPool;
use crate::runtime::firewall::{self, FirewallException};
use crate::runtime::images::BUILTIN_IMAGES;
use crate::runtime::subnets::Cidr;

/// Capabilities added back after `cap_drop: ALL`: what package managers and `chown`/`su`
/// style tools need inside the container. KILL lets a root exec stop the agent user's
/// processes when an execution times out.
pub const DEFAULT_CAP_ADD: &[&str] = &["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"];

/// Bytes of one stream of one execution kept on disk: 256 MiB.
pub const DEFAULT_SPILL_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory; `$TASKBOX_HOME` or the XDG data dir when unset.
    pub home: Option<PathBuf>,
    pub defaults: TaskDefaults,
    pub security: Security,
    pub execution: ExecutionConfig,
    pub network: NetworkConfig,
    pub workspace: WorkspaceConfig,
    pub checkpoints: CheckpointConfig,
    pub commands: CommandsConfig,
    pub hooks: HooksConfig,
    pub http: HttpConfig,
    pub images: ImagesConfig,
    pub quotas: QuotasConfig,
    pub container: ContainerSettings,
    pub caches: CachesConfig,
    pub pool: PoolConfig,
    /// `[secrets.NAME]`: values commands may use by name, never stored (docs/secrets.md).
    pub secrets: std::collections::BTreeMap<String, SecretConfig>,
}

/// `[secrets.NAME]`: a secret the server resolves when a command starts and gives that
/// command as the variable `NAME`, redacted from everything taskbox keeps (docs/secrets.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// `env:VAR` (the server's own environment) or `file:/absolute/path`, read afresh for
    /// every command.
    pub from: String,
    /// Owners that may use it; `"*"` for every owner. Default: the local owner only.
    #[serde(default = "local_only")]
    pub owners: Vec<String>,
    /// Let a sync commit files that contain the value (by default such files are left out of
    /// the commit, with a warning).
    #[serde(default)]
    pub allow_in_commits: bool,
}

fn local_only() -> Vec<String> {
    vec![crate::domain::Owner::LOCAL.to_string()]
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretConfig {
    pub fn source(&self) -> Result<SecretSource> {
        if let Some(var) = self.from.strip_prefix("env:")
            && !var.is_empty()
            && !var.contains(['=', '\0'])
        {
            return Ok(SecretSource::Env(var.to_string()));
        }
        if let Some(path) = self.from.strip_prefix("file:")
            && path.starts_with('/')
        {
            return Ok(SecretSource::File(PathBuf::from(path)));
        }
        Err(Error::Config(format!(
            "'{}' is not a secret source; write from = \"env:VARIABLE\" or from = \"file:/absolute/path\"",
            self.from
        )))
    }

    /// Whether `owner` may use it.
    pub fn allows(&self, owner: &crate::domain::Owner) -> bool {
        self.owners.iter().any(|o| o == "*" || o == owner.as_str())
    }
}

/// Checks every `[secrets.NAME]`: the name must be a variable name taskbox does not reserve,
/// the source must parse, the owners must be owner names.
pub fn validate_secrets(secrets: &std::collections::BTreeMap<String, SecretConfig>) -> Result<()> {
    for (name, secret) in secrets {
        let bad = |why: String| Err(Error::Config(format!("secrets.{name}: {why}")));
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return bad("a secret's name is the variable commands see it as: letters, digits and '_', not starting with a digit".into());
        }
        if name.starts_with("TASKBOX_") {
            return bad("names starting with TASKBOX_ are reserved for taskbox itself".into());
        }
        if let Err(e) = secret.source() {
            return bad(e.to_string());
        }
        for owner in &secret.owners {
            if owner != "*" && crate::domain::Owner::new(owner).is_err() {
                return bad(format!(
                    "'{owner}' in owners is not an owner name (or \"*\" for every owner)"
                ));
            }
        }
    }
    Ok(())
}

/// `[caches]`: package caches shared by an owner's tasks, as named Docker volumes mounted where
/// the tools look (docs/configuration.md, "Package caches").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CachesConfig {
    /// Off by default: a cache shared between tasks is a channel between them (a task can
    /// poison what its owner's next task installs; docs/security.md, "Shared caches").
    pub enabled: bool,
    /// Which caches: "apt", "pip", "npm", "cargo".
    pub kinds: Vec<String>,
}

impl Default for CachesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            kinds: crate::domain::volumes::CacheKind::ALL
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
        }
    }
}

impl CachesConfig {
    /// The caches new tasks get: none when switched off.
    pub fn kinds(&self) -> Result<Vec<crate::domain::volumes::CacheKind>> {
        if !self.enabled {
            return Ok(Vec::new());
        }
        let mut kinds = Vec::new();
        for name in &self.kinds {
            let kind = name
                .parse::<crate::domain::volumes::CacheKind>()
                .map_err(|e| Error::Config(e.to_string()))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

/// `[container]`: how task containers run.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerSettings {
    /// A Docker runtime registered with dockerd, such as gVisor's `runsc` (a user-space kernel
    /// between the agent and the host's; docs/security.md, "Stronger isolation"); Docker's
    /// default (runc) when unset.
    pub runtime: Option<String>,
}

/// `[pool]`: the warm pool (docs/architecture.md, "The warm pool"): started containers, their
/// networks and empty workspaces kept ready per image, claimed by creations that ask for what
/// they hold. Entries belong to the data directory, not to one server.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Entries kept ready for each image of `images`; 0 turns the pool off (and the next
    /// `taskbox gc` or start removes the entries there are).
    pub size: u32,
    /// The images pooled; empty: `defaults.image`.
    pub images: Vec<String>,
}

/// The most entries one image may keep ready: each is a running container holding its memory
/// limit's worth of reservations in quotas' terms, and a network.
pub const MAX_POOL_SIZE: u32 = 16;

impl PoolConfig {
    /// The images pooled and how many entries each keeps; empty when the pool is off.
    pub fn sizes(&self, defaults: &TaskDefaults) -> Vec<(String, u32)> {
        if self.size == 0 {
            return Vec::new();
        }
        let images = if self.images.is_empty() {
            std::slice::from_ref(&defaults.image)
        } else {
            self.images.as_slice()
        };
        let mut sizes: Vec<(String, u32)> = Vec::new();
        for image in images {
            if !sizes.iter().any(|(i, _)| i == image) {
                sizes.push((image.clone(), self.size));
            }
        }
        sizes
    }

    pub fn validate(&self) -> Result<()> {
        if self.size > MAX_POOL_SIZE {
            return Err(Error::Config(format!(
                "pool.size is {}; at most {MAX_POOL_SIZE} entries per image are kept ready (each is a running \
                 container): lower it",
                self.size
            )));
        }
        if self.images.iter().any(|i| i.trim().is_empty()) {
            return Err(Error::Config(
                "pool.images holds an empty name; list image names, or leave it out for defaults.image".into(),
            ));
        }
        Ok(())
    }
}

/// `[quotas]`: what one owner may hold on a shared server (docs/security.md, "Another owner over HTTP").
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// For every owner but the local one; a field left out is `BUILTIN_QUOTA`'s.
    pub default: Quota,
    /// For the local owner (`serve` over stdio, `--no-auth`): unlimited unless set.
    pub local: Quota,
    /// Per owner; a field it leaves unset comes from `default`.
    pub owners: std::collections::BTreeMap<String, Quota>,
}

/// Limits of one owner; an unset field is unlimited where nothing fills it in (see
/// `QuotasConfig::for_owner`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// Tasks in any status (each keeps a workspace until deleted).
    pub tasks: Option<u64>,
    /// Tasks creating or running (each holds a container).
    pub running_tasks: Option<u64>,
    /// Memory and CPUs reserved by the limits of the running tasks.
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    /// Checkpoints with an image, over all the owner's tasks (made by create_checkpoint;
    /// the automatic ones are pruned by `checkpoints.keep_automatic` instead).
    pub checkpoint_images: Option<u64>,
    /// Open HTTP sessions per token (Streamable HTTP and legacy SSE together).
    pub http_sessions: Option<u64>,
    /// Background executions running at once, over all the owner's tasks.
    pub background_executions: Option<u64>,
    /// Ports exposed with expose_port, over all the owner's tasks (kept while a task is
    /// stopped, so they count until it is deleted).
    pub exposed_ports: Option<u64>,
}

/// What an owner other than the local one may hold when the config does not say.
pub const BUILTIN_QUOTA: Quota = Quota {
    tasks: Some(100),
    running_tasks: Some(8),
    memory_mb: Some(32 * 1024),
    cpus: Some(16.0),
    checkpoint_images: Some(200),
    http_sessions: Some(32),
    background_executions: Some(16),
    exposed_ports: Some(16),
};

impl Quota {
    /// This quota, with `fallback`'s value for each field it leaves unset.
    fn or(self, fallback: Quota) -> Quota {
        Quota {
            tasks: self.tasks.or(fallback.tasks),
            running_tasks: self.running_tasks.or(fallback.running_tasks),
            memory_mb: self.memory_mb.or(fallback.memory_mb),
            cpus: self.cpus.or(fallback.cpus),
            checkpoint_images: self.checkpoint_images.or(fallback.checkpoint_images),
            http_sessions: self.http_sessions.or(fallback.http_sessions),
            background_executions: self.background_executions.or(fallback.background_executions),
            exposed_ports: self.exposed_ports.or(fallback.exposed_ports),
        }
    }
}

impl QuotasConfig {
    /// The quota that applies to `owner`.
    pub fn for_owner(&self, owner: &crate::domain::Owner) -> Quota {
        if owner.is_local() {
            return self.local;
        }
        let own = self.owners.get(owner.as_str()).copied().unwrap_or_default();
        own.or(self.default).or(BUILTIN_QUOTA)
    }
}

/// `[images]`: what tasks may start from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Images owners other than the local one may name in `image`, by name (never by id). The
    /// local owner may name any image but a checkpoint's.
    pub allowed: Vec<String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            allowed: BUILTIN_IMAGES.iter().map(|def| def.name.to_string()).collect(),
        }
    }
}

/// `taskbox serve --http`: where it listens and what it lets through.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address `--http` listens on when given no value.
    pub listen: String,
    /// Host names (no port) the `Host` and `Origin` headers may name; anything else gets 403,
    /// which keeps a web page from reaching the server through DNS rebinding. `"*"` allows
    /// every host (only behind a proxy that checks them).
    pub allowed_hosts: Vec<String>,
    /// Largest request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests per token (or per server under `--no-auth`) per second, on average ...
    pub rate_limit_per_second: f64,
    /// ... and in a burst; past that a request gets 429 with Retry-After.
    pub rate_limit_burst: u32,
    /// Executions one token may run at once (across its sessions); more are refused with a
    /// tool error saying so.
    pub max_executions_per_token: usize,
    /// On SIGTERM/SIGINT, how long running executions may go on before they are killed.
    pub shutdown_grace_s: u64,
    /// The host name in the URLs of exposed ports' own listeners (`public_url` of
    /// expose_port); unset: the listen address, or this machine's host name when it listens
    /// on every address.
    pub ports_host: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8765".into(),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            max_body_bytes: 4 * 1024 * 1024,
            rate_limit_per_second: 20.0,
            rate_limit_burst: 200,
            max_executions_per_token: 8,
            shutdown_grace_s: 30,
            ports_host: None,
        }
    }
}

impl HttpConfig {
    /// Refuses values the server cannot run with, naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::Config(format!("http.{key}: {why}")));
        if self.allowed_hosts.is_empty() {
            return bad(
                "allowed_hosts",
                "it is empty, so every request would be refused; list the host names clients use, or \"*\"",
            );
        }
        if let Some(host) = self
            .allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ' ']))
        {
            return bad("allowed_hosts", &format!("'{host}' is not a host name"));
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "it must be at least 1024");
        }
        if !(self.rate_limit_per_second.is_finite() && self.rate_limit_per_second >= 0.001) {
            return bad("rate_limit_per_second", "it must be a number of at least 0.001");
        }
        if self.rate_limit_burst == 0 {
            return bad("rate_limit_burst", "it must be at least 1");
        }
        if self.max_executions_per_token == 0 {
            return bad("max_executions_per_token", "it must be at least 1");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsConfig {
    /// A directory of `<name>.md` slash commands that override or add to the built-in ones.
    pub dir: Option<PathBuf>,
}

/// How a task's workspace is made: steps of creation, not hooks (they must happen before the
/// container starts). Their runs are still recorded as `branch-creator` and `submodule-creator`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Directories a task's `repo_path` must lie in; empty means the server's working
    /// directory. Keeps an agent from sandboxing ~/.ssh or /etc into a networked container.
    pub allowed_repo_roots: Vec<PathBuf>,
    /// Make the task branch `taskbox/<name>` in the developer's repository. Off: the
    /// repository is only read, and the task works in a private copy of it.
    pub create_branch: bool,
    /// Check out the repository's submodules in the workspace.
    pub checkout_submodules: bool,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        Self {
            allowed_repo_roots: Vec::new(),
            create_branch: true,
            checkout_submodules: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Automatic checkpoints kept per task (older ones are removed); labelled ones are kept.
    pub keep_automatic: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { keep_automatic: 10 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Address range per-task networks are carved from (Docker's own pools hold only ~30).
    pub subnet_pool: String,
    /// Size of each task's subnet: /28 leaves 13 addresses for containers.
    pub subnet_prefix: u8,
    /// Keep task networks from the host's addresses, link-local (cloud metadata) and each other
    /// with host firewall rules (`runtime::firewall`); an egress task is not created without
    /// them. Off only where something else does this.
    pub host_firewall: bool,
    /// Destinations tasks may reach all the same: `[[network.exceptions]]` with `name`,
    /// `address` (IPv4 or CIDR) and optionally `port`.
    pub exceptions: Vec<FirewallException>,
    /// A PEM bundle of certificates tasks trust besides their image's, for networks whose
    /// TLS passes a re-signing proxy; unset: the host's own bundle when one exists; "": none.
    pub ca_certificates: Option<PathBuf>,
    /// Pass the server's HTTP_PROXY, HTTPS_PROXY and NO_PROXY (either case) to the commands
    /// of egress tasks.
    pub pass_proxy_env: bool,
    /// Hosts every `allowlist` task may reach through the egress proxy, before those its
    /// creation adds (`allow`): `pypi.org`, `*.npmjs.org`, `example.com:8443`.
    pub allow: Vec<String>,
    /// The TCP port the egress proxy listens on, on each allowlist task's bridge address; the
    /// host firewall lets task networks reach this port of the host and no other.
    pub proxy_port: u16,
    /// Names the egress proxy resolves to a fixed `IP` or `IP:port` instead of asking DNS,
    /// and connects to even where it refuses DNS answers (loopback, the host): for tests, whose
    /// upstreams run on the host. Never needed in production.
    pub resolve: std::collections::BTreeMap<String, String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            subnet_pool: "10.213.0.0/16".into(),
            subnet_prefix: 28,
            host_firewall: true,
            exceptions: Vec::new(),
            ca_certificates: None,
            pass_proxy_env: true,
            allow: Vec::new(),
            proxy_port: DEFAULT_PROXY_PORT,
            resolve: Default::default(),
        }
    }
}

/// The egress proxy's port: below the ephemeral range, and not a port proxies usually take
/// (3128, 8080), so a proxy already running on the host is not what tasks reach.
pub const DEFAULT_PROXY_PORT: u16 = 13128;

/// Where distributions keep the bundle of certificates the host trusts.
const HOST_CA_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

impl NetworkConfig {
    /// The bundle tasks trust besides their image's (`ca_certificates`), if any.
    pub fn ca_bundle_path(&self) -> Option<PathBuf> {
        match &self.ca_certificates {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(path.clone()),
            None => HOST_CA_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()),
        }
    }

    /// The host firewall rules for the task networks; `None` when switched off.
    pub fn firewall_rules(&self) -> Result<Option<Vec<firewall::Rule>>> {
        if !self.host_firewall {
            return Ok(None);
        }
        for exception in &self.exceptions {
            let address = exception.address.as_str();
            let valid = address.parse::<std::net::Ipv4Addr>().is_ok() || address.parse::<Cidr>().is_ok();
            if !valid || exception.name.trim().is_empty() {
                return Err(Error::Config(format!(
                    "network.exceptions: '{}' ({address}) needs a name and an IPv4 address or CIDR block",
                    exception.name
                )));
            }
        }
        Ok(Some(firewall::rules(
            self.subnet_pool()?.pool,
            &self.exceptions,
            self.proxy_port,
        )))
    }

    /// The egress proxy's upstreams (`resolve`, and the pool whose addresses it refuses),
    /// checked with the default allowlist.
    pub fn egress_upstreams(&self) -> Result<crate::egress::Upstreams> {
        crate::egress::Policy::parse(&self.allow).map_err(|e| Error::Config(format!("network.allow: {e}")))?;
        if self.proxy_port == 0 {
            return Err(Error::Config("network.proxy_port must be a TCP port, not 0".into()));
        }
        let pool = self.subnet_pool()?.pool;
        let block = crate::egress::Block {
            base: std::net::Ipv4Addr::from(pool.base),
            prefix: pool.prefix,
        };
        crate::egress::Upstreams::new(&self.resolve, block).map_err(Error::Config)
    }

    pub fn subnet_pool(&self) -> Result<SubnetPool> {
        let pool: Cidr = self
            .subnet_pool
            .parse()
            .map_err(|e| Error::Config(format!("network.subnet_pool: {e}")))?;
        if !(pool.prefix..=29).contains(&self.subnet_prefix) {
            return Err(Error::Config(format!(
                "network.subnet_prefix must lie between the pool's /{} and /29, not /{}",
                pool.prefix, self.subnet_prefix
            )));
        }
        Ok(SubnetPool {
            pool,
            subnet_prefix: self.subnet_prefix,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TaskDefaults {
    pub image: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub network: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// Whether `execute_in_task` may run as root inside the container (still unprivileged
    /// on the host: all capabilities but `cap_add` are dropped and no-new-privileges is set).
    pub allow_root_exec: bool,
    pub cap_add: Vec<String>,
    pub max_memory_mb: u64,
    pub max_cpus: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    pub default_timeout_s: u64,
    pub max_timeout_s: u64,
    /// Bytes of each stream kept in a reply; the rest is elided and kept on disk.
    pub output_cap_bytes: usize,
    /// Bytes of each stream of an execution kept on disk; past it, output is counted, not kept.
    pub spill_limit_bytes: u64,
    /// Seconds a background execution may print nothing before it is reported as waiting for
    /// input or stalled (0: never).
    pub stall_s: u64,
    /// Seconds after which a foreground command still running stops holding its call and
    /// goes on as a background execution (0: never). Below the 60 s after which clients built
    /// on the TypeScript MCP SDK end a call (docs/configuration.md).
    pub yield_after_s: u64,
}

/// The default soft timeout of a foreground command: well under the 60 s request timeout of
/// the TypeScript MCP SDK (Claude Desktop, opencode, the MCP Inspector), leaving 20 s for what
/// runs before the command (a stopped task resumed, hooks) and for the reply.
pub const DEFAULT_YIELD_AFTER_S: u64 = 40;

impl Default for TaskDefaults {
    fn default() -> Self {
        Self {
            image: "taskbox-base".into(),
            memory_mb: 2048,
            cpus: 2.0,
            pids: 512,
            network: "egress".into(),
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Self {
            allow_root_exec: true,
            cap_add: DEFAULT_CAP_ADD.iter().map(|c| (*c).to_string()).collect(),
            max_memory_mb: 16384,
            max_cpus: 16.0,
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            default_timeout_s: 120,
            max_timeout_s: 3600,
            output_cap_bytes: 64 * 1024,
            spill_limit_bytes: DEFAULT_SPILL_LIMIT_BYTES,
            stall_s: 20,
            yield_after_s: DEFAULT_YIELD_AFTER_S,
        }
    }
}

impl Config {
    /// Loads the config file (`$TASKBOX_CONFIG`, else `~/.config/taskbox/config.toml`, when it
    /// exists) and applies `$TASKBOX_HOME`.
    pub fn load(explicit_path: Option<&Path>) -> Result<Self> {
        let path = explicit_path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("TASKBOX_CONFIG").map(PathBuf::from))
            .or_else(|| xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("taskbox/config.toml")));
        let mut config = match path {
            Some(path) if path.exists() => Self::from_file(&path)?,
            Some(path) if explicit_path.is_some() => {
                return Err(Error::Config(format!("config file {} does not exist", path.display())));
            }
            _ => Self::default(),
        };
        if let Some(home) = std::env::var_os("TASKBOX_HOME") {
            config.home = Some(PathBuf::from(home));
        }
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: Self = toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        validate_secrets(&config.secrets).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        config
            .caches
            .kinds()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        config
            .pool
            .validate()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(config.with_deprecated_keys_moved(path))
    }

    /// Keys of older releases that moved: read where they were, moved where they are now, with
    /// a warning that names the new key.
    fn with_deprecated_keys_moved(mut self, path: &Path) -> Self {
        let warn = |old: &str, new: &str, enabled: bool| {
            tracing::warn!(
                "{}: [{old}] enabled is deprecated; set {new} = {enabled} instead",
                path.display()
            );
        };
        if let Some(toggle) = self.hooks.branch_creator.take() {
            warn("hooks.branch-creator", "workspace.create_branch", toggle.enabled);
            self.workspace.create_branch = toggle.enabled;
        }
        if let Some(toggle) = self.hooks.submodule_creator.take() {
            warn(
                "hooks.submodule-creator",
                "workspace.checkout_submodules",
                toggle.enabled,
            );
            self.workspace.checkout_submodules = toggle.enabled;
        }
        self
    }

    /// The data directory: configured, else `$XDG_DATA_HOME/taskbox`, else `~/.local/share/taskbox`.
    pub fn home_dir(&self) -> Result<PathBuf> {
        if let Some(home) = &self.home {
            return Ok(home.clone());
        }
        xdg_dir("XDG_DATA_HOME", ".local/share")
            .map(|d| d.join("taskbox"))
            .ok_or_else(|| Error::Config("cannot find a data directory: set TASKBOX_HOME".into()))
    }
}

fn xdg_dir(var: &str, fallback_under_home: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback_under_home)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn from_text(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::from_file(&path).unwrap()
    }

    #[test]
    fn creation_steps_are_workspace_keys_and_the_old_hook_keys_still_switch_them() {
        let defaults = Config::default().workspace;
        assert!(defaults.create_branch && defaults.checkout_submodules);
        let new = from_text("[workspace]\ncreate_branch = false\ncheckout_submodules = false\n");
        assert!(!new.workspace.create_branch && !new.workspace.checkout_submodules);
        let old = from_text("[hooks.branch-creator]\nenabled = false\n[hooks.submodule-creator]\nenabled = false\n");
        assert!(!old.workspace.create_branch && !old.workspace.checkout_submodules);
        // Moved, not kept in two places.
        assert_eq!(old.hooks.branch_creator, None);
        assert_eq!(old.hooks.submodule_creator, None);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let config: Config = toml::from_str("[defaults]\nmemory_mb = 512\n").unwrap();
        assert_eq!(config.defaults.memory_mb, 512);
        assert_eq!(config.defaults.image, "taskbox-base");
        assert_eq!(config.execution, ExecutionConfig::default());
    }

    #[test]
    fn subnet_pool_is_validated() {
        assert_eq!(Config::default().network.subnet_pool().unwrap().subnet_prefix, 28);
        let bad = NetworkConfig {
            subnet_pool: "10.0.0.0/24".into(),
            subnet_prefix: 16,
            ..Default::default()
        };
        assert!(bad.subnet_pool().unwrap_err().to_string().contains("/24"));
    }

    #[test]
    fn firewall_exceptions_are_validated_and_the_switch_turns_the_rules_off() {
        assert_eq!(Config::default().network.firewall_rules().unwrap().unwrap().len(), 4);
        let off = NetworkConfig {
            host_firewall: false,
            ..Default::default()
        };
        assert_eq!(off.firewall_rules().unwrap(), None);
        let bad = NetworkConfig {
            exceptions: vec![FirewallException {
                name: "db".into(),
                address: "not-an-address".into(),
                port: None,
            }],
            ..Default::default()
        };
        assert!(bad.firewall_rules().unwrap_err().to_string().contains("not-an-address"));
    }

    #[test]
    fn http_section_has_defaults_and_is_validated() {
        let config: Config = toml::from_str("[http]\nmax_executions_per_token = 2\n").unwrap();
        assert_eq!(config.http.max_executions_per_token, 2);
        assert_eq!(config.http.listen, "127.0.0.1:8765");
        config.http.validate().unwrap();
        for bad in [
            "allowed_hosts = []",
            "allowed_hosts = [\"http://x\"]",
            "rate_limit_per_second = 0.0",
            "rate_limit_burst = 0",
            "max_executions_per_token = 0",
            "max_body_bytes = 10",
        ] {
            let config: Config = toml::from_str(&format!("[http]\n{bad}\n")).unwrap();
            let err = config.http.validate().unwrap_err().to_string();
            assert!(err.starts_with("configuration: http."), "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_parse_with_their_defaults_and_bad_ones_are_refused() {
        let config: Config = toml::from_str(
            "[secrets.TOKEN]\nfrom = \"env:CI_TOKEN\"\n[secrets.KEY]\nfrom = \"file:/run/key\"\nowners = [\"alice\", \"*\"]\nallow_in_commits = true\n",
        )
        .unwrap();
        validate_secrets(&config.secrets).unwrap();
        let token = &config.secrets["TOKEN"];
        assert_eq!(token.source().unwrap(), SecretSource::Env("CI_TOKEN".into()));
        assert!(token.allows(&crate::domain::Owner::local()));
        assert!(!token.allows(&crate::domain::Owner::new("alice").unwrap()));
        assert!(!token.allow_in_commits);
        let key = &config.secrets["KEY"];
        assert_eq!(key.source().unwrap(), SecretSource::File("/run/key".into()));
        assert!(
            key.allows(&crate::domain::Owner::new("bob").unwrap()),
            "\"*\" is every owner"
        );
        for (toml, why) in [
            ("[secrets.TOKEN]\nfrom = \"vault:x\"\n", "not a secret source"),
            ("[secrets.TOKEN]\nfrom = \"file:relative\"\n", "not a secret source"),
            ("[secrets.\"1X\"]\nfrom = \"env:X\"\n", "letters, digits"),
            ("[secrets.TASKBOX_X]\nfrom = \"env:X\"\n", "reserved"),
            (
                "[secrets.X]\nfrom = \"env:X\"\nowners = [\"Bad Name\"]\n",
                "not an owner name",
            ),
        ] {
            let config: Config = toml::from_str(toml).unwrap();
            let err = validate_secrets(&config.secrets).unwrap_err().to_string();
            assert!(err.contains(why), "{toml}: {err}");
        }
    }

    #[test]
    fn caches_are_off_by_default_and_their_kinds_are_checked() {
        use crate::domain::volumes::CacheKind;
        assert_eq!(Config::default().caches.kinds().unwrap(), Vec::<CacheKind>::new());
        let on: Config = toml::from_str("[caches]\nenabled = true\n").unwrap();
        assert_eq!(on.caches.kinds().unwrap(), CacheKind::ALL.to_vec());
        let some: Config = toml::from_str("[caches]\nenabled = true\nkinds = [\"pip\", \"pip\", \"npm\"]\n").unwrap();
        assert_eq!(some.caches.kinds().unwrap(), vec![CacheKind::Pip, CacheKind::Npm]);
        let bad: Config = toml::from_str("[caches]\nenabled = true\nkinds = [\"maven\"]\n").unwrap();
        assert!(bad.caches.kinds().unwrap_err().to_string().contains("'maven'"));
    }

    #[test]
    fn the_pool_is_off_by_default_and_pools_the_default_image_once_on() {
        let config = Config::default();
        assert!(config.pool.sizes(&config.defaults).is_empty());
        let on = from_text("[pool]\nsize = 2\n");
        assert_eq!(on.pool.sizes(&on.defaults), [("taskbox-base".to_string(), 2)]);
        let listed = from_text("[pool]\nsize = 1\nimages = [\"taskbox-developer\", \"taskbox-developer\"]\n");
        assert_eq!(
            listed.pool.sizes(&listed.defaults),
            [("taskbox-developer".to_string(), 1)]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[pool]\nsize = 99\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("pool.size") && err.contains("lower it"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("[defaults]\nmemroy_mb = 1\n").unwrap_err();
        assert!(err.to_string().contains("memroy_mb"), "{err}");
    }

    #[test]
    fn quotas_apply_per_owner_over_the_default_and_leave_the_local_owner_unlimited() {
        let config: Config =
            toml::from_str("[quotas.default]\ntasks = 5\n[quotas.owners.alice]\nrunning_tasks = 9\n").unwrap();
        let quotas = &config.quotas;
        let alice = quotas.for_owner(&crate::domain::Owner::new("alice").unwrap());
        assert_eq!((alice.tasks, alice.running_tasks), (Some(5), Some(9)));
        let bob = quotas.for_owner(&crate::domain::Owner::new("bob").unwrap());
        assert_eq!(
            (bob.tasks, bob.running_tasks),
            (Some(5), Some(8)),
            "the rest are built in"
        );
        assert_eq!(quotas.for_owner(&crate::domain::Owner::default()), Quota::default());
        // Without a [quotas] table, other owners get the built-in defaults.
        let builtin = Config::default()
            .quotas
            .for_owner(&crate::domain::Owner::new("bob").unwrap());
        assert_eq!(builtin.running_tasks, Some(8));
    }
}
