//! End to end through the real binary and rmcp's client on real Docker: create → execute →
//! list/status → attach/detach → stop/resume → delete.

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn create_execute_inspect_stop_resume_delete() {
    require!(docker);
    let flow = create_a_running_current_task().await;
    execute_returns_exit_codes_and_stderr_and_reads_stdin(&flow).await;
    large_output_is_cut_in_the_reply_and_kept_on_disk(&flow).await;
    non_utf8_output_does_not_break_the_reply(&flow).await;
    the_workspace_is_a_repository_on_the_task_branch(&flow).await;
    list_and_status_report_the_task_and_its_executions(&flow).await;
    attach_and_detach_an_agent(&flow).await;
    stop_and_resume_keep_the_containers_files(&flow).await;
    the_task_files_hold_the_state_and_the_events(&flow).await;
    delete_needs_confirm_then_removes_everything(&flow).await;
    flow.client.cancel().await.unwrap();
}

/// What the steps share: the session and the task it created.
struct Flow {
    home: Home,
    client: Client,
    id: String,
    container: String,
    network: String,
}

/// Creates the task: it is running and is the session's current task.
async fn create_a_running_current_task() -> Flow {
    let home = Home::new();
    let client = connect(&home.path(), "flow-test-client").await;
    let task = create(&client, "flow").await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["name"], "flow");
    let id = task["id"].as_str().unwrap().to_string();
    let container = task["container_id"].as_str().unwrap().to_string();
    let network = task["network_name"].as_str().unwrap().to_string();
    assert!(id.starts_with("t-"));
    Flow {
        home,
        client,
        id,
        container,
        network,
    }
}

/// execute_in_task: output, a non-zero exit code and stderr as a result, stdin.
async fn execute_returns_exit_codes_and_stderr_and_reads_stdin(flow: &Flow) {
    let Flow { client, .. } = flow;
    // echo, with `task` omitted: the current task is used.
    let r = call(
        client,
        "execute_in_task",
        json!({ "command": "echo hello; pwd; id -un" }),
    )
    .await;
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["stdout"], "hello\n/workspace\nagent\n");
    assert_eq!(r["stderr"], "");
    assert_eq!(r["truncated"], false);
    assert!(r["execution_id"].as_str().unwrap().starts_with("e-"));

    // A non-zero exit code and stderr are a result, not an error.
    let r = exec(client, "flow", "echo oops >&2; exit 3").await;
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stderr"], "oops\n");

    // stdin reaches the command.
    let r = call(
        client,
        "execute_in_task",
        json!({ "command": "tr a-z A-Z", "stdin": "shout" }),
    )
    .await;
    assert_eq!(r["stdout"], "SHOUT");
}

/// 200 KB of output: head and tail in the reply, all of it on disk.
async fn large_output_is_cut_in_the_reply_and_kept_on_disk(flow: &Flow) {
    let Flow { home, client, id, .. } = flow;
    let r = exec(client, "flow", "seq 1 40000").await;
    let expected: String = (1..=40000).map(|i| format!("{i}\n")).collect();
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["truncated"], true);
    assert_eq!(r["stdout_bytes"], expected.len());
    let stdout = r["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("1\n2\n3\n"), "{}", &stdout[..20]);
    assert!(stdout.ends_with("39999\n40000\n"));
    let cut = expected.len() - 64 * 1024;
    assert!(
        stdout.contains(&format!("{cut} bytes of stdout cut here")),
        "marker missing"
    );
    let full = r["full_output"]["stdout"].as_str().unwrap();
    assert!(stdout.contains(full), "the marker names the file");
    assert_eq!(std::fs::read_to_string(full).unwrap(), expected);
    assert!(full.starts_with(&home.path().join("tasks").join(id).join("outputs").display().to_string()));
}

/// Non-UTF-8 output is replaced, not refused.
async fn non_utf8_output_does_not_break_the_reply(flow: &Flow) {
    let Flow { client, .. } = flow;
    let r = exec(client, "flow", r"printf 'a\377\376b'").await;
    assert_eq!(r["stdout"], "a\u{fffd}\u{fffd}b");
}

/// The workspace is a git repository on the task branch.
async fn the_workspace_is_a_repository_on_the_task_branch(flow: &Flow) {
    let Flow { client, .. } = flow;
    let r = exec(client, "flow", "git rev-parse --abbrev-ref HEAD && git log --format=%s").await;
    assert_eq!(r["stdout"], "taskbox/flow\ntaskbox: start task flow\n");
}

