//! taskbox at scale, beside the floor: 1, 10 and 50 tasks alive, with 1 and 10 agents running
//! commands at once, through one real `taskbox serve` over rmcp's stdio client (the agents'
//! calls share the session, as concurrent tool calls do), against the same load sent straight
//! to the Docker Engine API over its unix socket (`raw_docker.rs`: exec create + start + inspect
//! of `true`) in the same containers, the tasks' own.
//!
//! For each number of tasks and of agents it runs timed phases, taskbox then the floor and the
//! other way round in the next round (A B B A …), so a noisy machine's drift hits both alike.
//! Each agent runs `true` again and again until the phase's time is up, going round the tasks
//! (agent i on tasks i, i + agents, …). Per side it reports executions per second, p50 and p99
//! latency, the server's CPU (from /proc of the real server process: % of one core and ms per
//! execution) and resident memory (now and peak), Docker's CPU per execution (dockerd,
//! containerd and every shim on the host, children included: other users' containers count
//! too, so it is indicative), the load average and the automatic checkpoints taken during
//! taskbox's phases (a `docker commit` each, which slows every exec meanwhile; read from the
//! registry's events); then how each grows from the fewest tasks to
//! the most, and the goals (at 10 agents: >= 90% of the floor's throughput, p99 <= 1.2x
//! the floor's; server RSS <= 64 MiB with 50 tasks alive).
//!
//! Run (long form, about ten minutes): `cargo bench --bench scale`, that is
//! `BENCH_SCALE_TASKS=1,10,50 BENCH_SCALE_AGENTS=1,10 BENCH_SCALE_SECONDS=15 BENCH_SCALE_ROUNDS=2`.
//! Short form: `BENCH_SCALE_TASKS=1,10 BENCH_SCALE_AGENTS=10 BENCH_SCALE_SECONDS=5
//! BENCH_SCALE_ROUNDS=1 cargo bench --bench scale`. BENCH_SCALE_CONFIG is the server's
//! config.toml (default empty: the defaults, every default hook on). Needs Docker and the taskbox-base image.
//! Under `cargo test` it runs one task with one and two agents for a second each. Everything
//! made is removed: the tasks at the end, and whatever a failed run left by a `Cleanup` guard
//! (the data directory's label).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::procfs;
use common::raw_docker::RawDocker;
use common::*;
use futures_util::future::join_all;
use serde_json::json;

/// Tasks created at once while growing to the next level.
const CREATE_CONCURRENCY: usize = 4;

/// A comma-separated list of counts from the environment, else `default`.
fn env_list(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}={v}: give counts like 1,10,50"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Taskbox,
    Floor,
}

/// One side's totals over the rounds of one level (tasks, agents).
#[derive(Default)]
struct Totals {
    latencies: Vec<Duration>,
    errors: Vec<String>,
    wall: Duration,
    server_cpu: f64,
    docker_cpu: f64,
    /// The server's resident memory after the last phase, and its peak so far (MiB).
    rss: (f64, f64),
    load: Vec<f64>,
    /// Automatic checkpoints taken during the phases (checkpoint-creator's, on taskbox's side:
    /// a `docker commit` each, which takes Docker's time from every exec meanwhile).
    checkpoints: i64,
}

impl Totals {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn p50_p99(&self) -> (f64, f64) {
        let (p50, p99, _) = percentiles(self.latencies.clone());
        (p50, p99)
    }

    /// CPU per execution, in ms.
    fn cpu_per_exec(&self, cpu: f64) -> f64 {
        cpu * 1000.0 / self.latencies.len() as f64
    }
}

/// One level's figures: taskbox's and the floor's.
struct Level {
    tasks: usize,
    agents: usize,
    taskbox: Totals,
    floor: Totals,
}

