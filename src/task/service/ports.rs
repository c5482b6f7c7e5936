//! Exposed ports: `expose_port` and `list_ports`, and when forwards open and close (stop,
//! delete, resume, a server's start or end). The listeners themselves are `task::ports`;
//! the record of which ports are exposed, and which server holds each one's listeners, is
//! the registry's `exposed_ports`. See docs/architecture.md, "Ports".
//!
//! One server holds a port's listeners at a time: the one that exposed or reopened it. Every
//! serving process runs a keeper (`serve_ports`) that, every `KEEP_EVERY`, closes its forwards
//! of tasks that are no longer running or whose port went, and takes over the forwards of
//! running tasks whose server is gone (a compare-and-swap on the row: one server wins).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::container_ops::ListeningSockets;
use crate::domain::{Event, EventKind, Owner, Task, TaskStatus, Timestamp};
use crate::error::{Error, Result};
use crate::registry::ExposedPort;
use crate::task::ports::listening::{self, ListeningPort};
use crate::task::ports::{ForwardKey, Listening, PublicSettings};

/// How often a serving process compares its forwards with the registry.
pub const KEEP_EVERY: Duration = Duration::from_secs(2);

/// An exposed port and where to open it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PortForward {
    /// The port inside the container.
    pub port: u16,
    /// What to open: for the local owner, `http://127.0.0.1:<port>/` on this machine (any
    /// TCP protocol passes); for other owners, `public_url`. `null` while the forward is
    /// closed (the task is stopped).
    pub url: Option<String>,
    /// Under `serve --http`: the port's own listener, for a person who is not on the
    /// machine, authenticated as the task's owner (HTTP and WebSocket only; open it once with
    /// `?taskbox_token=<token>`, or send `Authorization: Bearer <token>`).
    pub public_url: Option<String>,
    /// Whether a server holds its listeners now: false while the task is stopped (resume_task
    /// opens it again).
    pub open: bool,
    pub exposed_at: Timestamp,
}

/// The reply to expose_port.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ExposedPortReply {
    pub task_id: String,
    #[serde(flatten)]
    pub forward: PortForward,
    /// Whether something listens on the port in the container now (`null`: could not tell).
    pub listening: Option<bool>,
    /// What to do when nothing listens yet.
    pub note: Option<String>,
}

/// The reply to list_ports.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PortList {
    pub task_id: String,
    /// The ports exposed with expose_port, by port.
    pub exposed: Vec<PortForward>,
    /// TCP ports something listens on in the container now, by port (empty when the task is
    /// not running).
    pub listening: Vec<ListeningPort>,
    /// More listening ports than are listed.
    pub listening_more: bool,
    /// Why the listening ports could not be read.
    pub listening_error: Option<String>,
}

