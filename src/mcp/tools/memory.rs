//! Task memory tools: task_history, task_executions, record_decision, task_decisions,
//! find_task, task_stats.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Tool;
use super::params::{Limit, TaskRef};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::mcp::server::{TaskboxServer, reply};
use crate::registry::ExecutionFilter;

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskHistoryParams {
    #[serde(default)]
    pub task: TaskRef,
    /// Only these event types (e.g. "execution", "status_changed", "checkpoint_created",
    /// "decision_recorded", "tool_call", "agent_attached", "synced", "egress": connections
    /// through an allowlist task's proxy).
    pub types: Option<Vec<String>>,
    /// Only events at or after this time (RFC 3339, e.g. "2026-11-21T10:00:00Z").
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    pub until: Option<String>,
    #[serde(default)]
    pub limit: Limit,
    /// Events to skip, for paging.
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskExecutionsParams {
    #[serde(default)]
    pub task: TaskRef,
    /// Only executions that exited with this code.
    pub exit_code: Option<i64>,
    /// Only executions that failed (non-zero exit, timeout, cancellation, error).
    #[serde(default)]
    pub failed: bool,
    /// Only commands containing this text.
    pub command: Option<String>,
    #[serde(default)]
    pub limit: Limit,
    /// Executions to skip, for paging.
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDecisionParams {
    #[serde(default)]
    pub task: TaskRef,
    /// What was decided, in a sentence or two.
    pub decision: String,
    /// Why: the reason whoever picks the task up next needs.
    pub rationale: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDecisionsParams {
    #[serde(default)]
    pub task: TaskRef,
    #[serde(default)]
    pub limit: Limit,
    /// Decisions to skip, for paging.
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindTaskParams {
    /// Words to look for in task names, descriptions, decisions and commands; every word
    /// must match, the last one may be the start of a word.
    pub query: String,
    /// Most tasks to return (default 10).
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStatsParams {
    /// Task name or id; omit for statistics over all tasks.
    pub task: Option<String>,
}

fn time(field: &'static str, value: Option<String>) -> Result<Option<Timestamp>> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    Error::invalid(
                        field,
                        format!("'{v}' is not an RFC 3339 time like 2026-11-21T10:00:00Z"),
                    )
                })
        })
        .transpose()
}

