//! Latency of taskbox against Docker, measured side by side in one run, against two references:
//! the floor, the Docker Engine API itself over its unix socket (bollard, `raw_docker.rs`), and
//! the `docker` CLI (whose own start-up, 10-15 ms, hides part of any overhead):
//!
//! - `execute_in_task` running `true` vs exec create + start + inspect, and `docker exec`,
//!   over stdio and over Streamable HTTP (`serve --http --no-auth`);
//! - `create_task_sandbox` vs container create + start of the same image with the same
//!   keep-alive command, and `docker run -d`; then the same with a network of its own, as a task
//!   gets;
//! - create plus a first command vs create + start + exec;
//! - with the warm pool on (`[pool] size = 2`, a server of its own): create, create plus a
//!   first command without a repository, and the same over a repository of 1,000 files, each
//!   against the Engine API's create + start (+ exec); before each timed call the pool is let
//!   refill, so no refill runs during either side's measurement (`BENCH_POOL_ONLY=1` runs only
//!   this part);
//! - the cost of redacting secrets (docs/secrets.md): a command printing 10 MB of base64 text
//!   in a task with a secret against the same in a task without one.
//!
//! The three are interleaved (A B C A B C …) so drift of a noisy machine hits them alike;
//! medians and the median of the per-round ratios are printed. Run: `cargo bench --bench
//! latency` (needs Docker and the taskbox-base image). BENCH_EXEC_RUNS / BENCH_CREATE_RUNS set
//! the number of rounds. Everything made is removed: the references after each round, the tasks
//! at the end, and whatever a failed run left by a `Cleanup` guard.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::raw_docker::RawDocker;
use common::*;
use serde_json::json;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The label on what the `docker` CLI makes here: this process's, so that the cleanup never
/// touches another bench run's.
fn cli_label() -> String {
    format!("taskbox-bench.cli={}", std::process::id())
}

/// The CLI equivalent of a task container: same image, init and keep-alive command.
fn docker_run_keepalive(extra: &[&str]) -> String {
    let label = cli_label();
    let mut args = vec!["run", "-d", "--init", "--label", &label, "--entrypoint", ""];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["taskbox-base", "sleep", "infinity"]);
    docker(&args)
}

/// Removes the CLI reference containers and networks made so far.
fn remove_cli(containers: &mut Vec<String>, networks: &mut Vec<String>) {
    if !containers.is_empty() {
        let mut rm = vec!["rm", "-f"];
        rm.extend(containers.iter().map(String::as_str));
        docker(&rm);
        containers.clear();
    }
    for net in networks.drain(..) {
        docker(&["network", "rm", &net]);
    }
}

/// One measured path's timings.
struct Series {
    name: &'static str,
    times: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            times: Vec::new(),
        }
    }

    fn millis(&self) -> Vec<f64> {
        self.times.iter().copied().map(ms).collect()
    }
}

/// `runs` rounds of `execute_in_task true` on the task "warmup", the Engine API's exec and
/// `docker exec`, interleaved.
async fn exec_rounds(client: &Client, raw: &RawDocker, container: &str, runs: usize) -> [Series; 4] {
    let mut series = [
        Series::new("taskbox"),
        Series::new("Engine API exec create+start+inspect"),
        Series::new("docker exec <c> true"),
        // What taskbox runs the command under (a login shell, docs/tools.md), straight through
        // the Engine API: the rest of taskbox's time is its own and its supervisor's.
        Series::new("Engine API exec of bash -lc true"),
    ];
    for _ in 0..runs {
        let (d, r) = timed(call(
            client,
            "execute_in_task",
            json!({ "task": "warmup", "command": "true" }),
        ))
        .await;
        assert_eq!(r["exit_code"], 0);
        series[0].times.push(d);
        let (d, code) = timed(raw.exec_true(container)).await;
        assert_eq!(code, 0);
        series[1].times.push(d);
        let (d, _) = timed(async { docker(&["exec", container, "true"]) }).await;
        series[2].times.push(d);
        let (d, code) = timed(raw.exec(container, &["bash", "-lc", "true"])).await;
        assert_eq!(code, 0);
        series[3].times.push(d);
    }
    series
}