/// `agents` agents, each running `run(task index)` until `seconds` are up, going round the
/// `tasks` tasks; adds the latencies, errors and the wall time (to the last call's end) to
/// `totals`.
async fn run_agents<F, Fut>(totals: &mut Totals, tasks: usize, agents: usize, seconds: Duration, run: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let deadline = start + seconds;
    let agent = |i: usize| {
        let run = &run;
        async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut k = 0;
            while Instant::now() < deadline {
                let task = (i + k * agents) % tasks;
                k += 1;
                let (d, result) = timed(run(task)).await;
                match result {
                    Ok(()) => latencies.push(d),
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        }
    };
    for (latencies, errors) in join_all((0..agents).map(agent)).await {
        totals.latencies.extend(latencies);
        totals.errors.extend(errors);
    }
    totals.wall += start.elapsed();
}

struct Bench {
    client: Client,
    server_pid: u32,
    home: std::path::PathBuf,
    raw: RawDocker,
    /// Task names and their containers, in creation order.
    names: Vec<String>,
    containers: Vec<String>,
    seconds: Duration,
}

impl Bench {
    /// Creates tasks until `count` are alive, a few at once, and runs one command in each
    /// through both sides (first execs are not what is measured).
    async fn grow_to(&mut self, count: usize) {
        while self.names.len() < count {
            let batch: Vec<String> = (self.names.len()..count.min(self.names.len() + CREATE_CONCURRENCY))
                .map(|i| format!("scale-{i}"))
                .collect();
            let created = join_all(
                batch
                    .iter()
                    .map(|name| call(&self.client, "create_task_sandbox", json!({ "name": name }))),
            )
            .await;
            for (name, task) in batch.into_iter().zip(created) {
                let container = task["task"]["container_id"]
                    .as_str()
                    .expect("the task has a container")
                    .to_string();
                self.exec_taskbox(&name).await.unwrap();
                assert_eq!(self.raw.exec_true(&container).await, 0);
                self.names.push(name);
                self.containers.push(container);
            }
        }
    }

    async fn exec_taskbox(&self, name: &str) -> Result<(), String> {
        let reply = try_call(
            &self.client,
            "execute_in_task",
            json!({ "task": name, "command": "true" }),
        )
        .await?;
        match reply["exit_code"].as_i64() {
            Some(0) => Ok(()),
            _ => Err(format!("execute_in_task: {reply}")),
        }
    }

    /// One timed phase of `side` on the first `tasks` tasks with `agents` agents.
    async fn phase(&self, side: Side, tasks: usize, agents: usize, totals: &mut Totals) {
        let docker = procfs::docker_pids();
        let server_before = procfs::cpu_seconds(self.server_pid, false).unwrap();
        let checkpoints_before = checkpoints_taken(&self.home);
        let docker_before = procfs::docker_cpu_seconds(&docker);
        totals.load.push(procfs::load_average());
        match side {
            Side::Taskbox => {
                run_agents(totals, tasks, agents, self.seconds, |t| {
                    self.exec_taskbox(&self.names[t])
                })
                .await
            }
            Side::Floor => {
                run_agents(totals, tasks, agents, self.seconds, |t| async move {
                    match self.raw.exec_true(&self.containers[t]).await {
                        0 => Ok(()),
                        code => Err(format!("exec exited with {code}")),
                    }
                })
                .await
            }
        }
        totals.server_cpu += procfs::cpu_seconds(self.server_pid, false).unwrap() - server_before;
        totals.docker_cpu += procfs::docker_cpu_seconds(&docker) - docker_before;
        totals.rss = procfs::rss_mib(self.server_pid).unwrap();
        totals.checkpoints += checkpoints_taken(&self.home) - checkpoints_before;
    }

    /// `rounds` rounds of both sides at one level, alternating which goes first.
    async fn level(&self, tasks: usize, agents: usize, rounds: usize) -> Level {
        let mut level = Level {
            tasks,
            agents,
            taskbox: Totals::default(),
            floor: Totals::default(),
        };
        for round in 0..rounds {
            let order = match round % 2 {
                0 => [Side::Taskbox, Side::Floor],
                _ => [Side::Floor, Side::Taskbox],
            };
            for side in order {
                let totals = match side {
                    Side::Taskbox => &mut level.taskbox,
                    Side::Floor => &mut level.floor,
                };
                self.phase(side, tasks, agents, totals).await;
            }
        }
        for (what, totals) in [("taskbox", &level.taskbox), ("floor", &level.floor)] {
            let (p50, p99) = totals.p50_p99();
            println!(
                "  {tasks:>3} tasks, {agents:>2} agents, {what:<7}: {:>6.1}/s  p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  \
                 n={}  errors={}  checkpoints={}",
                totals.per_second(),
                totals.latencies.len(),
                totals.errors.len(),
                totals.checkpoints
            );
            if let Some(first) = totals.errors.first() {
                println!("      first error: {first}");
            }
        }
        level
    }

    /// Deletes every task, a few at once.
    async fn delete_all(&self) {
        for batch in self.names.chunks(CREATE_CONCURRENCY) {
            join_all(
                batch
                    .iter()
                    .map(|name| try_call(&self.client, "delete_task", json!({ "task": name, "confirm": true }))),
            )
            .await;
        }
    }
}

/// Checkpoints taken so far by the server on `home` (its registry, read directly).
fn checkpoints_taken(home: &std::path::Path) -> i64 {
    let Ok(db) = rusqlite::Connection::open(home.join("registry.db")) else {
        return 0;
    };
    db.query_row(
        "SELECT COUNT(*) FROM events WHERE type = 'checkpoint_created'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// The figures as markdown tables: every level side by side, then growth from the first
/// level, then the goals.
fn report(levels: &[Level], idle_rss: &[(usize, f64)]) {
    println!();
    println!(
        "| tasks | agents | taskbox exec/s | floor exec/s | % of floor | taskbox p50 | floor p50 | taskbox p99 | floor p99 \
         | p99 ratio | server CPU | server CPU/exec | server RSS (peak) | Docker CPU/exec taskbox / floor | load \
         | automatic checkpoints |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for l in levels {
        let (t, f) = (&l.taskbox, &l.floor);
        let ((tp50, tp99), (fp50, fp99)) = (t.p50_p99(), f.p50_p99());
        let load: Vec<f64> = t.load.iter().chain(&f.load).copied().collect();
        let load_min = load.iter().copied().fold(f64::INFINITY, f64::min);
        let load_max = load.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0}% | {tp50:.1} ms | {fp50:.1} ms | {tp99:.1} ms | {fp99:.1} ms | {:.2}× \
             | {:.0}% | {:.1} ms | {:.1} MiB ({:.1}) | {:.1} / {:.1} ms | {load_min:.1}–{load_max:.1} | {} |",
            l.tasks,
            l.agents,
            t.per_second(),
            f.per_second(),
            100.0 * t.per_second() / f.per_second(),
            tp99 / fp99,
            100.0 * t.server_cpu / t.wall.as_secs_f64(),
            t.cpu_per_exec(t.server_cpu),
            t.rss.0,
            t.rss.1,
            t.cpu_per_exec(t.docker_cpu),
            f.cpu_per_exec(f.docker_cpu),
            t.checkpoints,
        );
    }
    println!();
    println!("Growth from the fewest tasks to each level (same agents), taskbox / floor:");
    println!();
    println!("| agents | tasks | exec/s | p50 | p99 | server RSS | server CPU/exec |");
    println!("|---|---|---|---|---|---|---|");
    for l in levels {
        let Some(base) = levels.iter().find(|b| b.agents == l.agents) else {
            continue;
        };
        if std::ptr::eq(base, l) {
            continue;
        }
        let grow = |side: fn(&Level) -> &Totals| {
            let (a, b) = (side(l), side(base));
            let ((ap50, ap99), (bp50, bp99)) = (a.p50_p99(), b.p50_p99());
            (a.per_second() / b.per_second(), ap50 / bp50, ap99 / bp99)
        };
        let (tr, tp50, tp99) = grow(|l| &l.taskbox);
        let (fr, fp50, fp99) = grow(|l| &l.floor);
        let (t, b) = (&l.taskbox, &base.taskbox);
        println!(
            "| {} | {} → {} | {tr:.2}× / {fr:.2}× | {tp50:.2}× / {fp50:.2}× | {tp99:.2}× / {fp99:.2}× | {:.2}× | {:.2}× |",
            l.agents,
            base.tasks,
            l.tasks,
            t.rss.0 / b.rss.0,
            t.cpu_per_exec(t.server_cpu) / b.cpu_per_exec(b.server_cpu),
        );
    }
    println!();
    for (tasks, rss) in idle_rss {
        println!("server RSS with {tasks} tasks alive, before their load: {rss:.1} MiB");
    }
    for l in levels.iter().filter(|l| l.agents == 10) {
        let (t, f) = (&l.taskbox, &l.floor);
        let share = t.per_second() / f.per_second();
        let p99 = t.p50_p99().1 / f.p50_p99().1;
        println!(
            "goal at {} tasks, 10 agents: throughput {:.0}% of the floor (>= 90%: {}), p99 {:.2}x the floor's \
             (<= 1.2x: {})",
            l.tasks,
            share * 100.0,
            if share >= 0.9 { "met" } else { "missed" },
            p99,
            if p99 <= 1.2 { "met" } else { "missed" },
        );
    }
    if let Some(l) = levels.iter().rfind(|l| l.tasks >= 50) {
        let peak = l.taskbox.rss.1;
        println!(
            "goal: server RSS <= 64 MiB with {} tasks alive: peak {peak:.1} MiB ({})",
            l.tasks,
            if peak <= 64.0 { "met" } else { "missed" }
        );
    }
}

#[tokio::main]
async fn main() {
    let quick = quick();
    let (task_levels, agent_levels, seconds, rounds) = if quick {
        (vec![1], vec![1, 2], 1, 1)
    } else {
        (
            env_list("BENCH_SCALE_TASKS", &[1, 10, 50]),
            env_list("BENCH_SCALE_AGENTS", &[1, 10]),
            env_or("BENCH_SCALE_SECONDS", 15),
            env_or("BENCH_SCALE_ROUNDS", 2),
        )
    };
    if !docker_available() {
        println!("scale bench skipped: Docker is not available");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // The default configuration (every default hook on) unless BENCH_SCALE_CONFIG gives one,
    // to see what a setting costs.
    let config = if quick {
        String::new()
    } else {
        std::env::var("BENCH_SCALE_CONFIG").unwrap_or_default()
    };
    std::fs::write(home.path().join("config.toml"), &config).unwrap();
    // Declared after `home`, so dropped before it: whatever happens below, nothing stays.
    let _cleanup = Cleanup::new(home.path(), &[]);
    let (client, server_pid) = start_server_with_pid(home.path(), "scale-bench").await;
    let mut bench = Bench {
        client,
        server_pid,
        home: home.path().to_path_buf(),
        raw: RawDocker::connect(),
        names: Vec::new(),
        containers: Vec::new(),
        seconds: Duration::from_secs(seconds as u64),
    };
    println!(
        "scale bench: tasks {task_levels:?}, agents {agent_levels:?}, {seconds} s per phase, {rounds} round(s) per \
         side, config {config:?}, load average {:.1}",
        procfs::load_average()
    );
    let mut levels = Vec::new();
    let mut idle_rss = Vec::new();
    for &tasks in &task_levels {
        bench.grow_to(tasks).await;
        idle_rss.push((tasks, procfs::rss_mib(server_pid).unwrap().0));
        for &agents in &agent_levels {
            levels.push(bench.level(tasks, agents, rounds).await);
        }
    }
    report(&levels, &idle_rss);
    bench.delete_all().await;
    bench.client.cancel().await.unwrap();
}
