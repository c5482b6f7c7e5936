//! Background executions and the supervisor (issue 13 points 1-2, issue 11 point 5), on the
//! real binary and real Docker: output read back by cursor, input, kills of whole trees,
//! survival across a server restart, ends on stop, owners over HTTP; and foreground commands
//! whose escaped processes end with them.

use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Starts `command` in the background; returns its execution_id.
async fn start(client: &Client, task: &str, command: &str) -> String {
    let started = Instant::now();
    let r = call(
        client,
        "execute_in_task",
        json!({ "task": task, "command": command, "background": true }),
    )
    .await;
    assert_eq!(r["background"], true, "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    r["execution_id"].as_str().unwrap().to_string()
}

/// Reads the execution by cursor until it ends; returns the last reply and all stdout/stderr.
async fn read_to_end(client: &Client, id: &str, limit: Duration) -> (Value, String, String, usize) {
    let deadline = Instant::now() + limit;
    let (mut out, mut err, mut calls) = (String::new(), String::new(), 0);
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({ "execution_id": id, "wait_s": 2 });
        if let Some(c) = &cursor {
            args["since"] = json!(c);
        }
        let r = call(client, "execution_output", args).await;
        calls += 1;
        out.push_str(r["stdout"].as_str().unwrap());
        err.push_str(r["stderr"].as_str().unwrap());
        cursor = Some(r["cursor"].as_str().unwrap().to_string());
        if r["status"] != "running" && r["more"] == false {
            return (r, out, err, calls);
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}: {r}");
    }
}