#[tool_router(router = memory_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "A task's event history, newest first: tool calls, status changes, executions, checkpoints, decisions, syncs. Filter by event types and a time window; page with limit/offset. Returns events and total.",
        annotations(read_only_hint = true)
    )]
    async fn task_history(&self, Parameters(p): Parameters<TaskHistoryParams>) -> Result<CallToolResult> {
        self.on_task(Tool::TaskHistory, p.task, |id| async move {
            let page = self.service.history(
                &id,
                &p.types.unwrap_or_default(),
                time("since", p.since)?,
                time("until", p.until)?,
                p.limit.get(),
                p.offset.unwrap_or(0),
            )?;
            let mut text = format!("{} event(s) match; showing {}.", page.total, page.items.len());
            for e in &page.items {
                text.push_str(&format!(
                    "\n- {} {} {}",
                    e.at.format("%Y-%m-%d %H:%M:%S"),
                    e.kind,
                    e.data
                ));
            }
            reply(text, &page)
        })
        .await
    }

    #[tool(
        description = "A task's executions, newest first: command, exit code, status, duration, output sizes (not the output). Filter by exit code, failed only, or command text; page with limit/offset.",
        annotations(read_only_hint = true)
    )]
    async fn task_executions(&self, Parameters(p): Parameters<TaskExecutionsParams>) -> Result<CallToolResult> {
        self.on_task(Tool::TaskExecutions, p.task, |id| async move {
            let filter = ExecutionFilter {
                exit_code: p.exit_code,
                failed: p.failed,
                command: p.command,
            };
            let page = self
                .service
                .executions(&id, &filter, p.limit.get(), p.offset.unwrap_or(0))
                .await?;
            let mut text = format!("{} execution(s) match; showing {}.", page.total, page.items.len());
            for listed in &page.items {
                let e = &listed.execution;
                let code = e
                    .exit_code
                    .map_or_else(|| e.status.as_str().to_string(), |c| format!("exit {c}"));
                text.push_str(&format!(
                    "\n- [{code}, {} ms] {}",
                    e.duration_ms.unwrap_or(0),
                    e.command
                ));
                if let Some(advice) = &listed.activity.advice {
                    text.push_str(&format!(
                        "\n  {} ({}): {advice}",
                        e.id,
                        listed.activity.blocked_on.as_deref().unwrap_or("?")
                    ));
                }
            }
            reply(text, &page)
        })
        .await
    }

    #[tool(
        description = "Record a decision made in the task (what and why), so whoever picks the task up later knows it. Kept in the task's decisions.md, the registry and its history; attach_agent_to_task returns recent decisions.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn record_decision(
        &self,
        Parameters(p): Parameters<RecordDecisionParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult> {
        let agent = Self::client_name(&context);
        self.on_task(Tool::RecordDecision, p.task, |id| async move {
            let decision = self
                .service
                .record_decision(&id, &p.decision, p.rationale.as_deref(), &agent)?;
            reply(format!("Recorded decision #{}.", decision.id), &decision)
        })
        .await
    }

    #[tool(
        description = "A task's recorded decisions, newest first, with their rationale and who made them.",
        annotations(read_only_hint = true)
    )]
    async fn task_decisions(&self, Parameters(p): Parameters<TaskDecisionsParams>) -> Result<CallToolResult> {
        self.on_task(Tool::TaskDecisions, p.task, |id| async move {
            let page = self.service.decisions(&id, p.limit.get(), p.offset.unwrap_or(0))?;
            let mut text = format!("{} decision(s).", page.total);
            for d in &page.items {
                text.push_str(&format!("\n- {}", d.decision));
                if let Some(why) = &d.rationale {
                    text.push_str(&format!(" (why: {why})"));
                }
            }
            reply(text, &page)
        })
        .await
    }

    #[tool(
        description = "Search all tasks: full-text over task names, descriptions, recorded decisions and commands run. Returns matching tasks, best first, each with up to three snippets showing the matches in [brackets]. Use it to find earlier work before starting something new.",
        annotations(read_only_hint = true)
    )]
    async fn find_task(&self, Parameters(p): Parameters<FindTaskParams>) -> Result<CallToolResult> {
        let found = self
            .service
            .find(&self.session.owner, &p.query, p.limit.unwrap_or(10))?;
        let mut text = format!("{} task(s) match '{}'.", found.len(), p.query);
        for f in &found {
            text.push_str(&format!("\n- {} ({}, {})", f.task.name, f.task.id, f.task.status));
            for m in &f.matches {
                text.push_str(&format!("\n    {}: {}", m.kind, m.snippet));
            }
        }
        reply(text, &serde_json::json!({ "tasks": found }))
    }

    #[tool(
        description = "Statistics of one task, or of all tasks when `task` is omitted: tasks by status (overall), executions, failures and failure rate, p50/p95 execution durations, checkpoints, decisions, most frequent commands.",
        annotations(read_only_hint = true)
    )]
    async fn task_stats(&self, Parameters(p): Parameters<TaskStatsParams>) -> Result<CallToolResult> {
        let summary = |s: &crate::registry::Stats| {
            format!(
                "{} execution(s), {} failed ({:.0}%), p50 {} ms, p95 {} ms; {} checkpoint(s), {} decision(s).",
                s.executions,
                s.failed_executions,
                s.failure_rate * 100.0,
                s.duration_p50_ms.unwrap_or(0),
                s.duration_p95_ms.unwrap_or(0),
                s.checkpoints,
                s.decisions
            )
        };
        match p.task {
            Some(task) => {
                self.on_task(Tool::TaskStats, Some(task), |id| async move {
                    let stats = self.service.stats(&self.session.owner, Some(&id))?;
                    reply(summary(&stats), &stats)
                })
                .await
            }
            None => {
                let stats = self.service.stats(&self.session.owner, None)?;
                reply(summary(&stats), &stats)
            }
        }
    }
}
