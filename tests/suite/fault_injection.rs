//! Crash consistency under kill -9 (docs/reliability.md): a scripted workload over several
//! tasks (create, exec, checkpoint, restore, fork, stop, resume, delete) runs until the server
//! is killed at a seeded random moment; a new server starts on the same data directory and the
//! invariants are checked. CI does `TASKBOX_FAULT_KILLS` (10 by default); the long form is
//! `TASKBOX_FAULT_KILLS=50 cargo test --test all -- suite::fault_injection`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::common::*;

const NAMES: &[&str] = &["fi-a", "fi-b", "fi-c"];

/// What the server acknowledged before it died.
#[derive(Default)]
struct Ledger {
    /// (task id, execution id) of executions whose reply arrived.
    executions: Vec<(String, String)>,
    calls: usize,
}

/// A tool call that may fail (a tool error is an answer); `None` when the server is gone.
async fn attempt(client: &Client, tool: &str, args: Value) -> Option<Value> {
    let args = args.as_object().cloned().unwrap_or_default();
    match client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
    {
        Ok(result) => Some(result.structured_content.unwrap_or(Value::Null)),
        Err(rmcp::ServiceError::McpError(_)) => Some(Value::Null),
        Err(_) => None,
    }
}

/// Random operations until the server stops answering.
async fn workload(client: &Client, seed: u64, ledger: Arc<Mutex<Ledger>>) {
    let mut rng = Rng(seed);
    loop {
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        let (tool, args) = match rng.below(10) {
            0 | 1 => ("create_task_sandbox", json!({ "name": name, "network": "none" })),
            2..=4 => (
                "execute_in_task",
                json!({ "task": name, "command": format!("echo {} >> /workspace/log; sleep 0.{}", rng.next(), rng.below(5)) }),
            ),
            5 => ("create_checkpoint", json!({ "task": name })),
            6 => ("restore_checkpoint", json!({ "checkpoint": format!("{name}:1") })),
            7 => (
                "create_task_sandbox",
                json!({ "name": format!("{name}-fork{}", rng.below(3)), "from_checkpoint": format!("{name}:1"), "network": "none" }),
            ),
            8 => {
                if rng.below(2) == 0 {
                    ("stop_task", json!({ "task": name }))
                } else {
                    ("resume_task", json!({ "task": name }))
                }
            }
            _ => ("delete_task", json!({ "task": name, "confirm": true })),
        };
        let Some(reply) = attempt(client, tool, args).await else {
            return;
        };
        let mut ledger = ledger.lock().unwrap();
        ledger.calls += 1;
        if let (Some(task), Some(id)) = (reply["task_id"].as_str(), reply["execution_id"].as_str()) {
            ledger.executions.push((task.to_string(), id.to_string()));
        }
    }
}

