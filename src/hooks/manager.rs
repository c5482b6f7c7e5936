//! `HookManager`: the hooks of this server in their fixed order, and the dispatch that runs
//! the ones an event concerns, stops at the first deny, gathers warnings and records every run.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;

use super::config::HooksConfig;
use super::host::HookHost;
use super::{Decision, HookContext, HookEvent, external, git, lifecycle, plan, safety, scope};
use crate::error::{Error, Result};

/// A hook: it says which events it wants and decides on them. Built-in hooks ask the server
/// for facts and actions through `HookHost`, and through nothing else.
#[async_trait]
pub trait Hook: Send + Sync {
    fn name(&self) -> &str;
    /// Whether this hook runs for the event (cheap: no I/O).
    fn handles(&self, context: &HookContext) -> bool;
    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision;
}

/// One hook run, as recorded in the task's `events.jsonl` (event type `hook`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookRun {
    pub hook: String,
    pub event: HookEvent,
    pub decision: &'static str,
    pub message: Option<String>,
    pub duration_ms: u64,
    pub tool: Option<String>,
}

pub struct HookManager {
    hooks: Vec<Arc<dyn Hook>>,
}

impl HookManager {
    /// The enabled built-in hooks in their documented order (safety, git, lifecycle, plan),
    /// then the external hooks in config order.
    pub fn new(config: &HooksConfig) -> Result<Self> {
        config.validate()?;
        let mut hooks: Vec<Arc<dyn Hook>> = Vec::new();
        if config.container_enforcer.enabled {
            hooks.push(Arc::new(safety::ContainerEnforcer));
        }
        if config.isolation_checker.enabled {
            hooks.push(Arc::new(safety::IsolationChecker));
        }
        if config.resource_monitor.enabled {
            hooks.push(Arc::new(safety::ResourceMonitor::new(
                config.resource_monitor.memory_warn_percent,
            )));
        }
        if config.branch_validator.enabled {
            hooks.push(Arc::new(git::BranchValidator));
        }
        if config.checkpoint_creator.enabled {
            hooks.push(Arc::new(lifecycle::CheckpointCreator {
                every_executions: config.checkpoint_creator.every_executions,
                min_interval: i64::try_from(config.checkpoint_creator.min_interval_s)
                    .ok()
                    .and_then(chrono::Duration::try_seconds)
                    .unwrap_or(chrono::Duration::MAX),
            }));
        }
        if config.plan_file_creator.enabled {
            hooks.push(Arc::new(plan::FileCreator));
        }
        if config.plan_updater.enabled {
            hooks.push(Arc::new(plan::Updater));
        }
        if config.plan_finalizer.enabled {
            hooks.push(Arc::new(plan::Finalizer));
        }
        for hook in &config.external {
            hooks.push(Arc::new(external::ExternalHook::new(hook.clone())));
        }
        Ok(Self { hooks })
    }

    /// Runs the hooks that handle the event, in order. Returns the runs (to be recorded) and,
    /// when a hook denied at an event that can still be stopped, the error to fail with.
    /// Warnings go to the current tool call's result.
    pub async fn dispatch(&self, host: &dyn HookHost, context: &HookContext) -> (Vec<HookRun>, Option<Error>) {
        let mut runs = Vec::new();
        for hook in self.hooks.iter().filter(|h| h.handles(context)) {
            let started = Instant::now();
            let decision = hook.run(host, context).await;
            let run = HookRun {
                hook: hook.name().to_string(),
                event: context.event,
                decision: decision.as_str(),
                message: decision.message().map(String::from),
                duration_ms: started.elapsed().as_millis() as u64,
                tool: context.tool.clone(),
            };
            runs.push(run);
            match decision {
                Decision::Allow(_) => {}
                Decision::Warn(message) => scope::warn(format!("{}: {message}", hook.name())),
                Decision::Deny(reason) if context.event.can_deny() => {
                    let error = Error::HookDenied {
                        hook: hook.name().to_string(),
                        event: context.event.as_str(),
                        reason,
                    };
                    return (runs, Some(error));
                }
                Decision::Deny(reason) => scope::warn(format!(
                    "{} objected at {} (which cannot be undone): {reason}",
                    hook.name(),
                    context.event
                )),
            }
        }
        (runs, None)
    }
}

/// Records a step of an operation that a built-in hook's config switches: container-enforcer's
/// recovery before a command and task-resumer at start are service steps, recorded under the
/// hook's name like the hooks' own runs.
pub fn step_run(hook: &str, event: HookEvent, started: Instant, decision: &Decision) -> HookRun {
    HookRun {
        hook: hook.to_string(),
        event,
        decision: decision.as_str(),
        message: decision.message().map(String::from),
        duration_ms: started.elapsed().as_millis() as u64,
        tool: scope::tool_and_agent().0,
    }
}