impl TaskService {
    /// Makes this process hold port forwards (it is a server, not a one-off command), with
    /// listeners of their own for people elsewhere when `public` is given (`serve --http`),
    /// and starts its keeper.
    pub fn serve_ports(self: &Arc<Self>, public: Option<PublicSettings>) {
        self.forwards.set_serving();
        if let Some(public) = public {
            self.forwards.set_public(public);
        }
        let service: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(service) = service.upgrade() else {
                    return;
                };
                if service.shutting_down.is_cancelled() {
                    service.forwards.close_all();
                    return;
                }
                service.keep_ports().await;
                drop(service);
                tokio::time::sleep(KEEP_EVERY).await;
            }
        });
    }

    /// Forwards `port` of the task's container (see `PortForward`); exposing a port again
    /// returns its forward.
    pub async fn expose_port(&self, task_id: &str, port: u16) -> Result<ExposedPortReply> {
        self.refuse_if_shutting_down()?;
        let task = self.resolve(Some(task_id))?;
        if port == 0 {
            return Err(Error::invalid(
                "port",
                "0 is not a port; give the port the server listens on in the task (1-65535)",
            ));
        }
        let container = self.require_running(&task)?;
        if !self.has_supervisor(&container, None).await {
            return Err(Error::invalid(
                "port",
                "this task's container was made by an older taskbox, without the relay ports need; create a new task (or restore a checkpoint, which recreates the container)",
            ));
        }
        if !self.forwards.can_serve(&task.owner) {
            return Err(Error::invalid(
                "port",
                format!(
                    "this server cannot hold a forward for owner '{}': only `serve --http` gives other owners a listener they can use",
                    task.owner
                ),
            ));
        }
        if self.registry.get_port(&task.id, port)?.is_none() {
            let held = self.registry.owner_exposed_ports(&task.owner)?;
            super::quota::admit_port(&task.owner, &self.config.quotas.for_owner(&task.owner), held)?;
            if self.registry.insert_port(&task.id, port, &crate::domain::now())? {
                let data = serde_json::json!({ "port": port });
                self.record(Event::new(&task.id, EventKind::PortExposed, data))?;
            }
            tracing::info!(task = %task.id, port, "port exposed");
        }
        let pass = self.forwards.pass().await;
        // Read again under the pass: a stop may have closed the task's forwards meanwhile.
        let task = self.resolve(Some(&task.id))?;
        self.require_running(&task)?;
        let row = self
            .registry
            .get_port(&task.id, port)?
            .ok_or_else(|| Error::TaskNotFound {
                task: task.name.clone(),
            })?;
        if let Err(e) = self.adopt_port(&task.owner, &row).await {
            // A new forward that cannot listen is not kept.
            if row.server_id.is_none() && row.host_port.is_none() && row.public_port.is_none() {
                let _ = self.registry.remove_port(&task.id, port);
            }
            return Err(e);
        }
        drop(pass);
        let row = self.registry.get_port(&task.id, port)?.unwrap_or(row);
        let (listening, note) = match self.listening_ports(&task, &container).await {
            Ok((ports, _)) if ports.iter().any(|p| p.port == port) => (Some(true), None),
            Ok(_) => (
                Some(false),
                Some(format!(
                    "nothing listens on port {port} in the container yet: start the server (execute_in_task with background: true), then open the url"
                )),
            ),
            Err(_) => (None, None),
        };
        Ok(ExposedPortReply {
            task_id: task.id.clone(),
            forward: self.forward_of(&task.owner, &row),
            listening,
            note,
        })
    }

    /// The task's exposed ports and the ports listening in its container.
    pub async fn list_ports(&self, task_id: &str) -> Result<PortList> {
        let task = self.resolve(Some(task_id))?;
        let mut rows = self.registry.task_ports(&task.id)?;
        let running = task.status == TaskStatus::Running;
        if running && self.forwards.can_serve(&task.owner) {
            // A forward whose server is gone is taken over now rather than at the next keep.
            let _pass = self.forwards.pass().await;
            let still_running = self.resolve(Some(&task.id))?.status == TaskStatus::Running;
            let mut adopted = false;
            for row in rows.iter().filter(|_| still_running) {
                adopted |= self.adopt_port(&task.owner, row).await.unwrap_or(false);
            }
            if adopted {
                rows = self.registry.task_ports(&task.id)?;
            }
        }
        let (listening, listening_more, listening_error) = match (&task.container_id, running) {
            (Some(container), true) => match self.listening_ports(&task, container).await {
                Ok((ports, more)) => (ports, more, None),
                Err(e) => (Vec::new(), false, Some(e.to_string())),
            },
            _ => (Vec::new(), false, None),
        };
        Ok(PortList {
            task_id: task.id.clone(),
            exposed: rows.iter().map(|row| self.forward_of(&task.owner, row)).collect(),
            listening,
            listening_more,
            listening_error,
        })
    }

    /// Closes this server's forwards and lets other servers take them over at once (it is
    /// shutting down).
    pub(super) fn release_ports(&self) {
        for key in self.forwards.open_keys() {
            self.forwards.close(&key);
            let _ = self
                .registry
                .release_port(&key.task_id, key.port, Some(self.lease.id()));
        }
    }

    /// Closes the task's forwards (once it is stopped, completed or deleted): this server's
    /// listeners now, other servers' at their next keep, since the rows no longer name them.
    pub(super) async fn close_ports(&self, task_id: &str) {
        let _pass = self.forwards.pass().await;
        self.forwards.close_task(task_id);
        match self.registry.task_ports(task_id) {
            Ok(rows) => {
                for row in rows {
                    if let Err(e) = self.registry.release_port(task_id, row.port, None) {
                        tracing::warn!(task = %task_id, port = row.port, error = %e, "cannot record a closed forward");
                    }
                }
            }
            Err(e) => tracing::warn!(task = %task_id, error = %e, "cannot read the task's exposed ports"),
        }
    }

    /// Opens the task's forwards again (resume): here when this process serves, else by a
    /// serving process's keeper.
    pub(super) async fn reopen_ports(&self, task: &Task) {
        if !self.forwards.can_serve(&task.owner) {
            return;
        }
        let _pass = self.forwards.pass().await;
        let Ok(rows) = self.registry.task_ports(&task.id) else {
            return;
        };
        for row in rows {
            if let Err(e) = self.adopt_port(&task.owner, &row).await {
                tracing::warn!(task = %task.id, port = row.port, error = %e, "cannot reopen a forward");
            }
        }
    }

    /// One pass of the keeper: forwards of tasks that stopped, went or were taken over are
    /// closed; forwards of running tasks whose server is gone are taken over.
    async fn keep_ports(&self) {
        if self.is_rebuilding() {
            return;
        }
        // One pass at a time, and never while a stop or delete closes forwards.
        let _pass = self.forwards.pass().await;
        let rows = match self.registry.all_ports() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "port keeper: cannot read the exposed ports");
                return;
            }
        };
        let mine = self.lease.id();
        let mut held = HashSet::new();
        for row in rows {
            let exposed = &row.exposed;
            let key = ForwardKey {
                task_id: exposed.task_id.clone(),
                port: exposed.port,
            };
            let ours = exposed.server_id.as_deref() == Some(mine);
            if row.status != TaskStatus::Running {
                if ours {
                    let _ = self.registry.release_port(&exposed.task_id, exposed.port, Some(mine));
                }
                continue;
            }
            if (ours || self.forwards.can_serve(&row.owner))
                && let Ok(true) = self.adopt_port(&row.owner, exposed).await
            {
                held.insert(key);
            }
        }
        for key in self.forwards.open_keys() {
            if !held.contains(&key) {
                tracing::info!(task = %key.task_id, port = key.port, "port forward closed");
                self.forwards.close(&key);
            }
        }
    }

    /// Makes sure a server holds the port's listeners: this one when it holds them already,
    /// or when the port has no live server and this one wins the claim. `Ok(true)` when this
    /// process holds them after it.
    async fn adopt_port(&self, owner: &Owner, row: &ExposedPort) -> Result<bool> {
        let mine = self.lease.id();
        match row.server_id.as_deref() {
            Some(id) if id == mine => {}
            Some(id) if crate::store::server_alive(&self.home.join("servers"), id) => return Ok(false),
            expected => {
                if !self.registry.claim_port(&row.task_id, row.port, expected, mine)? {
                    return Ok(false);
                }
                tracing::info!(task = %row.task_id, port = row.port, "port forward taken over");
            }
        }
        let key = ForwardKey {
            task_id: row.task_id.clone(),
            port: row.port,
        };
        let want = Listening {
            host_port: row.host_port,
            public_port: row.public_port,
        };
        match self.forwards.open(&key, owner, want).await {
            Ok(listening) => {
                let host = self.forwards.public().map(|p| p.host.as_str());
                let public = listening.public_port.zip(host);
                if (listening.host_port, public.map(|p| p.0)) != (row.host_port, row.public_port)
                    || public.map(|p| p.1) != row.public_host.as_deref()
                {
                    self.registry
                        .set_port_listeners(&row.task_id, row.port, mine, listening.host_port, public)?;
                }
                Ok(true)
            }
            Err(e) => {
                let _ = self.registry.release_port(&row.task_id, row.port, Some(mine));
                Err(Error::Transport(format!(
                    "cannot listen for port {} of the task: {e}",
                    row.port
                )))
            }
        }
    }

    /// The forward as a client sees it.
    fn forward_of(&self, owner: &Owner, row: &ExposedPort) -> PortForward {
        let open = match row.server_id.as_deref() {
            None => false,
            Some(id) if id == self.lease.id() => true,
            Some(id) => crate::store::server_alive(&self.home.join("servers"), id),
        };
        let loopback = row
            .host_port
            .filter(|_| open && owner.is_local())
            .map(|port| format!("http://127.0.0.1:{port}/"));
        let public_url = match (open, row.public_port, row.public_host.as_deref()) {
            (true, Some(port), Some(host)) => Some(PublicSettings::url(host, port)),
            _ => None,
        };
        PortForward {
            port: row.port,
            url: if owner.is_local() { loopback } else { public_url.clone() },
            public_url,
            open,
            exposed_at: row.exposed_at,
        }
    }

    /// What listens in the container now, from its socket tables.
    async fn listening_ports(&self, task: &Task, container: &str) -> Result<(Vec<ListeningPort>, bool)> {
        let op = ListeningSockets {
            user: task.exec_user.as_deref(),
        };
        let text = self.run_op(container, op).await?.map_err(|failed| Error::InContainer {
            what: "reading the listening ports".into(),
            message: failed.stderr,
        })?;
        Ok(listening::parse(&text))
    }
}
