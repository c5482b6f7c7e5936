//! The client going away mid-execution: the server kills the command's process tree, records
//! the execution as cancelled, ends the session's attachments and exits. Driven with raw
//! JSON-RPC lines over the child's pipes, so stdin closes at an exact point.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

#[test]
fn closing_stdin_mid_execution_kills_it_and_ends_the_session() {
    require!(docker);
    let home = Home::new();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(home.path())
        .env("TASKBOX_HOME", home.path())
        .env("TASKBOX_CONFIG", home.path().join("config.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // stdout must carry nothing but protocol messages.
            let message: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("non-JSON on stdout: {line}"));
            let _ = tx.send(message);
        }
    });
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    };
    let response = |id: i64| loop {
        let message = rx.recv_timeout(Duration::from_secs(60)).expect("no response");
        if message["id"] == id {
            return message;
        }
    };
    send(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "raw-client", "version": "1" } } }));
    assert_eq!(response(1)["result"]["serverInfo"]["name"], "taskbox");
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    let call = |id: i64, name: &str, arguments: Value| json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": name, "arguments": arguments } });
    send(call(2, "create_task_sandbox", json!({ "name": "abandoned" })));
    let task = response(2)["result"]["structuredContent"]["task"].clone();
    assert_eq!(task["status"], "running", "{task}");
    send(call(3, "attach_agent_to_task", json!({ "task": "abandoned" })));
    assert_eq!(response(3)["result"]["isError"], false);
    send(call(
        4,
        "execute_in_task",
        json!({ "command": "sleep 1001 & sleep 1000", "timeout_s": 600 }),
    ));
    std::thread::sleep(Duration::from_millis(1500));

    // The client goes away.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "server did not exit after stdin closed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");

    let container = task["container_id"].as_str().unwrap();
    let ps = container_processes(container, "sleep 100");
    assert_eq!(ps, "", "the execution's processes outlived the session");
    let events = events(&home.path(), task["id"].as_str().unwrap());
    let execution = events.iter().find(|e| e["type"] == "execution").unwrap();
    assert_eq!(execution["data"]["status"], "cancelled");
    let detached = events.iter().find(|e| e["type"] == "agent_detached").unwrap();
    assert_eq!(detached["data"]["reason"], "session ended");
    assert_eq!(detached["data"]["agent"], "raw-client");
}
