//! The tools around background executions: `execution_output`, `send_input`,
//! `kill_execution`. Each takes an `execution_id`, which is checked against the session's
//! owner exactly as a task reference is: another owner's execution is not found.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Tool;
use crate::error::Result;
use crate::mcp::server::{TaskboxServer, reply};
use crate::task::service::ExecutionOutput;

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionOutputParams {
    /// The execution_id execute_in_task (or task_executions) returned.
    pub execution_id: String,
    /// The `cursor` of the previous execution_output reply: only output after it comes back.
    /// Omit to read from the start.
    pub since: Option<String>,
    /// Seconds to wait for new output or the end while there is none (default 0, at most 60).
    pub wait_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendInputParams {
    /// A running background execution.
    pub execution_id: String,
    /// Written to its standard input as is; end it with "\n" to answer a prompt.
    #[serde(default)]
    pub text: String,
    /// Close its standard input after the text (the command then reads end-of-input).
    pub eof: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillExecutionParams {
    /// The execution to end, with every process it started.
    pub execution_id: String,
    /// TERM (default), INT, HUP, QUIT or KILL; anything but KILL is followed by KILL after a
    /// grace period of 5 s.
    pub signal: Option<String>,
}

fn summary(o: &ExecutionOutput) -> String {
    let mut text = match (o.status.as_str(), o.exit_code) {
        ("running", _) => format!("Running; cursor {}.", o.cursor),
        (status, Some(code)) => format!("{status}, exit code {code}; cursor {}.", o.cursor),
        (status, None) => format!("{status}; cursor {}.", o.cursor),
    };
    if o.more {
        text.push_str(" More output is waiting: call again with this cursor.");
    }
    if !o.stdout.is_empty() {
        text.push_str(&format!("\n--- stdout ---\n{}", o.stdout));
    }
    if !o.stderr.is_empty() {
        text.push_str(&format!("\n--- stderr ---\n{}", o.stderr));
    }
    text
}

#[tool_router(router = background_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "Read a background execution's output and state: status (running, then finished, timed_out, cancelled, failed or interrupted), exit_code, the stdout and stderr produced after `since` (the `cursor` of your previous call; omit to start from the beginning), the new `cursor`, `more` when more is already waiting, last_line. Waits up to wait_s seconds for new output or the end. For a foreground execution it gives the state only.",
        annotations(read_only_hint = true)
    )]
    async fn execution_output(
        &self,
        Parameters(p): Parameters<ExecutionOutputParams>,
        cancel: CancellationToken,
    ) -> Result<CallToolResult> {
        let (task, _) = self.service.execution_for(self.owner(), &p.execution_id)?;
        self.on_task(Tool::ExecutionOutput, task.id, |_| async move {
            let output = self
                .service
                .read_execution_output(self.owner(), &p.execution_id, p.since.as_deref(), p.wait_s, cancel)
                .await?;
            reply(summary(&output), &output)
        })
        .await
    }

    #[tool(
        description = "Write text to a running background execution's standard input (e.g. \"y\\n\" to answer a prompt); eof: true closes its input afterwards. Returns the bytes written.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn send_input(&self, Parameters(p): Parameters<SendInputParams>) -> Result<CallToolResult> {
        let (task, _) = self.service.execution_for(self.owner(), &p.execution_id)?;
        self.on_task(Tool::SendInput, task.id, |_| async move {
            let eof = p.eof.unwrap_or(false);
            let sent = self
                .service
                .send_input(self.owner(), &p.execution_id, &p.text, eof)
                .await?;
            let text = format!(
                "Wrote {} byte(s){}.",
                sent.bytes,
                if eof { " and closed its input" } else { "" }
            );
            reply(text, &sent)
        })
        .await
    }

    #[tool(
        description = "End an execution (background or a foreground one still running) and every process it started: `signal` (TERM by default) goes to the whole process tree, then KILL after 5 s. Returns the execution as recorded afterwards.",
        annotations(destructive_hint = true, idempotent_hint = true)
    )]
    async fn kill_execution(&self, Parameters(p): Parameters<KillExecutionParams>) -> Result<CallToolResult> {
        let (task, _) = self.service.execution_for(self.owner(), &p.execution_id)?;
        self.on_task(Tool::KillExecution, task.id, |_| async move {
            let execution = self
                .service
                .kill_by_id(self.owner(), &p.execution_id, p.signal.as_deref())
                .await?;
            let text = format!("Execution {} is {}.", execution.id, execution.status.as_str());
            reply(text, &execution)
        })
        .await
    }
}
