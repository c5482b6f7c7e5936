//! Task memory through the real binary: history, executions, decisions (registry and
//! decisions.md), full-text search across tasks, statistics, and decisions in the resume
//! context of attach.

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn history_executions_decisions_search_and_stats() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "memory-test").await;
    let login = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "fix-login", "description": "The login form rejects valid passwords", "network": "none" }),
    )
    .await["task"]
        .clone();
    for command in [
        "echo checking",
        "grep -c x /etc/hostname",
        "exit 2",
        "echo checking again",
    ] {
        exec(&client, "fix-login", command).await;
    }
    let started = chrono::Utc::now().to_rfc3339();
    let decision = call(
        &client,
        "record_decision",
        json!({ "decision": "Validate passwords server-side only", "rationale": "the client check drifted" }),
    )
    .await;
    assert_eq!(decision["agent"], "memory-test");
    call(
        &client,
        "record_decision",
        json!({ "decision": "Keep the old hashing for now" }),
    )
    .await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "write-docs", "description": "User guide", "network": "none" }),
    )
    .await;
    exec(&client, "write-docs", "echo login section > guide.md").await;

    // Executions: filters and totals.
    let failed = call(
        &client,
        "task_executions",
        json!({ "task": "fix-login", "failed": true }),
    )
    .await;
    assert_eq!(failed["total"], 2, "{failed}");
    let by_command = call(
        &client,
        "task_executions",
        json!({ "task": "fix-login", "command": "checking" }),
    )
    .await;
    assert_eq!(by_command["total"], 2);
    assert_eq!(by_command["items"][0]["command"], "echo checking again");
    let by_code = call(
        &client,
        "task_executions",
        json!({ "task": "fix-login", "exit_code": 2, "limit": 1 }),
    )
    .await;
    assert_eq!(by_code["items"][0]["command"], "exit 2");

    // History: type and time filters, paging.
    let history = call(
        &client,
        "task_history",
        json!({ "task": "fix-login", "types": ["execution"] }),
    )
    .await;
    assert_eq!(history["total"], 4);
    let recent = call(
        &client,
        "task_history",
        json!({ "task": "fix-login", "types": ["decision_recorded"], "since": started }),
    )
    .await;
    assert_eq!(recent["total"], 2);
    assert_eq!(recent["items"][0]["data"]["decision"], "Keep the old hashing for now");
    let (kind, message) = call_err(
        &client,
        "task_history",
        json!({ "task": "fix-login", "since": "yesterday" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("RFC 3339"), "{message}");

    // Decisions: newest first, and the human-readable file.
    let decisions = call(&client, "task_decisions", json!({ "task": "fix-login" })).await;
    assert_eq!(decisions["total"], 2);
    assert_eq!(decisions["items"][1]["rationale"], "the client check drifted");
    let md = std::fs::read_to_string(
        home.path()
            .join("tasks")
            .join(login["id"].as_str().unwrap())
            .join("decisions.md"),
    )
    .unwrap();
    assert!(
        md.contains("Validate passwords server-side only\n\n_Why:_ the client check drifted"),
        "{md}"
    );

    // Attach returns the decisions as resume context.
    let attached = call(&client, "attach_agent_to_task", json!({ "task": "fix-login" })).await;
    assert_eq!(attached["resume"]["recent_decisions"].as_array().unwrap().len(), 2);

    // Search: the task named after the words ranks first; decisions and commands match too.
    let found = call(&client, "find_task", json!({ "query": "login" })).await;
    let tasks = found["tasks"].as_array().unwrap();
    assert_eq!(tasks[0]["task"]["name"], "fix-login");
    assert_eq!(tasks[1]["task"]["name"], "write-docs");
    assert!(tasks[0]["matches"][0]["snippet"].as_str().unwrap().contains("[login]"));
    assert_eq!(tasks[1]["matches"][0]["kind"], "command");
    let found = call(&client, "find_task", json!({ "query": "hashing" })).await;
    assert_eq!(found["tasks"][0]["matches"][0]["kind"], "decision");
    let (kind, message) = call_err(&client, "find_task", json!({ "query": "!!" })).await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("no words"), "{message}");

    // Statistics per task and overall.
    let stats = call(&client, "task_stats", json!({ "task": "fix-login" })).await;
    assert_eq!(stats["executions"], 4);
    assert_eq!(stats["failed_executions"], 2);
    assert_eq!(stats["failure_rate"], 0.5);
    assert_eq!(stats["decisions"], 2);
    assert_eq!(stats["top_commands"].as_array().unwrap().len(), 4);
    let overall = call(&client, "task_stats", json!({})).await;
    assert_eq!(overall["executions"], 5);
    assert_eq!(overall["tasks_by_status"], json!([["running", 2]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_archives_finished_tasks_and_keeps_their_records_and_work() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "cleanup-test").await;
    let done = create(&client, "done").await;
    exec(&client, "done", "echo result > out.txt").await;
    call(&client, "complete_task", json!({ "task": "done" })).await;
    create(&client, "paused").await;
    call(&client, "stop_task", json!({ "task": "paused" })).await;
    create(&client, "busy").await;

    let (kind, message) = call_err(&client, "cleanup_task", json!({})).await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("give a task, or a filter"), "{message}");
    let (kind, message) = call_err(&client, "cleanup_task", json!({ "task": "busy" })).await;
    assert_eq!(kind, "wrong_status", "{message}");
    assert!(message.contains("running"), "{message}");
    let (kind, message) = call_err(
        &client,
        "cleanup_task",
        json!({ "status": "completed", "older_than": "soon" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("30m"), "{message}");

    // A dry run lists and changes nothing.
    let dry = call(&client, "cleanup_task", json!({ "older_than": "0s", "dry_run": true })).await;
    let mut names: Vec<&str> = dry["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["done", "paused"]);
    assert!(dry["tasks"].as_array().unwrap().iter().all(|t| t["archived"] == false));

    let cleaned = call(&client, "cleanup_task", json!({ "status": "completed" })).await;
    assert_eq!(cleaned["tasks"][0]["name"], "done");
    assert_eq!(cleaned["tasks"][0]["archived"], true);
    let status = call(&client, "get_task_status", json!({ "task": "done" })).await;
    assert_eq!(status["task"]["status"], "archived");
    assert_eq!(status["container"]["state"], "missing");
    let id = done["id"].as_str().unwrap();
    assert!(!home.path().join("workspaces").join(id).exists());
    // Records and work stay: history, and the branch in the task's repository.
    let history = call(
        &client,
        "task_history",
        json!({ "task": "done", "types": ["execution"] }),
    )
    .await;
    assert_eq!(history["total"], 1);
    let repo = home.path().join("tasks").join(id).join("repo.git");
    assert_eq!(git(&repo, &["show", "taskbox/done:out.txt"]), "result");
    // The paused and the running task were not touched.
    assert_eq!(
        call(&client, "get_task_status", json!({ "task": "paused" })).await["task"]["status"],
        "stopped"
    );
    assert_eq!(exec(&client, "busy", "echo ok").await["stdout"], "ok\n");
}
