//! The command line: `serve`, `images`, `doctor`. Each command builds a `TaskService` and
//! calls it; none talks to Docker or SQLite itself.

mod hook;
mod images;
mod install;
mod logs;
mod progress;
mod shell;
mod tasks;
mod token;
mod ui;
mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::runtime::DockerRuntime;
use crate::task::TaskService;

/// An error that ends the process with `code` instead of 1 (`exec` and `shell` keep 1..=124 and
/// 126.. for the command's own statuses).
#[derive(Debug)]
pub struct Exiting {
    pub code: u8,
    pub error: anyhow::Error,
}

impl std::fmt::Display for Exiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Exiting {}

/// `taskbox --version`: the crate's version and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TASKBOX_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "taskbox",
    version = VERSION,
    about = "MCP server giving AI coding agents hardened Docker task sandboxes"
)]
pub struct Cli {
    /// Config file (default: $TASKBOX_CONFIG, else ~/.config/taskbox/config.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (default: $TASKBOX_HOME, else ~/.local/share/taskbox).
    #[arg(long, global = true)]
    pub home: Option<PathBuf>,
    /// More logging on stderr (-v debug, -vv trace); TASKBOX_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP on stdin/stdout (what `claude mcp add taskbox -- taskbox serve` runs), or over
    /// HTTP with --http (docs/transports.md).
    Serve(ServeArgs),
    /// Bearer tokens for `serve --http`: create (printed once, on stdout), list, revoke.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Build the task images from the Dockerfiles compiled into this binary.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
    /// Check that Docker, the images and the data directory are usable, and compare the
    /// registry with the task files and Docker; `--repair` fixes what can be fixed (restores
    /// the registry's rows from the task files, rewrites stale state.json files).
    Doctor {
        #[arg(long)]
        repair: bool,
    },
    /// Remove what this data directory's label or files name but no live task owns:
    /// containers, networks, checkpoint images, workspaces and task directories left by work
    /// killed half-way (the server also does this at every start). `--dry-run` only lists them.
    Gc {
        #[arg(long)]
        dry_run: bool,
    },
    /// The named volumes of this data directory: package caches and tasks' own volumes
    /// (`ls [--json]`, `rm VOLUME…`, `prune [--dry-run]`).
    Volumes {
        #[command(subcommand)]
        command: volumes::VolumesCommand,
    },
    /// Register taskbox with a client (Claude Code or opencode) and install its slash commands.
    Install(install::InstallArgs),
    /// Undo `install`: remove taskbox's entry and slash commands (other servers are kept).
    Uninstall(install::InstallArgs),
    /// Install the host firewall rules that keep task networks from the host's addresses,
    /// link-local (cloud metadata) and each other (needs root; the server does this itself when
    /// it runs as root). `--check` only reports.
    Firewall {
        #[arg(long)]
        check: bool,
    },
    /// Print a one-time sign-in link to the web dashboard of `serve --http` (docs/dashboard.md)
    /// for the local owner.
    Ui(ui::UiArgs),
    /// Run a client hook (e.g. `taskbox hook claude-code pre-tool-use`).
    Hook {
        #[command(subcommand)]
        command: hook::HookCommand,
    },
    /// Internal: the server runs its git work over packs and diffs in a process of its own
    /// (`workspace::host::worker`); REQUEST is JSON, the reply JSON on stdout.
    #[command(hide = true)]
    GitWorker { request: String },
    #[command(flatten)]
    Task(tasks::TaskCommand),
}

#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Serve MCP over HTTP instead of stdio: Streamable HTTP at /mcp, legacy SSE at /sse. ADDR
    /// defaults to http.listen (127.0.0.1:8765); a port of 0 picks a free one, printed on stderr.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    pub http: Option<String>,
    /// With --http: ask for no token, every request acting as the local owner. Accepted only on
    /// a loopback address.
    #[arg(long, requires = "http")]
    pub no_auth: bool,
    /// With --http: a host name clients may use in Host/Origin, besides http.allowed_hosts
    /// (repeatable).
    #[arg(long = "allowed-host", value_name = "HOST", requires = "http")]
    pub allowed_hosts: Vec<String>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::GitWorker { request } = &cli.command {
        return git_worker(request);
    }
    if let Command::Images {
        command: images::ImagesCommand::Dockerfile { which },
    } = &cli.command
    {
        return images::print_dockerfile(*which);
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(home) = cli.home {
        config.home = Some(home);
    }
    match cli.command {
        Command::Install(args) => install::install(&args, config.commands.dir.as_deref()),
        Command::Uninstall(args) => install::uninstall(&args),
        Command::Token { command } => token::run(&*open_service(config)?, command),
        Command::Ui(args) => {
            let listen = config.http.listen.clone();
            ui::run(&*open_service(config)?, &listen, &args)
        }
        Command::Firewall { check } => firewall(&config, check),
        // Synchronous and quick: it runs before every tool call of a Claude Code session.
        Command::Hook { command } => hook::run(
            config,
            |c| Ok(TaskService::open(c, Arc::new(DockerRuntime::new()))?),
            command,
        ),
        command => run_async(config, command),
    }
}

