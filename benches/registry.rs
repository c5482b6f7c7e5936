//! The registry at scale: 100,000 tasks and 1,000,000 executions (with decisions), seeded with
//! SQL into a real registry, then `list_tasks` (limit 50), `find_task` and overall
//! `task_stats` measured at the service layer (`TaskService`) and through the real binary
//! and rmcp's stdio client. Targets: list p99 < 10 ms, find p99 < 25 ms, stats < 100 ms.
//!
//! Run: `cargo bench --bench registry` (no Docker needed). BENCH_TASKS scales the seed
//! (executions are ten per task). Under `cargo test` it runs on 1,000 tasks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use taskbox::config::Config;
use taskbox::domain::Owner;
use taskbox::runtime::DockerRuntime;
use taskbox::task::TaskService;

const WORDS: [&str; 40] = [
    "login",
    "payment",
    "cache",
    "parser",
    "migration",
    "docs",
    "search",
    "upload",
    "auth",
    "billing",
    "export",
    "import",
    "metrics",
    "logging",
    "retry",
    "timeout",
    "session",
    "invoice",
    "report",
    "schema",
    "index",
    "queue",
    "worker",
    "email",
    "profile",
    "config",
    "deploy",
    "refactor",
    "benchmark",
    "api",
    "client",
    "server",
    "token",
    "webhook",
    "storage",
    "backup",
    "restore",
    "ui",
    "theme",
    "locale",
];

fn seed(path: &std::path::Path, tasks: u64) {
    // The schema comes from the registry itself.
    drop(taskbox::registry::Registry::open(path).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    let words: Vec<String> = WORDS.iter().enumerate().map(|(i, w)| format!("({i}, '{w}')")).collect();
    tx.execute_batch(&format!(
        "CREATE TEMP TABLE words(k INTEGER PRIMARY KEY, w TEXT);
         INSERT INTO words VALUES {};",
        words.join(",")
    ))
    .unwrap();
    let n = WORDS.len();
    tx.execute(
        &format!(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
             INSERT INTO tasks (id, name, description, status, image, network, workspace, memory_mb, cpus, pids,
                                env_json, created_at, updated_at, version)
             SELECT printf('t-bench%021d', i), printf('task-%d', i),
                    'fix the ' || (SELECT w FROM words WHERE k = i % {n}) || ' ' || (SELECT w FROM words WHERE k = (i / {n}) % {n}),
                    CASE i % 3 WHEN 0 THEN 'completed' WHEN 1 THEN 'archived' ELSE 'failed' END,
                    'taskbox-base', 'egress', '/nonexistent', 2048, 2.0, 512, '{{}}',
                    strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', printf('+%d seconds', i)),
                    strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', printf('+%d seconds', i)), 1
             FROM seq"
        ),
        [tasks as i64],
    )
    .unwrap();
    tx.execute(
        &format!(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
             INSERT INTO executions (id, task_id, command, status, exit_code, started_at, finished_at, duration_ms)
             SELECT printf('e-bench%021d', i), printf('t-bench%021d', (i - 1) / 10 + 1),
                    CASE i % 4 WHEN 0 THEN 'cargo test ' WHEN 1 THEN 'npm run ' WHEN 2 THEN 'pytest -k ' ELSE 'make ' END
                        || (SELECT w FROM words WHERE k = (i * 7) % {n}),
                    'finished', CASE WHEN i % 9 = 0 THEN 1 ELSE 0 END,
                    strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', printf('+%d seconds', i)),
                    strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', printf('+%d seconds', i)),
                    (i * 37) % 5000
             FROM seq"
        ),
        [tasks as i64 * 10],
    )
    .unwrap();
    tx.execute(
        &format!(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
             INSERT INTO decisions (task_id, decision, rationale, agent, created_at)
             SELECT printf('t-bench%021d', i * 4), 'use the ' || (SELECT w FROM words WHERE k = (i * 3) % {n}) || ' module',
                    'it already handles it', 'bench', '2026-01-01T00:00:00Z'
             FROM seq"
        ),
        [tasks as i64 / 4],
    )
    .unwrap();
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE; PRAGMA optimize;").unwrap();
}

fn print(what: &str, samples: Vec<Duration>, target: &str) {
    let n = samples.len();
    let (p50, p99, max) = percentiles(samples);
    println!("{what:<44} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms  n={n}  ({target})");
}

#[tokio::main]
async fn main() {
    let tasks: u64 = if quick() {
        1_000
    } else {
        std::env::var("BENCH_TASKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    };
    let runs = if quick() { 5 } else { 200 };
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    seed(&home.path().join("registry.db"), tasks);
    println!(
        "seeded {tasks} tasks, {} executions, {} decisions in {:.1} s",
        tasks * 10,
        tasks / 4,
        started.elapsed().as_secs_f64()
    );

    let config = Config {
        home: Some(home.path().to_path_buf()),
        ..Config::default()
    };
    let service = Arc::new(TaskService::open(config, Arc::new(DockerRuntime::new())).unwrap());
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    println!("\nservice layer");
    let list: Vec<Duration> = (0..runs)
        .map(|_| time(&|| drop(service.list(&Owner::local(), None, 50, 0).unwrap())))
        .collect();
    print("list_tasks (limit 50)", list, "target p99 < 10 ms");
    let queries = [
        "login",
        "payment cache",
        "cargo test parser",
        "refactor",
        "webhook token",
    ];
    let find: Vec<Duration> = (0..runs)
        .map(|i| time(&|| drop(service.find(&Owner::local(), queries[i % queries.len()], 10).unwrap())))
        .collect();
    print("find_task (5 queries in turn)", find, "target p99 < 25 ms");
    let stats: Vec<Duration> = (0..runs.min(20))
        .map(|_| time(&|| drop(service.stats(&Owner::local(), None).unwrap())))
        .collect();
    print("task_stats, all tasks", stats, "target < 100 ms");

    println!("\nthrough the MCP client (stdio round trip)");
    std::fs::write(home.path().join("config.toml"), "").unwrap();
    let client = start_server(home.path(), "registry-bench").await;
    let mut list = Vec::new();
    let mut find = Vec::new();
    let mut stats = Vec::new();
    for i in 0..runs {
        list.push(timed(call(&client, "list_tasks", json!({ "limit": 50 }))).await.0);
        find.push(
            timed(call(
                &client,
                "find_task",
                json!({ "query": queries[i % queries.len()] }),
            ))
            .await
            .0,
        );
        if i < 20 {
            stats.push(timed(call(&client, "task_stats", json!({}))).await.0);
        }
    }
    print("list_tasks (limit 50)", list, "target p99 < 10 ms");
    print("find_task", find, "target p99 < 25 ms");
    print("task_stats, all tasks", stats, "target < 100 ms");
    client.cancel().await.unwrap();
}
