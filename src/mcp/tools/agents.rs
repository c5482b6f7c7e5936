//! Attaching agents to tasks and detaching them.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Tool;
use super::params::TaskRef;
use super::tasks::task_line;
use crate::domain::{Attachment, Task};
use crate::error::Result;
use crate::mcp::server::{TaskboxServer, reply};

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachParams {
    /// Task name or id.
    pub task: String,
    /// Who is attaching (default: the MCP client's name).
    pub agent: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachParams {
    #[serde(default)]
    pub task: TaskRef,
    /// Detach only this agent (default: every agent this session attached).
    pub agent: Option<String>,
}

#[derive(Debug, Serialize)]
struct DetachReply<'a> {
    task: &'a Task,
    detached: &'a [Attachment],
}

#[tool_router(router = agent_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "Attach to an existing task to continue its work: records you as an attached agent, makes it this session's current task, and returns resume context (the task, recent executions newest first, and the other attached agents). Use it instead of create_task_sandbox when the task exists.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true)
    )]
    async fn attach_agent_to_task(
        &self,
        Parameters(p): Parameters<AttachParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult> {
        let agent = p
            .agent
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| Self::client_name(&context));
        self.on_task(Tool::AttachAgentToTask, Some(p.task), |id| async move {
            let attached = self.service.attach(&id, &agent, &self.session.id).await?;
            self.set_current_task(Some(attached.task.id.clone()));
            let mut text = format!(
                "Attached {agent} to {}. It is now this session's current task.",
                task_line(&attached.task)
            );
            if !attached.resume.recent_executions.is_empty() {
                text.push_str("\nRecent executions (newest first):");
                for e in &attached.resume.recent_executions {
                    let code = e
                        .exit_code
                        .map_or_else(|| e.status.as_str().to_string(), |c| format!("exit {c}"));
                    text.push_str(&format!("\n- [{code}] {}", e.command));
                }
            }
            reply(text, &attached)
        })
        .await
    }

    #[tool(
        description = "Detach this session's agent(s) from a task, e.g. when handing it over. The task keeps running; it stops being this session's current task.",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn detach_agent_from_task(&self, Parameters(p): Parameters<DetachParams>) -> Result<CallToolResult> {
        self.on_task(Tool::DetachAgentFromTask, p.task, |id| async move {
            let (task, detached) = self.service.detach(&id, p.agent.as_deref(), &self.session.id).await?;
            let mut current = self.session.current_task.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_deref() == Some(task.id.as_str()) {
                *current = None;
            }
            drop(current);
            let text = match detached.len() {
                0 => format!("This session had no agent attached to {}; nothing changed.", task.name),
                n => format!("Detached {n} agent(s) from {}.", task_line(&task)),
            };
            reply(
                text,
                &DetachReply {
                    task: &task,
                    detached: &detached,
                },
            )
        })
        .await
    }
}
