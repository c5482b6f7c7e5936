//! `execute_in_task`: run a shell command in the task's container.

use std::collections::BTreeMap;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Tool;
use super::params::TaskRef;
use crate::error::Result;
use crate::mcp::progress;
use crate::mcp::server::{TaskboxServer, reply};
use crate::task::service::{ExecRequest, ExecutionResult};

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteParams {
    #[serde(default)]
    pub task: TaskRef,
    /// Shell command line, run with `bash -lc` (or `sh -c` in images without bash).
    pub command: String,
    /// Working directory; relative paths are under /workspace (default /workspace).
    pub workdir: Option<String>,
    /// Extra environment variables for this command.
    pub env: Option<BTreeMap<String, String>>,
    /// Seconds before the command and every process it started are killed (default 120, at most 3600).
    pub timeout_s: Option<u64>,
    /// Text written to the command's standard input.
    pub stdin: Option<String>,
    /// "root" to run as root inside the container (e.g. to install packages), when the
    /// server allows it; omit to run as the image's unprivileged user.
    pub user: Option<String>,
    /// Why you run this command; kept in the task's history for whoever picks the task up.
    pub explanation: Option<String>,
    /// Start it detached and return at once with its execution_id (for dev servers, watchers,
    /// long builds): read it with execution_output, answer it with send_input, end it with
    /// kill_execution. It has no time limit unless timeout_s is given, and survives the end
    /// of this session; stop_task, restore_checkpoint and delete_task end it.
    pub background: Option<bool>,
    /// Background: seconds without output after which execution_output reports it as
    /// waiting for input (a prompt) or stalled (default 20).
    pub stall_s: Option<u64>,
    /// Seconds after which a command still running stops holding this call: the reply comes
    /// with its output so far (`yielded: true`, `execution_id`, `cursor`) and the command goes
    /// on in the background until it ends or timeout_s kills it; read the rest with
    /// execution_output(since: cursor). Default 40 (under the 60 s after which many clients
    /// give up on a call); 0 waits until the command ends.
    pub yield_after_s: Option<u64>,
}

fn summary(r: &ExecutionResult) -> String {
    if r.yielded {
        let mut text = format!(
            "Still running after {} ms: it goes on in the background as {id} (timeout_s still applies). \
             Read the rest with execution_output(execution_id: \"{id}\", since: \"{cursor}\", wait_s: 30); \
             stop it with kill_execution. Output so far:",
            r.duration_ms,
            id = r.execution_id,
            cursor = r.cursor.as_deref().unwrap_or_default(),
        );
        if !r.stdout.is_empty() {
            text.push_str(&format!("\n--- stdout ---\n{}", r.stdout));
        }
        if !r.stderr.is_empty() {
            text.push_str(&format!("\n--- stderr ---\n{}", r.stderr));
        }
        if r.stdout.is_empty() && r.stderr.is_empty() {
            text.push_str(" (none yet)");
        }
        return text;
    }
    if r.background {
        let mut text = format!(
            "Started in the background as {}. Read it with execution_output(execution_id: \"{}\"), stop it with kill_execution.",
            r.execution_id, r.execution_id
        );
        if !r.stderr.is_empty() {
            text.push_str(&format!("\nWarning: {}", r.stderr));
        }
        return text;
    }
    let mut text = match (r.exit_code, r.timed_out) {
        (_, true) => format!(
            "Timed out after {} ms; the command and its processes were killed.",
            r.duration_ms
        ),
        (Some(code), _) => format!("Exit code {code} in {} ms.", r.duration_ms),
        (None, _) => format!("No exit code after {} ms.", r.duration_ms),
    };
    if !r.stdout.is_empty() {
        text.push_str(&format!("\n--- stdout ---\n{}", r.stdout));
    }
    if !r.stderr.is_empty() {
        text.push_str(&format!("\n--- stderr ---\n{}", r.stderr));
    }
    text
}

#[tool_router(router = exec_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "Run a shell command in the task's container, in /workspace, as an unprivileged user. Returns execution_id, exit_code, stdout, stderr, truncated, duration_ms. A non-zero exit code is a normal result, not an error. Output over 64 KiB per stream keeps its head and tail, with a marker giving the cut size and the file holding the whole output. On timeout (timeout_s, default 120) or cancellation the whole process tree is killed. A command still running after yield_after_s (default 40) is not killed: the reply comes early with yielded: true, the output so far and a cursor, and it goes on in the background (read it with execution_output). For dev servers, watchers and long builds, pass background: true and poll execution_output.",
        annotations(destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn execute_in_task(
        &self,
        Parameters(mut p): Parameters<ExecuteParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult> {
        let task = std::mem::take(&mut p.task);
        let request = ExecRequest::from(p);
        let cancel = context.ct.clone();
        let progress = progress::exec_progress(&context);
        // Held until the execution ends (or is yielded): the HTTP token's cap on executions
        // at once.
        let _slot = self.exec_slot()?;
        self.on_task(Tool::ExecuteInTask, task, |id| async move {
            let result = self
                .service
                .execute_with_progress(&id, request, cancel, progress)
                .await?;
            reply(summary(&result), &result)
        })
        .await
    }
}
