//! What the benchmarks share: starting the real `taskbox serve` behind rmcp's stdio client,
//! calling tools, timing and summarising.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

pub mod procfs;
pub mod raw_docker;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt, service::RunningService};
use serde_json::Value;

pub type Client = RunningService<RoleClient, ClientConfig>;

/// Whether a Docker daemon answers; the benches skip (with a message) when not.
pub fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Removes, when dropped (also when the bench panics half-way), every container, network and
/// image labelled with the bench's data directory or with `extra_labels`: a bench leaves
/// nothing behind in Docker, whatever happened.
pub struct Cleanup {
    filters: Vec<String>,
}

impl Cleanup {
    /// `home`: the data directory the bench's servers use; `extra_labels`: labels of what the
    /// bench made itself (`key=value` or `key`).
    pub fn new(home: &Path, extra_labels: &[&str]) -> Self {
        let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
        let mut filters = vec![format!("label=taskbox.home={}", home.display())];
        filters.extend(extra_labels.iter().map(|l| format!("label={l}")));
        Self { filters }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        for filter in &self.filters {
            let containers = ids(&["ps", "-aq", "--filter", filter]);
            if !containers.is_empty() {
                let _ = Command::new("docker").args(["rm", "-f"]).args(&containers).output();
            }
            for network in ids(&["network", "ls", "-q", "--filter", filter]) {
                let _ = Command::new("docker").args(["network", "rm", &network]).output();
            }
            let images = ids(&["images", "-q", "--no-trunc", "--filter", filter]);
            if !images.is_empty() {
                let _ = Command::new("docker").args(["rmi", "-f"]).args(&images).output();
            }
        }
    }
}

/// `cargo bench` passes `--bench`; under `cargo test` the benches run a quick smoke version.
pub fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// A count or duration from the environment (`var`), else `default`.
pub fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The release binary serving `home` (its config file there too), in `home` as working dir.
pub async fn start_server(home: &Path, client_name: &str) -> Client {
    start_server_with_pid(home, client_name).await.0
}

/// `start_server`, also returning the server's process id (for its RSS and CPU in /proc).
pub async fn start_server_with_pid(home: &Path, client_name: &str) -> (Client, u32) {
    let home = home.to_path_buf();
    let command = tokio::process::Command::new(taskbox_bin()).configure(|cmd| {
        cmd.arg("serve")
            .current_dir(&home)
            .env("TASKBOX_HOME", &home)
            .env("TASKBOX_CONFIG", home.join("config.toml"))
            .env(
                "TASKBOX_LOG",
                std::env::var("TASKBOX_LOG").unwrap_or_else(|_| "warn".into()),
            );
    });
    let transport = TokioChildProcess::new(command).unwrap();
    let pid = transport.id().expect("the server has a process id");
    let client = ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1"))
        .serve(transport)
        .await
        .unwrap();
    (client, pid)
}

/// The binary as `serve --http 127.0.0.1:0 --no-auth` on `home` (its own process beside the
/// stdio one; both share the data dir), and rmcp's Streamable HTTP client connected to it. The
/// child is killed on drop.
pub async fn start_http_server(home: &Path, client_name: &str) -> (Client, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(taskbox_bin())
        .args(["serve", "--http", "127.0.0.1:0", "--no-auth"])
        .current_dir(home)
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .env("TASKBOX_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next_line().await.unwrap().expect("the HTTP server exited");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{base}/mcp"));
    let client = ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1"))
        .serve(transport)
        .await
        .unwrap();
    (client, child)
}

pub async fn call(client: &Client, tool: &str, args: Value) -> Value {
    try_call(client, tool, args).await.unwrap_or_else(|e| panic!("{e}"))
}

/// `call`, with a failed call (transport or tool error) as an `Err` naming the tool.
pub async fn try_call(client: &Client, tool: &str, args: Value) -> Result<Value, String> {
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().unwrap().clone()))
        .await
        .map_err(|e| format!("{tool}: {e}"))?;
    if result.is_error == Some(true) {
        return Err(format!("{tool}: {:?}", result.content));
    }
    result
        .structured_content
        .ok_or_else(|| format!("{tool}: no structured content"))
}

pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (Duration, T) {
    let start = Instant::now();
    let value = f.await;
    (start.elapsed(), value)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The 50th and 99th percentiles and the maximum of `samples`, in ms (nearest rank).
pub fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |p: f64| ms(samples[((samples.len() - 1) as f64 * p).round() as usize]);
    (at(0.5), at(0.99), at(1.0))
}

/// Prints `what`'s median, min and max in ms; returns the median.
pub fn row(what: &str, values: &[Duration]) -> f64 {
    let v: Vec<f64> = values.iter().copied().map(ms).collect();
    let m = median(v.clone());
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    println!(
        "{what:<52} median {m:>8.1} ms  (min {min:>8.1}, max {max:>8.1})  n={}",
        v.len()
    );
    m
}

/// The server under test: this build's, or `BENCH_TASKBOX_BIN` (another build, to compare two
/// versions with the same bench on one machine).
fn taskbox_bin() -> std::path::PathBuf {
    std::env::var_os("BENCH_TASKBOX_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_taskbox").into())
}
