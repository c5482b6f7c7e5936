//! Exposed ports (issue 13 point 6, issue 11 point 8), on the real binary and real Docker: a
//! dev server started in the background, exposed, fetched from the host, closed by stop_task
//! and delete_task and back after resume_task; servers that listen only on the container's
//! loopback, and tasks with network `none`; the forward taken over by another server when its
//! own ends; and, over HTTP, each port on a listener of its own for its owner only, with the
//! quota on exposed ports.

use std::time::{Duration, Instant};

use crate::common::http::*;
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// A task on the image with Python (`python3 -m http.server`).
async fn create_dev(client: &Client, name: &str, network: &str) -> Value {
    call(
        client,
        "create_task_sandbox",
        json!({ "name": name, "description": "a dev server", "image": "taskbox-developer", "network": network }),
    )
    .await["task"]
        .clone()
}

/// Starts `command` in the task in the background.
async fn start(client: &Client, task: &str, command: &str) -> String {
    let r = call(
        client,
        "execute_in_task",
        json!({ "task": task, "command": command, "background": true }),
    )
    .await;
    r["execution_id"].as_str().unwrap().to_string()
}

/// GET `url` with extra headers, without following redirects: (status, headers, body).
async fn get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, reqwest::header::HeaderMap, String), reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok((status, headers, response.text().await?))
}

