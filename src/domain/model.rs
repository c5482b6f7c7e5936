//! The task data model shared by the registry, the task files and the MCP layer.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{DomainError as Error, DomainResult as Result};

pub type Timestamp = DateTime<Utc>;

pub fn now() -> Timestamp {
    Utc::now()
}

/// `t-` + ULID: short, unique and sortable by creation time.
pub fn new_task_id() -> String {
    format!("t-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// `e-` + ULID, for executions.
/// The id of a server process's lease (`servers/<id>.lock`).
pub fn new_server_id() -> String {
    format!("s-{}", ulid::Ulid::new().to_string().to_lowercase())
}

pub fn new_execution_id() -> String {
    format!("e-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Task names are handles for agents and humans, and later branch names (`taskbox/<name>`).
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > 63 {
        Some(format!("it is {} characters long; the limit is 63", name.len()))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Some("it must start with a lowercase letter or a digit".to_string())
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(format!("'{bad}' is not allowed"))
    } else if name.starts_with("t-") && name.len() == 28 {
        Some("it looks like a task id; ids and names must not be confused".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_string(),
            reason: format!("{reason}. Names match [a-z0-9][a-z0-9-]{{0,62}}, e.g. 'fix-login'"),
        }),
        None => Ok(()),
    }
}

/// Who a task belongs to. Over HTTP it is the owner of the caller's token; stdio sessions and
/// `serve --http --no-auth` act as [`Owner::LOCAL`]. A session sees only its owner's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    /// The owner of stdio sessions, and of every task made before owners existed.
    pub const LOCAL: &'static str = "local";

    pub fn local() -> Self {
        Self(Self::LOCAL.to_string())
    }

    /// An owner name: like a task name, `[a-z0-9][a-z0-9-]{0,62}`, because it also names the
    /// owner's task branches (`taskbox-<owner>/<task>`).
    pub fn new(name: &str) -> Result<Self> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 63 {
            Some("it is longer than 63 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            Some("it must start with a lowercase letter or a digit")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            Some("only lowercase letters, digits and '-' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::invalid(
                "owner",
                format!("'{name}' is not an owner name: {reason}; e.g. 'alice' or 'ci-bot'"),
            )),
            None => Ok(Self(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_local(&self) -> bool {
        self.0 == Self::LOCAL
    }
}

impl Default for Owner {
    fn default() -> Self {
        Self::local()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Creating,
    Running,
    Stopped,
    Completed,
    Failed,
    Archived,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Creating,
        Self::Running,
        Self::Stopped,
        Self::Completed,
        Self::Failed,
        Self::Archived,
    ];

    /// Whether hooks may checkpoint a task in this status (its container still exists).
    pub fn can_checkpoint_automatically(self) -> bool {
        matches!(self, Self::Running | Self::Stopped | Self::Completed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Archived => "archived",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "status",
                    format!(
                        "'{s}' is not a status; use one of creating, running, stopped, completed, failed, archived"
                    ),
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A bridge network of the task's own: outbound access, no route to other tasks.
    Egress,
    /// No network at all.
    None,
    /// An internal network of the task's own whose only way out is the server's HTTP(S)
    /// proxy, which lets through the hosts on the task's `allow` list.
    Allowlist,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::None => "none",
            Self::Allowlist => "allowlist",
        }
    }
}

impl FromStr for NetworkMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "egress" => Ok(Self::Egress),
            "none" => Ok(Self::None),
            "allowlist" => Ok(Self::Allowlist),
            other => Err(Error::invalid(
                "network",
                format!("'{other}' is not a network mode; use \"egress\", \"allowlist\" or \"none\""),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceLimits {
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
}

/// A task as recorded in the registry and mirrored to `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    /// Why the task is in its status, when that is not obvious (e.g. why it failed).
    pub status_reason: Option<String>,
    pub image: String,
    pub container_id: Option<String>,
    pub network: NetworkMode,
    /// The hosts an `allowlist` task's proxy lets through (the config's list and the task's
    /// own), e.g. `pypi.org`, `*.npmjs.org`, `example.com:8443`; empty for other modes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The Docker network of an `egress` or `allowlist` task.
    pub network_name: Option<String>,
    pub workspace: PathBuf,
    /// The shell commands run under (`bash` or `sh`), detected when the container starts.
    pub shell: Option<String>,
    /// The user commands run as unless a call asks for root: the image's default user.
    pub exec_user: Option<String>,
    pub limits: ResourceLimits,
    pub env: BTreeMap<String, String>,
    /// Where the task's work lands as commits on `branch`.
    pub repo: TaskRepo,
    /// The image the current container runs (a checkpoint image after a restore).
    pub container_image: Option<String>,
    /// `<task>:<n>` of the checkpoint this task was forked from.
    pub forked_from: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Optimistic concurrency: every update must name the version it read.
    pub version: i64,
    /// Who the task belongs to; only sessions of this owner see it.
    #[serde(default)]
    pub owner: Owner,
    /// Names of the config's secrets its commands get (`[secrets.NAME]`); never their values,
    /// which the server resolves when a command starts (docs/secrets.md).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Named Docker volumes mounted into its container: the owner's package caches and the
    /// task's own `volumes`. Fixed at creation; restores, forks and recreated containers
    /// mount the same ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<TaskVolume>,
}

/// What a named volume of a task is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// A package cache shared by the owner's tasks that run as the same uid (`[caches]`).
    Cache,
    /// A volume the task asked for by name (`volumes` of create_task_sandbox), shared by the
    /// owner's tasks that name it.
    Named,
}

impl VolumeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Named => "named",
        }
    }
}

/// One named Docker volume mounted into a task's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskVolume {
    pub kind: VolumeKind,
    /// The name the task gave it, or the cache's kind (`apt`, `pip`, `npm`, `cargo`).
    pub name: String,
    /// Docker's name for it: namespaced by data directory and owner.
    pub volume: String,
    /// Where it is mounted in the container (absolute).
    pub path: String,
}

