//! Startup reconciliation: compare every live task with Docker and record what changed while
//! no server was watching. A task whose container vanished or died is marked failed with the
//! reason in its event log; nothing is silently dropped.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::ops::died_reason;
use crate::error::Result;
use crate::task::lifecycle::LifecycleEvent;
use crate::task::model::{TaskStatus, now};

/// A `creating` row older than this belongs to a server that died mid-creation.
const STALE_CREATING: Duration = Duration::from_secs(600);

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
        let mut outcomes = Vec::new();
        for status in [TaskStatus::Running, TaskStatus::Stopped, TaskStatus::Creating] {
            let page = self.registry.list_tasks(Some(status), u32::MAX, 0)?;
            for task in page.tasks {
                let reason = if status == TaskStatus::Creating {
                    let age = (now() - task.created_at).to_std().unwrap_or_default();
                    if age < STALE_CREATING {
                        continue;
                    }
                    if let Some(container) = &task.container_id {
                        self.runtime.remove_container(container).await?;
                    }
                    if let Some(network) = &task.network_name {
                        self.runtime.remove_network(network).await?;
                    }
                    "the server stopped while the task was being created".to_string()
                } else {
                    let Some(container) = task.container_id.clone() else {
                        continue;
                    };
                    let state = self.runtime.inspect_container(&container).await?;
                    let alive = match &state {
                        None => false,
                        Some(state) => state.running || status != TaskStatus::Running,
                    };
                    if alive {
                        continue;
                    }
                    died_reason(&container, state.as_ref())
                };
                let (id, name) = (task.id.clone(), task.name.clone());
                let saved = if status == TaskStatus::Creating {
                    self.transition(task, LifecycleEvent::CreationFailed, Some(reason.clone()), |_| {})?
                } else {
                    self.mark_died(task, reason.clone())?
                };
                tracing::warn!(task = %id, %name, %reason, "reconcile: task marked failed");
                outcomes.push(ReconcileOutcome {
                    task_id: id,
                    name,
                    from: status,
                    to: saved.status,
                    reason,
                });
            }
        }
        Ok(outcomes)
    }
}
