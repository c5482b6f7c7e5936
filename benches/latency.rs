//! Latency of taskbox against raw Docker, measured side by side in one run:
//!
//! - `create_task_sandbox` (round trip through rmcp's stdio client) vs `docker run -d` of the
//!   same image with the same keep-alive command;
//! - `execute_in_task` running `true` vs `docker exec <container> true`, over stdio and over
//!   Streamable HTTP (`serve --http --no-auth`).
//!
//! The two are interleaved (A B A B …) so drift of a noisy machine hits both alike; medians
//! and the median of the per-pair ratios are printed. Run: `cargo bench --bench latency`
//! (needs Docker and the taskbox-base image). BENCH_EXEC_RUNS / BENCH_CREATE_RUNS set the
//! number of pairs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The raw-Docker equivalent of a task container: same image, init and keep-alive command.
fn docker_run_keepalive(extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--init", "--entrypoint", ""];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["taskbox-base", "sleep", "infinity"]);
    docker(&args)
}

/// `runs` pairs of `execute_in_task true` on the task "warmup" and `docker exec <raw> true`,
/// interleaved; returns (ours, theirs).
async fn exec_pairs(client: &Client, raw: &str, runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (d, r) = timed(call(
            client,
            "execute_in_task",
            json!({ "task": "warmup", "command": "true" }),
        ))
        .await;
        assert_eq!(r["exit_code"], 0);
        ours.push(d);
        let (d, _) = timed(async { docker(&["exec", raw, "true"]) }).await;
        theirs.push(d);
    }
    (ours, theirs)
}

fn report(what: &str, ours: &[Duration], theirs: &[Duration], their_name: &str) {
    let a: Vec<f64> = ours.iter().copied().map(ms).collect();
    let b: Vec<f64> = theirs.iter().copied().map(ms).collect();
    let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "{what:<34} median {:>8.1} ms  (min {:>7.1}, max {:>7.1})  n={}",
        median(a.clone()),
        min(&a),
        max(&a),
        a.len()
    );
    println!(
        "{their_name:<34} median {:>8.1} ms  (min {:>7.1}, max {:>7.1})  n={}",
        median(b.clone()),
        min(&b),
        max(&b),
        b.len()
    );
    println!(
        "{:<34} median {:>8.2}x (min {:.2}x, max {:.2}x)\n",
        "ratio taskbox / docker",
        median(ratios.clone()),
        min(&ratios),
        max(&ratios)
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = quick();
    let exec_runs = if quick { 3 } else { runs("BENCH_EXEC_RUNS", 50) };
    let create_runs = if quick { 1 } else { runs("BENCH_CREATE_RUNS", 10) };
    if !docker_available() {
        println!("latency bench skipped: Docker is not available");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let client = start_server(home.path(), "latency-bench").await;

    // Warm up both paths (image present, first connections made).
    call(&client, "create_task_sandbox", json!({ "name": "warmup" })).await;
    let raw = docker_run_keepalive(&[]);
    docker(&["exec", &raw, "true"]);

    let (ours, theirs) = exec_pairs(&client, &raw, exec_runs).await;
    report(
        "execute_in_task `true` (stdio RTT)",
        &ours,
        &theirs,
        "docker exec <c> true",
    );

    // The same over Streamable HTTP, against a second server process on the same data dir.
    let (http, _server) = start_http_server(home.path(), "latency-bench-http").await;
    call(&http, "execute_in_task", json!({ "task": "warmup", "command": "true" })).await;
    let (ours, theirs) = exec_pairs(&http, &raw, exec_runs).await;
    report(
        "execute_in_task `true` (HTTP RTT)",
        &ours,
        &theirs,
        "docker exec <c> true",
    );
    http.cancel().await.unwrap();

    let (mut ours, mut theirs, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..create_runs {
        let (d, _) = timed(call(
            &client,
            "create_task_sandbox",
            json!({ "name": format!("bench-{i}") }),
        ))
        .await;
        ours.push(d);
        let (d, id) = timed(async { docker_run_keepalive(&[]) }).await;
        theirs.push(d);
        raws.push(id);
    }
    report("create_task_sandbox (stdio RTT)", &ours, &theirs, "docker run -d");

    // What taskbox does in Docker terms: a network of the task's own, then a container on it.
    let (mut ours, mut theirs, mut nets) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..create_runs {
        let (d, _) = timed(call(
            &client,
            "create_task_sandbox",
            json!({ "name": format!("bench-net-{i}") }),
        ))
        .await;
        ours.push(d);
        let net = format!("taskbox-bench-{}-{i}", std::process::id());
        let (d, id) = timed(async {
            docker(&["network", "create", &net]);
            docker_run_keepalive(&["--network", &net])
        })
        .await;
        theirs.push(d);
        raws.push(id);
        nets.push(net);
    }
    report(
        "create_task_sandbox (stdio RTT)",
        &ours,
        &theirs,
        "docker network create + run -d",
    );

    for i in 0..create_runs {
        call(
            &client,
            "delete_task",
            json!({ "task": format!("bench-{i}"), "confirm": true }),
        )
        .await;
    }
    call(&client, "delete_task", json!({ "task": "warmup", "confirm": true })).await;
    raws.push(raw);
    let mut rm = vec!["rm", "-f"];
    rm.extend(raws.iter().map(String::as_str));
    docker(&rm);
    for net in &nets {
        docker(&["network", "rm", net]);
    }
    client.cancel().await.unwrap();
}
