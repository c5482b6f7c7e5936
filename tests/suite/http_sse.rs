//! The legacy HTTP+SSE transport (protocol 2024-11-05) with a stock client that speaks only
//! it: the Python `mcp` package's `sse_client`, and raw HTTP for the endpoint's contract.
//! scripts/test.sh provides the interpreter in TASKBOX_TEST_PYTHON; under CI=true a missing
//! interpreter fails the test rather than skipping it.

use std::time::Duration;

use crate::common::http::*;
use crate::common::*;
use futures_util::StreamExt;
use pretty_assertions::assert_eq;
use serde_json::Value;

#[test]
fn the_foundation_flow_works_over_legacy_sse() {
    require!(docker);
    let python = require!(env "TASKBOX_TEST_PYTHON");
    let home = Home::new();
    let (token, _) = create_token(&home.path(), "carol");
    let server = HttpServer::start(&home.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_sse.py");
    let out = std::process::Command::new(python)
        .args([script, &server.sse_url(), &token, "sse-smoke"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let steps: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["initialize", "list_tools", "create", "uname", "list", "delete"]);
    assert_eq!(steps[0]["server"], "taskbox");
    assert_eq!(
        (steps[2]["status"].as_str(), steps[2]["owner"].as_str()),
        (Some("running"), Some("carol"))
    );
    assert_eq!(steps[3]["exit_code"], 0);
    assert!(
        steps[3]["stdout"].as_str().unwrap().starts_with("Linux "),
        "{}",
        steps[3]
    );
    assert_eq!(steps[4]["total"], 1);
    assert_eq!(docker(&["ps", "-aq", "--filter", &home.label_filter()]), "");
    assert_eq!(server.stdout(), "");
}

/// The endpoint's contract, raw: `endpoint` event first, 202 for posts, the answer on the
/// stream; a session is its owner's alone, and the stream needs a token.
#[tokio::test]
async fn legacy_sse_announces_the_endpoint_and_answers_on_the_stream() {
    let home = Home::new();
    let (alice, _) = create_token(&home.path(), "alice");
    let (bob, _) = create_token(&home.path(), "bob");
    let server = HttpServer::start(&home.path(), &[]);
    let http = reqwest::Client::new();
    assert_eq!(http.get(server.sse_url()).send().await.unwrap().status().as_u16(), 401);
    let response = http
        .get(server.sse_url())
        .bearer_auth(&alice)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut next_event = async || -> (String, String) {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .filter_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                if block.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                    continue;
                }
                return (field("event:"), field("data:"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
                .await
                .expect("no SSE event")
                .expect("stream ended")
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let (event, endpoint) = next_event().await;
    assert_eq!(event, "endpoint");
    assert!(endpoint.starts_with("/message?sessionId="), "{endpoint}");
    let url = format!("{}{endpoint}", server.base);

    let init = initialize_body();
    let post = |token: &str, body: &Value| {
        http.post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        post(&bob, &init).await.unwrap().status().as_u16(),
        404,
        "another owner's session"
    );
    assert_eq!(post(&alice, &init).await.unwrap().status().as_u16(), 202);
    let (event, data) = next_event().await;
    assert_eq!(event, "message");
    let reply: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["result"]["serverInfo"]["name"], "taskbox");
    let bad = http
        .post(&url)
        .bearer_auth(&alice)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let unknown = format!("{}/message?sessionId=0000", server.base);
    let missing = http
        .post(unknown)
        .bearer_auth(&alice)
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

/// One token holds at most `quotas.http_sessions` sessions at once, legacy SSE and Streamable
/// HTTP together; another token is not affected, and closing a session frees its place.
#[tokio::test]
async fn a_token_holds_at_most_its_quota_of_sessions() {
    let home = Home::new();
    let (alice, _) = create_token(&home.path(), "alice");
    let (bob, _) = create_token(&home.path(), "bob");
    // The rate limit would otherwise be the first to answer 429.
    write_config(
        &home.path(),
        "[http]\nrate_limit_burst = 1000\n[quotas.default]\nhttp_sessions = 3\n",
    );
    let server = HttpServer::start(&home.path(), &[]);
    let http = reqwest::Client::new();
    let open = |token: &str| http.get(server.sse_url()).bearer_auth(token).send();
    let initialize = |token: &str| {
        http.post(format!("{}/mcp", server.base))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "quota-test", "version": "0"}}
            }))
            .send()
    };
    let mut streams = Vec::new();
    for _ in 0..2 {
        let response = open(&alice).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        streams.push(response);
    }
    let streamable = initialize(&alice).await.unwrap();
    assert_eq!(streamable.status().as_u16(), 200);
    let session = streamable.headers()["mcp-session-id"].to_str().unwrap().to_string();

    let refused = open(&alice).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.text().await.unwrap().contains("quotas.http_sessions"));
    assert_eq!(initialize(&alice).await.unwrap().status().as_u16(), 429);
    assert_eq!(open(&bob).await.unwrap().status().as_u16(), 200);

    // Ending the Streamable HTTP session frees a place for a new one.
    let deleted = http
        .delete(format!("{}/mcp", server.base))
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_eq!(initialize(&alice).await.unwrap().status().as_u16(), 200);

    drop(streams.pop());
    let mut freed = false;
    for _ in 0..50 {
        let response = open(&alice).await.unwrap();
        if response.status().as_u16() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a closed session must free its place");
}
