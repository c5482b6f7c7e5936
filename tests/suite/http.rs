//! `taskbox serve --http` with real clients: rmcp's Streamable HTTP client and raw HTTP
//! requests against the real binary. Authentication (401), DNS-rebinding protection (403),
//! limits (413, 429, the per-token execution cap), owner isolation, the foundation's flow
//! over HTTP, and many clients at once.

use std::time::Duration;

use crate::common::http::*;
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

#[tokio::test]
async fn the_foundation_flow_works_over_streamable_http() {
    require!(docker);
    let home = Home::new();
    let (token, _) = create_token(&home.path(), "alice");
    let server = HttpServer::start(&home.path(), &[]);
    let client = connect_http(&server, Some(&token), "http-agent").await;
    assert_eq!(
        client.peer_info().unwrap().server_info.as_ref().unwrap().name,
        "taskbox"
    );

    let task = create(&client, "over-http").await;
    assert_eq!(task["status"], "running");
    assert_eq!(task["owner"], "alice");
    let ran = call(
        &client,
        "execute_in_task",
        json!({ "command": "echo hello from $(uname -s)" }),
    )
    .await;
    assert_eq!(ran["exit_code"], 0);
    assert_eq!(ran["stdout"], "hello from Linux\n");
    let status = call(&client, "get_task_status", json!({})).await;
    assert_eq!(status["container"]["state"], "running");
    assert_eq!(status["attachments"][0]["agent"], "http-agent");
    let listed = call(&client, "list_tasks", json!({})).await;
    assert_eq!(listed["total"], 1);
    let resources = client.list_resources(None).await.unwrap();
    assert!(
        resources
            .resources
            .iter()
            .any(|r| r.uri == "taskbox://tasks/over-http/state"),
        "{resources:?}"
    );
    let deleted = call(&client, "delete_task", json!({ "task": "over-http", "confirm": true })).await;
    assert_eq!(deleted["deleted"], task["id"]);
    client.cancel().await.unwrap();
    assert_eq!(server.stdout(), "", "serve --http wrote to stdout");
    assert!(!server.log().contains(&token), "the token was logged");
}

#[tokio::test]
async fn requests_without_a_live_token_get_401() {
    let home = Home::new();
    let (token, id) = create_token(&home.path(), "alice");
    let server = HttpServer::start(&home.path(), &[]);
    let init = initialize_body();

    let (status, headers, body) = post_mcp(&server, None, &[], &init).await;
    assert_eq!(status, 401, "{body}");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer "));
    let (status, _, _) = post_mcp(&server, Some("tbx_not-a-real-token"), &[], &init).await;
    assert_eq!(status, 401);
    let sse = reqwest::Client::new().get(server.sse_url()).send().await.unwrap();
    assert_eq!(sse.status().as_u16(), 401);

    let (status, headers, _) = post_mcp(&server, Some(&token), &[], &init).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("mcp-session-id"));
    let client = connect_http(&server, Some(&token), "before-revoke").await;
    assert_eq!(call(&client, "list_tasks", json!({})).await["total"], 0);

    // Revoked from another process: the running server refuses it from then on.
    revoke_token(&home.path(), &id);
    let (status, _, body) = post_mcp(&server, Some(&token), &[], &init).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_token"), "{body}");
    let raw = client
        .call_tool(rmcp::model::CallToolRequestParams::new("list_tasks"))
        .await;
    assert!(raw.is_err(), "a session of a revoked token still works: {raw:?}");
    assert!(!server.log().contains(&token), "the token was logged");
}

