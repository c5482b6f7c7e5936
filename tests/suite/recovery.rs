//! Crash consistency (issue 12): a server killed with kill -9, work killed half-way, a Docker
//! daemon that goes away and comes back. Every test drives the real binary and real Docker; a
//! "daemon outage" is a socket proxy the test closes (common/docker_proxy.rs), never the shared
//! daemon itself.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::docker_proxy::DockerProxy;
use crate::common::http::{HttpServer, connect_http};
use crate::common::*;

/// `taskbox ARGS` on `home`; (success, stderr).
fn taskbox(home: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Waits up to 30 s for `check` to hold.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of the Docker objects (`ps`, `network ls`, `images`) labelled with the task.
fn task_objects(home: &Home, kind: &[&str], task_id: &str) -> Vec<String> {
    let home_filter = home.label_filter();
    let task_filter = format!("label=taskbox.task-id={task_id}");
    let mut args: Vec<&str> = kind.to_vec();
    args.extend(["-q", "--filter", &home_filter, "--filter", &task_filter]);
    docker(&args).split_whitespace().map(String::from).collect()
}

fn execution(page: &Value, command: &str) -> Value {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["command"] == command)
        .unwrap_or_else(|| panic!("no execution of {command:?} in {page}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_left_running_by_a_killed_server_is_interrupted_and_killed_at_the_next_start() {
    require!(docker);
    let home = Home::new();
    let mut server = HttpServer::start(&home.path(), &["--no-auth"]);
    let client = Arc::new(connect_http(&server, None, "crash-test").await);
    let task = create(&client, "crash").await;
    let container = task["container_id"].as_str().unwrap().to_string();

    let command = "sleep 30; echo late";
    let running = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("execute_in_task").with_arguments(
                        json!({ "task": "crash", "command": command })
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                )
                .await
        })
    };
    wait_for("the command to run", || {
        !container_processes(&container, "sleep 30").is_empty()
    })
    .await;
    server.kill();
    running.abort();
    // The server is gone; its command is not.
    assert!(!container_processes(&container, "sleep 30").is_empty());

    let restarted = Instant::now();
    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let client = connect_http(&server, None, "crash-test").await;
    let page = call(&client, "task_executions", json!({ "task": "crash" })).await;
    let resolved_after = restarted.elapsed();
    let row = execution(&page, command);
    assert_eq!(row["status"], "interrupted", "{row}");
    assert!(row["finished_at"].is_string(), "{row}");
    assert!(
        container_processes(&container, "sleep 30").is_empty(),
        "the interrupted command still runs"
    );
    assert!(resolved_after < Duration::from_secs(20), "{resolved_after:?}");

    // Why, in the task's events; and it counts as failed.
    let events = events(&home.path(), task["id"].as_str().unwrap());
    let event = events
        .iter()
        .rev()
        .find(|e| e["type"] == "execution" && e["data"]["execution_id"] == row["id"])
        .expect("an execution event for the interrupted command");
    assert_eq!(event["data"]["status"], "interrupted");
    let reason = event["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("server running it stopped") && reason.contains("killed"),
        "{reason}"
    );
    let failed = call(&client, "task_executions", json!({ "task": "crash", "failed": true })).await;
    assert_eq!(failed["total"], 1, "{failed}");

    // The task works on, and this server's own executions are left alone by the next start.
    assert_eq!(exec(&client, "crash", "echo on").await["stdout"], "on\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_execution_is_resolved_when_its_container_comes_back() {
    require!(docker);
    let home = Home::new();
    let mut server = HttpServer::start(&home.path(), &["--no-auth"]);
    let client = Arc::new(connect_http(&server, None, "revive-test").await);
    let task = create(&client, "rebooted").await;
    let container = task["container_id"].as_str().unwrap().to_string();
    let running = {
        let client = client.clone();
        tokio::spawn(async move {
            call_raw(
                &client,
                "execute_in_task",
                json!({ "task": "rebooted", "command": "sleep 40" }),
            )
            .await
        })
    };
    wait_for("the command to run", || {
        !container_processes(&container, "sleep 40").is_empty()
    })
    .await;
    server.kill();
    running.abort();
    // A host reboot: the server and the container stop; the container comes back at start.
    docker(&["stop", "-t", "0", &container]);

    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let client = connect_http(&server, None, "revive-test").await;
    let row = execution(
        &call(&client, "task_executions", json!({ "task": "rebooted" })).await,
        "sleep 40",
    );
    assert_eq!(row["status"], "interrupted", "{row}");
    let events = events(&home.path(), task["id"].as_str().unwrap());
    let reason = events
        .iter()
        .rev()
        .find(|e| e["type"] == "execution" && e["data"]["execution_id"] == row["id"])
        .unwrap()["data"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("container had stopped"), "{reason}");
    assert!(container_processes(&container, "sleep 40").is_empty());
    assert_eq!(exec(&client, "rebooted", "echo up").await["stdout"], "up\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forks_source_checkpoint_image_goes_with_its_last_user() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "fork-gc-test").await;
    let parent = create(&client, "parent").await;
    let parent_id = parent["id"].as_str().unwrap();
    call(&client, "create_checkpoint", json!({ "task": "parent" })).await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "child", "from_checkpoint": "parent:1" }),
    )
    .await;
    call(&client, "create_checkpoint", json!({ "task": "child" })).await;

    // The child's container runs from the parent's checkpoint image: Docker keeps it.
    call(&client, "delete_task", json!({ "task": "parent", "confirm": true })).await;
    assert_eq!(task_objects(&home, &["images"], parent_id).len(), 1);
    assert_eq!(exec(&client, "child", "echo still").await["stdout"], "still\n");

    // Its last user gone, so is it: nothing of this home is left in Docker.
    call(&client, "delete_task", json!({ "task": "child", "confirm": true })).await;
    assert!(
        task_objects(&home, &["images"], parent_id).is_empty(),
        "the parent's image stayed"
    );
    assert!(labelled_images(&home.label_filter()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_removes_what_belongs_to_no_live_task_and_the_start_sweeps_too() {
    require!(docker);
    let home = Home::new();
    let path = home.path();
    let client = connect(&path, "gc-test").await;
    let live = create(&client, "live").await;
    let live_id = live["id"].as_str().unwrap();
    call(&client, "create_checkpoint", json!({ "task": "live" })).await;

    // Leftovers of work killed half-way: a task's container, network and workspace with no
    // task; a task directory without its record; a second container of the live task (a
    // restore killed before recording it).
    let ghost = "t-01ghost0000000000000000000";
    let labels = |task: &str| {
        vec![
            format!("--label=taskbox.home={}", path.display()),
            format!("--label=taskbox.task-id={task}"),
        ]
    };
    let mut run = vec!["run".to_string(), "-d".into()];
    run.extend(labels(ghost));
    run.extend(["taskbox-base".into(), "sleep".into(), "infinity".into()]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    docker(&run);
    let stray_name = format!("taskbox-{live_id}-1");
    let mut stray = vec!["create".to_string(), format!("--name={stray_name}")];
    stray.extend(labels(live_id));
    stray.extend(["taskbox-base".into(), "true".into()]);
    let stray: Vec<&str> = stray.iter().map(String::as_str).collect();
    docker(&stray);
    let mut network = vec!["network".to_string(), "create".into()];
    network.extend(labels(ghost));
    network.push(format!("taskbox-gc-test-{}", std::process::id()));
    let network: Vec<&str> = network.iter().map(String::as_str).collect();
    docker(&network);
    std::fs::create_dir_all(path.join("workspaces").join(ghost).join("src")).unwrap();
    std::fs::create_dir_all(path.join("tasks").join(ghost).join("outputs")).unwrap();
    // A helper of no task (the container an image's files are read from) whose server was
    // killed before removing it; and one of this home's with no server, which is not ours
    // to judge.
    let helper = |name: &str, server: Option<&str>| {
        let mut args = vec![
            "create".to_string(),
            format!("--name={name}"),
            format!("--label=taskbox.home={}", path.display()),
        ];
        args.extend(server.map(|s| format!("--label=taskbox.server={s}")));
        args.extend(["taskbox-base".into(), "true".into()]);
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let orphan_helper = format!("taskbox-gc-helper-{}", std::process::id());
    let unknown = format!("taskbox-gc-unknown-{}", std::process::id());
    helper(&orphan_helper, Some("s-01deadserver00000000000000"));
    helper(&unknown, None);
    let exists = |name: &str| docker_inspect("container", name).is_some();

    let (ok, dry) = taskbox(&path, &["gc", "--dry-run"]);
    assert!(ok, "{dry}");
    for expected in [
        "container",
        "network",
        "workspace",
        "task_dir",
        &stray_name,
        &orphan_helper,
    ] {
        assert!(dry.contains(expected), "{expected} missing from: {dry}");
    }
    assert_eq!(
        task_objects(&home, &["ps", "-a"], ghost).len(),
        1,
        "a dry run removes nothing"
    );

    let (ok, done) = taskbox(&path, &["gc"]);
    assert!(ok, "{done}");
    assert!(!exists(&orphan_helper), "a dead server's helper goes: {done}");
    assert!(
        exists(&unknown),
        "what carries neither a task nor a server stays: {done}"
    );
    docker(&["rm", "-f", &unknown]);
    assert!(task_objects(&home, &["ps", "-a"], ghost).is_empty(), "{done}");
    assert!(task_objects(&home, &["network", "ls"], ghost).is_empty(), "{done}");
    assert!(!path.join("workspaces").join(ghost).exists());
    assert!(!path.join("tasks").join(ghost).exists());
    assert_eq!(
        task_objects(&home, &["ps", "-a"], live_id),
        vec![live["container_id"].as_str().unwrap()[..12].to_string()],
        "the live task keeps its own container, only its own"
    );
    assert_eq!(task_objects(&home, &["images"], live_id).len(), 1, "and its checkpoint");
    assert_eq!(exec(&client, "live", "echo alive").await["stdout"], "alive\n");
    client.cancel().await.unwrap();

    // The same at a server's start.
    docker(&run);
    let client = connect(&path, "gc-test").await;
    call(&client, "list_tasks", json!({})).await;
    assert!(task_objects(&home, &["ps", "-a"], ghost).is_empty());
    assert_eq!(exec(&client, "live", "echo alive").await["stdout"], "alive\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_killed_half_way_is_finished_at_the_next_start() {
    require!(docker);
    let home = Home::new();
    let proxy = DockerProxy::start();
    let host = proxy.docker_host();
    let mut server = HttpServer::start_with_env(&home.path(), &["--no-auth"], &[("DOCKER_HOST", &host)]);
    let client = Arc::new(connect_http(&server, None, "delete-test").await);
    let task = create(&client, "doomed").await;
    let id = task["id"].as_str().unwrap().to_string();
    call(&client, "create_checkpoint", json!({ "task": "doomed" })).await;

    // The delete stalls at its first removal in Docker; the server is killed there.
    proxy.hold("DELETE /");
    let deleting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("delete_task").with_arguments(
                        json!({ "task": "doomed", "confirm": true })
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill();
    deleting.abort();
    // Cut, not released: a released request would reach Docker after the server died and race
    // the next start's sweep (the image then stays for one more start).
    proxy.down();
    assert_eq!(
        task_objects(&home, &["ps", "-a"], &id).len(),
        1,
        "nothing was removed yet"
    );

    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let client = connect_http(&server, None, "delete-test").await;
    let list = call(&client, "list_tasks", json!({})).await;
    assert_eq!(list["total"], 0, "{list}");
    assert!(task_objects(&home, &["ps", "-a"], &id).is_empty());
    assert!(task_objects(&home, &["images"], &id).is_empty());
    assert!(!home.path().join("tasks").join(&id).exists());
    assert!(!home.path().join("workspaces").join(&id).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_creation_is_not_reaped_by_a_server_starting_meanwhile() {
    require!(docker);
    let home = Home::new();
    let proxy = DockerProxy::start();
    let host = proxy.docker_host();
    let first = HttpServer::start_with_env(&home.path(), &["--no-auth"], &[("DOCKER_HOST", &host)]);
    let client = Arc::new(connect_http(&first, None, "lease-test").await);
    create(&client, "warm").await;

    // The creation stalls at its container, as behind a slow image build or a large clone.
    proxy.hold("/containers/create");
    let creating = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("create_task_sandbox")
                        .with_arguments(json!({ "name": "slow" }).as_object().unwrap().clone()),
                )
                .await
        })
    };
    let db = rusqlite::Connection::open(home.path().join("registry.db")).unwrap();
    let status = |db: &rusqlite::Connection| -> Option<String> {
        db.query_row("SELECT status FROM tasks WHERE name = 'slow'", [], |r| r.get(0))
            .ok()
    };
    wait_for("the creation to begin", || status(&db).as_deref() == Some("creating")).await;
    // It began eleven minutes ago, as far as its creation time tells.
    let long_ago =
        (chrono::Utc::now() - chrono::Duration::minutes(11)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    db.execute("UPDATE tasks SET created_at = ?1 WHERE name = 'slow'", [&long_ago])
        .unwrap();

    // A second server starts (and reconciles) meanwhile.
    let second = HttpServer::start(&home.path(), &["--no-auth"]);
    let other = connect_http(&second, None, "lease-test-2").await;
    call(&other, "list_tasks", json!({})).await;
    assert_eq!(status(&db).as_deref(), Some("creating"), "{}", second.log());

    proxy.release();
    let created = creating.await.unwrap().unwrap();
    assert_ne!(created.is_error, Some(true), "{}", text(&created));
    assert_eq!(exec(&other, "slow", "echo made").await["stdout"], "made\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_restore_leaves_the_task_usable_and_the_next_restore_works() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "restore-test").await;
    let task = create(&client, "undo").await;
    let id = task["id"].as_str().unwrap();
    exec(&client, "undo", "echo one > f.txt").await;
    call(&client, "create_checkpoint", json!({ "task": "undo" })).await;
    exec(&client, "undo", "echo two > f.txt").await;
    call(&client, "stop_task", json!({ "task": "undo" })).await;

    // A stale git lock in the workspace makes the reset fail after the new container exists.
    let lock = home.path().join("workspaces").join(id).join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let (kind, message) = call_err(&client, "restore_checkpoint", json!({ "checkpoint": "undo:1" })).await;
    assert_eq!(kind, "container_command_failed", "{message}");
    let status = call(&client, "get_task_status", json!({ "task": "undo" })).await;
    assert_eq!(status["task"]["status"], "stopped", "{status}");
    assert_ne!(status["container"]["state"], "missing", "{status}");
    assert_eq!(
        task_objects(&home, &["ps", "-a"], id).len(),
        1,
        "the new container went with the failure"
    );

    // Nothing holds a name the next restore needs.
    std::fs::remove_file(&lock).unwrap();
    call(&client, "restore_checkpoint", json!({ "checkpoint": "undo:1" })).await;
    assert_eq!(exec(&client, "undo", "cat f.txt").await["stdout"], "one\n");
    assert_eq!(
        task_objects(&home, &["ps", "-a"], id).len(),
        1,
        "the old container went"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_outage_fails_calls_clearly_and_tasks_work_again_after_it() {
    require!(docker);
    let home = Home::new();
    let proxy = DockerProxy::start();
    let host = proxy.docker_host();
    let client = Arc::new(connect_with_env(&home.path(), "outage-test", &[("DOCKER_HOST", &host)]).await);
    let task = create(&client, "steady").await;
    let container = task["container_id"].as_str().unwrap().to_string();
    let lost = create(&client, "lost").await;

    // The daemon goes away under a running command.
    let running = {
        let client = client.clone();
        tokio::spawn(async move {
            call_raw(
                &client,
                "execute_in_task",
                json!({ "task": "steady", "command": "sleep 5; echo done" }),
            )
            .await
        })
    };
    wait_for("the command to run", || {
        !container_processes(&container, "sleep 5").is_empty()
    })
    .await;
    proxy.down();
    let (kind, message) = tool_error(&running.await.unwrap());
    assert_eq!(kind, "docker_unavailable", "{message}");
    assert!(message.contains("retry"), "{message}");

    // Calls during the outage say so, and what to do.
    let (kind, message) = call_err(
        &client,
        "execute_in_task",
        json!({ "task": "steady", "command": "true" }),
    )
    .await;
    assert_eq!(kind, "docker_unavailable", "{message}");
    assert!(message.contains("Docker") && message.contains("retry"), "{message}");
    let (kind, _) = call_err(&client, "create_task_sandbox", json!({ "name": "during" })).await;
    assert_eq!(kind, "docker_unavailable");
    let status = call(&client, "get_task_status", json!({ "task": "steady" })).await;
    assert!(status["container_error"].is_string(), "{status}");

    // What a daemon restart does to containers: stopped, or (worse) gone.
    docker(&["stop", "-t", "0", &container]);
    docker(&["rm", "-f", lost["container_id"].as_str().unwrap()]);
    proxy.up();

    // Back: the stopped task runs again, the one without a container is clearly failed.
    assert_eq!(exec(&client, "steady", "echo back").await["stdout"], "back\n");
    let (kind, message) = call_err(&client, "execute_in_task", json!({ "task": "lost", "command": "true" })).await;
    assert_eq!(kind, "wrong_status", "{message}");
    assert!(message.contains("no longer exists"), "{message}");
    let executions = call(&client, "task_executions", json!({ "task": "steady" })).await;
    assert_ne!(execution(&executions, "sleep 5; echo done")["status"], "running");
    assert!(task_objects(&home, &["ps", "-a"], task["id"].as_str().unwrap()).len() == 1);
    call(&client, "create_task_sandbox", json!({ "name": "after" })).await;
}

/// delete_task ends work in progress on the task: a command running in it is killed and
/// answered at once, not left running in a container that is going away.
#[tokio::test(flavor = "multi_thread")]
async fn delete_ends_a_command_running_in_the_task() {
    require!(docker);
    let home = Home::new();
    let client = Arc::new(connect(&home.path(), "recovery-delete-busy").await);
    let task = create(&client, "busy").await;
    let container = task["container_id"].as_str().unwrap().to_string();
    let running = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let args = json!({ "task": "busy", "command": "sleep 60; echo late", "timeout_s": 120 });
            let result = call_raw(&client, "execute_in_task", args).await;
            (started.elapsed(), result)
        })
    };
    wait_for("the command to start", || {
        docker_inspect("container", &container).is_some() && !container_processes(&container, "sleep 60").is_empty()
    })
    .await;
    call(&client, "delete_task", json!({ "task": "busy", "confirm": true })).await;
    let (took, result) = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the running command is answered once its task is deleted")
        .unwrap();
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert!(!text(&result).contains("late"), "{}", text(&result));
    assert!(
        docker_inspect("container", &container).is_none(),
        "the container is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_reply_does_not_wait_for_the_recovery_but_calls_do() {
    require!(docker);
    let home = Home::new();
    let path = home.path();
    let client = connect(&path, "gate-test").await;
    let task = create(&client, "gated").await;
    let container = task["container_id"].as_str().unwrap().to_string();
    client.cancel().await.unwrap();
    // Behind taskbox's back: the next start's recovery (task-resumer) starts it again.
    docker(&["stop", "-t", "0", &container]);

    // The sweep, the recovery's last step, lists images: it stalls there.
    let proxy = DockerProxy::start();
    proxy.hold("/images/json");
    let host = proxy.docker_host();
    let client = tokio::time::timeout(
        Duration::from_secs(20),
        connect_with_env(&path, "gate-test", &[("DOCKER_HOST", &host)]),
    )
    .await
    .expect("initialize is answered while the recovery is still going on");
    let client = Arc::new(client);
    let listing = {
        let client = client.clone();
        tokio::spawn(async move { call(&client, "list_tasks", json!({})).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!listing.is_finished(), "a call waits for the recovery to be done");

    proxy.release();
    let list = tokio::time::timeout(Duration::from_secs(30), listing)
        .await
        .expect("the call goes on once the recovery is done")
        .unwrap();
    assert_eq!(list["tasks"][0]["status"], "running", "{list}");
    let state = docker_inspect("container", &container).unwrap();
    assert_eq!(state["State"]["Running"], true, "task-resumer ran before the call");
    assert_eq!(exec(&client, "gated", "echo back").await["stdout"], "back\n");
}
