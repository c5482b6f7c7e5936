//! execute_in_task edge cases on real Docker: timeouts and cancellation kill the whole process
//! tree inside the container; users, workdirs, env and bad arguments.

use std::time::{Duration, Instant};

use crate::common::*;
use pretty_assertions::assert_eq;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

/// Lists `sleep` processes in the container (as root, to see every user's).
async fn sleeps(client: &Client, task: &str) -> String {
    let r = call(
        client,
        "execute_in_task",
        json!({ "task": task, "command": "ps -eo user,args | grep '[s]leep 100' || true", "user": "root" }),
    )
    .await;
    r["stdout"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_the_whole_process_tree() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "timeout-test").await;
    create(&client, "timeouts").await;

    // A foreground sleep, a background one, one that escaped into its own session, and one
    // that cleared its environment (still a descendant).
    let started = Instant::now();
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "command": "sleep 1001 & setsid sleep 1002 & env -i /bin/sleep 1003 & echo started; sleep 1000",
            "timeout_s": 2,
        }),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r["timed_out"], true);
    assert_eq!(r["exit_code"], serde_json::Value::Null);
    assert_eq!(r["stdout"], "started\n");
    assert_eq!(sleeps(&client, "timeouts").await, "", "processes survived the timeout");

    // The task is still usable afterwards, and the execution is recorded as timed out.
    let r = exec(&client, "timeouts", "echo alive").await;
    assert_eq!(r["stdout"], "alive\n");
    let status = call(&client, "get_task_status", json!({})).await;
    assert_eq!(status["executions"]["failed"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_kills_the_whole_process_tree() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "cancel-test").await;
    create(&client, "cancels").await;

    // Dropping the pending call makes rmcp's client send notifications/cancelled.
    let args = json!({ "command": "sleep 1001 & sleep 1000", "timeout_s": 600 });
    let call_fut = client
        .call_tool(CallToolRequestParams::new("execute_in_task").with_arguments(args.as_object().unwrap().clone()));
    assert!(
        tokio::time::timeout(Duration::from_secs(2), call_fut).await.is_err(),
        "sleep returned early"
    );

    // The server kills the tree shortly after the notification.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = sleeps(&client, "cancels").await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes survived cancellation:\n{left}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The execution is recorded as cancelled.
    let status = call(&client, "get_task_status", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = status;
    while status["executions"]["running"] != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = call(&client, "get_task_status", json!({})).await;
    }
    let id = status["task"]["id"].as_str().unwrap();
    let events = events(&home.path(), id);
    let cancelled: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "execution" && e["data"]["status"] == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_workdirs_env_and_bad_arguments() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "args-test").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "args", "env": { "GREETING": "hi" }, "network": "none", "memory_mb": 256, "cpus": 0.5 }),
    )
    .await;

    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "id -un", "user": "root" }),
    )
    .await;
    assert_eq!(r["stdout"], "root\n");
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "mkdir -p sub && cd sub && pwd", "explanation": "make a dir" }),
    )
    .await;
    assert_eq!(r["stdout"], "/workspace/sub\n");
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "pwd", "workdir": "sub" }),
    )
    .await;
    assert_eq!(r["stdout"], "/workspace/sub\n");
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "echo $GREETING $EXTRA", "env": { "EXTRA": "there" } }),
    )
    .await;
    assert_eq!(r["stdout"], "hi there\n");
    // network "none": no interface but loopback.
    let r = exec(&client, "args", "ls /sys/class/net").await;
    assert_eq!(r["stdout"], "lo\n");

    for (args, kind, needle) in [
        (
            json!({ "command": "true", "timeout_s": 0 }),
            "invalid_argument",
            "timeout_s",
        ),
        (
            json!({ "command": "true", "timeout_s": 3601 }),
            "invalid_argument",
            "1..=3600",
        ),
        (json!({ "command": "  " }), "invalid_argument", "command"),
        (
            json!({ "command": "true", "user": "nobody" }),
            "invalid_argument",
            "user",
        ),
        (
            json!({ "command": "true", "env": { "1X": "a" } }),
            "invalid_argument",
            "1X",
        ),
        (
            json!({ "command": "true", "env": { "TASKBOX_EXEC_ID": "x" } }),
            "invalid_argument",
            "reserved",
        ),
        (
            json!({ "command": "true", "task": "nope" }),
            "task_not_found",
            "list_tasks",
        ),
    ] {
        let (got_kind, message) = call_err(&client, "execute_in_task", args.clone()).await;
        assert_eq!(got_kind, kind, "{args}: {message}");
        assert!(message.contains(needle), "{args}: {message}");
    }
    // Unknown parameters are refused rather than silently ignored.
    let result = client
        .call_tool(
            CallToolRequestParams::new("execute_in_task")
                .with_arguments(json!({ "command": "true", "bogus": 1 }).as_object().unwrap().clone()),
        )
        .await;
    match result {
        Ok(r) => assert_eq!(r.is_error, Some(true), "{}", text(&r)),
        Err(e) => assert!(e.to_string().contains("bogus"), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn root_commands_cannot_leave_setuid_files_on_the_host() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "setuid-test").await;
    let task = create(&client, "setuid").await;
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "command": "cp /bin/true /workspace/suid && chmod 6755 /workspace/suid && stat -c %a /workspace/suid",
            "user": "root",
        }),
    )
    .await;
    assert_eq!(r["stdout"], "6755\n", "the command itself saw its chmod");
    use std::os::unix::fs::PermissionsExt;
    let host_file = home
        .path()
        .join("workspaces")
        .join(task["id"].as_str().unwrap())
        .join("suid");
    let mode = std::fs::metadata(&host_file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(format!("{mode:o}"), "755", "set-id bits survived on the host");
}
