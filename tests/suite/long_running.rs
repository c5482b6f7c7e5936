//! Long foreground commands (issue 13 points 3 and 4), on the real binary over stdio and real
//! Docker: the soft timeout (`yield_after_s`) turns a command still running into a
//! background execution whose output is read on by cursor, exactly once; `timeout_s` still
//! kills it; it outlives the session that started it; and progress notifications come every
//! 5 s while a foreground command runs, with the last line it printed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use pretty_assertions::assert_eq;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// Reads an execution from `cursor` until it ends; returns the last reply and the stdout
/// and stderr read after the cursor.
async fn read_on(client: &Client, id: &str, cursor: &str, limit: Duration) -> (Value, String, String) {
    let deadline = Instant::now() + limit;
    let (mut out, mut err) = (String::new(), String::new());
    let mut cursor = cursor.to_string();
    loop {
        let r = call(
            client,
            "execution_output",
            json!({ "execution_id": id, "since": cursor, "wait_s": 2 }),
        )
        .await;
        out.push_str(r["stdout"].as_str().unwrap());
        err.push_str(r["stderr"].as_str().unwrap());
        cursor = r["cursor"].as_str().unwrap().to_string();
        if r["status"] != "running" && r["more"] == false {
            return (r, out, err);
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreground_command_past_yield_after_s_goes_on_in_the_background() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "yield").await;
    let task = create(&client, "yield").await;
    let container = task["container_id"].as_str().unwrap().to_string();

    // Prints for 6 s, then 200 kB at once (more than any pipe holds: nothing may block once
    // the call stopped reading), on both streams.
    let command = "for i in $(seq 1 6); do echo \"tick $i\"; echo \"warn $i\" >&2; sleep 1; done; \
                   head -c 200000 /dev/zero | tr '\\0' y; echo; echo done; exit 3";
    let started = Instant::now();
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": command, "yield_after_s": 2 }),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "returned after {waited:?}: {r}"
    );
    assert_eq!(
        (r["yielded"].as_bool(), r["background"].as_bool()),
        (Some(true), Some(true)),
        "{r}"
    );
    assert_eq!(r["exit_code"], Value::Null);
    let id = r["execution_id"].as_str().unwrap().to_string();
    let so_far = r["stdout"].as_str().unwrap().to_string();
    assert!(so_far.starts_with("tick 1\n"), "the output so far: {r}");
    // The rest, from the reply's cursor: every byte once.
    let (last, rest, err_rest) = read_on(&client, &id, r["cursor"].as_str().unwrap(), Duration::from_secs(60)).await;
    let expected: String =
        (1..=6).map(|i| format!("tick {i}\n")).collect::<String>() + &"y".repeat(200_000) + "\ndone\n";
    assert_eq!(format!("{so_far}{rest}").len(), expected.len());
    assert!(format!("{so_far}{rest}") == expected, "stdout differs");
    let expected_err: String = (1..=6).map(|i| format!("warn {i}\n")).collect();
    assert_eq!(format!("{}{err_rest}", r["stderr"].as_str().unwrap()), expected_err);
    assert_eq!(last["status"], "finished");
    assert_eq!(last["exit_code"], 3);
    let listed = call(&client, "task_executions", json!({})).await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["items"][0]["background"], true);
    assert_eq!(listed["items"][0]["exit_code"], 3);
    let task_id = task["id"].as_str().unwrap();
    let recorded: Vec<_> = events(&home.path(), task_id)
        .into_iter()
        .filter(|e| e["type"] == "execution" && e["data"]["execution_id"] == id.as_str())
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["data"]["stdout_bytes"], expected.len());

    // timeout_s stays the hard limit that kills, yielded or not.
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "echo up; sleep 1040", "yield_after_s": 1, "timeout_s": 5 }),
    )
    .await;
    assert_eq!(r["yielded"], true, "{r}");
    let id = r["execution_id"].as_str().unwrap().to_string();
    let (last, _, _) = read_on(&client, &id, r["cursor"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(last["status"], "timed_out", "{last}");
    assert_eq!(container_processes(&container, "sleep 1040"), "");

    // A command that ends before yield_after_s is an ordinary reply; 0 never yields.
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "sleep 3; echo slow", "yield_after_s": 0 }),
    )
    .await;
    assert_eq!(
        (r["yielded"].as_bool(), r["stdout"].as_str()),
        (Some(false), Some("slow\n"))
    );
    assert_eq!(r["exit_code"], 0);
    let r = exec(&client, "yield", "echo quick").await;
    assert_eq!(
        (r["yielded"].as_bool(), r["background"].as_bool()),
        (Some(false), Some(false))
    );
    // Nothing of a foreground command is left in the run directory once it is read.
    let run = home.path().join("tasks").join(task_id).join("run");
    assert!(!run.join(r["execution_id"].as_str().unwrap()).exists());

    // Once yielded, the call's end is not the command's: the session (and its server) goes
    // away, and the command still finishes, recorded by the next server.
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "for i in $(seq 1 5); do echo \"beat $i\"; sleep 1; done; exit 5", "yield_after_s": 1 }),
    )
    .await;
    assert_eq!(r["yielded"], true, "{r}");
    let id = r["execution_id"].as_str().unwrap().to_string();
    client.cancel().await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let client = connect(&home.path(), "yield-2").await;
    let r = call(&client, "execution_output", json!({ "execution_id": id })).await;
    let expected: String = (1..=5).map(|i| format!("beat {i}\n")).collect();
    assert_eq!(r["stdout"], expected);
    assert_eq!(
        (r["status"].as_str(), r["exit_code"].as_i64()),
        (Some("finished"), Some(5))
    );
}