/// Prints each series' median and spread, then taskbox's per-round ratio to each reference.
fn report(what: &str, series: &[Series]) {
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("{what}");
    for s in series {
        let v = s.millis();
        println!(
            "  {:<46} median {:>8.1} ms  (min {:>7.1}, max {:>7.1})  n={}",
            s.name,
            median(v.clone()),
            min(&v),
            max(&v),
            v.len()
        );
    }
    let ours = series[0].millis();
    for reference in &series[1..] {
        let ratios: Vec<f64> = ours.iter().zip(reference.millis()).map(|(a, b)| a / b).collect();
        println!(
            "  ratio taskbox / {:<42} median {:>7.2}x (min {:.2}x, max {:.2}x)",
            reference.name,
            median(ratios.clone()),
            min(&ratios),
            max(&ratios)
        );
    }
    println!();
}

/// Ready entries in the pool of the server on `home` (its registry, read directly).
fn pool_ready(home: &std::path::Path) -> i64 {
    let Ok(db) = rusqlite::Connection::open(home.join("registry.db")) else {
        return 0;
    };
    db.query_row("SELECT COUNT(*) FROM pool_entries WHERE state = 'ready'", [], |r| {
        r.get(0)
    })
    .unwrap_or(0)
}

/// Waits (untimed) until the pool is back to `size` ready entries, and Docker idle from it.
async fn wait_pool(home: &std::path::Path, size: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while pool_ready(home) < size {
        assert!(std::time::Instant::now() < deadline, "the pool did not refill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A repository of `files` small files in 20 directories, one commit.
fn repository_of(dir: &std::path::Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("src/m{:02}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:04}.rs")),
            format!("pub fn f{i}() -> usize {{ {i} }}\n"),
        )
        .unwrap();
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@localhost")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@localhost")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "bench repository"]);
}