/// The repository a task's work is written to, only ever by the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRepo {
    /// The developer's repository (its work tree), or the task's private bare repository.
    pub path: Option<PathBuf>,
    /// Whether `path` is the task's private repository (no source repository was given).
    pub private: bool,
    /// `taskbox/<name>`.
    pub branch: Option<String>,
    /// The commit the task started from.
    pub base_commit: Option<String>,
    /// The commit `branch` was last moved to.
    pub synced_commit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Running,
    Finished,
    TimedOut,
    Cancelled,
    Failed,
    /// It ended without taskbox learning how: the server running a foreground command stopped
    /// (killed, crashed) and recovery killed what was left of it, or a background execution's
    /// container stopped or its supervisor was killed; the reason is in the task's events.
    Interrupted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "finished" => Self::Finished,
            "timed_out" => Self::TimedOut,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            _ => Self::Failed,
        }
    }
}

/// The registry's record of one `execute_in_task` call (never the output itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Execution {
    pub id: String,
    pub task_id: String,
    pub command: String,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub explanation: Option<String>,
    pub status: ExecutionStatus,
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub truncated: bool,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    /// Started with `background: true`: it runs under its supervisor, detached from any call.
    #[serde(default)]
    pub background: bool,
}

/// Layer 4: a task's workspace (a commit on its branch) and container (an image) at a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    pub id: String,
    pub task_id: String,
    /// 1, 2, … per task; `<task>:<seq>` names the checkpoint too.
    pub seq: i64,
    pub label: Option<String>,
    /// Made by the server (before a restore, say) rather than asked for; only the newest
    /// `checkpoints.keep_automatic` of these are kept.
    pub automatic: bool,
    pub git_commit: Option<String>,
    pub image_id: Option<String>,
    pub created_at: Timestamp,
}

/// `c-` + ULID, for checkpoints.
pub fn new_checkpoint_id() -> String {
    format!("c-{}", ulid::Ulid::new().to_string().to_lowercase())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attachment {
    pub id: i64,
    pub task_id: String,
    pub agent: String,
    pub session_id: String,
    pub attached_at: Timestamp,
    pub detached_at: Option<Timestamp>,
}

/// Layer 3: a decision recorded by an agent or a hook, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub id: i64,
    pub task_id: String,
    pub decision: String,
    pub rationale: Option<String>,
    pub agent: Option<String>,
    pub created_at: Timestamp,
}