/// A client that records the progress notifications it receives, with when.
#[derive(Clone, Default)]
struct ProgressRecorder {
    seen: Arc<Mutex<Vec<(Instant, ProgressNotificationParam)>>>,
}

impl ClientHandler for ProgressRecorder {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen.lock().unwrap().push((Instant::now(), params));
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("progress-recorder", "1.0.0"),
        )
    }
}

async fn connect_recording(home: &std::path::Path) -> (RunningService<RoleClient, ProgressRecorder>, ProgressRecorder) {
    let command = serve_command(home, "taskbox=info,warn");
    let recorder = ProgressRecorder::default();
    let client = recorder
        .clone()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap();
    (client, recorder)
}

async fn call_recording(client: &RunningService<RoleClient, ProgressRecorder>, tool: &str, args: Value) -> Value {
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().cloned().unwrap()))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{tool}({args}) failed: {}", text(&result));
    result.structured_content.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_comes_every_5_s_while_a_foreground_command_runs() {
    require!(docker);
    let home = Home::new();
    let (client, recorder) = connect_recording(&home.path()).await;
    call_recording(&client, "create_task_sandbox", json!({ "name": "progress" })).await;
    let client = Arc::new(client);

    // 90 s in the foreground (no soft timeout), and meanwhile one that yields after 5 s.
    let long = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = call_recording(
                &client,
                "execute_in_task",
                json!({
                    "command": "for i in $(seq 1 90); do echo \"step $i\"; sleep 1; done",
                    "yield_after_s": 0, "timeout_s": 300,
                }),
            )
            .await;
            (r, started, Instant::now())
        })
    };
    let started = Instant::now();
    let r = call_recording(
        &client,
        "execute_in_task",
        json!({ "command": "for i in $(seq 1 20); do echo \"part $i\"; sleep 1; done; exit 2", "yield_after_s": 5 }),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(r["yielded"], true, "{r}");
    let id = r["execution_id"].as_str().unwrap().to_string();
    let mut out = r["stdout"].as_str().unwrap().to_string();
    let mut cursor = r["cursor"].as_str().unwrap().to_string();
    let last = loop {
        let r = call_recording(
            &client,
            "execution_output",
            json!({ "execution_id": id, "since": cursor, "wait_s": 5 }),
        )
        .await;
        out.push_str(r["stdout"].as_str().unwrap());
        cursor = r["cursor"].as_str().unwrap().to_string();
        if r["status"] != "running" {
            break r;
        }
    };
    let expected: String = (1..=20).map(|i| format!("part {i}\n")).collect();
    assert_eq!(out, expected, "the yielded command's output, completed later");
    assert_eq!(last["exit_code"], 2);

    let (r, began, ended) = long.await.unwrap();
    assert_eq!(
        (r["exit_code"].as_i64(), r["yielded"].as_bool()),
        (Some(0), Some(false)),
        "{r}"
    );
    let seen = recorder.seen.lock().unwrap().clone();
    // The long call's notifications: those that name its steps (each call has its token).
    let token = seen
        .iter()
        .find(|(_, p)| p.message.as_deref().is_some_and(|m| m.contains("step")))
        .map(|(_, p)| p.progress_token.clone())
        .expect("no progress naming the long command's output");
    let mine: Vec<_> = seen.iter().filter(|(_, p)| p.progress_token == token).collect();
    assert!(mine.len() >= 10, "{} notifications in {:?}", mine.len(), ended - began);
    let mut at = began;
    let mut progress = 0.0;
    for (when, p) in &mine {
        assert!(*when - at <= Duration::from_secs(6), "a gap of {:?}", *when - at);
        assert!(p.progress > progress, "progress went from {progress} to {}", p.progress);
        at = *when;
        progress = p.progress;
    }
    assert!(
        ended - at <= Duration::from_secs(6),
        "silent for {:?} at the end",
        ended - at
    );
    let message = mine.last().unwrap().1.message.clone().unwrap();
    assert!(
        message.contains("running for") && message.contains("last line: step"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_p_prompt_is_reported_with_its_text_wherever_executions_are_listed() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "prompt").await;
    create(&client, "prompt").await;

    // bash prints `read -p`'s prompt only when its standard input is a terminal: a background
    // execution's is one, fed by send_input.
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "command": "echo preparing; read -p \"Continue? [y/N] \" x; echo \"answer: $x\"; cat | wc -c",
            "background": true, "stall_s": 2,
        }),
    )
    .await;
    let id = r["execution_id"].as_str().unwrap().to_string();
    let waiting = poll_until(&client, &id, Duration::from_secs(60), |r| {
        r["waiting_for_input"] == true
    })
    .await;
    assert_eq!(
        waiting["last_line"].as_str().map(str::trim_end),
        Some("Continue? [y/N]"),
        "{waiting}"
    );
    assert!(waiting["advice"].as_str().unwrap().contains("send_input"), "{waiting}");
    assert_eq!(waiting["stderr"], "Continue? [y/N] ");

    // task_executions and get_task_status say the same.
    let listed = call(&client, "task_executions", json!({})).await;
    let item = &listed["items"][0];
    assert_eq!(
        (item["id"].as_str(), item["waiting_for_input"].as_bool()),
        (Some(id.as_str()), Some(true)),
        "{item}"
    );
    assert_eq!(item["last_line"].as_str().map(str::trim_end), Some("Continue? [y/N]"));
    assert!(
        item["advice"].as_str().unwrap().contains("non-interactive flag"),
        "{item}"
    );
    let listing = text(&call_raw(&client, "task_executions", json!({})).await);
    assert!(
        listing.contains("Continue? [y/N]") && listing.contains("send_input"),
        "{listing}"
    );
    let status = call(&client, "get_task_status", json!({})).await;
    assert_eq!(status["running_executions"][0]["waiting_for_input"], true, "{status}");

    // The answer reaches it through the terminal byte for byte, and end of input ends `cat`
    // (a read already waiting on the terminal included).
    call(&client, "send_input", json!({ "execution_id": id, "text": "yes\n" })).await;
    let data = "x\u{1}\u{4}\u{16}\u{7f}é".repeat(1500) + "\nlast line without newline";
    call(
        &client,
        "send_input",
        json!({ "execution_id": id, "text": data, "eof": true }),
    )
    .await;
    let done = poll_until(&client, &id, Duration::from_secs(30), |r| r["status"] != "running").await;
    assert_eq!(done["status"], "finished", "{done}");
    let out = call(&client, "execution_output", json!({ "execution_id": id })).await;
    assert_eq!(
        out["stdout"],
        format!("preparing\nanswer: yes\n{}\n", data.len()),
        "{out}"
    );
    let listed = call(&client, "task_executions", json!({})).await;
    assert!(
        listed["items"][0].get("waiting_for_input").is_none(),
        "{}",
        listed["items"][0]
    );

    // In the foreground with no stdin, the same command reads end of input at once.
    let started = Instant::now();
    let r = call(
        &client,
        "execute_in_task",
        json!({ "command": "read -p \"Continue? [y/N] \" x; echo \"rc=$?\"" }),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(
        (r["stdout"].as_str(), r["exit_code"].as_i64()),
        (Some("rc=1\n"), Some(0)),
        "{r}"
    );
}
