//! Test harness: the real `taskbox serve` binary driven by rmcp's client over stdio, each test
//! with its own temp TASKBOX_HOME, passed to the child only (the test process's environment
//! is never changed).

pub mod docker_proxy;
pub mod http;
pub mod in_process;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_taskbox");

/// Whether the Docker daemon answers (asked once per test run).
pub fn docker_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        StdCommand::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A test's prerequisite is missing: say so on stderr (the caller then returns, skipping the
/// test), or fail under `CI=true`, where scripts/test.sh provisions everything and a missing
/// piece means a broken provisioning step.
pub fn skip_or_fail(missing: &str, remedy: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{missing}, but CI=true requires it: {remedy}");
    }
    eprintln!("SKIPPED: {missing} ({remedy})");
}

/// The one way a test requires something it cannot provide itself: when it is missing, the
/// calling test returns early (skipped, saying why), except under `CI=true`, where it fails.
///
/// - `require!(docker)`: a running Docker daemon.
/// - `let path = require!(env "VAR")`: an environment variable scripts/test.sh sets; its value.
/// - `let value = require!(option, "what is missing", "how to get it")`: any `Option`.
#[macro_export]
macro_rules! require {
    (docker) => {
        $crate::require!(
            $crate::common::docker_available().then_some(()),
            "Docker is not available",
            "run scripts/provision-docker.sh"
        )
    };
    (env $var:literal) => {
        $crate::require!(
            std::env::var_os($var),
            concat!($var, " is unset"),
            "run the suite through scripts/test.sh, which sets it up"
        )
    };
    ($value:expr, $missing:expr, $remedy:expr) => {
        match $value {
            Some(value) => value,
            None => {
                $crate::common::skip_or_fail($missing, $remedy);
                return;
            }
        }
    };
}

/// A data directory for one test; on drop, removes every container, network, volume and image
/// (checkpoints) labelled with it, so no test leaves anything behind in Docker, failing or not.
pub struct Home {
    pub dir: TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new().prefix("taskbox-test-").tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    pub fn label_filter(&self) -> String {
        format!("label=taskbox.home={}", self.path().display())
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let filter = self.label_filter();
        if let Ok(out) = StdCommand::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = StdCommand::new("docker").args(["rm", "-f"]).args(&ids).output();
            }
        }
        if let Ok(out) = StdCommand::new("docker")
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = StdCommand::new("docker").args(["network", "rm", id]).output();
            }
        }
        // Volumes (package caches, tasks' own), once no container uses them.
        if let Ok(out) = StdCommand::new("docker")
            .args(["volume", "ls", "-q", "--filter", &filter])
            .output()
        {
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !names.is_empty() {
                let _ = StdCommand::new("docker")
                    .args(["volume", "rm", "-f"])
                    .args(&names)
                    .output();
            }
        }
        // Checkpoint images: a fork's own checkpoints are children of its source's image, so
        // removing them takes a second round.
        for _ in 0..2 {
            let images = labelled_images(&filter);
            if images.is_empty() {
                break;
            }
            let _ = StdCommand::new("docker").args(["rmi", "-f"]).args(&images).output();
        }
    }
}

/// The ids of the images matching a `docker images --filter` (e.g. a home's label).
pub fn labelled_images(filter: &str) -> Vec<String> {
    let Ok(out) = StdCommand::new("docker")
        .args(["images", "-q", "--no-trunc", "--filter", filter])
        .output()
    else {
        return Vec::new();
    };
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    ids.dedup();
    ids
}

pub type Client = RunningService<RoleClient, ClientConfig>;

/// Starts `taskbox serve` on `home` and connects a client named `client_name`.
pub async fn connect(home: &Path, client_name: &str) -> Client {
    connect_with_env(home, client_name, &[]).await
}

/// `taskbox serve` over stdio for a home, logging at `log`. The server's working directory
/// is its default source repository: never this one.
pub fn serve_command(home: &Path, log: &str) -> tokio::process::Command {
    tokio::process::Command::new(BIN).configure(|cmd| {
        cmd.arg("serve")
            .current_dir(home)
            .env("TASKBOX_HOME", home)
            .env("TASKBOX_CONFIG", home.join("config.toml"))
            .env("TASKBOX_LOG", log);
    })
}

pub async fn connect_with_env(home: &Path, client_name: &str, env: &[(&str, &str)]) -> Client {
    connect_with_pid(home, client_name, env).await.0
}

/// `connect_with_env`, and the server process's id (to read its `/proc/<pid>/status`).
pub async fn connect_with_pid(home: &Path, client_name: &str, env: &[(&str, &str)]) -> (Client, u32) {
    let home = home.to_path_buf();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let command = serve_command(&home, "taskbox=debug,warn").configure(|cmd| {
        for (k, v) in &env {
            cmd.env(k, v);
        }
    });
    let transport = TokioChildProcess::new(command).unwrap();
    let pid = transport.id().expect("the server process has an id");
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1.0.0"));
    (info.serve(transport).await.unwrap(), pid)
}

