//! The hooks through the real binary, rmcp's client and real Docker. Each built-in hook's
//! effect is shown with the hook on, and shown to be the hook's by switching it off in the
//! server's config; external hooks allow, deny with a reason and time out.

use std::path::Path;

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// The recorded runs of one hook in a task's event log.
fn hook_runs(home: &Path, task_id: &str, hook: &str) -> Vec<Value> {
    events(home, task_id)
        .into_iter()
        .filter(|e| e["type"] == "hook" && e["data"]["hook"] == hook)
        .map(|e| e["data"].clone())
        .collect()
}

fn warnings(result: &Value) -> String {
    result["hook_warnings"].to_string()
}

fn plan(home: &Path, task_id: &str) -> Option<String> {
    std::fs::read_to_string(home.join("tasks").join(task_id).join("plan.md")).ok()
}

async fn checkpoint_labels(client: &Client, task: &str) -> Vec<String> {
    let list = call(client, "list_checkpoints", json!({ "task": task })).await;
    let mut labels: Vec<String> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["automatic"] == true)
        .map(|c| c["label"].as_str().unwrap_or("").to_string())
        .collect();
    labels.reverse();
    labels
}

/// Points the task's registry row at another container, as if someone swapped it.
fn swap_container(home: &Path, task_id: &str, container: &str) {
    let db = rusqlite::Connection::open(home.join("registry.db")).unwrap();
    db.execute("UPDATE tasks SET container_id = ?1 WHERE id = ?2", [container, task_id])
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_checkpoint_hooks_keep_the_plan_and_automatic_checkpoints() {
    require!(docker);
    let home = Home::new();
    write_config(
        &home.path(),
        "[hooks.checkpoint-creator]\nevery_executions = 3\nmin_interval_s = 0\n",
    );
    let client = connect(&home.path(), "plan-agent").await;
    let created = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "planned", "description": "Make the greeting friendlier" }),
    )
    .await;
    let id = created["task"]["id"].as_str().unwrap().to_string();
    let text = plan(&home.path(), &id).expect("plan-file-creator writes plan.md");
    assert!(text.starts_with("# Plan: planned\n"), "{text}");
    assert!(text.contains("## Goal\n\nMake the greeting friendlier\n"), "{text}");

    exec(&client, "planned", "echo hello > greeting.txt").await;
    let failed = exec(&client, "planned", "grep -q friendly greeting.txt").await;
    assert_eq!(failed["exit_code"], 1);
    // The third execution: checkpoint-creator's every-3 checkpoint.
    exec(&client, "planned", "echo 'hello, friend' > greeting.txt").await;
    call(
        &client,
        "record_decision",
        json!({ "decision": "Use 'hello, friend'", "rationale": "warmer" }),
    )
    .await;
    call(&client, "create_checkpoint", json!({ "label": "greeting done" })).await;
    let text = plan(&home.path(), &id).unwrap();
    assert!(
        text.contains("failed: `grep -q friendly greeting.txt` (exit 1)"),
        "{text}"
    );
    assert!(text.contains("Use 'hello, friend' — warmer"), "{text}");
    assert!(text.contains("checkpoint `planned:1` (after 3 executions)"), "{text}");
    assert!(text.contains("checkpoint `planned:2` (greeting done)"), "{text}");

    let completed = call(&client, "complete_task", json!({})).await;
    assert_eq!(completed["task"]["status"], "completed");
    assert_eq!(
        checkpoint_labels(&client, "planned").await,
        ["after 3 executions", "on complete"]
    );
    let text = plan(&home.path(), &id).unwrap();
    let result = &text[text.find("## Result").unwrap()..];
    assert!(result.contains("- Executions: 3 (1 failed).\n"), "{result}");
    assert!(
        result.contains("- Decisions: 1.\n  - Use 'hello, friend'\n"),
        "{result}"
    );
    assert!(result.contains("- Checkpoints: 3.\n"), "{result}");
    assert!(result.contains("commit(s) since the base"), "{result}");
    assert!(!text.contains("_Not finished yet._"), "{text}");

    // Another agent attaching gets the plan back.
    let other = connect(&home.path(), "second-agent").await;
    let attached = call(&other, "attach_agent_to_task", json!({ "task": "planned" })).await;
    assert_eq!(attached["resume"]["plan"]["text"].as_str().unwrap(), text);
    for hook in [
        "plan-file-creator",
        "plan-updater",
        "plan-finalizer",
        "checkpoint-creator",
    ] {
        let runs = hook_runs(&home.path(), &id, hook);
        assert!(!runs.is_empty(), "{hook} left no record");
        assert!(
            runs.iter()
                .all(|r| r["decision"] == "allow" && r["duration_ms"].is_u64()),
            "{runs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_plan_and_checkpoint_hooks_off_there_is_no_plan_and_no_automatic_checkpoint() {
    require!(docker);
    let home = Home::new();
    write_config(
        &home.path(),
        "[hooks.checkpoint-creator]\nenabled = false\n[hooks.plan-file-creator]\nenabled = false\n\
         [hooks.plan-updater]\nenabled = false\n[hooks.plan-finalizer]\nenabled = false\n",
    );
    let client = connect(&home.path(), "plain-agent").await;
    let task = create(&client, "unplanned").await;
    let id = task["id"].as_str().unwrap();
    exec(&client, "unplanned", "false").await;
    call(&client, "stop_task", json!({})).await;
    call(&client, "resume_task", json!({ "task": "unplanned" })).await;
    call(&client, "complete_task", json!({ "task": "unplanned" })).await;
    assert_eq!(plan(&home.path(), id), None);
    assert_eq!(checkpoint_labels(&client, "unplanned").await, Vec::<String>::new());
    let attached = call(&client, "attach_agent_to_task", json!({ "task": "unplanned" })).await;
    assert_eq!(attached["resume"]["plan"], Value::Null);
}

/// Executions back to back take no checkpoint every N of them: not within `min_interval_s`
/// (default 300) of the task's creation or newest checkpoint; once that much time has passed,
/// the next multiple of N does.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_creator_takes_no_checkpoint_within_its_interval() {
    require!(docker);
    let (rapid, paced) = (Home::new(), Home::new());
    write_config(&rapid.path(), "[hooks.checkpoint-creator]\nevery_executions = 2\n");
    write_config(
        &paced.path(),
        "[hooks.checkpoint-creator]\nevery_executions = 2\nmin_interval_s = 2\n",
    );
    let (rapid_client, paced_client) = (
        connect(&rapid.path(), "rapid-agent").await,
        connect(&paced.path(), "paced-agent").await,
    );
    create(&rapid_client, "rapid").await;
    for _ in 0..4 {
        exec(&rapid_client, "rapid", "true").await;
    }
    assert_eq!(checkpoint_labels(&rapid_client, "rapid").await, Vec::<String>::new());

    create(&paced_client, "paced").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    exec(&paced_client, "paced", "true").await;
    exec(&paced_client, "paced", "true").await;
    assert_eq!(checkpoint_labels(&paced_client, "paced").await, ["after 2 executions"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_creator_checkpoints_on_stop_and_detach() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "lifecycle-agent").await;
    create(&client, "kept").await;
    exec(&client, "kept", "echo work > w.txt").await;
    call(&client, "detach_agent_from_task", json!({ "task": "kept" })).await;
    exec(&client, "kept", "echo more >> w.txt").await;
    call(&client, "stop_task", json!({ "task": "kept" })).await;
    assert_eq!(
        checkpoint_labels(&client, "kept").await,
        ["on detach of lifecycle-agent", "on stop"]
    );
    // The stop's checkpoint holds the work: restore it after wrecking the workspace.
    call(&client, "resume_task", json!({ "task": "kept" })).await;
    exec(&client, "kept", "rm w.txt").await;
    call(&client, "restore_checkpoint", json!({ "checkpoint": "kept:2" })).await;
    assert_eq!(exec(&client, "kept", "cat w.txt").await["stdout"], "work\nmore\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn task_resumer_restarts_stopped_containers_and_recreates_vanished_ones() {
    require!(docker);
    let home = Home::new();
    // No checkpoints on detach here: which task has a checkpoint is chosen below.
    write_config(&home.path(), "[hooks.checkpoint-creator]\nenabled = false\n");
    let client = connect(&home.path(), "resumer-test").await;
    let stopped = create(&client, "stopped-behind").await;
    let vanished = create(&client, "vanished").await;
    let lost = create(&client, "lost").await;
    exec(
        &client,
        "vanished",
        "echo saved > keep.txt; echo sys > /tmp/outside.txt",
    )
    .await;
    call(&client, "create_checkpoint", json!({ "task": "vanished" })).await;
    client.cancel().await.unwrap();

    // A host reboot or daemon restart, as seen by taskbox: containers stopped or gone.
    docker(&["stop", "-t", "1", stopped["container_id"].as_str().unwrap()]);
    docker(&["rm", "-f", vanished["container_id"].as_str().unwrap()]);
    docker(&["rm", "-f", lost["container_id"].as_str().unwrap()]);

    let client = connect(&home.path(), "resumer-test").await;
    let status = |name: &'static str| {
        let client = &client;
        async move { call(client, "get_task_status", json!({ "task": name })).await }
    };
    let s = status("stopped-behind").await;
    assert_eq!(
        (s["task"]["status"].clone(), s["container"]["running"].clone()),
        (json!("running"), json!(true))
    );
    let s = status("vanished").await;
    assert_eq!(s["task"]["status"], "running");
    assert_ne!(s["task"]["container_id"], vanished["container_id"]);
    assert_eq!(s["container"]["running"], true);
    let s = status("lost").await;
    assert_eq!(s["task"]["status"], "failed");
    assert!(
        s["task"]["status_reason"].as_str().unwrap().contains("no checkpoint"),
        "{s}"
    );
    // The recreated container has the checkpoint's files system and the live workspace.
    let r = exec(&client, "vanished", "cat keep.txt /tmp/outside.txt").await;
    assert_eq!(r["stdout"], "saved\nsys\n");
    let id = |task: &Value| task["id"].as_str().unwrap().to_string();
    let kinds = |task: &Value| -> Vec<String> {
        events(&home.path(), &id(task))
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(&stopped).contains(&"container_restarted".to_string()));
    assert!(kinds(&vanished).contains(&"container_recreated".to_string()));
    let server_log = std::fs::read_to_string(home.path().join("events.jsonl")).unwrap();
    assert!(
        server_log.contains("\"hook\":\"task-resumer\"")
            && server_log.contains("3 task(s) checked: 1 container(s) started again, 1 recreated"),
        "{server_log}"
    );
    client.cancel().await.unwrap();

    // Switched off, the same situation fails the task instead.
    write_config(
        &home.path(),
        "[hooks.checkpoint-creator]\nenabled = false\n[hooks.task-resumer]\nenabled = false\n",
    );
    let container = status_container(&home, "stopped-behind").await;
    docker(&["stop", "-t", "1", &container]);
    let client = connect(&home.path(), "resumer-test").await;
    let s = call(&client, "get_task_status", json!({ "task": "stopped-behind" })).await;
    assert_eq!(s["task"]["status"], "failed");
}

async fn status_container(home: &Home, task: &str) -> String {
    let client = connect(&home.path(), "peek").await;
    let s = call(&client, "get_task_status", json!({ "task": task })).await;
    client.cancel().await.unwrap();
    s["task"]["container_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn container_enforcer_restarts_stopped_containers_and_refuses_foreign_ones() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "enforcer-test").await;
    let task = create(&client, "enforced").await;
    let id = task["id"].as_str().unwrap();
    docker(&["stop", "-t", "1", task["container_id"].as_str().unwrap()]);
    let r = exec(&client, "enforced", "echo back").await;
    assert_eq!(r["stdout"], "back\n");
    assert!(warnings(&r).contains("started again"), "{r}");
    // The recovery step's run (it warned), then the hook's own check of the started container.
    let runs = hook_runs(&home.path(), id, "container-enforcer");
    let decisions: Vec<_> = runs.iter().rev().take(2).map(|r| r["decision"].clone()).collect();
    assert_eq!(decisions, [json!("allow"), json!("warn")]);
    // A task stopped through taskbox is resumed first.
    call(&client, "stop_task", json!({})).await;
    let r = exec(&client, "enforced", "echo again").await;
    assert_eq!(r["stdout"], "again\n");
    assert!(warnings(&r).contains("was stopped; it was resumed first"), "{r}");

    // A container that taskbox did not make for this task: refused, and nothing runs.
    let foreign = docker(&[
        "run",
        "-d",
        "--label",
        "taskbox.task-id=someone-else",
        "taskbox-base",
        "sleep",
        "600",
    ]);
    let foreign = foreign.trim();
    swap_container(&home.path(), id, foreign);
    let (kind, message) = call_err(&client, "execute_in_task", json!({ "command": "touch /tmp/ran" })).await;
    docker(&["rm", "-f", foreign]);
    assert_eq!(kind, "hook_denied");
    assert!(
        message.contains("container-enforcer") && message.contains("labelled for task 'someone-else'"),
        "{message}"
    );

    // Switched off, a container stopped behind the server's back is not brought back: the
    // command cannot run and the task fails.
    let home = Home::new();
    write_config(&home.path(), "[hooks.container-enforcer]\nenabled = false\n");
    let client = connect(&home.path(), "enforcer-off").await;
    let task = create(&client, "unenforced").await;
    docker(&["stop", "-t", "1", task["container_id"].as_str().unwrap()]);
    let (kind, _) = call_err(&client, "execute_in_task", json!({ "command": "echo back" })).await;
    assert_eq!(kind, "wrong_status");
}

#[tokio::test(flavor = "multi_thread")]
async fn isolation_checker_refuses_a_privileged_container_with_taskbox_labels() {
    require!(docker);
    for enabled in [true, false] {
        let home = Home::new();
        write_config(
            &home.path(),
            &format!("[hooks.isolation-checker]\nenabled = {enabled}\n"),
        );
        let client = connect(&home.path(), "isolation-test").await;
        let task = create(&client, "isolated").await;
        let id = task["id"].as_str().unwrap();
        // Made directly through Docker, privileged, with the Docker socket, but labelled as
        // this task's: container-enforcer's label check passes, only the isolation check
        // can tell.
        let workspace = home.path().join("workspaces").join(id);
        let rogue = docker(&[
            "run",
            "-d",
            "--privileged",
            "--label",
            &format!("taskbox.task-id={id}"),
            "--label",
            &format!("taskbox.home={}", home.path().display()),
            "-v",
            &format!("{}:/workspace", workspace.display()),
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "taskbox-base",
            "sleep",
            "600",
        ]);
        let rogue = rogue.trim().to_string();
        docker(&["rm", "-f", task["container_id"].as_str().unwrap()]);
        swap_container(&home.path(), id, &rogue);
        let result = call_raw(&client, "execute_in_task", json!({ "command": "echo ran" })).await;
        docker(&["rm", "-f", &rogue]);
        if enabled {
            let (kind, message) = tool_error(&result);
            assert_eq!(kind, "hook_denied", "{message}");
            assert!(
                message.contains("isolation-checker")
                    && message.contains("it is privileged")
                    && message.contains("Docker socket"),
                "{message}"
            );
            let runs = hook_runs(&home.path(), id, "isolation-checker");
            assert_eq!(runs.last().unwrap()["decision"], "deny");
        } else {
            assert_eq!(result.is_error, Some(false), "{}", text(&result));
            assert_eq!(result.structured_content.unwrap()["stdout"], "ran\n");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_monitor_reports_oom_kills_and_pids_limit_hits() {
    require!(docker);
    for enabled in [true, false] {
        let home = Home::new();
        write_config(
            &home.path(),
            &format!("[defaults]\npids = 40\n[hooks.resource-monitor]\nenabled = {enabled}\n"),
        );
        let client = connect(&home.path(), "resources-test").await;
        let created = call(
            &client,
            "create_task_sandbox",
            json!({ "name": "hungry", "memory_mb": 64 }),
        )
        .await;
        let id = created["task"]["id"].as_str().unwrap().to_string();
        // `tail` keeps the whole newline-free stream in memory: far past 64 MB.
        let oom = exec(
            &client,
            "hungry",
            "head -c 400M /dev/zero | tail > /dev/null; echo done",
        )
        .await;
        let forks = exec(
            &client,
            "hungry",
            "for i in $(seq 60); do sleep 3 & done 2>/dev/null; wait; echo done",
        )
        .await;
        if enabled {
            assert!(warnings(&oom).contains("OUT OF MEMORY"), "{oom}");
            assert!(warnings(&forks).contains("PROCESS LIMIT"), "{forks}");
            let runs = hook_runs(&home.path(), &id, "resource-monitor");
            assert!(
                runs.iter()
                    .any(|r| r["decision"] == "warn" && r["message"].as_str().unwrap().contains("OUT OF MEMORY"))
            );
        } else {
            assert_eq!(oom["hook_warnings"], Value::Null, "{oom}");
            assert_eq!(forks["hook_warnings"], Value::Null, "{forks}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn branch_validator_refuses_a_sync_from_another_branch() {
    require!(docker);
    for enabled in [true, false] {
        let (home, repos) = home_with_repos();
        let repo = dev_repo(&repos, "project");
        let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
        write_config(
            &home.path(),
            &format!("{config}[hooks.branch-validator]\nenabled = {enabled}\n"),
        );
        let client = connect(&home.path(), "branch-test").await;
        call(
            &client,
            "create_task_sandbox",
            json!({ "name": "wander", "repo_path": repo.display().to_string() }),
        )
        .await;
        exec(
            &client,
            "wander",
            "git checkout -q -b side && echo x > side.txt && git add side.txt && git commit -qm side",
        )
        .await;
        let result = call_raw(&client, "create_checkpoint", json!({})).await;
        if enabled {
            let (kind, message) = tool_error(&result);
            assert_eq!(kind, "hook_denied", "{message}");
            assert!(
                message.contains("branch-validator")
                    && message.contains("on branch 'side'")
                    && message.contains("git checkout taskbox/wander"),
                "{message}"
            );
            exec(&client, "wander", "git checkout -q taskbox/wander && git merge -q side").await;
            call(&client, "create_checkpoint", json!({})).await;
        } else {
            assert_eq!(result.is_error, Some(false), "{}", text(&result));
        }
        assert_eq!(git(&repo, &["log", "-1", "--format=%s", "taskbox/wander"]), "side");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn branch_and_submodule_creators_can_each_be_switched_off() {
    require!(docker);
    for (branch_creator, submodule_creator) in [(true, true), (false, true), (true, false)] {
        let (home, repos) = home_with_repos();
        let lib = dev_repo(&repos, "lib");
        let repo = dev_repo(&repos, "app");
        git(
            &repo,
            &["submodule", "add", "-q", &lib.display().to_string(), "vendor/lib"],
        );
        git(&repo, &["commit", "-qm", "add submodule"]);
        let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
        write_config(
            &home.path(),
            &format!(
                "{config}[hooks.branch-creator]\nenabled = {branch_creator}\n\
                 [hooks.submodule-creator]\nenabled = {submodule_creator}\n"
            ),
        );
        let client = connect(&home.path(), "creator-test").await;
        let created = call(
            &client,
            "create_task_sandbox",
            json!({ "name": "made", "repo_path": repo.display().to_string() }),
        )
        .await;
        let id = created["task"]["id"].as_str().unwrap();
        let branches = git(&repo, &["branch", "--list", "taskbox/*"]);
        let submodule = exec(&client, "made", "cat vendor/lib/src/lib.rs 2>/dev/null | wc -l").await;
        exec(&client, "made", "echo new > new.txt").await;
        let diff = call(&client, "task_diff", json!({})).await;
        let changed: Vec<&str> = diff["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(changed, ["new.txt"], "the task works either way: {diff}");
        if branch_creator {
            assert_eq!(branches.trim(), "taskbox/made");
            assert_eq!(hook_runs(&home.path(), id, "branch-creator").len(), 1);
        } else {
            assert_eq!(branches, "", "the developer's repository is left alone");
            assert!(
                created["warnings"].to_string().contains("branch-creator is off"),
                "{created}"
            );
        }
        let expected = if submodule_creator { "1\n" } else { "0\n" };
        assert_eq!(submodule["stdout"], expected, "submodule-creator {submodule_creator}");
        assert_eq!(
            hook_runs(&home.path(), id, "submodule-creator").len(),
            usize::from(submodule_creator)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn external_hooks_allow_deny_time_out_and_get_the_event() {
    require!(docker);
    let home = Home::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/examples");
    let seen = home.path().join("seen.json");
    let notified = home.path().join("notified.log");
    let pidfile = home.path().join("slow.pid");
    write_config(
        &home.path(),
        &format!(
            r#"[[hooks.external]]
event = "before_exec"
command = ["{deny}"]
tools = ["execute_in_task"]

[[hooks.external]]
name = "recorder"
event = "after_exec"
command = ["sh", "-c", "cat > {seen}"]

[[hooks.external]]
name = "slow"
event = "before_tool"
command = ["sh", "-c", "sleep 30 & echo $! > {pidfile}; wait"]
timeout_s = 1
tools = ["list_tasks"]

[[hooks.external]]
name = "slow-strict"
event = "before_tool"
command = ["sleep", "30"]
timeout_s = 1
tools = ["task_stats"]
fail_closed = true

[[hooks.external]]
event = "task_completed"
command = ["{notify}", "{notified}"]
"#,
            deny = examples.join("deny-destructive.sh").display(),
            seen = seen.display(),
            notify = examples.join("notify-complete.sh").display(),
            notified = notified.display(),
            pidfile = pidfile.display(),
        ),
    );
    let client = connect(&home.path(), "external-agent").await;
    let task = create(&client, "watched").await;
    let id = task["id"].as_str().unwrap();

    // Allowed, and the after_exec hook gets the event on stdin.
    exec(&client, "watched", "mkdir -p build && echo ok").await;
    let event: Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(event["event"], "after_exec");
    assert_eq!(event["tool"], "execute_in_task");
    assert_eq!(event["agent"], "external-agent");
    assert_eq!(event["task"]["name"], "watched");
    assert_eq!(event["arguments"]["command"], "mkdir -p build && echo ok");
    assert_eq!(event["data"]["exit_code"], 0);

    // Denied with the hook's reason; the command never ran.
    let (kind, message) = call_err(
        &client,
        "execute_in_task",
        json!({ "command": "rm -rf / --no-preserve-root" }),
    )
    .await;
    assert_eq!(kind, "hook_denied");
    assert!(
        message.contains("external:deny-destructive.sh") && message.contains("removes a whole tree"),
        "{message}"
    );
    assert_eq!(exec(&client, "watched", "ls -d build").await["stdout"], "build\n");

    // A hook past its timeout is killed: a warning, or a deny when fail_closed.
    let started = std::time::Instant::now();
    let listed = call_raw(&client, "list_tasks", json!({})).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(listed.is_error, Some(false));
    assert!(
        text(&listed).contains("slow: the hook did not finish within 1 s"),
        "{}",
        text(&listed)
    );
    // What the hook started went with it (its whole process group was killed). A killed
    // process exits on its own time: the server waits for the hook, not for its children, so
    // the child may still be on its way out (state R with SIGKILL pending) for a moment.
    let child = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    let gone = || {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        (state.is_empty() || state.contains(") Z "), state)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gone().0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (gone, state) = gone();
    assert!(gone, "the hook's child {child} survived: {state}");
    let (kind, message) = call_err(&client, "task_stats", json!({})).await;
    assert_eq!(kind, "hook_denied");
    assert!(
        message.contains("slow-strict") && message.contains("fail_closed"),
        "{message}"
    );

    // Completion notifies.
    call(&client, "complete_task", json!({})).await;
    let log = std::fs::read_to_string(&notified).unwrap();
    assert!(
        log.contains("task watched completed; review branch taskbox/watched"),
        "{log}"
    );

    // Every run is in the event log: hook, event, decision, duration.
    let runs = hook_runs(&home.path(), id, "external:deny-destructive.sh");
    let decisions: Vec<&str> = runs.iter().map(|r| r["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["allow", "deny", "allow"]);
    assert!(
        runs.iter()
            .all(|r| r["event"] == "before_exec" && r["duration_ms"].is_u64())
    );
}
