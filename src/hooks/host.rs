//! `HookHost`: exactly what a built-in hook may ask of the server. `TaskService` implements it;
//! hooks never see the service itself, so `hooks` stays below `task` in the module map
//! (docs/architecture.md, "Module map") and a hook cannot reach Docker, SQLite or git except
//! through these calls.

use std::path::Path;

use async_trait::async_trait;

use crate::domain::{Decision, Execution, ExecutionCounts, Task, Timestamp};
use crate::error::Result;
use crate::runtime::{ContainerState, ResourceSample, SampleDepth};

#[async_trait]
pub trait HookHost: Send + Sync {
    /// The data directory, as the labels of this server's containers name it.
    fn home(&self) -> &Path;

    /// Capabilities task containers may have beyond `cap_drop: ALL`.
    fn allowed_capabilities(&self) -> &[String];

    /// A container as Docker sees it now (`None`: it does not exist).
    async fn inspect_container(&self, container: &str) -> Result<Option<ContainerState>>;

    /// A container's memory and pids counters (`None`: they cannot be read).
    async fn resource_sample(&self, container: &str, depth: SampleDepth) -> Result<Option<ResourceSample>>;

    /// Whether a warm-pool entry with this id is still in the pool, claimed by no task (its
    /// container must not serve a task yet).
    fn is_unclaimed_pool_entry(&self, id: &str) -> Result<bool>;

    /// How many executions the task has had.
    fn execution_count(&self, task_id: &str) -> Result<u64>;

    /// When the task's newest checkpoint was taken (`None`: it has none).
    fn newest_checkpoint_at(&self, task_id: &str) -> Result<Option<Timestamp>>;

    /// The workspace's HEAD: `refs/heads/<branch>`, or a commit when detached; `None` when git
    /// does not answer (no git in the image, no repository).
    async fn workspace_head(&self, task: &Task) -> Result<Option<String>>;

    /// An automatic checkpoint; `None` when there is nothing new to keep.
    async fn automatic_checkpoint(&self, task_id: &str, label: &str) -> Result<Option<String>>;

    fn write_plan(&self, task_id: &str, text: &str) -> Result<()>;

    /// Appends a line to a plan section; `false` when the task has no plan.
    fn append_to_plan(&self, task_id: &str, section: &str, line: &str) -> Result<bool>;

    /// Replaces the plan's result section; `false` when the task has no plan.
    fn finalize_plan(&self, task_id: &str, result: &str) -> Result<bool>;

    /// What the plan finalizer summarises.
    fn completion_facts(&self, task_id: &str) -> Result<CompletionFacts>;
}

/// The facts of a completed task, for the plan's result section.
#[derive(Debug, Clone)]
pub struct CompletionFacts {
    pub task: Task,
    pub finished_at: Timestamp,
    /// (id, summary) of the task branch's commits since its base, newest first.
    pub commits: Vec<(String, String)>,
    pub executions: ExecutionCounts,
    /// The failed executions, newest first (at most 10).
    pub failures: Vec<Execution>,
    /// Oldest first.
    pub decisions: Vec<Decision>,
    pub checkpoints: usize,
}
