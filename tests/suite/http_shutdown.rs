//! Graceful shutdown of `serve --http` on SIGTERM: no new connections, running
//! executions finish within the grace period and their results reach the client; what runs
//! past it is killed and recorded as cancelled; the sessions' agents are detached.

use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_executions_finish_then_kills_the_rest() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[http]\nshutdown_grace_s = 4\n");
    let (token, _) = create_token(&home.path(), "alice");
    let mut server = HttpServer::start(&home.path(), &[]);
    let setup = connect_http(&server, Some(&token), "setup").await;
    let task = create(&setup, "draining").await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let quick = connect_http(&server, Some(&token), "quick").await;
    let slow = connect_http(&server, Some(&token), "slow").await;

    // One execution ends within the grace period, one does not.
    let finishing = tokio::spawn(async move {
        call_raw(
            &quick,
            "execute_in_task",
            json!({ "task": "draining", "command": "sleep 2; echo finished" }),
        )
        .await
    });
    let overrunning = tokio::spawn(async move {
        call_raw(
            &slow,
            "execute_in_task",
            json!({ "task": "draining", "command": "sleep 600", "timeout_s": 900 }),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let signalled = Instant::now();
    server.terminate();

    let finished = finishing.await.unwrap();
    assert_ne!(finished.is_error, Some(true), "{}", text(&finished));
    assert_eq!(finished.structured_content.unwrap()["stdout"], "finished\n");
    // New connections are not accepted while the rest drains.
    let port = server.base.rsplit(':').next().unwrap().to_string();
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());

    let status = server.wait(Duration::from_secs(60)).expect("the server did not exit");
    assert!(status.success(), "{status}\n{}", server.log());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "exited before the grace period: {took:?}"
    );
    // Its client never gets an answer: the server killed the execution and went away.
    overrunning.abort();

    let container = task["container_id"].as_str().unwrap();
    let ps = container_processes(container, "sleep 600");
    assert_eq!(ps, "", "the overrunning execution outlived the server");
    let events = events(&home.path(), &task_id);
    let mut outcomes: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "execution")
        .map(|e| {
            (
                e["data"]["command"].as_str().unwrap().to_string(),
                e["data"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("sleep 2; echo finished".to_string(), "finished".to_string()),
            ("sleep 600".to_string(), "cancelled".to_string()),
        ]
    );
    let detached: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "agent_detached")
        .map(|e| e["data"]["agent"].as_str().unwrap())
        .collect();
    assert_eq!(detached, ["setup"], "{}", server.log());
}
