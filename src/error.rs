//! The crate-wide error type. `mcp/error.rs` turns it into what an MCP client sees.
//!
//! Subsystems (registry, store, runtime, workspace, lifecycle) have their own error enums;
//! `Error` wraps them and adds the service-level failures an agent can act on. Every message
//! says what happened and what to do next, because the reader is usually an agent that will
//! retry based on it.

use crate::domain::DomainError;
use crate::domain::lifecycle::LifecycleError;
use crate::registry::RegistryError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;
use crate::workspace::WorkspaceError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no task named or with id '{task}'; call list_tasks to see the existing tasks, or create_task_sandbox to make one"
    )]
    TaskNotFound { task: String },

    #[error("no execution with id '{execution}'; pass an execution_id from execute_in_task or task_executions")]
    ExecutionNotFound { execution: String },

    #[error(
        "no task given and this session has no current task (a sessionless request, as in MCP 2026-07-28, never has one); pass `task` (a name or id), or call create_task_sandbox or attach_agent_to_task first"
    )]
    NoCurrentTask,

    #[error("invalid task name '{name}': {reason}")]
    InvalidName { name: String, reason: String },

    #[error(
        "a task named '{name}' already exists ({id}, {status}); pick another name, or attach_agent_to_task to work in it"
    )]
    NameTaken { name: String, id: String, status: String },

    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("task '{task}' is {status}; {hint}")]
    WrongStatus { task: String, status: String, hint: String },

    #[error("{0}")]
    Lifecycle(#[from] LifecycleError),

    #[error("{0}")]
    Runtime(#[from] RuntimeError),

    #[error("task registry: {0}")]
    Registry(#[from] RegistryError),

    #[error("task files: {0}")]
    Store(#[from] StoreError),

    #[error("workspace: {0}")]
    Workspace(#[from] WorkspaceError),

    #[error("execution was cancelled by the client")]
    Cancelled,

    /// One of taskbox's own commands in the container (preparing it, a restore step) failed
    /// or did not finish in time: the container's state, not Docker, is the cause.
    #[error("{what} failed in the container: {message}")]
    InContainer { what: String, message: String },

    /// A fault of the server itself (a panic, a value it could not serialise): nothing the
    /// caller did, and worth reporting.
    #[error("internal error: {0}; this is a bug in taskbox, please report it")]
    Internal(String),

    #[error("configuration: {0}")]
    Config(String),

    #[error("transport: {0}")]
    Transport(String),

    #[error("the server is shutting down; retry with a new server")]
    ShuttingDown,

    #[error("refused by hook '{hook}' ({event}): {reason}")]
    HookDenied {
        hook: String,
        event: &'static str,
        reason: String,
    },
    #[error(
        "this token already has {limit} execution(s) running, the most the server runs at once for one token (http.max_executions_per_token); wait for one to finish, then retry"
    )]
    TooManyExecutions { limit: usize },

    #[error(
        "the task registry is being rebuilt from the task files (registry.db was missing or damaged); retry in a few seconds"
    )]
    RegistryRebuilding,

    /// The egress proxy of an `allowlist` task cannot listen (its port is taken, its network
    /// is gone).
    #[error("egress proxy: {0}")]
    EgressProxy(String),

    #[error("owner '{owner}' would hold {would_hold}, over its quota of {limit} (quotas.{quota}); {remedy}")]
    QuotaExceeded {
        owner: String,
        quota: &'static str,
        would_hold: String,
        limit: String,
        remedy: &'static str,
    },
}

/// Domain errors keep the kinds they always had (`invalid_name`, `invalid_argument`).
impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::InvalidName { name, reason } => Self::InvalidName { name, reason },
            DomainError::InvalidArgument { field, reason } => Self::InvalidArgument { field, reason },
        }
    }
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// A stable, machine-readable name for the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TaskNotFound { .. } => "task_not_found",
            Self::ExecutionNotFound { .. } => "execution_not_found",
            Self::NoCurrentTask => "no_current_task",
            Self::InvalidName { .. } => "invalid_name",
            Self::NameTaken { .. } => "name_taken",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::WrongStatus { .. } | Self::Lifecycle(_) => "wrong_status",
            Self::Runtime(RuntimeError::Unavailable(_)) => "docker_unavailable",
            Self::Runtime(_) => "docker_error",
            Self::Registry(RegistryError::Conflict { .. }) => "conflict",
            Self::Registry(RegistryError::NameTaken { .. }) => "name_taken",
            Self::Registry(_) => "registry_error",
            Self::Store(_) => "store_error",
            Self::Workspace(_) => "workspace_error",
            Self::Cancelled => "cancelled",
            Self::Internal(_) => "internal_error",
            Self::InContainer { .. } => "container_command_failed",
            Self::Config(_) => "config_error",
            Self::Transport(_) => "transport_error",
            Self::ShuttingDown => "shutting_down",
            Self::HookDenied { .. } => "hook_denied",
            Self::TooManyExecutions { .. } => "too_many_executions",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::RegistryRebuilding => "registry_rebuilding",
            Self::EgressProxy(_) => "egress_proxy_error",
        }
    }
}
