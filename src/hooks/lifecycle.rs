//! Lifecycle hooks. checkpoint-creator takes automatic checkpoints when an agent detaches,
//! when a task stops or completes, and every N executions (at most one per interval), so work is recoverable without the
//! agent asking. (task-resumer, which brings tasks back after a host reboot or a daemon
//! restart, is a step of the server's start that its config switches: `TaskService::recover_at_start`.)

use async_trait::async_trait;

use super::host::HookHost;
use super::manager::Hook;
use super::{Decision, HookContext, HookEvent};
use crate::domain::now;

pub struct CheckpointCreator {
    pub every_executions: u32,
    /// The least time from the task's newest checkpoint, or its creation, to one taken after
    /// executions.
    pub min_interval: chrono::Duration,
}

impl CheckpointCreator {
    /// The checkpoint's label, when this event calls for one.
    fn label(&self, host: &dyn HookHost, context: &HookContext) -> Option<String> {
        let task = context.task.as_ref()?;
        match context.event {
            HookEvent::AgentDetached => Some(format!(
                "on detach of {}",
                context.data.get("agent").and_then(|a| a.as_str()).unwrap_or("an agent")
            )),
            HookEvent::TaskStopped => Some("on stop".into()),
            HookEvent::TaskCompleted => Some("on complete".into()),
            HookEvent::AfterExec => {
                let count = host.execution_count(&task.id).ok()?;
                if count == 0 || count % u64::from(self.every_executions) != 0 {
                    return None;
                }
                // The newest recovery point: a checkpoint, else the task as it was created.
                let since = host.newest_checkpoint_at(&task.id).ok()?.unwrap_or(task.created_at);
                (now() - since >= self.min_interval).then(|| format!("after {count} executions"))
            }
            _ => None,
        }
    }
}

#[async_trait]
impl Hook for CheckpointCreator {
    fn name(&self) -> &str {
        "checkpoint-creator"
    }

    fn handles(&self, context: &HookContext) -> bool {
        context.task.is_some()
            && match context.event {
                HookEvent::AgentDetached | HookEvent::TaskStopped | HookEvent::TaskCompleted => true,
                HookEvent::AfterExec => context.is_execution() && self.every_executions > 0,
                _ => false,
            }
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(task) = &context.task else {
            return Decision::ALLOW;
        };
        let Some(label) = self.label(host, context) else {
            return Decision::ALLOW;
        };
        match host.automatic_checkpoint(&task.id, &label).await {
            Ok(Some(reference)) => Decision::done(format!("checkpoint {reference} ({label})")),
            Ok(None) => Decision::done(format!("no checkpoint {label}: nothing changed since the last one")),
            Err(e) => Decision::Warn(format!("the automatic checkpoint {label} failed: {e}")),
        }
    }
}