/// One line of `events.jsonl`, also indexed in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub at: Timestamp,
    pub task_id: String,
    #[serde(rename = "type")]
    #[schemars(with = "String")]
    pub kind: EventKind,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(task_id: &str, kind: EventKind, data: serde_json::Value) -> Self {
        Self {
            at: now(),
            task_id: task_id.to_string(),
            kind,
            data,
        }
    }
}

/// What an event records. It is written as the names the event logs have always held, and
/// a name this version does not know (a newer taskbox wrote it) is kept as it is, so every
/// event log stays readable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum EventKind {
    TaskCreated,
    StatusChanged,
    ToolCall,
    Execution,
    AgentAttached,
    AgentDetached,
    DecisionRecorded,
    CheckpointCreated,
    CheckpointRestored,
    Synced,
    /// A hook's run (or a step a hook's config switches).
    Hook,
    ContainerRestarted,
    ContainerRecreated,
    /// A connection through an `allowlist` task's proxy: host, port, allowed or denied, bytes.
    Egress,
    /// A port exposed with expose_port (the first time; its forward's comings and goings are
    /// not events).
    PortExposed,
    Other(String),
}

impl EventKind {
    const NAMED: [(Self, &'static str); 15] = [
        (Self::TaskCreated, "task_created"),
        (Self::StatusChanged, "status_changed"),
        (Self::ToolCall, "tool_call"),
        (Self::Execution, "execution"),
        (Self::AgentAttached, "agent_attached"),
        (Self::AgentDetached, "agent_detached"),
        (Self::DecisionRecorded, "decision_recorded"),
        (Self::CheckpointCreated, "checkpoint_created"),
        (Self::CheckpointRestored, "checkpoint_restored"),
        (Self::Synced, "synced"),
        (Self::Hook, "hook"),
        (Self::ContainerRestarted, "container_restarted"),
        (Self::ContainerRecreated, "container_recreated"),
        (Self::Egress, "egress"),
        (Self::PortExposed, "port_exposed"),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => Self::NAMED
                .iter()
                .find(|(kind, _)| kind == known)
                .map_or("", |(_, name)| name),
        }
    }
}

impl From<String> for EventKind {
    fn from(name: String) -> Self {
        Self::NAMED
            .iter()
            .find(|(_, known)| *known == name)
            .map_or(Self::Other(name), |(kind, _)| kind.clone())
    }
}

impl From<EventKind> for String {
    fn from(kind: EventKind) -> Self {
        kind.as_str().to_string()
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Execution counts of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ExecutionCounts {
    pub total: u64,
    /// Finished with a non-zero exit code, timed out, cancelled or failed to run.
    pub failed: u64,
    pub running: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_keep_their_names_on_disk_and_unknown_ones_survive() {
        for (kind, name) in EventKind::NAMED {
            assert_eq!(serde_json::to_value(&kind).unwrap(), serde_json::json!(name));
            assert_eq!(EventKind::from(name.to_string()), kind);
        }
        let line = r#"{"at":"2026-01-01T00:00:00Z","task_id":"t-1","type":"from_the_future","data":{}}"#;
        let event: Event = serde_json::from_str(line).unwrap();
        assert_eq!(event.kind, EventKind::Other("from_the_future".into()));
        assert_eq!(serde_json::to_string(&event).unwrap(), line);
    }

    #[test]
    fn names_follow_the_pattern() {
        for good in ["a", "fix-login", "0day", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Fix", "a_b", "a b", "ä", &"a".repeat(64), "../x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_names_follow_the_pattern() {
        for good in ["local", "alice", "ci-bot", "0"] {
            assert_eq!(Owner::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "Alice", "a_b", "a/b", "-x", &"a".repeat(64)] {
            assert!(Owner::new(bad).is_err(), "{bad}");
        }
        assert!(Owner::default().is_local());
    }

    #[test]
    fn ids_are_prefixed_and_sortable() {
        let a = new_task_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_task_id();
        assert!(a.starts_with("t-") && a.len() == 28, "{a}");
        assert!(a < b);
    }

    #[test]
    fn statuses_round_trip_through_strings() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>().unwrap(), status);
        }
        assert!("gone".parse::<TaskStatus>().is_err());
    }
}
