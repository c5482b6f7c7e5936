//! Workspace costs, through the real binary and rmcp's stdio client, on a generated
//! repository of 10,000 files / 100 MB (incompressible content):
//!
//! - `create_task_sandbox` over that repository, next to a task with no repository (the
//!   difference is what the workspace costs beyond starting the container);
//! - `create_checkpoint` after 1,000 files changed, next to `docker commit` of the same
//!   container (what the git side adds);
//! - `restore_checkpoint`.
//!
//! Run: `cargo bench --bench workspaces` (needs Docker and the taskbox-base image).
//! BENCH_RUNS sets the repetitions (default 3). Under `cargo test` it runs once on a small
//! repository as a smoke test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::json;

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `files` files of `size` pseudo-random bytes in 100 directories, committed on main.
fn generate_repo(root: &Path, files: usize, size: usize) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..files {
        let dir = root.join(format!("d{:02}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        std::fs::write(dir.join(format!("f{i:05}.bin")), data).unwrap();
    }
    run(root, "git", &["-c", "init.defaultBranch=main", "init", "-q"]);
    run(root, "git", &["add", "-A"]);
    // No background auto-gc racing the bench; packed, as real repositories mostly are.
    let commit = [
        "-c",
        "user.name=b",
        "-c",
        "user.email=b@b",
        "-c",
        "gc.auto=0",
        "commit",
        "-qm",
        "generated",
    ];
    run(root, "git", &commit);
    run(root, "git", &["gc", "-q"]);
}

#[tokio::main]
async fn main() {
    let quick = quick();
    let runs = if quick {
        1
    } else {
        std::env::var("BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
    };
    let (files, size, changed) = if quick {
        (200, 1024, 50)
    } else {
        (10_000, 10_240, 1_000)
    };
    if !docker_available() {
        println!("workspaces bench skipped: Docker is not available");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let repos = home.path().join("repos");
    let repo = repos.join("big");
    std::fs::create_dir_all(&repo).unwrap();
    let started = Instant::now();
    generate_repo(&repo, files, size);
    println!(
        "repository: {files} files, {} MB, generated in {:.1} s",
        files * size / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    std::fs::write(
        home.path().join("config.toml"),
        format!("[workspace]\nallowed_repo_roots = [\"{}\"]\n", repos.display()),
    )
    .unwrap();
    let _cleanup = Cleanup::new(home.path(), &[]);
    let client = start_server(home.path(), "workspaces-bench").await;
    call(&client, "create_task_sandbox", json!({ "name": "warmup" })).await;

    // Each create over the repository is paired with a plain `git clone --no-hardlinks` of it
    // (what writing the workspace costs on this disk), and all start after a `sync` so one
    // run's write-back does not land on the next. Nothing is deleted until the end: on a file
    // system mounted with `discard`, deleting 100 MB slows the writes that follow.
    let (mut with_repo, mut without, mut clones) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        run(home.path(), "sync", &[]);
        let plain = json!({ "name": format!("plain-{i}") });
        let (d, _) = timed(call(&client, "create_task_sandbox", plain)).await;
        without.push(d);
        run(home.path(), "sync", &[]);
        let args = json!({ "name": format!("big-{i}"), "repo_path": repo.display().to_string() });
        let (d, _) = timed(call(&client, "create_task_sandbox", args)).await;
        with_repo.push(d);
        run(home.path(), "sync", &[]);
        let dest = home.path().join(format!("raw-clone-{i}"));
        let clone = [
            "clone",
            "-q",
            "--no-hardlinks",
            repo.to_str().unwrap(),
            dest.to_str().unwrap(),
        ];
        let (d, _) = timed(async { run(home.path(), "git", &clone) }).await;
        clones.push(d);
    }
    println!();
    let a = row("create_task_sandbox, no repository", &without);
    let b = row(
        &format!("create_task_sandbox over the {files}-file repository"),
        &with_repo,
    );
    row("git clone --no-hardlinks of the same repository", &clones);
    let beyond = "=> the workspace beyond the container start";
    println!("{beyond:<52} {:>8.1} ms (target < 2000 ms)\n", b - a);

    let (mut checkpoints, mut commits, mut restores) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let task = format!("big-{i}");
        let change = format!("for f in $(git ls-files | head -n {changed}); do echo change >> $f; done");
        call(
            &client,
            "execute_in_task",
            json!({ "task": task, "command": change, "timeout_s": 600 }),
        )
        .await;
        let (d, cp) = timed(call(
            &client,
            "create_checkpoint",
            json!({ "task": task, "label": "bench" }),
        ))
        .await;
        checkpoints.push(d);
        assert_eq!(cp["checkpoint"]["seq"], 1);
        let status = call(&client, "get_task_status", json!({ "task": task })).await;
        let container = status["task"]["container_id"].as_str().unwrap().to_string();
        let (d, _) = timed(async {
            let out = Command::new("docker")
                .args(["commit", &container, "taskbox-bench-raw:latest"])
                .output()
                .unwrap();
            assert!(out.status.success());
        })
        .await;
        commits.push(d);
        call(
            &client,
            "execute_in_task",
            json!({ "task": task, "command": "git rm -rq d0* && echo x > new", "timeout_s": 600 }),
        )
        .await;
        let (d, _) = timed(call(
            &client,
            "restore_checkpoint",
            json!({ "checkpoint": format!("{task}:1") }),
        ))
        .await;
        restores.push(d);
    }
    row(&format!("create_checkpoint, {changed} files changed"), &checkpoints);
    row("docker commit of the same container", &commits);
    println!("{:<52} (target < 2000 ms)\n", "");
    row("restore_checkpoint (pre-restore checkpoint included)", &restores);
    println!("{:<52} (target < 3000 ms)", "");

    let _ = Command::new("docker")
        .args(["rmi", "-f", "taskbox-bench-raw:latest"])
        .output();
    let list = call(&client, "list_tasks", json!({ "limit": 500 })).await;
    for task in list["tasks"].as_array().unwrap() {
        call(&client, "delete_task", json!({ "task": task["id"], "confirm": true })).await;
    }
    client.cancel().await.unwrap();
}