fn container_of(task: &Value) -> String {
    task["container_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cursor_returns_each_byte_exactly_once() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "bg-cursor").await;
    create(&client, "cursor").await;

    // 10 s of output on both streams, with multi-byte characters.
    let id = start(
        &client,
        "cursor",
        "for i in $(seq 1 100); do echo \"line $i é€\"; echo \"err $i\" >&2; sleep 0.1; done; exit 7",
    )
    .await;
    let (last, out, err, calls) = read_to_end(&client, &id, Duration::from_secs(60)).await;
    let expected: String = (1..=100).map(|i| format!("line {i} é€\n")).collect();
    let expected_err: String = (1..=100).map(|i| format!("err {i}\n")).collect();
    assert_eq!(out, expected);
    assert_eq!(err, expected_err);
    assert!(calls > 2, "the output came in {calls} call(s): it did not stream");
    assert_eq!(last["status"], "finished");
    assert_eq!(last["exit_code"], 7);
    assert_eq!(last["stdout_bytes"], expected.len());
    assert_eq!(last["last_line"], "line 100 é€");

    // Read again from the start: the same bytes; from the end: nothing.
    let again = call(&client, "execution_output", json!({ "execution_id": id })).await;
    assert_eq!(again["stdout"], expected);
    let tail = call(
        &client,
        "execution_output",
        json!({ "execution_id": id, "since": last["cursor"] }),
    )
    .await;
    assert_eq!((tail["stdout"].as_str(), tail["stderr"].as_str()), (Some(""), Some("")));

    // Recorded once, as finished with its exit code, and listed.
    let listed = call(&client, "task_executions", json!({})).await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["items"][0]["exit_code"], 7);
    assert_eq!(listed["items"][0]["background"], true);
    let task_id = listed["items"][0]["task_id"].as_str().unwrap();
    let ended: Vec<_> = events(&home.path(), task_id)
        .into_iter()
        .filter(|e| e["type"] == "execution" && e["data"]["execution_id"] == id.as_str())
        .collect();
    assert_eq!(ended.len(), 1, "{ended:#?}");

    // Bad cursors and ids say what to do.
    let (kind, message) = call_err(&client, "execution_output", json!({ "execution_id": id, "since": "x" })).await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("cursor"), "{message}");
    let (kind, _) = call_err(&client, "execution_output", json!({ "execution_id": "e-nope" })).await;
    assert_eq!(kind, "execution_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn send_input_answers_a_prompt_and_closes_input() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "bg-input").await;
    create(&client, "input").await;

    let id = start(&client, "input", "read -p 'Continue? [y/N] ' x; echo \"answer: $x\"").await;
    // It waits for its input meanwhile.
    let r = call(&client, "execution_output", json!({ "execution_id": id, "wait_s": 1 })).await;
    assert_eq!(r["status"], "running");
    let sent = call(&client, "send_input", json!({ "execution_id": id, "text": "yes\n" })).await;
    assert_eq!(sent["bytes"], 4);
    let (last, out, _, _) = read_to_end(&client, &id, Duration::from_secs(30)).await;
    assert_eq!(out, "answer: yes\n");
    assert_eq!(last["exit_code"], 0);

    // `cat` ends only once its input is closed.
    let id = start(&client, "input", "cat; echo done").await;
    call(&client, "send_input", json!({ "execution_id": id, "text": "abc" })).await;
    let r = call(&client, "execution_output", json!({ "execution_id": id, "wait_s": 2 })).await;
    assert_eq!(r["status"], "running", "cat ended before its input was closed: {r}");
    call(
        &client,
        "send_input",
        json!({ "execution_id": id, "text": "def", "eof": true }),
    )
    .await;
    let (_, out, _, _) = read_to_end(&client, &id, Duration::from_secs(30)).await;
    assert_eq!(out, "abcdefdone\n");

    // Input to an execution that ended is refused with the reason.
    let (kind, message) = call_err(&client, "send_input", json!({ "execution_id": id, "text": "x" })).await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("ended"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_execution_ends_a_tree_that_ignores_term() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "bg-kill").await;
    let task = create(&client, "kill").await;
    let container = container_of(&task);

    // Every part ignores TERM; one escaped into its own session, one cleared its environment.
    let id = start(
        &client,
        "kill",
        "trap '' TERM; (trap '' TERM; sleep 1001) & setsid sh -c \"trap '' TERM; sleep 1002\" & \
         (env -i sh -c \"trap '' TERM; sleep 1003\" &); echo up; sleep 1000",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !container_processes(&container, "sleep 100").contains("sleep 1003") {
        assert!(Instant::now() < deadline, "the tree did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let killed = call(&client, "kill_execution", json!({ "execution_id": id })).await;
    assert_eq!(killed["status"], "cancelled", "{killed}");
    // TERM was ignored, so it took the grace period and then KILL.
    assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(container_processes(&container, "sleep 100"), "", "processes survived");

    // Bad signals are refused; killing what ended is no error.
    let (kind, _) = call_err(
        &client,
        "kill_execution",
        json!({ "execution_id": id, "signal": "USR1" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument");
    let again = call(
        &client,
        "kill_execution",
        json!({ "execution_id": id, "signal": "KILL" }),
    )
    .await;
    assert_eq!(again["status"], "cancelled");

    // stop_task ends the task's background executions and records it.
    let id = start(&client, "kill", "sleep 1005").await;
    let running = call(&client, "get_task_status", json!({})).await;
    assert_eq!(running["running_executions"][0]["id"], id.as_str());
    assert_eq!(
        running["last_execution"]["id"],
        id.as_str(),
        "running executions come first"
    );
    call(&client, "stop_task", json!({})).await;
    let r = call(&client, "execution_output", json!({ "execution_id": id })).await;
    assert_eq!(r["status"], "cancelled", "{r}");
    call(&client, "resume_task", json!({})).await;
    assert_eq!(container_processes(&container, "sleep 100"), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn foreground_processes_end_with_their_command() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "fg-escape").await;
    let task = create(&client, "escape").await;
    let container = container_of(&task);

    // A double fork to PID 1 with a cleared environment and a new session: escaped the
    // marker kill before the supervisor.
    let started = Instant::now();
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "command": "(env -i sh -c 'while :; do :; done' &); (env -i setsid sh -c 'sleep 1011' &); sleep 1000",
            "timeout_s": 2,
        }),
    )
    .await;
    assert_eq!(r["timed_out"], true);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(
        container_processes(&container, "while :"),
        "",
        "the busy loop survived the timeout"
    );
    assert_eq!(container_processes(&container, "sleep 1011"), "");

    // A command that returns at once leaves nothing running either.
    let r = exec(&client, "escape", "(env -i sh -c 'sleep 1012' &); echo back").await;
    assert_eq!(r["stdout"], "back\n");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(container_processes(&container, "sleep 1012"), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_cannot_end_its_supervisor_to_leave_processes_behind() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "fg-supervisor").await;
    let task = create(&client, "own-supervisor").await;
    let container = container_of(&task);
    let daemon = start(&client, "own-supervisor", "sleep 1100").await;

    // The image's user runs under a root supervisor: it cannot signal it, and it keeps its
    // own uid, gid, groups and HOME.
    let r = exec(
        &client,
        "own-supervisor",
        "(env -i setsid sh -c 'sleep 1101' &); kill -9 $PPID 2>/dev/null || echo refused; \
         echo \"$(id -u):$(id -g):$(id -G):$HOME\"",
    )
    .await;
    assert_eq!(r["stdout"], "refused\n1000:1000:1000:/home/agent\n", "{r}");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(container_processes(&container, "sleep 1101"), "");

    // Root can kill its supervisor: what it left under PID 1 is reaped, the task's
    // background execution is not.
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "task": "own-supervisor",
            "user": "root",
            "command": "(env -i setsid sh -c 'sleep 1102' &); sleep 0.5; kill -9 $PPID; sleep 5",
        }),
    )
    .await;
    assert_eq!(r["exit_code"], 137, "{r}");
    assert_eq!(
        container_processes(&container, "sleep 1102"),
        "",
        "the escaped process survived"
    );
    assert_ne!(
        container_processes(&container, "sleep 1100"),
        "",
        "the background execution was reaped"
    );
    let output = call(&client, "execution_output", json!({ "execution_id": daemon })).await;
    assert_eq!(output["status"], "running", "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_background_execution_survives_a_server_restart() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "bg-restart").await;
    let task = create(&client, "restart").await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let id = start(
        &client,
        "restart",
        "for i in $(seq 1 6); do echo \"tick $i\"; sleep 1; done; exit 4",
    )
    .await;
    // The server goes away while it runs, and none runs when it ends.
    client.cancel().await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;

    let client = connect(&home.path(), "bg-restart-2").await;
    // The start's recovery (behind the first reply) records how it ended, before any tool
    // call asks.
    let recorded = || -> Vec<_> {
        events(&home.path(), &task_id)
            .into_iter()
            .filter(|e| e["type"] == "execution" && e["data"]["execution_id"] == id.as_str())
            .collect()
    };
    let waited = std::time::Instant::now();
    while recorded().is_empty() && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recorded = recorded();
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["data"]["exit_code"], 4);
    assert_eq!(recorded[0]["data"]["background"], true);
    let listed = call(&client, "task_executions", json!({ "task": "restart" })).await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["items"][0]["status"], "finished");
    assert_eq!(listed["items"][0]["exit_code"], 4);
    let r = call(&client, "execution_output", json!({ "execution_id": id })).await;
    let expected: String = (1..=6).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(r["stdout"], expected);
    assert_eq!(r["exit_code"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_owners_execution_is_like_an_unknown_one() {
    require!(docker);
    let home = Home::new();
    let (alice_token, _) = create_token(&home.path(), "alice");
    let (bob_token, _) = create_token(&home.path(), "bob");
    write_config(&home.path(), "[quotas.default]\nbackground_executions = 1\n");
    let server = HttpServer::start(&home.path(), &[]);
    let alice = connect_http(&server, Some(&alice_token), "alice-agent").await;
    let bob = connect_http(&server, Some(&bob_token), "bob-agent").await;
    create(&alice, "private").await;
    let id = start(&alice, "private", "read x; echo \"secret $x\"").await;

    for (tool, args) in [
        ("execution_output", json!({ "execution_id": id })),
        ("send_input", json!({ "execution_id": id, "text": "bob\n" })),
        ("kill_execution", json!({ "execution_id": id })),
    ] {
        let (kind, message) = call_err(&bob, tool, args).await;
        assert_eq!(kind, "execution_not_found", "{tool}: {message}");
        let (unknown_kind, _) = call_err(&bob, tool, json!({ "execution_id": "e-01unknown" })).await;
        assert_eq!(kind, unknown_kind);
    }
    // The quota: one background execution at a time per owner.
    let (kind, message) = call_err(
        &alice,
        "execute_in_task",
        json!({ "task": "private", "command": "true", "background": true }),
    )
    .await;
    assert_eq!(kind, "quota_exceeded", "{message}");
    assert!(
        message.contains("background_executions") && message.contains("kill_execution"),
        "{message}"
    );

    // Alice's execution is untouched: it still waits for her input.
    call(&alice, "send_input", json!({ "execution_id": id, "text": "alice\n" })).await;
    let (last, out, _, _) = read_to_end(&alice, &id, Duration::from_secs(30)).await;
    assert_eq!(out, "secret alice\n");
    assert_eq!(last["status"], "finished");
    // Once it ended, there is room again.
    start(&alice, "private", "true").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_and_delete_end_background_executions_and_the_mounts_come_back() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "bg-restore").await;
    let task = create(&client, "restore").await;
    let task_id = task["id"].as_str().unwrap().to_string();
    call(&client, "create_checkpoint", json!({ "label": "start" })).await;
    let id = start(&client, "restore", "echo before; sleep 1020").await;
    let restored = call(&client, "restore_checkpoint", json!({ "checkpoint": "restore:1" })).await;
    let r = call(&client, "execution_output", json!({ "execution_id": id })).await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(r["stdout"], "before\n", "its output outlives its container");
    let ended: Vec<_> = events(&home.path(), &task_id)
        .into_iter()
        .filter(|e| e["type"] == "execution" && e["data"]["execution_id"] == id.as_str())
        .collect();
    assert_eq!(ended.len(), 1, "{ended:#?}");

    // The new container has the supervisor and the run directory again, and neither is in
    // the checkpoint's image (a bind mount is not part of the container's filesystem).
    let container = restored["task"]["container_id"].as_str().unwrap().to_string();
    assert_eq!(container_processes(&container, "sleep 1020"), "");
    let id = start(&client, "restore", "echo again").await;
    let (last, out, _, _) = read_to_end(&client, &id, Duration::from_secs(30)).await;
    assert_eq!((out.as_str(), last["exit_code"].as_i64()), ("again\n", Some(0)));
    let image = docker_inspect("container", &container).unwrap()["Image"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &image,
        "-c",
        "ls -A /.taskbox/run; wc -c < /.taskbox/bin/supervise",
    ]);
    assert_eq!(
        listing.trim(),
        "0",
        "the checkpoint image holds run files or the supervisor: {listing}"
    );

    // delete_task ends them too (nothing of the task is left to record it in).
    start(&client, "restore", "sleep 1021").await;
    call(&client, "delete_task", json!({ "task": "restore", "confirm": true })).await;
    assert!(docker_inspect("container", &container).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_is_reported_as_waiting_for_input_and_silence_as_a_stall() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "bg-stall").await;
    create(&client, "stall").await;

    let started = |command: &str| json!({ "task": "stall", "command": command, "background": true, "stall_s": 2 });
    let prompt = call(
        &client,
        "execute_in_task",
        started("echo working; echo 'Do you want to continue? [Y/n]'; read answer; echo \"answer: $answer\""),
    )
    .await["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let asleep = call(&client, "execute_in_task", started("echo started; sleep 1030")).await["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let busy = call(
        &client,
        "execute_in_task",
        started("echo spinning; while :; do :; done"),
    )
    .await["execution_id"]
        .as_str()
        .unwrap()
        .to_string();

    let waiting = poll_until(&client, &prompt, Duration::from_secs(30), |r| {
        r["waiting_for_input"] == true
    })
    .await;
    assert_eq!(waiting["last_line"], "Do you want to continue? [Y/n]");
    assert_eq!(waiting["stalled"], false);
    assert!(waiting["advice"].as_str().unwrap().contains("send_input"), "{waiting}");
    assert!(
        waiting["blocked_on"].as_str().unwrap().contains("standard input"),
        "{waiting}"
    );
    call(&client, "send_input", json!({ "execution_id": prompt, "text": "y\n" })).await;
    let done = poll_until(&client, &prompt, Duration::from_secs(30), |r| r["status"] != "running").await;
    assert_eq!(done["waiting_for_input"], false);

    let stalled = poll_until(&client, &asleep, Duration::from_secs(30), |r| r["stalled"] == true).await;
    assert_eq!(stalled["waiting_for_input"], false);
    assert!(stalled["blocked_on"].as_str().unwrap().contains("sleep"), "{stalled}");
    // A command that computes is silent but neither waiting nor stalled.
    let spinning = call(&client, "execution_output", json!({ "execution_id": busy })).await;
    assert_eq!(
        (spinning["waiting_for_input"].as_bool(), spinning["stalled"].as_bool()),
        (Some(false), Some(false))
    );
    for id in [&asleep, &busy] {
        call(
            &client,
            "kill_execution",
            json!({ "execution_id": id, "signal": "KILL" }),
        )
        .await;
    }

    // Commands get defaults that avoid prompts and pagers; the call's own env wins.
    let r = call(
        &client,
        "execute_in_task",
        json!({ "task": "stall", "command": "echo $DEBIAN_FRONTEND $GIT_TERMINAL_PROMPT $PAGER $GIT_PAGER", "env": { "PAGER": "more" } }),
    )
    .await;
    assert_eq!(r["stdout"], "noninteractive 0 more cat\n");
}
