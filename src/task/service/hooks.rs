//! Where `TaskService` runs the hooks: `fire` dispatches an event and records every hook run,
//! the tool-call events for the MCP layer, and `HookHost`, the facts and actions the built-in
//! hooks may ask for (hooks act only through it, never on Docker, SQLite or git themselves).

use std::path::Path;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::TaskService;
use super::container_ops::WorkspaceHead;
use crate::domain::{Event, EventKind, Task, TaskStatus, Timestamp, now};
use crate::error::Result;
use crate::hooks::{CompletionFacts, HookContext, HookEvent, HookHost, HookRun, plan};
use crate::registry::ExecutionFilter;
use crate::runtime::{ContainerState, ResourceSample, SampleDepth};
use crate::workspace::host;

/// The plan of a task, as `attach_agent_to_task` returns it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanText {
    pub path: String,
    pub text: String,
}

impl TaskService {
    /// Runs the hooks for an event and records their runs. A deny at a `before_*` event is
    /// the error to fail the operation with.
    pub(crate) async fn fire(&self, context: HookContext) -> Result<()> {
        let (runs, denied) = self.hooks.dispatch(self, &context).await;
        self.record_hook_runs(context.task.as_ref().map(|t| t.id.as_str()), &runs);
        match denied {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Fires an event that cannot be refused (the operation happened); failures of the hooks
    /// are warnings, already reported by the manager.
    pub(crate) async fn notify(&self, event: HookEvent, task: &Task, data: Value) {
        let context = HookContext::new(event, Some(task.clone())).with_data(data);
        let _ = self.fire(context).await;
    }

    /// Hook runs go to the task's event log, in one write; runs with no task go to the
    /// server's own `events.jsonl` in the data dir.
    pub(crate) fn record_hook_runs(&self, task_id: Option<&str>, runs: &[HookRun]) {
        if runs.is_empty() {
            return;
        }
        for run in runs {
            self.metrics.hook_run(&run.hook, run.decision);
        }
        let events: Vec<Event> = runs
            .iter()
            .map(|run| Event::new(task_id.unwrap_or(""), EventKind::Hook, serde_json::json!(run)))
            .collect();
        let written = match task_id {
            Some(id) => self.store.append_events(id, &events),
            None => self
                .store
                .append_server_events(&self.home.join("events.jsonl"), &events),
        };
        if let Err(e) = written {
            tracing::warn!(task = ?task_id, error = %e, "cannot record hook runs");
        }
        if task_id.is_some()
            && let Err(e) = self.registry.insert_events(&events)
        {
            tracing::warn!(task = ?task_id, error = %e, "cannot index hook runs");
        }
    }

    /// `before_tool`: a deny refuses the call. `task` is the task the call names (or the
    /// session's current task), when it exists.
    pub async fn before_tool(&self, tool: &str, task: Option<Task>, arguments: &Value) -> Result<()> {
        let mut context = HookContext::new(HookEvent::BeforeTool, task).with_arguments(arguments.clone());
        context.tool = Some(tool.to_string());
        self.fire(context).await
    }

    /// `after_tool`, with whether the call failed.
    pub async fn after_tool(&self, tool: &str, task: Option<Task>, arguments: &Value, is_error: bool) {
        let mut context = HookContext::new(HookEvent::AfterTool, task)
            .with_arguments(arguments.clone())
            .with_data(serde_json::json!({ "is_error": is_error }));
        context.tool = Some(tool.to_string());
        let _ = self.fire(context).await;
    }

    /// `server_started`: runs once when a server starts, in its start-up recovery.
    pub(super) async fn server_started(&self) {
        let _ = self.fire(HookContext::new(HookEvent::ServerStarted, None)).await;
    }

    pub fn plan(&self, task_id: &str) -> Result<Option<PlanText>> {
        Ok(self.store.read_plan(task_id)?.map(|text| PlanText {
            path: self.store.plan_path(task_id).display().to_string(),
            text,
        }))
    }
}

#[async_trait]
impl HookHost for TaskService {
    fn home(&self) -> &Path {
        &self.home
    }

    /// The task's container as Docker sees it now (`None`: it does not exist).
    async fn inspect_container(&self, container: &str) -> Result<Option<ContainerState>> {
        Ok(self.runtime.inspect_container(container).await?)
    }

    async fn resource_sample(&self, container: &str, depth: SampleDepth) -> Result<Option<ResourceSample>> {
        Ok(self.runtime.resource_sample(container, depth).await?)
    }

    fn allowed_capabilities(&self) -> &[String] {
        &self.config.security.cap_add
    }

    fn is_unclaimed_pool_entry(&self, id: &str) -> Result<bool> {
        Ok(self.registry.is_pool_entry(id)?)
    }

    fn execution_count(&self, task_id: &str) -> Result<u64> {
        Ok(self.registry.count_executions(task_id)?)
    }

    fn newest_checkpoint_at(&self, task_id: &str) -> Result<Option<Timestamp>> {
        Ok(self.registry.list_checkpoints(task_id)?.first().map(|c| c.created_at))
    }

    async fn workspace_head(&self, task: &Task) -> Result<Option<String>> {
        let Some(container) = task.container_id.as_deref() else {
            return Ok(None);
        };
        let head = WorkspaceHead {
            user: task.exec_user.as_deref(),
        };
        self.run_op(container, head).await
    }

    async fn automatic_checkpoint(&self, task_id: &str, label: &str) -> Result<Option<String>> {
        let task = self.resolve(Some(task_id))?;
        if task.container_id.is_none() || !task.status.can_checkpoint_automatically() {
            return Ok(None);
        }
        if task.status != TaskStatus::Running {
            let newest = self.registry.list_checkpoints(&task.id)?.into_iter().next();
            let last_run = self.registry.recent_executions(&task.id, 1)?.into_iter().next();
            let unchanged = newest.as_ref().is_some_and(|c| {
                c.automatic
                    && c.git_commit == task.repo.synced_commit
                    && last_run
                        .as_ref()
                        .is_none_or(|e| e.finished_at.is_some_and(|f| f <= c.created_at))
            });
            if unchanged {
                return Ok(None);
            }
        }
        let result = self.checkpoint(task, Some(label.to_string()), true).await?;
        Ok(Some(result.reference))
    }

    fn write_plan(&self, task_id: &str, text: &str) -> Result<()> {
        Ok(self.store.write_plan(task_id, text)?)
    }

    fn append_to_plan(&self, task_id: &str, section: &str, line: &str) -> Result<bool> {
        Ok(self.store.append_to_plan(task_id, section, line)?)
    }

    fn finalize_plan(&self, task_id: &str, result: &str) -> Result<bool> {
        Ok(self.store.replace_plan_section(task_id, plan::RESULT, result)?)
    }

    fn completion_facts(&self, task_id: &str) -> Result<CompletionFacts> {
        let task = self.resolve(Some(task_id))?;
        let commits = match (&task.repo.path, &task.repo.base_commit, &task.repo.synced_commit) {
            (Some(repo), Some(base), Some(head)) => match (base.parse(), head.parse()) {
                (Ok(base), Ok(head)) => host::commits_between(repo, base, head, 200).unwrap_or_default(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let failed = ExecutionFilter {
            failed: true,
            ..Default::default()
        };
        let (decisions, _) = self.registry.list_decisions(&task.id, 500, 0)?;
        Ok(CompletionFacts {
            commits,
            executions: self.registry.execution_counts(&task.id)?,
            failures: self.registry.list_executions(&task.id, &failed, 10, 0)?.0,
            decisions: decisions.into_iter().rev().collect(),
            checkpoints: self.registry.list_checkpoints(&task.id)?.len(),
            finished_at: now(),
            task,
        })
    }
}
