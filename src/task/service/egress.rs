//! The egress proxy's listeners: one per `allowlist` task, on the host's address on the
//! task's internal bridge (its gateway) at `network.proxy_port`, the one port of the host the
//! firewall lets task networks reach (docs/security.md, "Egress").
//!
//! Why there, and why every server listens: the container reaches it with no help inside
//! (no relay process the agent could kill, no socket mounted in), and the kernel, not taskbox,
//! keeps the address: every server sharing the data directory binds the same address with
//! `SO_REUSEPORT`, so connections go to whichever servers are alive, one exiting leaves the
//! others serving, and a server that starts (or finds a task another server made) binds it
//! within `SCAN`. With no server at all, a connection is refused at once (the proxy's address
//! in the command's HTTP_PROXY names what failed), and works again once one starts.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use super::TaskService;
use crate::domain::{Event, EventKind, NetworkMode, Task, TaskStatus};
use crate::egress::{Attempt, Policy, Proxy, Recorder, Upstreams};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::runtime::subnets::Cidr;
use crate::store::TaskStore;

/// How often a server looks for allowlist tasks it does not listen for yet (made or resumed
/// by another server) and drops those that are gone.
const SCAN: Duration = Duration::from_secs(3);
/// Connections one task may hold open through the proxy at once (each costs two 8 KiB copy
/// buffers and hyper's state: docs/security.md, "Memory budget").
const MAX_CONNECTIONS: usize = 256;

/// This server's listeners.
pub(super) struct EgressProxies {
    port: u16,
    upstreams: Arc<Upstreams>,
    listening: std::sync::Mutex<HashMap<String, Listening>>,
    /// Tasks the scan could not listen for, warned about once (not every `SCAN`).
    failing: std::sync::Mutex<std::collections::HashSet<String>>,
}

struct Listening {
    address: SocketAddrV4,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        // Closes the listener; connections already open go on until they end.
        self.accept.abort();
    }
}

impl EgressProxies {
    pub(super) fn new(port: u16, upstreams: Upstreams) -> Self {
        Self {
            port,
            upstreams: Arc::new(upstreams),
            listening: Default::default(),
            failing: Default::default(),
        }
    }