/// Stack of each runtime thread. A stack overflow aborts the process, every session with it;
/// tokio's 2 MiB left a debug build about a quarter of it spare on a command's recovery path.
/// Only the pages a thread touches are resident.
const THREAD_STACK_BYTES: usize = 8 << 20;

fn run_async(config: Config, command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Serve(args) => serve(config, args).await,
            Command::Images { command } => images::run(&*open_service(config)?, command).await,
            Command::Doctor { repair } => doctor(config, repair).await,
            Command::Task(command) => tasks::run(&*open_service(config)?, command).await,
            Command::Gc { dry_run } => gc(config, dry_run).await,
            Command::Volumes { command } => volumes::run(&*open_service(config)?, command).await,
            // Handled synchronously in `run`.
            Command::Install(_)
            | Command::Uninstall(_)
            | Command::Hook { .. }
            | Command::Token { .. }
            | Command::Ui(_)
            | Command::Firewall { .. }
            | Command::GitWorker { .. } => Ok(()),
        }
    })
}

/// One request of the server's git worker: the reply on stdout, or the error on stderr and a
/// failed exit.
fn git_worker(request: &str) -> anyhow::Result<()> {
    use crate::workspace::host::worker;
    let request: worker::WorkerRequest = serde_json::from_str(request).context("not a git-worker request")?;
    let reply = worker::run(&request)?;
    // stdout is the reply channel here (this is no MCP session).
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &reply)?;
    std::io::Write::write_all(&mut stdout, b"\n")?;
    Ok(())
}

fn firewall(config: &Config, check_only: bool) -> anyhow::Result<()> {
    use crate::runtime::firewall;
    let Some(rules) = config.network.firewall_rules()? else {
        eprintln!("network.host_firewall is off: no rules to keep");
        return Ok(());
    };
    if check_only {
        let missing: Vec<_> = rules.iter().filter(|rule| !firewall::present(rule)).collect();
        for rule in &missing {
            eprintln!("missing: iptables -I {} {}", rule.chain, rule.args.join(" "));
        }
        anyhow::ensure!(
            missing.is_empty(),
            "{} of {} rules missing; run `taskbox firewall` as root",
            missing.len(),
            rules.len()
        );
        eprintln!("all {} rules in place", rules.len());
        return Ok(());
    }
    let report = firewall::ensure(&rules).map_err(anyhow::Error::msg)?;
    eprintln!(
        "{} rule(s) in place, {} inserted",
        report.present + report.inserted,
        report.inserted
    );
    Ok(())
}

fn open_service(config: Config) -> anyhow::Result<Arc<TaskService>> {
    let runtime = DockerRuntime::new().with_firewall(config.network.firewall_rules()?);
    Ok(Arc::new(TaskService::open(config, Arc::new(runtime))?))
}

async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    let http = match args.http {
        Some(addr) => {
            let mut http = config.http.clone();
            http.allowed_hosts.extend(args.allowed_hosts);
            let addr = if addr.is_empty() { http.listen.clone() } else { addr };
            Some(crate::transport::http::HttpOptions {
                addr: resolve_addr(&addr)?,
                no_auth: args.no_auth,
                config: http,
            })
        }
        None => None,
    };
    if let Some(options) = &http {
        // Refuse bad settings before touching Docker or the registry.
        options.config.validate()?;
        crate::transport::http::check_no_auth(options)?;
    }
    let service = open_service(config)?;
    if http.is_none() {
        tracing::info!(home = %service.home().display(), "taskbox serving MCP on stdio");
    }
    // Every server listens for every running allowlist task (task/service/egress.rs).
    tokio::spawn(service.clone().serve_egress_proxies());
    // Recovery runs behind the first reply; tool calls wait for it (`startup.rs`).
    service.start_recovery();
    // Port forwards live as long as this server; under --http they also get listeners of
    // their own for people elsewhere, on the address the server listens on.
    service.serve_ports(http.as_ref().map(|options| crate::task::ports::PublicSettings {
        bind: options.addr.ip(),
        host: ports_host(options),
        no_auth: options.no_auth,
    }));
    match http {
        Some(options) => crate::transport::http::serve(service, options).await?,
        None => crate::transport::stdio::serve(service).await?,
    }
    Ok(())
}

