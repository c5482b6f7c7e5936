//! The MCP layer in process, on the fake runtime (common/in_process.rs): tool arguments,
//! replies and error kinds, without Docker or a child process.

use crate::common::in_process::*;
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

/// A task's life through the tools: create, list, status, stop, delete, each reply shaped as
/// the tools document it.
#[tokio::test]
async fn task_tools_run_on_the_fake_runtime() {
    let home = tempfile::tempdir().unwrap();
    let client = connect_in_process(home.path(), fake_runtime(), "in-process").await;
    assert_eq!(call(&client, "list_tasks", json!({})).await["total"], 0);

    let task = create(&client, "faked").await;
    assert_eq!(task["status"], "running");
    let listed = call(&client, "list_tasks", json!({})).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["tasks"][0]["id"], task["id"]);
    // `task` omitted: the session's current task, set by create.
    let status = call(&client, "get_task_status", json!({})).await;
    assert_eq!(status["task"]["id"], task["id"]);
    assert_eq!(status["container"]["running"], true);

    let stopped = call(&client, "stop_task", json!({ "task": "faked" })).await;
    assert_eq!(stopped["task"]["status"], "stopped");
    let (kind, message) = call_err(&client, "stop_task", json!({ "task": "faked" })).await;
    assert_eq!(kind, "wrong_status", "{message}");
    assert!(message.contains("already stopped"), "{message}");

    let (kind, message) = call_err(&client, "delete_task", json!({ "task": "faked" })).await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("confirm: true"), "{message}");
    let deleted = call(&client, "delete_task", json!({ "task": "faked", "confirm": true })).await;
    assert_eq!(deleted["deleted"], task["id"]);
    let (kind, message) = call_err(&client, "get_task_status", json!({ "task": "faked" })).await;
    assert_eq!(kind, "task_not_found", "{message}");
}

/// Each way a tool call can go wrong reaches the client as a tool error with its kind; bad
/// arguments are refused before anything reaches the runtime.
#[tokio::test]
async fn tool_errors_carry_their_kind() {
    let home = tempfile::tempdir().unwrap();
    let fake = fake_runtime();
    let client = connect_in_process(home.path(), fake.clone(), "in-process").await;
    for (tool, args, expected) in [
        ("execute_in_task", json!({ "command": "true" }), "no_current_task"),
        ("get_task_status", json!({ "task": "nowhere" }), "task_not_found"),
        ("create_task_sandbox", json!({ "name": "Not A Name" }), "invalid_name"),
        ("list_tasks", json!({ "limit": 0 }), "invalid_argument"),
    ] {
        let (kind, message) = call_err(&client, tool, args).await;
        assert_eq!(kind, expected, "{tool}: {message}");
    }
    assert!(fake.lock().containers.is_empty());
    // Unknown parameters are refused by name, in rmcp's own tool error (it has no `error.kind`).
    let refused = call_raw(&client, "list_tasks", json!({ "bogus": 1 })).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("unknown field `bogus`"), "{}", text(&refused));

    create(&client, "taken").await;
    let (kind, message) = call_err(&client, "create_task_sandbox", json!({ "name": "taken" })).await;
    assert_eq!(kind, "name_taken", "{message}");

    // A runtime failure is a Docker error, and creation leaves nothing behind.
    fake.lock().fail.insert("create_container");
    let (kind, message) = call_err(&client, "create_task_sandbox", json!({ "name": "doomed" })).await;
    assert_eq!(kind, "docker_error", "{message}");
    assert_eq!(call(&client, "list_tasks", json!({})).await["total"], 1);
    assert_eq!(fake.lock().containers.len(), 1);
}
