//! Hooks around every operation (docs/hooks.md): the events, the decisions a hook returns, the
//! `HookManager` that runs them in a fixed order, the built-in hooks (safety, git, lifecycle,
//! plan), external hooks from config, and the Claude Code PreToolUse hook.
//!
//! A hook sees a `HookContext` and returns allow, deny(reason) or warn(message). A deny at a
//! `before_*` event stops the operation with a tool error naming the hook; at any other event
//! (the operation already happened) it is reported like a warning. Warnings reach the result
//! of the tool call in progress (see `scope`). Every run is recorded in the task's event log.

pub mod claude_code;
pub mod config;
mod external;
pub mod git;
mod host;
mod lifecycle;
mod manager;
pub mod plan;
mod safety;
pub mod scope;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use config::HooksConfig;
pub use host::{CompletionFacts, HookHost};
pub use manager::{HookManager, HookRun, step_run};
pub use safety::{CONTAINER_ENFORCER, foreign_labels};

use crate::domain::Task;
use crate::runtime::ContainerState;

/// When hooks run. The order of this list is the order of a tool call's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    /// Before any tool call; a deny refuses the call.
    BeforeTool,
    /// After any tool call, error or not.
    AfterTool,
    /// A task finished creation and is running.
    TaskCreated,
    AgentAttached,
    AgentDetached,
    /// Before a command runs in a container for the agent: an execution or a file operation
    /// (`arguments.operation` says which). A deny refuses it.
    BeforeExec,
    /// After an execution finished (any exit code, timeout).
    AfterExec,
    /// Before the workspace is committed and brought to the task branch (checkpoint, stop,
    /// complete, diff). A deny refuses the sync.
    BeforeSync,
    CheckpointCreated,
    /// A checkpoint was restored (the container may be a new one).
    TaskRestored,
    TaskStopped,
    TaskCompleted,
    /// The server started: in its start-up recovery, which tool calls wait for.
    ServerStarted,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeTool => "before_tool",
            Self::AfterTool => "after_tool",
            Self::TaskCreated => "task_created",
            Self::AgentAttached => "agent_attached",
            Self::AgentDetached => "agent_detached",
            Self::BeforeExec => "before_exec",
            Self::AfterExec => "after_exec",
            Self::BeforeSync => "before_sync",
            Self::CheckpointCreated => "checkpoint_created",
            Self::TaskRestored => "task_restored",
            Self::TaskStopped => "task_stopped",
            Self::TaskCompleted => "task_completed",
            Self::ServerStarted => "server_started",
        }
    }

    /// Whether a deny at this event can still stop what it is about.
    pub fn can_deny(self) -> bool {
        matches!(self, Self::BeforeTool | Self::BeforeExec | Self::BeforeSync)
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a hook decided. An allow may carry a note of what the hook did, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Option<String>),
    Deny(String),
    Warn(String),
}

impl Decision {
    pub const ALLOW: Self = Self::Allow(None);

    /// Allowed, and the hook did something worth recording.
    pub fn done(note: impl Into<String>) -> Self {
        Self::Allow(Some(note.into()))
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow(_) => "allow",
            Self::Deny(_) => "deny",
            Self::Warn(_) => "warn",
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Allow(note) => note.as_deref(),
            Self::Deny(m) | Self::Warn(m) => Some(m),
        }
    }
}

/// What a hook is told about the event.
#[derive(Debug, Clone)]
pub struct HookContext {
    pub event: HookEvent,
    /// The task the event is about, as it was when the event fired.
    pub task: Option<Task>,
    /// The tool being called (tool events, and events fired during a tool call).
    pub tool: Option<String>,
    /// The tool's arguments, or the operation's (an execution's command, say).
    pub arguments: Value,
    pub agent: Option<String>,
    /// Event-specific facts: an execution's result, a checkpoint, a tool's outcome.
    pub data: Value,
    /// The task's container as Docker saw it when the first hook asked; shared so that the
    /// safety hooks inspect it once per event.
    container: tokio::sync::OnceCell<Option<ContainerState>>,
}

impl HookContext {
    pub fn new(event: HookEvent, task: Option<Task>) -> Self {
        let (tool, agent) = scope::tool_and_agent();
        Self {
            event,
            task,
            tool,
            arguments: Value::Null,
            agent,
            data: Value::Null,
            container: tokio::sync::OnceCell::new(),
        }
    }

    pub fn with_arguments(mut self, arguments: Value) -> Self {
        self.arguments = arguments;
        self
    }

    /// The task's container as the caller just inspected it (`None`: not inspected).
    pub fn with_container(self, state: Option<Option<ContainerState>>) -> Self {
        if let Some(state) = state {
            let _ = self.container.set(state);
        }
        self
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Whether an exec event is about an execution (not a file operation).
    pub fn is_execution(&self) -> bool {
        self.arguments.get("operation").and_then(Value::as_str) == Some("execute")
    }

    /// The JSON an external hook reads on stdin. The task's environment values (tokens, say)
    /// are left out: hooks get the variable names only.
    pub fn to_json(&self) -> Value {
        let mut task = serde_json::to_value(&self.task).unwrap_or(Value::Null);
        if let Some(env) = task.get_mut("env").and_then(Value::as_object_mut) {
            for value in env.values_mut() {
                *value = Value::String("(hidden)".into());
            }
        }
        serde_json::json!({
            "event": self.event,
            "task": task,
            "tool": self.tool,
            "arguments": self.arguments,
            "agent": self.agent,
            "data": self.data,
        })
    }
}
