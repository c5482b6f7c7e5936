//! Plan hooks: file-creator writes `tasks/<id>/plan.md` when a task is created, updater
//! appends progress (checkpoints, failed executions) and decisions as they happen, finalizer
//! writes the result when the task completes. `attach_agent_to_task` returns the plan.

use async_trait::async_trait;
use serde_json::Value;

use super::host::{CompletionFacts, HookHost};
use super::manager::Hook;
use super::{Decision, HookContext, HookEvent};
use crate::domain::{Task, Timestamp, Tool, now};

pub const PROGRESS: &str = "Progress";
pub const DECISIONS: &str = "Decisions";
pub const RESULT: &str = "Result";

fn time(at: &Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The plan of a new task.
pub fn initial_plan(task: &Task) -> String {
    let goal = task
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("_No description was given; describe the goal with record_decision._");
    let branch = task.repo.branch.as_deref().unwrap_or("(none)");
    format!(
        "# Plan: {name}\n\nTask `{id}`, created {created}, branch `{branch}`.\n\n## Goal\n\n{goal}\n\n\
         ## Steps\n\n_Record the steps you decide on with record_decision; they appear under Decisions._\n\n\
         ## {PROGRESS}\n\n_Nothing yet._\n\n## {DECISIONS}\n\n_None yet._\n\n## {RESULT}\n\n_Not finished yet._\n",
        name = task.name,
        id = task.id,
        created = time(&task.created_at),
    )
}

/// The result section written on completion.
pub fn result_section(facts: &CompletionFacts) -> String {
    let minutes = (facts.finished_at - facts.task.created_at).num_minutes().max(0);
    let mut text = format!(
        "Completed {} after {}h {:02}m.\n\n",
        time(&facts.finished_at),
        minutes / 60,
        minutes % 60
    );
    let branch = facts.task.repo.branch.as_deref().unwrap_or("(none)");
    let head = facts.task.repo.synced_commit.as_deref().unwrap_or("?");
    text.push_str(&format!(
        "- Branch `{branch}` at `{}`: {} commit(s) since the base.\n",
        &head[..head.len().min(12)],
        facts.commits.len()
    ));
    for (sha, summary) in facts.commits.iter().take(20) {
        text.push_str(&format!("  - `{}` {summary}\n", &sha[..sha.len().min(12)]));
    }
    text.push_str(&format!(
        "- Executions: {} ({} failed).\n",
        facts.executions.total, facts.executions.failed
    ));
    for failure in facts.failures.iter().take(10) {
        text.push_str(&format!(
            "  - {}\n",
            describe_failure(&failure.command, failure.exit_code, failure.timed_out)
        ));
    }
    text.push_str(&format!("- Decisions: {}.\n", facts.decisions.len()));
    for decision in facts.decisions.iter().take(20) {
        text.push_str(&format!("  - {}\n", one_line(&decision.decision)));
    }
    text.push_str(&format!("- Checkpoints: {}.\n", facts.checkpoints));
    text
}

fn one_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_string()
    }
}

fn describe_failure(command: &str, exit_code: Option<i64>, timed_out: bool) -> String {
    let how = match (timed_out, exit_code) {
        (true, _) => "timed out".to_string(),
        (false, Some(code)) => format!("exit {code}"),
        (false, None) => "did not finish".to_string(),
    };
    format!("`{}` ({how})", one_line(command))
}

pub struct FileCreator;

#[async_trait]
impl Hook for FileCreator {
    fn name(&self) -> &str {
        "plan-file-creator"
    }

    fn handles(&self, context: &HookContext) -> bool {
        context.event == HookEvent::TaskCreated && context.task.is_some()
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(task) = &context.task else {
            return Decision::ALLOW;
        };
        match host.write_plan(&task.id, &initial_plan(task)) {
            Ok(()) => Decision::done("plan.md written"),
            Err(e) => Decision::Warn(format!("cannot write the task's plan: {e}")),
        }
    }
}

pub struct Updater;

impl Updater {
    /// The section and line this event adds to the plan, if any.
    fn entry(context: &HookContext) -> Option<(&'static str, String)> {
        let at = time(&now());
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        match context.event {
            HookEvent::CheckpointCreated => {
                let seq = context.data.get("seq").and_then(Value::as_i64)?;
                let label = text(&context.data, "label")
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                let name = &context.task.as_ref()?.name;
                Some((PROGRESS, format!("- {at} checkpoint `{name}:{seq}`{label}")))
            }
            HookEvent::AfterExec => {
                let exit_code = context.data.get("exit_code").and_then(Value::as_i64);
                let timed_out = context.data.get("timed_out").and_then(Value::as_bool).unwrap_or(false);
                if exit_code == Some(0) && !timed_out {
                    return None;
                }
                let command = text(&context.arguments, "command")?;
                let failure = describe_failure(&command, exit_code, timed_out);
                Some((PROGRESS, format!("- {at} failed: {failure}")))
            }
            HookEvent::AfterTool if context.tool.as_deref() == Some(Tool::RecordDecision.as_str()) => {
                if context.data.get("is_error").and_then(Value::as_bool) != Some(false) {
                    return None;
                }
                let decision = one_line(&text(&context.arguments, "decision")?);
                let why = text(&context.arguments, "rationale")
                    .map(|r| format!(" — {}", one_line(&r)))
                    .unwrap_or_default();
                Some((DECISIONS, format!("- {at} {decision}{why}")))
            }
            _ => None,
        }
    }
}

#[async_trait]
impl Hook for Updater {
    fn name(&self) -> &str {
        "plan-updater"
    }

    fn handles(&self, context: &HookContext) -> bool {
        context.task.is_some()
            && match context.event {
                HookEvent::CheckpointCreated => true,
                HookEvent::AfterExec => context.is_execution(),
                HookEvent::AfterTool => context.tool.as_deref() == Some(Tool::RecordDecision.as_str()),
                _ => false,
            }
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let (Some(task), Some((section, line))) = (&context.task, Self::entry(context)) else {
            return Decision::ALLOW;
        };
        match host.append_to_plan(&task.id, section, &line) {
            Ok(true) => Decision::done(format!("plan.md {section}: {line}")),
            Ok(false) => Decision::ALLOW,
            Err(e) => Decision::Warn(format!("cannot update the task's plan: {e}")),
        }
    }
}

pub struct Finalizer;

#[async_trait]
impl Hook for Finalizer {
    fn name(&self) -> &str {
        "plan-finalizer"
    }

    fn handles(&self, context: &HookContext) -> bool {
        context.event == HookEvent::TaskCompleted && context.task.is_some()
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(task) = &context.task else {
            return Decision::ALLOW;
        };
        let written = host
            .completion_facts(&task.id)
            .and_then(|facts| host.finalize_plan(&task.id, &result_section(&facts)));
        match written {
            Ok(true) => Decision::done("plan.md result written"),
            Ok(false) => Decision::ALLOW,
            Err(e) => Decision::Warn(format!("cannot write the plan's result: {e}")),
        }
    }
}