/// list_tasks and get_task_status see the task and the executions so far.
async fn list_and_status_report_the_task_and_its_executions(flow: &Flow) {
    let Flow { client, id, .. } = flow;
    let list = call(client, "list_tasks", json!({})).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["tasks"][0]["id"], id.as_str());
    let list = call(client, "list_tasks", json!({ "status": "stopped" })).await;
    assert_eq!(list["total"], 0);
    let status = call(client, "get_task_status", json!({ "task": "flow" })).await;
    assert_eq!(status["container"]["state"], "running");
    assert_eq!(status["container"]["running"], true);
    assert_eq!(status["executions"]["total"], 6);
    assert_eq!(status["executions"]["failed"], 1);
    assert_eq!(
        status["last_execution"]["command"],
        "git rev-parse --abbrev-ref HEAD && git log --format=%s"
    );
}

/// attach (the agent defaults to the client's name), then detach.
async fn attach_and_detach_an_agent(flow: &Flow) {
    let Flow { client, id, .. } = flow;
    let attached = call(client, "attach_agent_to_task", json!({ "task": id })).await;
    assert_eq!(attached["attachment"]["agent"], "flow-test-client");
    let recent = attached["resume"]["recent_executions"].as_array().unwrap();
    assert_eq!(recent.len(), 6);
    assert_eq!(recent[1]["command"], r"printf 'a\377\376b'");
    let status = call(client, "get_task_status", json!({})).await;
    assert_eq!(status["attachments"].as_array().unwrap().len(), 1);
    let detached = call(client, "detach_agent_from_task", json!({ "task": "flow" })).await;
    assert_eq!(detached["detached"][0]["agent"], "flow-test-client");
    let status = call(client, "get_task_status", json!({ "task": "flow" })).await;
    assert_eq!(status["attachments"], json!([]));
}

/// stop / resume: files in /workspace and elsewhere in the container survive.
async fn stop_and_resume_keep_the_containers_files(flow: &Flow) {
    let Flow { client, container, .. } = flow;
    exec(
        client,
        "flow",
        "echo kept > /workspace/note.txt && echo also > /tmp/scratch",
    )
    .await;
    let stopped = call(client, "stop_task", json!({ "task": "flow", "timeout_s": 1 })).await;
    assert_eq!(stopped["task"]["status"], "stopped");
    assert_eq!(
        docker_inspect("container", container).unwrap()["State"]["Running"],
        false
    );
    let (kind, message) = call_err(client, "stop_task", json!({ "task": "flow" })).await;
    assert_eq!(kind, "wrong_status", "{message}");
    assert!(message.contains("already stopped"), "{message}");
    let resumed = call(client, "resume_task", json!({ "task": "flow" })).await;
    assert_eq!(resumed["task"]["status"], "running");
    let r = exec(client, "flow", "cat /workspace/note.txt /tmp/scratch").await;
    assert_eq!(r["stdout"], "kept\nalso\n");
}

/// state.json is current; events.jsonl has calls, transitions and executions.
async fn the_task_files_hold_the_state_and_the_events(flow: &Flow) {
    let Flow { home, id, .. } = flow;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("tasks").join(id).join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["task"]["status"], "running");
    let events = events(&home.path(), id);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in [
        "task_created",
        "status_changed",
        "execution",
        "tool_call",
        "agent_attached",
        "agent_detached",
    ] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    let executions: Vec<_> = events.iter().filter(|e| e["type"] == "execution").collect();
    assert_eq!(executions.len(), 8);
    assert_eq!(executions[1]["data"]["exit_code"], 3);
    assert!(
        executions[0]["data"].get("stdout").is_none(),
        "events never hold output"
    );
    let transitions: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "status_changed")
        .map(|e| {
            format!(
                "{}>{}",
                e["data"]["from"].as_str().unwrap(),
                e["data"]["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(transitions, ["creating>running", "running>stopped", "stopped>running"]);
}

/// delete needs confirm, then container, network, workspace and records are gone.
async fn delete_needs_confirm_then_removes_everything(flow: &Flow) {
    let Flow {
        home,
        client,
        id,
        container,
        network,
    } = flow;
    let (kind, message) = call_err(client, "delete_task", json!({ "task": "flow" })).await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("confirm: true"), "{message}");
    let deleted = call(client, "delete_task", json!({ "task": "flow", "confirm": true })).await;
    assert_eq!(deleted["deleted"], id.as_str());
    assert!(
        docker_inspect("container", container).is_none(),
        "container still exists"
    );
    assert!(docker_inspect("network", network).is_none(), "network still exists");
    assert!(!home.path().join("workspaces").join(id).exists());
    assert!(!home.path().join("tasks").join(id).exists());
    let list = call(client, "list_tasks", json!({})).await;
    assert_eq!(list["total"], 0);
    let (kind, _) = call_err(client, "get_task_status", json!({ "task": "flow" })).await;
    assert_eq!(kind, "task_not_found");
}