/// A stdio server whose stderr goes to `log` (for tests that read it, or kill the server by
/// its pid).
pub async fn connect_logged(home: &Path, client_name: &str, log: &Path) -> (Client, u32) {
    let command = serve_command(home, "taskbox=info,warn");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let (transport, _) = TokioChildProcess::builder(command).stderr(log).spawn().unwrap();
    let pid = transport.id().expect("the server's pid");
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1.0.0"));
    (info.serve(transport).await.unwrap(), pid)
}

/// Calls a tool and returns the raw result.
pub async fn call_raw(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().unwrap_or_default();
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
}

/// Calls a tool that must succeed; returns its structured content.
pub async fn call(client: &Client, tool: &str, args: Value) -> Value {
    let result = call_raw(client, tool, args.clone()).await;
    assert_ne!(result.is_error, Some(true), "{tool}({args}) failed: {}", text(&result));
    result.structured_content.clone().unwrap_or(Value::Null)
}

/// Calls a tool that must fail with a tool error; returns (kind, message).
pub async fn call_err(client: &Client, tool: &str, args: Value) -> (String, String) {
    let result = call_raw(client, tool, args.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool}({args}) should have failed: {}",
        text(&result)
    );
    tool_error(&result)
}

/// The (kind, message) of a tool error result; the kinds are `Error::kind` in src/error.rs.
pub fn tool_error(result: &CallToolResult) -> (String, String) {
    assert_eq!(result.is_error, Some(true), "not a tool error: {}", text(result));
    let error = &result.structured_content.as_ref().unwrap_or(&Value::Null)["error"];
    (
        error["kind"].as_str().unwrap_or_default().to_string(),
        error["message"].as_str().unwrap_or_default().to_string(),
    )
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn create(client: &Client, name: &str) -> Value {
    call(
        client,
        "create_task_sandbox",
        json!({ "name": name, "description": format!("test task {name}") }),
    )
    .await["task"]
        .clone()
}

pub async fn exec(client: &Client, task: &str, command: &str) -> Value {
    call(client, "execute_in_task", json!({ "task": task, "command": command })).await
}

/// `docker inspect` of one object, as JSON.
pub fn docker_inspect(kind: &str, id: &str) -> Option<Value> {
    let out = StdCommand::new("docker").args([kind, "inspect", id]).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array().and_then(|a| a.first().cloned())
}

pub fn docker(args: &[&str]) -> String {
    let out = StdCommand::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command lines of the processes in a container that contain `text` (empty when none),
/// read with `docker exec`, past taskbox.
pub fn container_processes(container: &str, text: &str) -> String {
    // `[x]yz` keeps grep from matching its own command line.
    let pattern = format!("[{}]{}", &text[..1], &text[1..]);
    docker(&[
        "exec",
        container,
        "sh",
        "-c",
        &format!("ps -eo args | grep '{pattern}' || true"),
    ])
}

/// Reads events.jsonl of a task.
pub fn events(home: &Path, task_id: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(home.join("tasks").join(task_id).join("events.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Runs git in `dir` (test fixtures only), with an identity and no user config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = StdCommand::new("git")
        .args([
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// A developer's repository under `parent`: a.txt, src/lib.rs, a .gitignore for *.log, and
/// two commits on main.
pub fn dev_repo(parent: &Path, name: &str) -> PathBuf {
    let root = parent.join(name);
    std::fs::create_dir_all(root.join("src")).unwrap();
    git(&root, &["init", "-q"]);
    std::fs::write(root.join("a.txt"), "one\n").unwrap();
    std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
    git(&root, &["add", "."]);
    git(&root, &["commit", "-qm", "initial"]);
    std::fs::write(root.join("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n").unwrap();
    git(&root, &["add", "."]);
    git(&root, &["commit", "-qm", "add lib"]);
    root
}

/// Writes the server's config file for a home (before `connect`).
pub fn write_config(home: &Path, toml: &str) {
    std::fs::write(home.join("config.toml"), toml).unwrap();
}

/// A home whose server may use repositories under `<home>/repos` (the config says so).
pub fn home_with_repos() -> (Home, PathBuf) {
    let home = Home::new();
    let repos = home.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    write_config(
        &home.path(),
        &format!("[workspace]\nallowed_repo_roots = [\"{}\"]\n", repos.display()),
    );
    (home, repos)
}

/// splitmix64: a small seeded generator, the same sequence on every machine (for the fuzz and
/// fault-injection suites, whose runs a seed reproduces).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs `taskbox doctor ARGS` on `home`: whether it succeeded, and what it said on stderr.
pub fn doctor(home: &Path, args: &[&str]) -> (bool, String) {
    let out = StdCommand::new(BIN)
        .arg("doctor")
        .args(args)
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Polls execution_output until `pick` says the reply is the one awaited.
pub async fn poll_until(client: &Client, id: &str, limit: std::time::Duration, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let r = call(
            client,
            "execution_output",
            serde_json::json!({ "execution_id": id, "wait_s": 1 }),
        )
        .await;
        if pick(&r) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reached within {limit:?}: {r}"
        );
    }
}
