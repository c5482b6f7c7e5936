//! Port forwards (`expose_port`): the listeners this server process holds for exposed ports,
//! and how each connection reaches the port in the container. See docs/architecture.md,
//! "Ports".
//!
//! Every connection to a forward runs `supervise relay PORT` in the task's container through
//! `docker exec` (as the task's unprivileged user) and copies bytes between the connection and
//! the exec's standard input and output. The relay connects to the port on the container's
//! own loopback, so a server that listens only on 127.0.0.1 inside the container (Vite's
//! default) is reached, and so is one in a task with network `none`: nothing crosses a
//! network, and no firewall rule has to let the host reach task networks.
//!
//! Which server holds a port's listeners is recorded in the registry (`exposed_ports`); the
//! service decides when to open and close them (`task::service::ports`), this module only
//! holds them.

pub mod listening;
mod public;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::domain::{Owner, TaskStatus};
use crate::registry::Registry;
use crate::runtime::supervisor::SUPERVISOR_PATH;
use crate::runtime::{ContainerRuntime, DuplexExec, ExecSpec, OutputChunk};

pub use public::PublicSettings;

/// Connections one forward serves at once (each holds a `docker exec`); more wait in the
/// listener's backlog until one ends.
pub const MAX_CONNECTIONS: usize = 64;
/// The most of a relay's stderr kept (it says why it could not connect).
const RELAY_STDERR_KEPT: usize = 1024;

/// Opens relays to ports in tasks' containers, as the registry records the task now (a
/// restore or a recreation changes its container; a stopped task gets none).
#[derive(Clone)]
pub struct Connector {
    runtime: Arc<dyn ContainerRuntime>,
    registry: Arc<Registry>,
}

impl Connector {
    pub fn new(runtime: Arc<dyn ContainerRuntime>, registry: Arc<Registry>) -> Self {
        Self { runtime, registry }
    }

    /// A relay to `port` in the task's container.
    pub async fn relay(&self, task_id: &str, port: u16) -> Result<DuplexExec, String> {
        let task = self
            .registry
            .get_task(task_id)
            .map_err(|e| e.to_string())?
            .ok_or("the task no longer exists")?;
        let container = match (task.status, task.container_id) {
            (TaskStatus::Running, Some(container)) => container,
            (status, _) => return Err(format!("the task is {status}")),
        };
        let spec = ExecSpec {
            cmd: vec![SUPERVISOR_PATH.into(), "relay".into(), port.to_string()],
            user: task.exec_user,
            ..Default::default()
        };
        self.runtime
            .exec_duplex(&container, spec)
            .await
            .map_err(|e| e.to_string())
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Copies between `stream` and the relay until the relay's output ends (the connection in
/// the container closed) or `stream` can take no more; returns what the relay said on stderr
/// (cut), which explains a connection that failed.
pub async fn bridge<S>(stream: S, relay: DuplexExec) -> String
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut from_client, mut to_client) = tokio::io::split(stream);
    let DuplexExec {
        mut output, mut input, ..
    } = relay;
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut input).await;
        // The client is done sending: the relay half-closes its connection in turn.
        let _ = input.shutdown().await;
    };
    let downstream = async {
        let mut stderr = Vec::new();
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(OutputChunk::Stdout(bytes)) => {
                    if to_client.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Ok(OutputChunk::Stderr(bytes)) => {
                    let room = RELAY_STDERR_KEPT.saturating_sub(stderr.len());
                    stderr.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                Err(_) => break,
            }
        }
        let _ = to_client.shutdown().await;
        String::from_utf8_lossy(&stderr).trim().to_string()
    };
    tokio::pin!(upstream, downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            () = &mut upstream, if !upstream_done => upstream_done = true,
            said = &mut downstream => return said,
        }
    }
}

/// What this process's listeners serve: a task's port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardKey {
    pub task_id: String,
    pub port: u16,
}

/// The ports a forward's listeners got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Listening {
    /// The loopback listener (raw TCP, for people on this machine).
    pub host_port: Option<u16>,
    /// The authenticated HTTP listener under `serve --http`.
    pub public_port: Option<u16>,
}

struct Open {
    stop: CancellationToken,
    listening: Listening,
}

/// The forwards this server process holds.
pub struct Forwards {
    connector: Connector,
    open: Mutex<HashMap<ForwardKey, Open>>,
    /// Set by `serve --http`: forwards get an authenticated listener of their own too.
    public: OnceLock<PublicSettings>,
    /// Set by `serve` (stdio or HTTP): this process lives long enough to hold listeners. A
    /// command-line process (`taskbox resume`) leaves forwards to a server.
    serving: std::sync::atomic::AtomicBool,
    /// Held by each pass that compares the forwards with the registry, and by the closing of
    /// a task's forwards: a pass that read the task as running never reopens what a stop
    /// closed after it.
    pass: tokio::sync::Mutex<()>,
}