/// `--no-auth` only on loopback; `token create` prints the token alone on stdout, and
/// `token list` never shows it.
#[test]
fn no_auth_is_refused_off_loopback_and_tokens_are_shown_once() {
    let home = Home::new();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--http", "0.0.0.0:0", "--no-auth"])
        .env("TASKBOX_HOME", home.path())
        .env("TASKBOX_CONFIG", home.path().join("config.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--no-auth is accepted only on a loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (token, id) = create_token(&home.path(), "alice");
    assert!(
        token.starts_with("tbx_") && !token.contains(char::is_whitespace),
        "{token}"
    );
    let list = std::process::Command::new(BIN)
        .args(["token", "list"])
        .env("TASKBOX_HOME", home.path())
        .env("TASKBOX_CONFIG", home.path().join("config.toml"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(&id) && listed.contains("alice"), "{listed}");
    assert!(!listed.contains(&token));
    let bad_owner = std::process::Command::new(BIN)
        .args(["token", "create", "--owner", "Not An Owner"])
        .env("TASKBOX_HOME", home.path())
        .output()
        .unwrap();
    assert!(!bad_owner.status.success());
    assert_eq!(bad_owner.stdout, b"");
}

#[tokio::test]
async fn foreign_hosts_and_origins_get_403() {
    let home = Home::new();
    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let init = initialize_body();
    for headers in [
        vec![("host", "evil.example")],
        vec![("host", "evil.example:8765")],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
    ] {
        let (status, _, body) = post_mcp(&server, None, &headers, &init).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    let sse = reqwest::Client::new()
        .get(server.sse_url())
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 403);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let origin = format!("http://localhost:{port}");
    let (status, _, _) = post_mcp(&server, None, &[("origin", &origin)], &init).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_bursts_get_429_with_retry_after() {
    let home = Home::new();
    write_config(
        &home.path(),
        "[http]\nmax_body_bytes = 2048\nrate_limit_per_second = 0.2\nrate_limit_burst = 3\n",
    );
    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let big = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "padding": "x".repeat(4096) });
    let (status, _, _) = post_mcp(&server, None, &[], &big).await;
    assert_eq!(status, 413);
    let init = initialize_body();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, headers, _) = post_mcp(&server, None, &[], &init).await;
        statuses.push(status);
        if status == 429 {
            retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    // A burst of 3, then one request every 5 s (the refused oversized body took none).
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert!(retry_after.is_some_and(|s| (1..=5).contains(&s)), "{retry_after:?}");
}

#[tokio::test]
async fn a_token_runs_at_most_its_cap_of_executions_at_once() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[http]\nmax_executions_per_token = 1\n");
    let (token, _) = create_token(&home.path(), "alice");
    let server = HttpServer::start(&home.path(), &[]);
    let first = connect_http(&server, Some(&token), "one").await;
    let second = connect_http(&server, Some(&token), "two").await;
    create(&first, "capped").await;
    let slow = tokio::spawn(async move { exec(&first, "capped", "sleep 3; echo slow").await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (kind, message) = call_err(
        &second,
        "execute_in_task",
        json!({ "task": "capped", "command": "true" }),
    )
    .await;
    assert_eq!(kind, "too_many_executions", "{message}");
    assert_eq!(slow.await.unwrap()["stdout"], "slow\n");
    assert_eq!(exec(&second, "capped", "echo now").await["stdout"], "now\n");
}

/// Owner B sees none of owner A's tasks: listing, inspecting, executing, deleting, attaching,
/// checkpoints, resources, search and statistics all behave as if A's task did not exist.
#[tokio::test]
async fn an_owner_cannot_see_or_touch_another_owners_task() {
    require!(docker);
    let home = Home::new();
    let (alice_token, _) = create_token(&home.path(), "alice");
    let (bob_token, _) = create_token(&home.path(), "bob");
    let server = HttpServer::start(&home.path(), &[]);
    let alice = connect_http(&server, Some(&alice_token), "alice-agent").await;
    let bob = connect_http(&server, Some(&bob_token), "bob-agent").await;

    let task = call(
        &alice,
        "create_task_sandbox",
        json!({ "name": "secret-work", "description": "zanzibar plans" }),
    )
    .await["task"]
        .clone();
    let id = task["id"].as_str().unwrap();
    exec(&alice, id, "echo quokka").await;
    let checkpoint = call(&alice, "create_checkpoint", json!({ "label": "one" })).await["checkpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(call(&bob, "list_tasks", json!({})).await["total"], 0);
    // Every way of naming A's task gives exactly the error of a task that does not exist.
    let missing = |name: &str, args: Value| {
        let text = args.to_string().replace("secret-work", name).replace(id, name);
        serde_json::from_str::<Value>(&text).unwrap()
    };
    for (tool, args) in [
        ("get_task_status", json!({ "task": "secret-work" })),
        ("get_task_status", json!({ "task": id })),
        ("execute_in_task", json!({ "task": "secret-work", "command": "true" })),
        ("execute_in_task", json!({ "task": id, "command": "true" })),
        ("delete_task", json!({ "task": id, "confirm": true })),
        ("attach_agent_to_task", json!({ "task": "secret-work" })),
        ("stop_task", json!({ "task": id })),
        ("read_file", json!({ "task": id, "path": "/workspace" })),
        ("task_executions", json!({ "task": "secret-work" })),
        ("list_checkpoints", json!({ "task": "secret-work" })),
        ("task_stats", json!({ "task": id })),
        ("cleanup_task", json!({ "task": "secret-work", "dry_run": true })),
        ("restore_checkpoint", json!({ "checkpoint": "secret-work:1" })),
        (
            "create_task_sandbox",
            json!({ "name": "fork", "from_checkpoint": "secret-work:1" }),
        ),
    ] {
        let theirs = call_err(&bob, tool, args.clone()).await;
        let nobodys = call_err(&bob, tool, missing("no-such-task", args)).await;
        assert_eq!(theirs.0, "task_not_found", "{tool}: {}", theirs.1);
        assert_eq!(
            theirs.1.replace("secret-work", "X").replace(id, "X"),
            nobodys.1.replace("no-such-task", "X"),
            "{tool}"
        );
    }
    // A's checkpoint by its id: the same as a checkpoint id that does not exist.
    let fake = format!("c-{}", "0".repeat(checkpoint.len() - 2));
    let theirs = call_err(&bob, "restore_checkpoint", json!({ "checkpoint": checkpoint })).await;
    let nobodys = call_err(&bob, "restore_checkpoint", json!({ "checkpoint": fake })).await;
    assert_eq!(theirs.0, nobodys.0, "{}", theirs.1);
    assert_eq!(theirs.1.replace(&checkpoint, "X"), nobodys.1.replace(&fake, "X"));
    assert_eq!(
        call(&bob, "find_task", json!({ "query": "zanzibar" })).await["tasks"],
        json!([])
    );
    assert_eq!(
        call(&bob, "find_task", json!({ "query": "quokka" })).await["tasks"],
        json!([])
    );
    let stats = call(&bob, "task_stats", json!({})).await;
    assert_eq!(
        (stats["executions"].clone(), stats["checkpoints"].clone()),
        (json!(0), json!(0))
    );
    assert!(bob.list_resources(None).await.unwrap().resources.is_empty());
    let read = bob
        .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
            "taskbox://tasks/{id}/state"
        )))
        .await;
    assert!(
        matches!(&read, Err(rmcp::ServiceError::McpError(e)) if e.code == rmcp::model::ErrorCode::RESOURCE_NOT_FOUND),
        "{read:?}"
    );

    // A name is unique per owner: B may use the same one, and gets a task of its own.
    let bobs = create(&bob, "secret-work").await;
    assert_ne!(bobs["id"], task["id"]);
    assert_eq!(call(&bob, "list_tasks", json!({})).await["total"], 1);
    call(&bob, "delete_task", json!({ "task": "secret-work", "confirm": true })).await;
    // A's task is untouched by all of it.
    let status = call(&alice, "get_task_status", json!({ "task": "secret-work" })).await;
    assert_eq!(status["task"]["status"], "running");
    assert_eq!(status["executions"]["total"], 1);

    // B cannot use A's Streamable HTTP session either.
    let (_, headers, _) = post_mcp(&server, Some(&alice_token), &[], &initialize_body()).await;
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let (status, _, _) = post_mcp(&server, Some(&bob_token), &[("mcp-session-id", &session)], &list).await;
    assert_eq!(status, 404);
}

/// 20 clients at once, 5 per owner (one token each), each running 10 executions in its
/// owner's task: every one succeeds and is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_run_ten_executions_each() {
    require!(docker);
    let home = Home::new();
    let owners = ["ann", "ben", "cat", "dan"];
    let tokens: Vec<String> = owners.iter().map(|o| create_token(&home.path(), o).0).collect();
    let server = HttpServer::start(&home.path(), &[]);
    for (owner, token) in owners.iter().zip(&tokens) {
        let client = connect_http(&server, Some(token), "setup").await;
        create(&client, &format!("{owner}-work")).await;
        client.cancel().await.unwrap();
    }
    let started = std::time::Instant::now();
    let mut clients = Vec::new();
    for i in 0..20 {
        let owner = owners[i % 4];
        let token = tokens[i % 4].clone();
        let url_server = &server;
        let client = connect_http(url_server, Some(&token), &format!("client-{i}")).await;
        clients.push(tokio::spawn(async move {
            let task = format!("{owner}-work");
            for j in 0..10 {
                let ran = exec(&client, &task, &format!("echo {i}-{j}")).await;
                assert_eq!(ran["exit_code"], 0, "{ran}");
                assert_eq!(ran["stdout"], format!("{i}-{j}\n"));
            }
            client.cancel().await.unwrap();
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    eprintln!("200 executions by 20 clients in {:?}", started.elapsed());
    for (owner, token) in owners.iter().zip(&tokens) {
        let client = connect_http(&server, Some(token), "check").await;
        let executions = call(
            &client,
            "task_executions",
            json!({ "task": format!("{owner}-work"), "limit": 100 }),
        )
        .await;
        assert_eq!(executions["total"], 50, "{owner}");
        let items = executions["items"].as_array().unwrap();
        assert!(items.iter().all(|e| e["status"] == "finished" && e["exit_code"] == 0));
        let task_id = call(&client, "get_task_status", json!({ "task": format!("{owner}-work") })).await["task"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let logged = events(&home.path(), &task_id)
            .iter()
            .filter(|e| e["type"] == "execution")
            .count();
        assert_eq!(logged, 50, "{owner}: executions in events.jsonl");
    }
}

/// One sessionless tools/call of MCP 2026-07-28 (no initialize, no session id; the protocol
/// version and client capabilities in the request's `_meta`): the JSON-RPC result or error.
async fn sessionless_call(server: &HttpServer, token: Option<&str>, tool: &str, arguments: Value) -> (u16, Value) {
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": tool, "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    let (status, _, text) = post_mcp(server, token, &headers, &body).await;
    // A JSON body, or the `data:` line of an event stream that carries the answer.
    let message = std::iter::once(text.as_str())
        .chain(text.lines().filter_map(|l| l.strip_prefix("data:")))
        .find_map(|candidate| {
            serde_json::from_str::<Value>(candidate.trim())
                .ok()
                .filter(|m| m["id"] == 7)
        })
        .unwrap_or(Value::Null);
    (status, message)
}

#[tokio::test(flavor = "multi_thread")]
async fn sessionless_requests_act_for_their_token_and_ask_for_the_task() {
    require!(docker);
    let home = Home::new();
    let (alice, _) = create_token(&home.path(), "alice");
    let (bob, _) = create_token(&home.path(), "bob");
    let server = HttpServer::start(&home.path(), &[]);

    let (status, created) = sessionless_call(
        &server,
        Some(&alice),
        "create_task_sandbox",
        json!({ "name": "nosession" }),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["result"]["isError"], false, "{created}");

    // No session, so no current task: the call says to pass `task`.
    let (_, bare) = sessionless_call(
        &server,
        Some(&alice),
        "execute_in_task",
        json!({ "command": "echo hi" }),
    )
    .await;
    assert_eq!(bare["result"]["isError"], true, "{bare}");
    let error = &bare["result"]["structuredContent"]["error"];
    assert_eq!(error["kind"], "no_current_task", "{bare}");
    assert!(error["message"].as_str().unwrap().contains("sessionless"), "{bare}");

    let (_, ran) = sessionless_call(
        &server,
        Some(&alice),
        "execute_in_task",
        json!({ "task": "nosession", "command": "echo hi" }),
    )
    .await;
    assert_eq!(ran["result"]["structuredContent"]["stdout"], "hi\n", "{ran}");

    // The owner comes from each request's token.
    let (_, foreign) = sessionless_call(
        &server,
        Some(&bob),
        "execute_in_task",
        json!({ "task": "nosession", "command": "echo hi" }),
    )
    .await;
    assert_eq!(
        foreign["result"]["structuredContent"]["error"]["kind"], "task_not_found",
        "{foreign}"
    );
    let (status, _) = sessionless_call(&server, None, "list_tasks", json!({})).await;
    assert_eq!(status, 401);
}
