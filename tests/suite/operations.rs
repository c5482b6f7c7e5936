//! What an operator watches: `/healthz` (no token, no detail) and `/metrics` (Prometheus'
//! text format, behind a token) of `serve --http` (docs/operations.md).

use crate::common::http::*;
use crate::common::*;
use serde_json::{Value, json};

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_needs_no_token_and_metrics_count_what_happened() {
    require!(docker);
    let home = Home::new();
    let server = HttpServer::start(&home.path(), &[]);
    let (token, _) = create_token(&home.path(), "alice");
    let http = reqwest::Client::new();

    let health = http.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");

    let refused = http.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let client = connect_http(&server, Some(&token), "ops").await;
    create(&client, "watched").await;
    exec(&client, "watched", "true").await;
    call_err(&client, "get_task_status", json!({ "task": "nowhere" })).await;
    let text = http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, "taskbox_tasks{status=\"running\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "taskbox_containers_running"), Some(1.0), "{text}");
    assert_eq!(
        metric(&text, "taskbox_executions_total{status=\"finished\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "taskbox_task_creation_duration_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "taskbox_execution_duration_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "taskbox_tool_errors_total{kind=\"task_not_found\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "taskbox_data_dir_free_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert!(text.contains("taskbox_hook_runs_total{hook="), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_says_which_part_fails_and_nothing_more() {
    let home = Home::new();
    let server = HttpServer::start_with_env(&home.path(), &[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "status": "unhealthy", "checks": { "docker": false, "registry": true, "disk": true } })
    );
}