    fn listening(&self) -> std::sync::MutexGuard<'_, HashMap<String, Listening>> {
        self.listening.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TaskService {
    /// The proxy's address for an allowlist task, listening from now on in this server.
    pub(super) async fn ensure_proxy(&self, task: &Task) -> Result<SocketAddrV4> {
        if let Some(listening) = self.egress.listening().get(&task.id) {
            return Ok(listening.address);
        }
        let Some(network) = &task.network_name else {
            return Err(Error::EgressProxy(format!(
                "task '{}' has no network; delete it and create it again",
                task.name
            )));
        };
        let Some(info) = self.runtime.network_info(network).await? else {
            return Err(Error::EgressProxy(format!(
                "the task's network {network} is gone from Docker; delete the task and create it again (or fork it \
                 from a checkpoint)"
            )));
        };
        let policy =
            Policy::parse(&task.allow).map_err(|e| Error::EgressProxy(format!("the task's allow list: {e}")))?;
        let address = SocketAddrV4::new(info.gateway, self.egress.port);
        let listener = bind(address)?;
        let proxy = Arc::new(Proxy {
            policy,
            upstreams: self.egress.upstreams.clone(),
            recorder: Arc::new(TaskEvents {
                task_id: task.id.clone(),
                store: self.store.clone(),
                registry: self.registry.clone(),
            }),
        });
        let accept = tokio::spawn(accept_loop(listener, info.subnet, info.gateway.into(), proxy));
        tracing::debug!(task = %task.id, %address, "egress proxy listening");
        let mut listening = self.egress.listening();
        // Another call may have bound it meanwhile: keep one (both listen on one port).
        let entry = listening
            .entry(task.id.clone())
            .or_insert(Listening { address, accept });
        Ok(entry.address)
    }

    /// The task's network policy for get_task_status.
    pub(super) async fn network_policy(&self, task: &Task) -> super::ops::NetworkPolicy {
        let proxy = match task.network {
            NetworkMode::Allowlist if matches!(task.status, TaskStatus::Running) => {
                self.ensure_proxy(task).await.ok().map(|a| format!("http://{a}"))
            }
            _ => None,
        };
        let summary = match task.network {
            NetworkMode::None => "no network".to_string(),
            NetworkMode::Egress => {
                "egress: anything the host reaches, except the host itself, link-local (metadata) addresses and other \
                 tasks"
                    .to_string()
            }
            NetworkMode::Allowlist if task.allow.is_empty() => {
                "allowlist: nothing is allowed; every connection through the proxy is refused".to_string()
            }
            NetworkMode::Allowlist => format!(
                "allowlist: only {} through the egress proxy (HTTP and HTTPS via CONNECT); direct connections and DNS \
                 lookups fail; each connection is in the task's events (kind egress)",
                task.allow.join(", ")
            ),
        };
        super::ops::NetworkPolicy {
            mode: task.network,
            allow: task.allow.clone(),
            proxy,
            summary,
        }
    }

    /// Stops listening for a task (deleted, or its creation rolled back).
    pub(super) fn stop_proxy(&self, task_id: &str) {
        self.egress.listening().remove(task_id);
    }

    /// Variables that send an allowlist task's commands through its proxy.
    pub(super) async fn proxy_env(&self, task: &Task) -> Result<BTreeMap<String, String>> {
        let address = self.ensure_proxy(task).await?;
        let url = format!("http://{address}");
        let mut env = BTreeMap::new();
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.insert(var.to_string(), url.clone());
        }
        for var in ["NO_PROXY", "no_proxy"] {
            env.insert(var.to_string(), "localhost,127.0.0.1,::1".to_string());
        }
        Ok(env)
    }

    /// Keeps a listener for every running allowlist task, and none for tasks that are gone,
    /// until the server stops (`serve` runs it).
    pub async fn serve_egress_proxies(self: Arc<Self>) {
        loop {
            self.scan_egress_proxies().await;
            tokio::select! {
                _ = tokio::time::sleep(SCAN) => {}
                _ = self.shutting_down.cancelled() => return,
            }
        }
    }

    async fn scan_egress_proxies(&self) {
        let tasks = match self.registry.tasks_with_network(NetworkMode::Allowlist) {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "egress proxy: cannot list allowlist tasks");
                return;
            }
        };
        let live: Vec<&Task> = tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Running | TaskStatus::Creating))
            .collect();
        self.egress.listening().retain(|id, _| live.iter().any(|t| &t.id == id));
        for task in live {
            // A creating task's server binds it itself once its network exists.
            if task.status != TaskStatus::Running {
                continue;
            }
            let listened = self.ensure_proxy(task).await;
            let mut failing = self.egress.failing.lock().unwrap_or_else(|p| p.into_inner());
            match listened {
                Ok(_) => {
                    failing.remove(&task.id);
                }
                Err(e) => {
                    if failing.insert(task.id.clone()) {
                        tracing::warn!(task = %task.id, error = %e, "egress proxy: cannot listen for the task");
                    }
                }
            }
        }
    }

    /// The name servers and resolver options of an allowlist task's container: Docker's
    /// embedded DNS (127.0.0.11 in the container) forwards names it does not know to these,
    /// and on Docker before 26 it does so for internal networks too (CVE-2024-29018), from the
    /// host's namespace when the host's resolver is on loopback. The task's subnet broadcast
    /// address is one no resolver answers: sending to it without SO_BROADCAST fails in the
    /// container's own namespace, so a query never leaves it, and one try of one second keeps
    /// a lookup from hanging. Names are the proxy's to resolve.
    pub(super) async fn container_dns(&self, task: &Task) -> Result<(Vec<String>, Vec<String>)> {
        if task.network != NetworkMode::Allowlist {
            return Ok((Vec::new(), Vec::new()));
        }
        let network = task.network_name.as_deref().unwrap_or_default();
        let Some(info) = self.runtime.network_info(network).await? else {
            return Err(Error::EgressProxy(format!(
                "the task's network {network} is gone from Docker; delete the task and create it again"
            )));
        };
        let broadcast = broadcast(info.subnet);
        Ok((
            vec![broadcast.to_string()],
            vec!["timeout:1".into(), "attempts:1".into()],
        ))
    }
}

