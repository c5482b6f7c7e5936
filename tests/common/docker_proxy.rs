//! A Docker daemon a test can break without touching the real one (other tests share it): a
//! unix socket that forwards every connection to the real daemon's socket. `down()` closes it
//! and every connection through it, as a daemon restart would; `up()` opens it again. `hold()`
//! stalls the requests that contain a pattern (e.g. `/containers/create`) until `release()`,
//! to keep an operation in progress for as long as a test needs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

pub struct DockerProxy {
    dir: TempDir,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    listener: Mutex<Option<JoinHandle<()>>>,
    connections: Mutex<Vec<JoinHandle<()>>>,
    hold: Mutex<Option<Vec<u8>>>,
    /// The first line of every request passed on (`GET /v1.41/containers/… HTTP/1.1`).
    requests: Mutex<Vec<String>>,
}

/// The real daemon's socket: `DOCKER_HOST` when it names one, else the default.
fn real_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

impl DockerProxy {
    /// Starts forwarding (call from within the test's tokio runtime).
    pub fn start() -> Self {
        let proxy = Self {
            dir: tempfile::Builder::new().prefix("taskbox-docker-").tempdir().unwrap(),
            inner: Arc::default(),
        };
        proxy.up();
        proxy
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// What to set `DOCKER_HOST` to.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Opens the socket again.
    pub fn up(&self) {
        let _ = std::fs::remove_file(self.socket());
        let listener = UnixListener::bind(self.socket()).unwrap();
        let inner = self.inner.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let conn = tokio::spawn(forward(client, inner.clone()));
                inner.connections.lock().unwrap().push(conn);
            }
        });
        *self.inner.listener.lock().unwrap() = Some(accept);
    }

    /// The daemon "goes away": the socket is closed and removed, every connection cut.
    pub fn down(&self) {
        if let Some(accept) = self.inner.listener.lock().unwrap().take() {
            accept.abort();
        }
        for conn in self.inner.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Stalls every request whose bytes contain `pattern` until `release`.
    pub fn hold(&self, pattern: &str) {
        *self.inner.hold.lock().unwrap() = Some(pattern.as_bytes().to_vec());
    }

    /// How many requests passed on so far have a first line containing every one of `parts`.
    pub fn requests_with(&self, parts: &[&str]) -> usize {
        let requests = self.inner.requests.lock().unwrap();
        requests
            .iter()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .count()
    }

    pub fn release(&self) {
        *self.inner.hold.lock().unwrap() = None;
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.release();
        self.down();
    }
}

async fn forward(mut client: UnixStream, inner: Arc<Inner>) {
    let Ok(daemon) = UnixStream::connect(real_socket()).await else {
        return;
    };
    let (mut from_daemon, mut to_daemon) = daemon.into_split();
    let (mut from_client, mut to_client) = client.split();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            note_request(&inner, &buf[..n]);
            while held(&inner, &buf[..n]) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if to_daemon.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_daemon.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_daemon, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// Notes the request line when `bytes` starts a request (a body or a later piece does not
/// start with a method).
fn note_request(inner: &Inner, bytes: &[u8]) {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
    let line = text.lines().next().unwrap_or_default();
    if ["GET ", "POST ", "DELETE ", "PUT ", "HEAD "]
        .iter()
        .any(|m| line.starts_with(m))
    {
        inner.requests.lock().unwrap().push(line.to_string());
    }
}

fn held(inner: &Inner, bytes: &[u8]) -> bool {
    match &*inner.hold.lock().unwrap() {
        Some(pattern) => bytes.windows(pattern.len()).any(|w| w == pattern.as_slice()),
        None => false,
    }
}
