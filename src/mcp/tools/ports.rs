//! Ports: expose_port and list_ports. The task is resolved for the session's owner, as for
//! every task tool; the port URLs check the owner themselves (`task::ports`).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::TaskParams;
use super::Tool;
use super::params::TaskRef;
use crate::error::Result;
use crate::mcp::server::{TaskboxServer, reply};
use crate::task::service::PortForward;

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposePortParams {
    #[serde(default)]
    pub task: TaskRef,
    /// The TCP port a server listens on inside the container (1-65535), on any address,
    /// 127.0.0.1 included (e.g. 5173 for Vite, 3000, 8000).
    pub port: u16,
}

fn forward_line(f: &PortForward) -> String {
    match (&f.url, &f.public_url) {
        (Some(url), Some(public)) if url != public => format!("port {} → {url} (from elsewhere: {public})", f.port),
        (Some(url), _) => format!("port {} → {url}", f.port),
        (None, _) if !f.open => format!(
            "port {}: closed while the task is stopped (resume_task opens it)",
            f.port
        ),
        (None, _) => format!("port {}: held by another taskbox server", f.port),
    }
}

#[tool_router(router = port_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "Make a port of the task's container reachable from the host: returns `url` (for the local owner http://127.0.0.1:<free port>/ on this machine; any TCP protocol), and under `serve --http` `public_url`, the port's own address for a person elsewhere, who must present the task owner's taskbox token. Works for servers that listen only on 127.0.0.1 inside the container and for tasks with network `none`. Start the server first in the background (execute_in_task with background: true), then expose its port. The forward closes when the task stops or is deleted and opens again on resume_task; exposing a port again returns the same forward. Counts against the owner's `exposed_ports` quota until the task is deleted.",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn expose_port(&self, Parameters(p): Parameters<ExposePortParams>) -> Result<CallToolResult> {
        self.on_task(Tool::ExposePort, p.task, |id| async move {
            let exposed = self.service.expose_port(&id, p.port).await?;
            let mut text = forward_line(&exposed.forward);
            if let Some(note) = &exposed.note {
                text.push_str(&format!("\n{note}"));
            }
            reply(text, &exposed)
        })
        .await
    }

    #[tool(
        description = "The task's exposed ports (port, url, public_url, open) and the TCP ports something listens on inside its container now (port and addresses; 127.0.0.1 means the container's loopback only, which expose_port still reaches).",
        annotations(read_only_hint = true)
    )]
    async fn list_ports(&self, Parameters(p): Parameters<TaskParams>) -> Result<CallToolResult> {
        self.on_task(Tool::ListPorts, p.task, |id| async move {
            let list = self.service.list_ports(&id).await?;
            let mut lines: Vec<String> = list.exposed.iter().map(forward_line).collect();
            if lines.is_empty() {
                lines.push("No port exposed.".into());
            }
            let listening: Vec<String> = list
                .listening
                .iter()
                .map(|l| format!("{} ({})", l.port, l.addresses.join(", ")))
                .collect();
            lines.push(match (&list.listening_error, listening.is_empty()) {
                (Some(e), _) => format!("Listening ports could not be read: {e}"),
                (None, true) => "Nothing listens in the container.".into(),
                (None, false) => format!("Listening in the container: {}", listening.join("; ")),
            });
            reply(lines.join("\n"), &list)
        })
        .await
    }
}