fn broadcast(subnet: Cidr) -> std::net::Ipv4Addr {
    let host_bits = 32 - u32::from(subnet.prefix);
    let mask = if host_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    std::net::Ipv4Addr::from(subnet.base | mask)
}

/// Listens with `SO_REUSEPORT`, so every server of this data directory (same user) can hold
/// the address at once; a program of another user on the port makes this fail.
fn bind(address: SocketAddrV4) -> Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(address.into())?;
        socket.listen(128)
    };
    listen().map_err(|e| {
        Error::EgressProxy(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{address} is held by a program that is not a taskbox server of this user; stop it, or set \
                 network.proxy_port to a free port (for every server of this data directory)"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{address} is not an address of this host (is Docker on another machine?)")
            }
            _ => format!("cannot listen on {address}: {e}"),
        })
    })
}

/// Accepts the task's connections: only from the task's own subnet (the address is the
/// host's, which other tasks' traffic reaches too, and must not use this task's allowlist),
/// never from the host itself, at most `MAX_CONNECTIONS` at once.
async fn accept_loop(listener: TcpListener, subnet: Cidr, gateway: IpAddr, proxy: Arc<Proxy>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "egress proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !from_task(peer, subnet, gateway) {
            tracing::debug!(%peer, "egress proxy: connection from outside the task's network closed");
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tokio::spawn(busy(stream));
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            crate::egress::proxy::serve(stream, proxy).await;
            drop(permit);
        });
    }
}

fn from_task(peer: SocketAddr, subnet: Cidr, gateway: IpAddr) -> bool {
    let IpAddr::V4(ip) = peer.ip() else {
        return false;
    };
    let block = crate::egress::Block {
        base: subnet.base.into(),
        prefix: subnet.prefix,
    };
    block.contains(ip) && peer.ip() != gateway
}

async fn busy(mut stream: TcpStream) {
    let text = format!("taskbox egress proxy: the task has {MAX_CONNECTIONS} connections open; close some and retry\n");
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
}

/// Records each attempt as an `egress` event of the task, off the async runtime (the event
/// log is fsync'd).
struct TaskEvents {
    task_id: String,
    store: TaskStore,
    registry: Arc<Registry>,
}

impl Recorder for TaskEvents {
    fn record(&self, attempt: Attempt) {
        let data = serde_json::to_value(&attempt).unwrap_or_default();
        let event = Event::new(&self.task_id, EventKind::Egress, data);
        let store = self.store.clone();
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.append_event(&event) {
                tracing::warn!(task = %event.task_id, error = %e, "egress proxy: cannot record a connection");
                return;
            }
            if let Err(e) = registry.insert_event(&event) {
                tracing::warn!(task = %event.task_id, error = %e, "cannot index event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broadcast_address_and_who_may_connect() {
        let subnet: Cidr = "10.213.193.0/28".parse().unwrap();
        assert_eq!(broadcast(subnet), std::net::Ipv4Addr::new(10, 213, 193, 15));
        let gateway: IpAddr = "10.213.193.1".parse().unwrap();
        assert!(from_task("10.213.193.2:40000".parse().unwrap(), subnet, gateway));
        assert!(
            !from_task("10.213.193.1:40000".parse().unwrap(), subnet, gateway),
            "the host itself"
        );
        assert!(
            !from_task("10.213.194.2:40000".parse().unwrap(), subnet, gateway),
            "another task"
        );
        assert!(!from_task("[::1]:40000".parse().unwrap(), subnet, gateway));
    }
}
