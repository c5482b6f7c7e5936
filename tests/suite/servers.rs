//! Several server processes on one data dir, startup reconciliation, and the errors an agent
//! sees for bad input or a missing Docker daemon.

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_home_create_and_execute_at_once() {
    require!(docker);
    let home = Home::new();
    let path = home.path();
    let (a, b) = tokio::join!(connect(&path, "server-a"), connect(&path, "server-b"));

    let work = |client: &'static Client, name: &'static str| async move {
        create(client, name).await;
        let mut outputs = Vec::new();
        for i in 0..5 {
            let r = exec(client, name, &format!("echo {name}-{i}")).await;
            outputs.push(r["stdout"].as_str().unwrap().to_string());
        }
        outputs
    };
    // 'static borrows for the joined futures: the clients live until the end of the test.
    let a: &'static Client = Box::leak(Box::new(a));
    let b: &'static Client = Box::leak(Box::new(b));
    let (out_a, out_b) = tokio::join!(work(a, "alpha"), work(b, "beta"));
    assert_eq!(out_a, (0..5).map(|i| format!("alpha-{i}\n")).collect::<Vec<_>>());
    assert_eq!(out_b, (0..5).map(|i| format!("beta-{i}\n")).collect::<Vec<_>>());

    // Each sees the other's task, and can work in it.
    for client in [a, b] {
        let list = call(client, "list_tasks", json!({})).await;
        assert_eq!(list["total"], 2);
        let mut names: Vec<_> = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        names.sort_by_key(|n| n.to_string());
        assert_eq!(names, [json!("alpha"), json!("beta")]);
    }
    let r = exec(a, "beta", "echo from-a").await;
    assert_eq!(r["stdout"], "from-a\n");
    let status = call(b, "get_task_status", json!({ "task": "beta" })).await;
    assert_eq!(status["executions"]["total"], 6);

    // The same name from both at once: exactly one wins, the other gets a clear error.
    let (ra, rb) = tokio::join!(
        call_raw(a, "create_task_sandbox", json!({ "name": "race" })),
        call_raw(b, "create_task_sandbox", json!({ "name": "race" }))
    );
    let errors: Vec<_> = [&ra, &rb].into_iter().filter(|r| r.is_error == Some(true)).collect();
    assert_eq!(errors.len(), 1, "{} / {}", text(&ra), text(&rb));
    let (kind, message) = tool_error(errors[0]);
    assert_eq!(kind, "name_taken", "{message}");
    assert!(message.contains("already exists"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_marks_tasks_whose_containers_died_or_vanished_as_failed() {
    require!(docker);
    let home = Home::new();
    // The reconciliation alone: task-resumer would bring these tasks back (suite/hooks.rs).
    write_config(&home.path(), "[hooks.task-resumer]\nenabled = false\n");
    let client = connect(&home.path(), "reconcile-test").await;
    let gone = create(&client, "gone").await;
    let dead = create(&client, "dead").await;
    create(&client, "fine").await;
    client.cancel().await.unwrap();

    // Behind the server's back: one container removed, one killed.
    docker(&["rm", "-f", gone["container_id"].as_str().unwrap()]);
    docker(&["kill", dead["container_id"].as_str().unwrap()]);

    let client = connect(&home.path(), "reconcile-test").await;
    let status = |name: &'static str| {
        let client = &client;
        async move { call(client, "get_task_status", json!({ "task": name })).await }
    };
    let s = status("gone").await;
    assert_eq!(s["task"]["status"], "failed");
    assert!(
        s["task"]["status_reason"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{s}"
    );
    assert_eq!(s["container"]["state"], "missing");
    let s = status("dead").await;
    assert_eq!(s["task"]["status"], "failed");
    assert!(s["task"]["status_reason"].as_str().unwrap().contains("exited"), "{s}");
    assert_eq!(status("fine").await["task"]["status"], "running");

    // The reason is in the event log.
    let events = events(&home.path(), gone["id"].as_str().unwrap());
    let change = events.iter().rev().find(|e| e["type"] == "status_changed").unwrap();
    assert_eq!(change["data"]["from"], "running");
    assert_eq!(change["data"]["to"], "failed");
    assert!(change["data"]["reason"].as_str().unwrap().contains("no longer exists"));

    // A failed task says what to do; it can be deleted.
    let (kind, message) = call_err(&client, "execute_in_task", json!({ "task": "dead", "command": "true" })).await;
    assert_eq!(kind, "wrong_status");
    assert!(message.contains("delete it"), "{message}");
    call(&client, "delete_task", json!({ "task": "gone", "confirm": true })).await;
    call(&client, "delete_task", json!({ "task": "dead", "confirm": true })).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_that_dies_under_a_running_server_fails_its_task() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "died-test").await;
    let task = create(&client, "dies").await;
    docker(&["rm", "-f", task["container_id"].as_str().unwrap()]);
    let (kind, message) = call_err(&client, "execute_in_task", json!({ "command": "true" })).await;
    assert_eq!(kind, "wrong_status", "{message}");
    assert!(message.contains("no longer exists"), "{message}");
    let s = call(&client, "get_task_status", json!({})).await;
    assert_eq!(s["task"]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_errors_that_say_what_to_do() {
    // Needs no Docker: every one of these is refused before Docker is asked.
    let home = Home::new();
    let client = connect(&home.path(), "errors-test").await;
    let cases = [
        (
            "execute_in_task",
            json!({ "command": "true" }),
            "no_current_task",
            "create_task_sandbox",
        ),
        (
            "get_task_status",
            json!({ "task": "missing" }),
            "task_not_found",
            "list_tasks",
        ),
        (
            "create_task_sandbox",
            json!({ "name": "Bad_Name" }),
            "invalid_name",
            "[a-z0-9]",
        ),
        ("create_task_sandbox", json!({ "name": "" }), "invalid_name", "empty"),
        (
            "create_task_sandbox",
            json!({ "name": "x", "network": "host" }),
            "invalid_argument",
            "\"none\"",
        ),
        (
            "create_task_sandbox",
            json!({ "name": "x", "memory_mb": 1 }),
            "invalid_argument",
            "64",
        ),
        (
            "create_task_sandbox",
            json!({ "name": "x", "cpus": 0 }),
            "invalid_argument",
            "cpus",
        ),
        (
            "list_tasks",
            json!({ "status": "sleeping" }),
            "invalid_argument",
            "running",
        ),
        ("list_tasks", json!({ "limit": 0 }), "invalid_argument", "limit"),
        (
            "delete_task",
            json!({ "task": "missing", "confirm": true }),
            "task_not_found",
            "missing",
        ),
        ("stop_task", json!({}), "no_current_task", "pass `task`"),
    ];
    for (tool, args, kind, needle) in cases {
        let (got, message) = call_err(&client, tool, args.clone()).await;
        assert_eq!(got, kind, "{tool}({args}): {message}");
        assert!(message.contains(needle), "{tool}({args}): {message}");
    }
    // The server is still alive and answering.
    let list = call(&client, "list_tasks", json!({})).await;
    assert_eq!(list["total"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_docker_calls_fail_clearly_and_the_server_keeps_serving() {
    let home = Home::new();
    let client = connect_with_env(
        &home.path(),
        "no-docker-test",
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    )
    .await;
    let (kind, message) = call_err(&client, "create_task_sandbox", json!({ "name": "nodocker" })).await;
    assert_eq!(kind, "docker_unavailable", "{message}");
    assert!(message.contains("start Docker"), "{message}");
    let list = call(&client, "list_tasks", json!({})).await;
    assert_eq!(list["total"], 0, "nothing half-made");
}
