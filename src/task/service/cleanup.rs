//! cleanup_task: archive finished tasks. Containers, networks, workspaces and checkpoint
//! images go; the records (registry rows, task files, checkpoint manifests) and the work
//! (the task branch, the private repository) stay.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use crate::domain::lifecycle::{LifecycleEvent, transition};
use crate::domain::{Owner, Task, TaskStatus, now};
use crate::error::{Error, Result};
use crate::workspace;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanupRequest {
    /// Whose tasks: only these are candidates.
    pub owner: Owner,
    pub task: Option<String>,
    pub status: Option<TaskStatus>,
    pub older_than: Option<Duration>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CleanupItem {
    pub task_id: String,
    pub name: String,
    pub status: TaskStatus,
    /// Whether it was archived (false on a dry run or an error).
    pub archived: bool,
    pub error: Option<String>,
}

const FINISHED: [TaskStatus; 3] = [TaskStatus::Stopped, TaskStatus::Completed, TaskStatus::Failed];

impl TaskService {
    pub async fn cleanup(&self, request: &CleanupRequest) -> Result<Vec<CleanupItem>> {
        let tasks = self.cleanup_candidates(request)?;
        let mut items = Vec::new();
        for task in tasks {
            let mut item = CleanupItem {
                task_id: task.id.clone(),
                name: task.name.clone(),
                status: task.status,
                archived: false,
                error: None,
            };
            if !request.dry_run {
                match self.archive(task).await {
                    Ok(task) => {
                        item.status = task.status;
                        item.archived = true;
                    }
                    Err(e) => item.error = Some(e.to_string()),
                }
            }
            items.push(item);
        }
        Ok(items)
    }

    fn cleanup_candidates(&self, request: &CleanupRequest) -> Result<Vec<Task>> {
        if let Some(task) = &request.task {
            let task = self.resolve_for(&request.owner, task)?;
            transition(task.status, LifecycleEvent::Cleanup)?;
            return Ok(vec![task]);
        }
        if request.status.is_none() && request.older_than.is_none() {
            return Err(Error::invalid(
                "task",
                "give a task, or a filter (status, older_than), to say what to clean up",
            ));
        }
        let statuses: Vec<TaskStatus> = match request.status {
            Some(status) if FINISHED.contains(&status) => vec![status],
            Some(status) => {
                return Err(Error::invalid(
                    "status",
                    format!("{status} tasks are not cleaned up; use stopped, completed or failed"),
                ));
            }
            None => FINISHED.to_vec(),
        };
        let cutoff = request
            .older_than
            .map(|d| now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
        let mut tasks = Vec::new();
        for status in statuses {
            for task in self
                .registry
                .list_owner_tasks(&request.owner, Some(status), u32::MAX, 0)?
                .tasks
            {
                if cutoff.is_none_or(|cutoff| task.updated_at < cutoff) {
                    tasks.push(task);
                }
            }
        }
        Ok(tasks)
    }

    async fn archive(&self, task: Task) -> Result<Task> {
        if let Some(container) = &task.container_id {
            self.runtime.remove_container(container).await?;
        }
        self.stop_proxy(&task.id);
        if let Some(network) = &task.network_name {
            self.runtime.remove_network(network).await?;
        }
        for checkpoint in self.registry.list_checkpoints(&task.id)? {
            if let Some(image) = &checkpoint.image_id
                && let Err(e) = self.runtime.remove_image(image).await
            {
                tracing::warn!(image, error = %e, "checkpoint image kept");
            }
        }
        workspace::remove(&task.workspace)?;
        self.transition(task, LifecycleEvent::Cleanup, None, |_| {})
    }
}

/// "30m", "12h", "7d", "2w" or a number of seconds ("3600", "3600s").
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if seconds > 0 => Ok(Duration::from_secs(n.saturating_mul(seconds))),
        _ => Err(Error::invalid(
            "older_than",
            format!("'{text}' is not a duration; use e.g. 30m, 12h, 7d or 2w"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        for bad in ["", "d", "7y", "-1d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