/// GETs `url` until it answers 200 (the server in the container may still be starting).
async fn get_ok(url: &str, headers: &[(&str, &str)], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let last = get(url, headers).await;
        if let Ok((200, _, body)) = &last {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {limit:?}: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether a new connection to the URL's host and port is refused.
async fn refused(url: &str) -> bool {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dev_server_is_exposed_closed_on_stop_and_back_on_resume() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "ports").await;
    create_dev(&client, "web", "egress").await;
    exec(&client, "web", "echo hello > served-file.txt").await;
    start(&client, "web", "python3 -m http.server 8000").await;

    let exposed = call(&client, "expose_port", json!({ "port": 8000 })).await;
    let url = exposed["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{exposed}");
    assert_eq!(exposed["open"], true);
    assert_eq!(exposed["public_url"], Value::Null, "stdio has no public listener");
    let body = get_ok(&url, &[], Duration::from_secs(30)).await;
    assert!(
        body.contains("Directory listing") && body.contains("served-file.txt"),
        "{body}"
    );

    // What a connection through the relay costs (one `docker exec` each): reported, and
    // bounded generously so that a shared machine does not fail it.
    let timed = Instant::now();
    for _ in 0..20 {
        let (status, _, _) = get(&url, &[]).await.unwrap();
        assert_eq!(status, 200);
    }
    let each = timed.elapsed() / 20;
    eprintln!("ports: a GET on a new connection through the forward took {each:?} on average");
    assert!(each < Duration::from_secs(3), "{each:?} per request");

    // Listed, with what listens in the container; exposing again gives the same forward.
    let listed = call(&client, "list_ports", json!({})).await;
    assert_eq!(listed["exposed"][0]["port"], 8000, "{listed}");
    assert_eq!(listed["exposed"][0]["url"], url.as_str());
    let listening = listed["listening"].as_array().unwrap();
    assert!(listening.iter().any(|l| l["port"] == 8000), "{listed}");
    let again = call(&client, "expose_port", json!({ "task": "web", "port": 8000 })).await;
    assert_eq!(again["url"], url.as_str());
    assert_eq!(again["listening"], true);
    let task_id = again["task_id"].as_str().unwrap().to_string();
    let exposures: Vec<_> = events(&home.path(), &task_id)
        .into_iter()
        .filter(|e| e["type"] == "port_exposed")
        .collect();
    assert_eq!(exposures.len(), 1, "{exposures:#?}");
    assert_eq!(exposures[0]["data"]["port"], 8000);

    // Stopped: the URL no longer answers, and the forward says it is closed.
    call(&client, "stop_task", json!({})).await;
    assert!(refused(&url).await, "{url} still answers after stop_task");
    let listed = call(&client, "list_ports", json!({})).await;
    assert_eq!(listed["exposed"][0]["open"], false, "{listed}");
    assert_eq!(listed["exposed"][0]["url"], Value::Null);

    // Resumed: the same URL answers again once the server runs (stop ended it).
    call(&client, "resume_task", json!({ "task": "web" })).await;
    let listed = call(&client, "list_ports", json!({})).await;
    assert_eq!(listed["exposed"][0]["url"], url.as_str(), "{listed}");
    start(&client, "web", "python3 -m http.server 8000").await;
    let body = get_ok(&url, &[], Duration::from_secs(30)).await;
    assert!(body.contains("served-file.txt"), "{body}");

    // Deleted: gone.
    call(&client, "delete_task", json!({ "task": "web", "confirm": true })).await;
    assert!(refused(&url).await, "{url} still answers after delete_task");

    // Bad ports say what to do.
    create(&client, "plain").await;
    let (kind, message) = call_err(&client, "expose_port", json!({ "port": 0 })).await;
    assert_eq!(kind, "invalid_argument", "{message}");
    let (kind, _) = call_err(&client, "expose_port", json!({ "port": 70000 })).await;
    assert_eq!(kind, "invalid_argument");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_the_containers_loopback_only_is_reached() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "ports-loopback").await;
    let task = create_dev(&client, "vite-like", "egress").await;
    exec(
        &client,
        "vite-like",
        "mkdir -p site && echo loopback-only > site/index.html",
    )
    .await;
    start(
        &client,
        "vite-like",
        "python3 -m http.server 5173 --bind 127.0.0.1 --directory site",
    )
    .await;
    let exposed = call(&client, "expose_port", json!({ "port": 5173 })).await;
    let url = exposed["url"].as_str().unwrap().to_string();
    let body = get_ok(&url, &[], Duration::from_secs(30)).await;
    assert_eq!(body, "loopback-only\n");

    // The container's own address does not serve it: a plain forward to it would not do.
    let container = task["container_id"].as_str().unwrap();
    let inspect = docker_inspect("container", container).unwrap();
    let ip = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let direct = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(format!("{ip}:5173")),
    )
    .await;
    assert!(!matches!(direct, Ok(Ok(_))), "{ip}:5173 answered");

    // list_ports says where it listens.
    let listed = call(&client, "list_ports", json!({})).await;
    let entry = listed["listening"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == 5173)
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(entry["addresses"], json!(["127.0.0.1"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_without_network_gets_a_forward_through_exec() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "ports-none").await;
    create_dev(&client, "offline", "none").await;
    // No network: the container has only its loopback.
    let r = exec(&client, "offline", "ls /sys/class/net").await;
    assert_eq!(r["stdout"].as_str().unwrap().trim(), "lo", "{r}");
    exec(&client, "offline", "echo offline-page > index.html").await;
    start(&client, "offline", "python3 -m http.server 8080").await;
    let exposed = call(&client, "expose_port", json!({ "port": 8080 })).await;
    let url = exposed["url"].as_str().unwrap().to_string();
    assert_eq!(get_ok(&url, &[], Duration::from_secs(30)).await, "offline-page\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_server_takes_over_the_forwards_of_one_that_ended() {
    require!(docker);
    let home = Home::new();
    let first = connect(&home.path(), "ports-first").await;
    let second = connect(&home.path(), "ports-second").await;
    create_dev(&first, "shared", "egress").await;
    exec(&first, "shared", "echo kept > index.html").await;
    start(&first, "shared", "python3 -m http.server 8000").await;
    let url = call(&first, "expose_port", json!({ "port": 8000 })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get_ok(&url, &[], Duration::from_secs(30)).await, "kept\n");

    // The server holding the forward ends (its background server keeps running); the other
    // one takes the forward over, on the same port.
    first.cancel().await.unwrap();
    let body = get_ok(&url, &[], Duration::from_secs(20)).await;
    assert_eq!(body, "kept\n");
    let listed = call(&second, "list_ports", json!({ "task": "shared" })).await;
    assert_eq!(listed["exposed"][0]["url"], url.as_str(), "{listed}");
    assert_eq!(listed["exposed"][0]["open"], true);

    // And a server started afterwards finds it again after this one ends too.
    second.cancel().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(refused(&url).await, "nobody holds the forward, yet it answers");
    let third = connect(&home.path(), "ports-third").await;
    assert_eq!(get_ok(&url, &[], Duration::from_secs(20)).await, "kept\n");

    // A stop from another server closes the forward the third one holds (its keeper sees the
    // task stopped within about 2 s).
    let fourth = connect(&home.path(), "ports-fourth").await;
    call(&fourth, "stop_task", json!({ "task": "shared" })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused(&url).await {
        assert!(
            Instant::now() < deadline,
            "{url} still answers after another server stopped the task"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(third);
}

/// A server in the container that answers with the headers it was sent.
const ECHO_HEADERS: &str = r#"python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("path=" + self.path + "\n" + str(self.headers)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", 9000), H).serve_forever()
'"#;

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_port_has_its_own_origin_and_only_its_owner_passes() {
    require!(docker);
    let home = Home::new();
    let (alice_token, alice_id) = create_token(&home.path(), "alice");
    let (bob_token, _) = create_token(&home.path(), "bob");
    write_config(&home.path(), "[quotas.default]\nexposed_ports = 1\n");
    let server = HttpServer::start(&home.path(), &[]);
    let alice = connect_http(&server, Some(&alice_token), "alice-agent").await;
    let bob = connect_http(&server, Some(&bob_token), "bob-agent").await;
    create_dev(&alice, "app", "egress").await;
    start(&alice, "app", ECHO_HEADERS).await;

    let exposed = call(&alice, "expose_port", json!({ "task": "app", "port": 9000 })).await;
    let public = exposed["public_url"].as_str().unwrap().to_string();
    assert_eq!(
        exposed["url"],
        public.as_str(),
        "another owner's url is the authenticated one"
    );
    // An origin of its own: not the server's port.
    let server_port = server
        .base
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert!(
        !public.contains(&format!(":{server_port}/")),
        "{public} vs {}",
        server.base
    );

    // No credential: 401, saying how to sign in. Bob's token: as if nothing were there.
    let (status, _, body) = get(&public, &[]).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("taskbox_token"), "{body}");
    let bob_auth = format!("Bearer {bob_token}");
    let (status, _, _) = get(&public, &[("authorization", &bob_auth)]).await.unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{public}?taskbox_token={bob_token}"), &[]).await.unwrap();
    assert_eq!(status, 404);

    // Alice's token passes, and never reaches the container.
    let alice_auth = format!("Bearer {alice_token}");
    let body = get_ok(
        &format!("{public}x?y=1"),
        &[("authorization", &alice_auth)],
        Duration::from_secs(30),
    )
    .await;
    assert!(body.starts_with("path=/x?y=1\n"), "{body}");
    let lower = body.to_lowercase();
    assert!(lower.contains("host: localhost:9000"), "{body}");
    assert!(lower.contains("x-forwarded-host: 127.0.0.1:"), "{body}");
    assert!(
        !body.contains(&alice_token) && !body.to_lowercase().contains("authorization"),
        "{body}"
    );

    // A browser: the token once in the address, then a session cookie, and the token gone
    // from the address. The cookie does not reach the container either; other cookies do.
    let (status, headers, _) = get(&format!("{public}page?a=b&taskbox_token={alice_token}"), &[])
        .await
        .unwrap();
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/page?a=b");
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let sent = format!("{session}; theme=dark");
    let (status, _, body) = get(&format!("{public}page?a=b"), &[("cookie", &sent)]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("theme=dark") && !body.contains("taskbox_port_"), "{body}");

    // Bob's tools do not see Alice's task; the quota holds for Alice.
    for (tool, args) in [
        ("expose_port", json!({ "task": "app", "port": 9000 })),
        ("list_ports", json!({ "task": "app" })),
    ] {
        let (kind, _) = call_err(&bob, tool, args).await;
        assert_eq!(kind, "task_not_found", "{tool}");
    }
    let (kind, message) = call_err(&alice, "expose_port", json!({ "task": "app", "port": 9001 })).await;
    assert_eq!(kind, "quota_exceeded", "{message}");
    assert!(message.contains("exposed_ports"), "{message}");

    // A revoked token ends its sessions.
    revoke_token(&home.path(), &alice_id);
    let (status, _, _) = get(&format!("{public}page"), &[("cookie", &session)]).await.unwrap();
    assert_eq!(status, 401);
    let (status, _, _) = get(&public, &[("authorization", &alice_auth)]).await.unwrap();
    assert_eq!(status, 401);
}

/// A server in the container that switches protocols on any request, then answers each
/// piece of data upper-cased (what a WebSocket, e.g. Vite's HMR, needs of the proxy).
const UPGRADE_ECHO: &str = r#"python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9100)); s.listen()
while True:
    c, _ = s.accept(); data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(4096)
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(d.upper())
    c.close()
'"#;

#[tokio::test(flavor = "multi_thread")]
async fn under_no_auth_the_local_owner_gets_both_urls_and_upgrades_pass() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    require!(docker);
    let home = Home::new();
    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let client = connect_http(&server, None, "local-agent").await;
    create_dev(&client, "ws", "egress").await;
    start(&client, "ws", UPGRADE_ECHO).await;
    let exposed = call(&client, "expose_port", json!({ "port": 9100 })).await;
    let url = exposed["url"].as_str().unwrap();
    let public = exposed["public_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url != public, "{exposed}");

    // The protocol switch is bridged both ways through the port's own listener.
    let addr = public.trim_start_matches("http://").trim_end_matches('/').to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut stream, head) = loop {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /hmr HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.starts_with("HTTP/1.1 101") {
            break (stream, head);
        }
        assert!(Instant::now() < deadline, "no switch: {head}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(head.to_lowercase().contains("upgrade: echo"), "{head}");
    stream.write_all(b"hello hmr").await.unwrap();
    let mut answer = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"HELLO HMR");

    // Nothing listening: 502, saying what to do.
    let exposed = call(&client, "expose_port", json!({ "port": 9101 })).await;
    assert_eq!(exposed["listening"], false, "{exposed}");
    assert!(exposed["note"].as_str().unwrap().contains("background"), "{exposed}");
    let (status, _, body) = get(exposed["public_url"].as_str().unwrap(), &[]).await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("nothing answered on port 9101"), "{body}");
}
