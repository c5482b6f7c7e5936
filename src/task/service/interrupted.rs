//! Foreground executions left `running` by a server that died (kill -9, a crash, a host
//! reboot). Their client is gone with the server, so nobody will read their output: what is
//! still running of them in the container is killed, and the row is recorded `interrupted`,
//! with the reason in the task's events. This runs at start (`recover_at_start`) and whenever
//! a task's container comes back or is about to be used (resume, revival, the recovery step
//! before a command).
//!
//! Whose server is dead is known at once, without timeouts: every server holds a lease, a
//! lock on `servers/<id>.lock` the kernel drops when the process dies, and every execution row
//! names its server (`store::servers`). Rows of live servers, this one included, are left
//! alone. Rows made before schema 6 name no server; they are resolved only once they are
//! older than the longest allowed timeout (plus five minutes), as before.

use super::TaskService;
use crate::domain::{Execution, ExecutionStatus, Task, now};
use crate::error::{Error, Result};
use crate::registry::RunningExecution;

impl TaskService {
    /// Resolves the executions of `task_id` (of every task with `None`) left running by dead
    /// servers; returns how many it recorded as interrupted. One that cannot be resolved now
    /// (Docker does not answer) stays `running` for the next pass.
    pub(super) async fn resolve_interrupted(&self, task_id: Option<&str>) -> usize {
        let rows = match self.registry.running_executions(task_id) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list running executions");
                return 0;
            }
        };
        let mut resolved = 0;
        for row in rows {
            if !self.left_by_dead_server(&row) {
                continue;
            }
            let execution = row.execution;
            let task = match self.registry.get_task(&execution.task_id) {
                Ok(Some(task)) => task,
                _ => continue,
            };
            let reason = match self.end_orphan(&task, &execution).await {
                Ok(reason) => reason,
                Err(e) => {
                    tracing::warn!(execution = %execution.id, error = %e, "cannot resolve an interrupted execution yet");
                    continue;
                }
            };
            match self.record_interrupted(execution, &reason) {
                Ok(true) => resolved += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(task = %task.id, error = %e, "cannot record an interrupted execution"),
            }
        }
        if resolved > 0 {
            tracing::warn!(
                count = resolved,
                "executions left running by a stopped server recorded as interrupted"
            );
        }
        resolved
    }

    /// Whether the server that runs this execution is gone. This server's own executions and
    /// those of live servers are being watched by them.
    fn left_by_dead_server(&self, row: &RunningExecution) -> bool {
        match &row.server_id {
            Some(server) if server == self.lease.id() => false,
            Some(server) => !crate::store::server_alive(&self.home.join("servers"), server),
            None => {
                let grace = chrono::Duration::seconds(self.config.execution.max_timeout_s as i64 + 300);
                row.execution.started_at < now() - grace
            }
        }
    }

    /// Kills what is left of the execution in the task's container; returns what happened, for
    /// the record.
    async fn end_orphan(&self, task: &Task, execution: &Execution) -> Result<String> {
        const GONE: &str = "the server running it stopped before it ended";
        let Some(container) = task.container_id.as_deref() else {
            return Ok(format!("{GONE}; the task has no container any more"));
        };
        let Some(state) = self.runtime.inspect_container(container).await? else {
            return Ok(format!("{GONE}; its container no longer exists"));
        };
        if !state.running {
            return Ok(format!("{GONE}; its container had stopped, which ended its processes"));
        }
        match self
            .kill_tree(container, &execution.id, execution.user.as_deref())
            .await
        {
            Ok(0) => Ok(format!("{GONE}; its processes had already ended")),
            Ok(killed) => Ok(format!(
                "{GONE}; {killed} of its processes were still running in the container and were killed"
            )),
            Err(message) => Err(Error::InContainer {
                what: "killing an interrupted execution".into(),
                message,
            }),
        }
    }

    /// The row as `interrupted` (unless its own server finished it meanwhile), then the
    /// `execution` event with the reason.
    fn record_interrupted(&self, mut execution: Execution, reason: &str) -> Result<bool> {
        let finished = now();
        execution.status = ExecutionStatus::Interrupted;
        execution.duration_ms = Some((finished - execution.started_at).num_milliseconds().max(0) as u64);
        execution.finished_at = Some(finished);
        if !self.registry.interrupt_execution(&execution)? {
            return Ok(false);
        }
        self.record_ended_execution(&execution, reason)?;
        Ok(true)
    }
}