/// Create (and a first command) with the warm pool on, against the Engine API, alternating.
async fn pool_rounds(raw: &mut RawDocker, runs: usize) {
    const SIZE: i64 = 2;
    let home = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup::new(home.path(), &[]);
    let repos = tempfile::tempdir().unwrap();
    let repo = repos.path().join("thousand");
    repository_of(&repo, 1000);
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            "[pool]\nsize = {SIZE}\n[workspace]\nallowed_repo_roots = [\"{}\"]\n",
            repos.path().display()
        ),
    )
    .unwrap();
    let client = start_server(home.path(), "latency-bench-pool").await;
    // Warm up: the image is there, the first claim and command made.
    wait_pool(home.path(), SIZE).await;
    call(&client, "create_task_sandbox", json!({ "name": "pool-warmup" })).await;
    call(
        &client,
        "execute_in_task",
        json!({ "task": "pool-warmup", "command": "true" }),
    )
    .await;
    call(
        &client,
        "delete_task",
        json!({ "task": "pool-warmup", "confirm": true }),
    )
    .await;
    let mut n = 0;
    for (what, repository, first_command) in [
        ("create_task_sandbox, pool on (stdio RTT)", false, false),
        (
            "create_task_sandbox + execute_in_task `true`, pool on, no repository",
            false,
            true,
        ),
        (
            "create_task_sandbox (repository of 1,000 files) + execute_in_task `true`, pool on",
            true,
            true,
        ),
    ] {
        let mut series = if first_command {
            vec![Series::new("taskbox"), Series::new("Engine API create + start + exec")]
        } else {
            vec![
                Series::new("taskbox"),
                Series::new("Engine API create + start"),
                Series::new("Engine API network + create + start"),
            ]
        };
        let mut claimed = 0;
        for _ in 0..runs {
            n += 1;
            let name = format!("pooled-{n}");
            let mut args = json!({ "name": name });
            if repository {
                args["repo_path"] = json!(repo.display().to_string());
            }
            wait_pool(home.path(), SIZE).await;
            let (d, task) = timed(async {
                let task = call(&client, "create_task_sandbox", args).await;
                if first_command {
                    let r = call(&client, "execute_in_task", json!({ "task": name, "command": "true" })).await;
                    assert_eq!(r["exit_code"], 0);
                }
                task
            })
            .await;
            series[0].times.push(d);
            // Whether the container came from the pool: it was made before the call.
            let created = Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{index .Config.Labels \"taskbox.pool\"}}",
                    task["task"]["container_id"].as_str().unwrap(),
                ])
                .output()
                .unwrap();
            if !String::from_utf8_lossy(&created.stdout).trim().is_empty() {
                claimed += 1;
            }
            // The refill the claim started is over before the reference is timed.
            wait_pool(home.path(), SIZE).await;
            let (d, _) = timed(async {
                let id = raw.create_start("taskbox-base", false).await;
                if first_command {
                    raw.exec_true(&id).await;
                }
            })
            .await;
            series[1].times.push(d);
            if !first_command {
                let (d, _) = timed(raw.create_start("taskbox-base", true)).await;
                series[2].times.push(d);
            }
            raw.cleanup().await;
            call(&client, "delete_task", json!({ "task": name, "confirm": true })).await;
        }
        report(&format!("{what}: {claimed}/{runs} from the pool"), &series);
    }
    client.cancel().await.unwrap();
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = quick();
    let exec_runs = if quick { 3 } else { env_or("BENCH_EXEC_RUNS", 50) };
    let create_runs = if quick { 1 } else { env_or("BENCH_CREATE_RUNS", 10) };
    if !docker_available() {
        println!("latency bench skipped: Docker is not available");
        return;
    }
    if std::env::var_os("BENCH_POOL_ONLY").is_some() {
        let mut raw = RawDocker::connect();
        let target = raw.create_start("taskbox-base", false).await;
        raw.exec_true(&target).await;
        raw.cleanup().await;
        pool_rounds(&mut raw, create_runs).await;
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // Declared after `home`, so dropped before it: whatever happens below, nothing stays.
    let _cleanup = Cleanup::new(home.path(), &[&cli_label(), &common::raw_docker::label()]);
    // A secret for the redaction case, from a file outside the data directory.
    let secret_dir = tempfile::tempdir().unwrap();
    let token_file = secret_dir.path().join("token");
    std::fs::write(&token_file, "bench-Token/value+8Hq2Zr\n").unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        format!("[secrets.BENCH_TOKEN]\nfrom = \"file:{}\"\n", token_file.display()),
    )
    .unwrap();
    let client = start_server(home.path(), "latency-bench").await;
    let mut raw = RawDocker::connect();
    let mut cli_containers = Vec::new();
    let mut cli_networks = Vec::new();
    let mut tasks = vec!["warmup".to_string()];

    // Warm up every path (image present, first connections made).
    call(&client, "create_task_sandbox", json!({ "name": "warmup" })).await;
    let target = raw.create_start("taskbox-base", false).await;
    raw.exec_true(&target).await;
    docker(&["exec", &target, "true"]);

    let series = exec_rounds(&client, &raw, &target, exec_runs).await;
    report("execute_in_task `true` (stdio RTT)", &series);

    // The same over Streamable HTTP, against a second server process on the same data dir.
    let (http, _server) = start_http_server(home.path(), "latency-bench-http").await;
    call(&http, "execute_in_task", json!({ "task": "warmup", "command": "true" })).await;
    let series = exec_rounds(&http, &raw, &target, exec_runs).await;
    report("execute_in_task `true` (HTTP RTT)", &series);
    http.cancel().await.unwrap();

    // A task, a container; then a task, a container on a network of its own; then create and
    // a first command.
    for (what, own_network, first_command) in [
        ("create_task_sandbox (stdio RTT)", false, false),
        ("create_task_sandbox vs create with a network of its own", true, false),
        ("create_task_sandbox + execute_in_task `true`", true, true),
    ] {
        let (api, cli) = match (own_network, first_command) {
            (false, _) => ("Engine API create + start", "docker run -d"),
            (true, false) => ("Engine API network + create + start", "docker network create + run -d"),
            (true, true) => (
                "Engine API network + create + start + exec",
                "docker network create + run + exec",
            ),
        };
        let mut series = [Series::new("taskbox"), Series::new(api), Series::new(cli)];
        for _ in 0..create_runs {
            let name = format!("bench-{}", tasks.len());
            let (d, _) = timed(async {
                let task = call(&client, "create_task_sandbox", json!({ "name": name })).await;
                if first_command {
                    call(&client, "execute_in_task", json!({ "task": name, "command": "true" })).await;
                }
                task
            })
            .await;
            series[0].times.push(d);
            tasks.push(name);
            let (d, _) = timed(async {
                let id = raw.create_start("taskbox-base", own_network).await;
                if first_command {
                    raw.exec_true(&id).await;
                }
            })
            .await;
            series[1].times.push(d);
            let (d, id) = timed(async {
                let network = format!("taskbox-bench-cli-{}-{}", std::process::id(), cli_networks.len());
                let id = if own_network {
                    docker(&["network", "create", "--label", &cli_label(), &network]);
                    cli_networks.push(network.clone());
                    docker_run_keepalive(&["--network", &network])
                } else {
                    docker_run_keepalive(&[])
                };
                if first_command {
                    docker(&["exec", &id, "true"]);
                }
                id
            })
            .await;
            series[2].times.push(d);
            cli_containers.push(id);
            // Docker's default address pools hold about thirty networks, shared with all else
            // on the host: the references' networks go after each round, not at the end (a
            // full run used to exhaust them, panic, and leave every task running).
            raw.cleanup().await;
            remove_cli(&mut cli_containers, &mut cli_networks);
        }
        report(what, &series);
    }

    pool_rounds(&mut raw, create_runs).await;

    // Redaction: the same 10 MB of output (base64 text, so every byte can start a pattern's
    // encoded form) in a task with a secret and in one without, interleaved.
    let redact_runs = if quick { 1 } else { env_or("BENCH_REDACT_RUNS", 10) };
    call(&client, "create_task_sandbox", json!({ "name": "plain" })).await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "secret", "secrets": ["BENCH_TOKEN"] }),
    )
    .await;
    tasks.extend(["plain".to_string(), "secret".to_string()]);
    let command = "head -c 7500000 /dev/urandom | base64 -w 76; echo \"$BENCH_TOKEN\"";
    let mut series = [Series::new("with a secret (redacted)"), Series::new("without a secret")];
    for _ in 0..redact_runs {
        for (i, task) in ["secret", "plain"].into_iter().enumerate() {
            let (d, r) = timed(call(
                &client,
                "execute_in_task",
                json!({ "task": task, "command": command, "timeout_s": 300 }),
            ))
            .await;
            assert_eq!(r["exit_code"], 0, "{r}");
            assert!(r["stdout_bytes"].as_u64().unwrap() > 10_000_000, "{r}");
            if task == "secret" {
                assert!(
                    r["stdout"].as_str().unwrap().ends_with("[secret:BENCH_TOKEN]\n"),
                    "not redacted"
                );
            }
            series[i].times.push(d);
        }
    }
    report("execute_in_task printing 10 MB: redaction's cost", &series);

    // Leave nothing behind: every task, container and network this run made.
    for task in &tasks {
        call(&client, "delete_task", json!({ "task": task, "confirm": true })).await;
    }
    raw.cleanup().await;
    remove_cli(&mut cli_containers, &mut cli_networks);
    client.cancel().await.unwrap();
}
