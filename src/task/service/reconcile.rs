//! Startup reconciliation: compare every live task with Docker and record what changed while
//! no server was watching. A task whose container vanished or died is marked failed with the
//! reason in its event log; nothing is silently dropped. One task that cannot be checked does
//! not stop the others from being checked.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::ops::died_reason;
use crate::domain::lifecycle::LifecycleEvent;
use crate::domain::{Task, TaskStatus, now};
use crate::error::Result;

/// A `creating` row whose lease was last refreshed longer ago than this belongs to a server
/// that died mid-creation (a live one refreshes it every `create::HEARTBEAT`).
pub(super) const STALE_CREATING: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReconcileOutcome {
    pub task_id: String,
    pub name: String,
    pub from: TaskStatus,
    pub to: TaskStatus,
    pub reason: String,
}

impl TaskService {
    pub async fn reconcile(&self) -> Result<Vec<ReconcileOutcome>> {
        self.runtime.ping().await?;
        // Background executions that ended while no server was running.
        self.settle_background(None).await;
        self.repair_event_index();
        let mut outcomes = Vec::new();
        for status in [TaskStatus::Running, TaskStatus::Stopped, TaskStatus::Creating] {
            for task in self.registry.list_tasks(Some(status), u32::MAX, 0)?.tasks {
                let (id, name) = (task.id.clone(), task.name.clone());
                match self.reconcile_task(task).await {
                    Ok(Some(outcome)) => {
                        tracing::warn!(task = %id, %name, reason = %outcome.reason, "reconcile: task marked failed");
                        outcomes.push(outcome);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(task = %id, %name, error = %e, "reconcile: cannot check task"),
                }
            }
        }
        Ok(outcomes)
    }

    async fn reconcile_task(&self, task: Task) -> Result<Option<ReconcileOutcome>> {
        let from = task.status;
        let (event, reason) = if from == TaskStatus::Creating {
            // The lease, not the creation time: a slow first image build or a large clone
            // keeps refreshing it, so another server never reaps a creation still going on.
            // A creating server known to be dead (its lease file unlocked) is reaped at once.
            let (seen, server) = self
                .registry
                .creation_lease(&task.id)?
                .unwrap_or((task.created_at, None));
            let age = (now() - seen).to_std().unwrap_or_default();
            let server_dead = server
                .as_deref()
                .is_some_and(|id| id != self.lease.id() && !crate::store::server_alive(&self.home.join("servers"), id));
            if age < STALE_CREATING && !server_dead {
                return Ok(None);
            }
            // The row learns its container and network only when creation finishes, but
            // their names are derived from the id, so what a crashed creation made is found.
            let name = format!("taskbox-{}", task.id);
            self.runtime.remove_container(&name).await?;
            self.runtime.remove_network(&name).await?;
            crate::workspace::remove(&task.workspace)?;
            (
                LifecycleEvent::CreationFailed,
                "the server stopped while the task was being created".to_string(),
            )
        } else {
            let Some(container) = task.container_id.clone() else {
                return Ok(None);
            };
            let state = self.runtime.inspect_container(&container).await?;
            let alive = match &state {
                None => false,
                Some(state) => state.running || from != TaskStatus::Running,
            };
            if alive {
                return Ok(None);
            }
            (LifecycleEvent::ContainerDied, died_reason(&container, state.as_ref()))
        };
        let (task_id, name) = (task.id.clone(), task.name.clone());
        let saved = self.transition(task, event, Some(reason.clone()), |_| {})?;
        Ok(Some(ReconcileOutcome {
            task_id,
            name,
            from,
            to: saved.status,
            reason,
        }))
    }
}