fn live_tasks(list: &Value) -> BTreeMap<String, Value> {
    list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

fn labelled(home: &Home, kind: &str) -> Vec<(String, String)> {
    let filter = home.label_filter();
    let mut args = vec![kind, "ls", "-q", "--filter", &filter];
    if kind == "container" {
        args.insert(2, "-a");
    }
    docker(&args)
        .split_whitespace()
        .map(|id| {
            let inspect = docker_inspect(kind, id).unwrap();
            let labels = if kind == "container" {
                inspect["Config"]["Labels"].clone()
            } else {
                inspect["Labels"].clone()
            };
            (
                id.to_string(),
                labels["taskbox.task-id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The invariants after a restart; returns how many tasks were checked.
async fn check_invariants(home: &Home, client: &Client, ledger: &Ledger, round: usize) -> usize {
    let list = call(client, "list_tasks", json!({ "limit": 500 })).await;
    let tasks = live_tasks(&list);
    // Every line of a live task's event log has its row in the registry's index: a call's rows
    // are written after its lines (at its end), and the start repairs what a kill left between
    // them before any call is served. No call names a task between here and the start.
    let registry = rusqlite::Connection::open(home.path().join("registry.db")).unwrap();
    for id in tasks.keys() {
        let indexed: i64 = registry
            .query_row("SELECT COUNT(*) FROM events WHERE task_id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(
            indexed as usize,
            events(&home.path(), id).len(),
            "round {round}: {id}'s event index and its events.jsonl differ"
        );
    }
    // Every acknowledged execution of a task that still exists is in its event log.
    for (task, execution) in &ledger.executions {
        if tasks.contains_key(task) {
            let logged = events(&home.path(), task)
                .iter()
                .any(|e| e["data"]["execution_id"] == json!(execution));
            assert!(
                logged,
                "round {round}: acknowledged execution {execution} is not in {task}'s events"
            );
        }
    }
    for (id, task) in &tasks {
        let status = task["status"].as_str().unwrap();
        assert_ne!(
            status, "creating",
            "round {round}: {id} is still creating after a restart"
        );
        // No execution is left running without a process.
        let executions = call(client, "task_executions", json!({ "task": id, "limit": 500 })).await;
        for e in executions["items"].as_array().unwrap() {
            assert_ne!(e["status"], "running", "round {round}: {e}");
        }
        // Every task still works.
        if status == "stopped" {
            call(client, "resume_task", json!({ "task": id })).await;
        }
        if matches!(status, "stopped" | "running") {
            let r = call(
                client,
                "execute_in_task",
                json!({ "task": id, "command": "echo alive" }),
            )
            .await;
            assert_eq!(r["stdout"], "alive\n", "round {round}: {id}");
        }
    }
    // No Docker object of this data directory belongs to no task.
    let ids: BTreeSet<&String> = tasks.keys().collect();
    for kind in ["container", "network"] {
        for (object, task) in labelled(home, kind) {
            assert!(
                ids.contains(&task),
                "round {round}: {kind} {object} belongs to no live task ({task})"
            );
        }
    }
    tasks.len()
}

/// Waits (up to 30 s) until process `pid` has exited: gone, or a zombie left for its parent.
async fn wait_for_exit(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the server {pid} did not exit within 30 s of its session's end");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_loses_nothing_and_leaks_nothing() {
    require!(docker);
    let kills: usize = std::env::var("TASKBOX_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("TASKBOX_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xfa17);
    eprintln!("fault injection: {kills} kills, seed {seed} (TASKBOX_FAULT_KILLS, TASKBOX_FAULT_SEED)");
    let home = Home::new();
    let log = home.path().join("server.log");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let (mut calls, mut checked) = (0, 0);
    for round in 0..kills {
        let (client, pid) = connect_logged(&home.path(), "fault-injection", &log).await;
        if round > 0 {
            let ledger = Ledger::default();
            checked += check_invariants(&home, &client, &ledger, round).await;
        }
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let delay = Duration::from_millis(300 + rng.below(3000));
        tokio::select! {
            () = workload(&client, rng.next(), ledger.clone()) => {}
            () = tokio::time::sleep(delay) => {}
        }
        // SAFETY of the test: the pid is our own child, still running (the workload only ends
        // when the server stops answering).
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(100)).await;

        let (client, _) = connect_logged(&home.path(), "fault-injection-check", &log).await;
        let ledger = std::mem::take(&mut *ledger.lock().unwrap());
        calls += ledger.calls;
        checked += check_invariants(&home, &client, &ledger, round).await;
        client.cancel().await.unwrap();
        // What the checks themselves changed (a session's end checkpoints its tasks) is
        // settled by the next start, as after any stop; then the registry must equal a
        // rebuild from the files, and nothing may be left of a task that is gone.
        let (client, settle_pid) = connect_logged(&home.path(), "fault-injection-settle", &log).await;
        call(&client, "list_tasks", json!({})).await;
        client.cancel().await.unwrap();
        // The session's end still writes (its agents detach): doctor reads once it has exited.
        wait_for_exit(settle_pid).await;
        let (ok, report) = doctor(&home.path(), &[]);
        if !ok && std::env::var_os("TASKBOX_FAULT_KEEP").is_some() {
            // For a person investigating: the data directory and its Docker objects stay.
            let kept = home.dir.path().to_path_buf();
            std::mem::forget(home);
            panic!("round {round}: kept {}:\n{report}", kept.display());
        }
        assert!(ok, "round {round}: the layers disagree after a restart:\n{report}");
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "a server panicked:\n{log}");
    eprintln!(
        "fault injection: {kills} kills survived, {calls} acknowledged calls, {checked} task checks, {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