/// The host name in exposed ports' public URLs: `http.ports_host`, else the address the
/// server listens on, or this machine's name when that is every address.
fn ports_host(options: &crate::transport::http::HttpOptions) -> String {
    if let Some(host) = options.config.ports_host.as_deref().filter(|h| !h.is_empty()) {
        return host.to_string();
    }
    let ip = options.addr.ip();
    if !ip.is_unspecified() {
        return ip.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty() && name.len() < 256)
        .unwrap_or_else(|| "localhost".into())
}

/// `127.0.0.1:8765`, `[::1]:0`, `localhost:8765`: the first address it names.
fn resolve_addr(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .with_context(|| format!("--http {addr}: not an address; use HOST:PORT, e.g. 127.0.0.1:8765"))?
        .next()
        .with_context(|| format!("--http {addr}: the name resolves to no address"))
}

/// One line per object on stderr (stdout stays empty, like every command but `token create`).
async fn gc(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let service = open_service(config)?;
    let report = service.gc(dry_run).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut failed = 0;
    for item in &report.items {
        let task = item.task_id.as_deref().unwrap_or("-");
        match &item.error {
            Some(error) => {
                failed += 1;
                eprintln!("kept {} {} (task {task}): {error}", item.kind, item.id);
            }
            None => eprintln!("{verb} {} {} (task {task})", item.kind, item.id),
        }
    }
    eprintln!(
        "{}: {} object(s) {verb}, {failed} kept (retried by the next gc)",
        service.home().display(),
        report.items.len() - failed,
    );
    Ok(())
}

/// Checkpoint images of taskbox 0.1.0 that carry their task's env: named, with the variables'
/// names (never their values). Nothing to repair: see task/service/old_images.rs.
async fn old_checkpoint_images(service: &TaskService) -> anyhow::Result<()> {
    let images = service.env_carrying_images().await?;
    if images.is_empty() {
        return Ok(());
    }
    eprintln!(
        "checkpoint images that carry their task's env (made by taskbox 0.1.0): {}",
        images.len()
    );
    for image in &images {
        let short = image.image.trim_start_matches("sha256:");
        eprintln!(
            "  {} (image {}): {}; containers made from it get these cleared, but `docker image inspect` shows the values until the task is deleted (`taskbox rm {}`)",
            image.checkpoint,
            &short[..short.len().min(12)],
            image.variables.join(", "),
            image.checkpoint.split(':').next().unwrap_or_default(),
        );
    }
    Ok(())
}

async fn doctor(config: Config, repair: bool) -> anyhow::Result<()> {
    let service = open_service(config)?;
    eprintln!("data directory: {}", service.home().display());
    if service.is_rebuilding() {
        let report = service.finish_rebuild()?;
        eprintln!(
            "registry: was missing or damaged; rebuilt {} task(s), {} execution(s), {} checkpoint(s), {} event(s) from the task files",
            report.tasks, report.executions, report.checkpoints, report.events
        );
        for skipped in &report.skipped {
            eprintln!("  not restored: {skipped}");
        }
    }
    let report = service.doctor().await?;
    match &report.docker_error {
        Some(error) => eprintln!("docker: {error} (the checks against Docker are skipped)"),
        None => eprintln!("docker: reachable"),
    }
    for (name, present) in report.images {
        let state = if present {
            "present"
        } else {
            "missing (built on first use, or `taskbox images build`)"
        };
        eprintln!("image {name}: {state}");
    }
    if report.docker_error.is_none() {
        old_checkpoint_images(&service).await?;
    }
    let layers = if repair {
        service.repair_layers().await?
    } else {
        service.check_layers().await?
    };
    eprintln!(
        "layers: {} task(s) checked, {} mismatch(es)",
        layers.tasks_checked,
        layers.mismatches.len()
    );
    let verb = if repair { "repaired" } else { "--repair will" };
    for m in &layers.mismatches {
        eprintln!("  {}: {} ({verb}: {})", m.task_id, m.found, m.repair);
    }
    if let Some(error) = report.docker_error {
        anyhow::bail!("docker: {error}");
    }
    if !repair && !layers.mismatches.is_empty() {
        anyhow::bail!(
            "{} mismatch(es) between the layers; run `taskbox doctor --repair`",
            layers.mismatches.len()
        );
    }
    Ok(())
}
