//! HTTP harness: the real binary as `taskbox serve --http 127.0.0.1:0`, its bound address
//! read from stderr, tokens made with `taskbox token create`, and rmcp's Streamable HTTP
//! client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::{BIN, Client};

/// A running `taskbox serve --http`; SIGTERM'd (then killed) on drop.
pub struct HttpServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl HttpServer {
    /// Starts the server on a free port for `home`, with extra arguments (e.g. `--no-auth`).
    pub fn start(home: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(home, extra, &[])
    }

    /// `start`, with extra environment variables for the server.
    pub fn start_with_env(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .envs(env.iter().copied())
            .args(["serve", "--http", "127.0.0.1:0"])
            .args(extra)
            .current_dir(home)
            .env("TASKBOX_HOME", home)
            .env("TASKBOX_CONFIG", home.join("config.toml"))
            .env("TASKBOX_LOG", "taskbox=debug,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&line);
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => panic!("the server did not start:\n{}", log.lock().unwrap()),
        };
        Self {
            child,
            base,
            log,
            stdout,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn sse_url(&self) -> String {
        format!("{}/sse", self.base)
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// What the server wrote on stdout (nothing, ever).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// kill -9: the server dies at once, with no shutdown of its own.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
            if self.wait(Duration::from_secs(30)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// `taskbox token create --owner OWNER`: (the token, its id).
pub fn create_token(home: &Path, owner: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["token", "create", "--owner", owner])
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stderr
        .split_whitespace()
        .find(|w| w.starts_with("tok-"))
        .unwrap_or_else(|| panic!("no token id in: {stderr}"))
        .to_string();
    (token, id)
}

/// `taskbox token revoke ID`.
pub fn revoke_token(home: &Path, id: &str) {
    let out = Command::new(BIN)
        .args(["token", "revoke", id])
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// rmcp's Streamable HTTP client, with the bearer token when given.
pub async fn connect_http(server: &HttpServer, token: Option<&str>, client_name: &str) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.mcp_url());
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1.0.0"));
    info.serve(transport).await.unwrap()
}

/// The JSON-RPC `initialize` request, as a raw client sends it.
pub fn initialize_body() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "raw", "version": "1" } }
    })
}

/// A raw POST to /mcp with optional bearer token and extra headers; (status, headers, body).
pub async fn post_mcp(
    server: &HttpServer,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new()
        .post(server.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // An SSE answer stays open for more events; read what arrives within a moment.
    let body = match tokio::time::timeout(Duration::from_secs(5), response.text()).await {
        Ok(text) => text.unwrap_or_default(),
        Err(_) => String::new(),
    };
    (status, headers, body)
}