impl Forwards {
    pub fn new(connector: Connector) -> Self {
        Self {
            connector,
            open: Mutex::new(HashMap::new()),
            public: OnceLock::new(),
            serving: Default::default(),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn pass(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.pass.lock().await
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<ForwardKey, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_serving(&self) {
        self.serving.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_public(&self, settings: PublicSettings) {
        let _ = self.public.set(settings);
    }

    pub fn public(&self) -> Option<&PublicSettings> {
        self.public.get()
    }

    /// Whether this process can hold a forward of `owner`'s task: it serves, and it has a
    /// listener the owner may use (the loopback one is the local owner's only: anyone on
    /// the machine can connect to it).
    pub fn can_serve(&self, owner: &Owner) -> bool {
        self.serving.load(std::sync::atomic::Ordering::Relaxed) && (owner.is_local() || self.public.get().is_some())
    }

    /// The listeners of an open forward.
    pub fn listening(&self, key: &ForwardKey) -> Option<Listening> {
        self.open_map().get(key).map(|o| o.listening)
    }

    pub fn open_keys(&self) -> Vec<ForwardKey> {
        self.open_map().keys().cloned().collect()
    }

    /// Opens the forward's listeners, on the ports it had (`want`) when they are free, else on
    /// free ones; an open forward is left as it is.
    pub async fn open(&self, key: &ForwardKey, owner: &Owner, want: Listening) -> std::io::Result<Listening> {
        if let Some(listening) = self.listening(key) {
            return Ok(listening);
        }
        let stop = CancellationToken::new();
        let mut listening = Listening::default();
        if owner.is_local() {
            let listener = bind(IpAddr::V4(Ipv4Addr::LOCALHOST), want.host_port).await?;
            listening.host_port = Some(listener.local_addr()?.port());
            tokio::spawn(serve_loopback(
                listener,
                self.connector.clone(),
                key.clone(),
                stop.clone(),
            ));
        }
        if let Some(settings) = self.public.get() {
            let listener = match bind(settings.bind, want.public_port).await {
                Ok(listener) => listener,
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            };
            listening.public_port = Some(listener.local_addr()?.port());
            tokio::spawn(public::serve(
                listener,
                public::Target {
                    connector: self.connector.clone(),
                    key: key.clone(),
                    owner: owner.clone(),
                    no_auth: settings.no_auth,
                    cookie: format!("taskbox_port_{}", listening.public_port.unwrap_or_default()),
                },
                stop.clone(),
            ));
        }
        let mut open = self.open_map();
        if let Some(raced) = open.get(key) {
            // Another call opened it meanwhile: keep that one.
            stop.cancel();
            return Ok(raced.listening);
        }
        open.insert(key.clone(), Open { stop, listening });
        Ok(listening)
    }

    /// Closes the forward's listeners and its connections.
    pub fn close(&self, key: &ForwardKey) -> bool {
        match self.open_map().remove(key) {
            Some(open) => {
                open.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes every forward of the task.
    pub fn close_task(&self, task_id: &str) {
        let mut open = self.open_map();
        open.retain(|key, o| {
            let keep = key.task_id != task_id;
            if !keep {
                o.stop.cancel();
            }
            keep
        });
    }
}

impl Forwards {
    /// Closes every forward (the server is shutting down).
    pub fn close_all(&self) {
        for (_, open) in self.open_map().drain() {
            open.stop.cancel();
        }
    }
}

impl Drop for Forwards {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// A listener on `ip`, on `want` when it is free, else on a free port.
async fn bind(ip: IpAddr, want: Option<u16>) -> std::io::Result<TcpListener> {
    if let Some(port) = want
        && let Ok(listener) = TcpListener::bind(SocketAddr::new(ip, port)).await
    {
        return Ok(listener);
    }
    TcpListener::bind(SocketAddr::new(ip, 0)).await
}

/// The next connection on `listener` with a slot of `slots` held for it (at most
/// `MAX_CONNECTIONS` at once per listener); `None` once `stop` is cancelled.
pub(super) async fn accept_within(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stop: &CancellationToken,
    what: &str,
) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = tokio::select! {
        () = stop.cancelled() => return None,
        permit = slots.clone().acquire_owned() => permit.ok()?,
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => return Some((stream, permit)),
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::debug!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The loopback listener: each connection is bridged to a relay as it is, bytes both ways
/// (any protocol, not only HTTP).
async fn serve_loopback(listener: TcpListener, connector: Connector, key: ForwardKey, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    while let Some((stream, permit)) = accept_within(&listener, &slots, &stop, "port forward").await {
        let _ = stream.set_nodelay(true);
        let connector = connector.clone();
        let key = key.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let exchange = async {
                match connector.relay(&key.task_id, key.port).await {
                    Ok(relay) => {
                        let said = bridge(stream, relay).await;
                        if !said.is_empty() {
                            tracing::debug!(task = %key.task_id, port = key.port, relay = %said, "port forward");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(task = %key.task_id, port = key.port, error = %e, "port forward: no relay")
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                () = exchange => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_bridge_copies_both_ways_and_ends_with_the_relay() {
        let fake = crate::runtime::fake::FakeRuntime::default();
        let relay = fake.exec_duplex("c", ExecSpec::default()).await.unwrap();
        let (mut client, far) = tokio::io::duplex(1024);
        let bridged = tokio::spawn(bridge(far, relay));
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"hello", "the fake relay echoes");
        assert_eq!(bridged.await.unwrap(), "");
    }
}
