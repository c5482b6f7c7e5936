//! Quotas per owner (docs/security.md, "Another owner over HTTP"): what a new or resumed task, or a new
//! checkpoint, would bring its owner to, against `[quotas]`.

use crate::config::Quota;
use crate::domain::{Owner, ResourceLimits};
use crate::error::{Error, Result};
use crate::registry::OwnerUsage;

const FREE_TASKS: &str = "delete tasks you no longer need (delete_task), or ask the operator to raise the quota";
const FREE_RUNNING: &str = "stop a task you are not using (stop_task), or ask the operator to raise the quota";
const FREE_BACKGROUND: &str =
    "end background executions you no longer need (kill_execution), or ask the operator to raise the quota";
const FREE_PORTS: &str =
    "delete tasks whose exposed ports you no longer need (delete_task), or ask the operator to raise the quota";
const FREE_CHECKPOINTS: &str =
    "delete tasks whose checkpoints you no longer need (delete_task), or ask the operator to raise the quota";

/// Refuses a task that would take `owner` past its quota, given what it holds without it.
/// `new_task`: the task is being created (else resumed, and only running counts grow).
pub(super) fn admit_task(
    owner: &Owner,
    quota: &Quota,
    held: &OwnerUsage,
    limits: &ResourceLimits,
    new_task: bool,
) -> Result<()> {
    let over = |quota_key: &'static str, would_hold: String, limit: String, remedy: &'static str| {
        Err(Error::QuotaExceeded {
            owner: owner.to_string(),
            quota: quota_key,
            would_hold,
            limit,
            remedy,
        })
    };
    if new_task && let Some(limit) = quota.tasks.filter(|&l| held.tasks + 1 > l) {
        return over(
            "tasks",
            format!("{} tasks", held.tasks + 1),
            limit.to_string(),
            FREE_TASKS,
        );
    }
    if let Some(limit) = quota.running_tasks.filter(|&l| held.running_tasks + 1 > l) {
        return over(
            "running_tasks",
            format!("{} running tasks", held.running_tasks + 1),
            limit.to_string(),
            FREE_RUNNING,
        );
    }
    let memory = held.memory_mb + limits.memory_mb;
    if let Some(limit) = quota.memory_mb.filter(|&l| memory > l) {
        return over(
            "memory_mb",
            format!("{memory} MiB of memory in running tasks' limits"),
            format!("{limit} MiB"),
            FREE_RUNNING,
        );
    }
    let cpus = held.cpus + limits.cpus;
    // A little slack: sums of fractions such as 0.1 are not exact in binary.
    if let Some(limit) = quota.cpus.filter(|&l| cpus > l + 1e-9) {
        return over(
            "cpus",
            format!("{cpus} CPUs in running tasks' limits"),
            limit.to_string(),
            FREE_RUNNING,
        );
    }
    Ok(())
}

/// Refuses a background execution that would take `owner` past its quota, given how many
/// it runs now.
pub(super) fn admit_background(owner: &Owner, quota: &Quota, running: u64) -> Result<()> {
    match quota.background_executions.filter(|&l| running + 1 > l) {
        Some(limit) => Err(Error::QuotaExceeded {
            owner: owner.to_string(),
            quota: "background_executions",
            would_hold: format!("{} background executions running", running + 1),
            limit: limit.to_string(),
            remedy: FREE_BACKGROUND,
        }),
        None => Ok(()),
    }
}

/// Refuses an exposed port that would take `owner` past its quota, given how many it has.
pub(super) fn admit_port(owner: &Owner, quota: &Quota, exposed: u64) -> Result<()> {
    match quota.exposed_ports.filter(|&l| exposed + 1 > l) {
        Some(limit) => Err(Error::QuotaExceeded {
            owner: owner.to_string(),
            quota: "exposed_ports",
            would_hold: format!("{} exposed ports", exposed + 1),
            limit: limit.to_string(),
            remedy: FREE_PORTS,
        }),
        None => Ok(()),
    }
}

/// Refuses a checkpoint image that would take `owner` past its quota.
pub(super) fn admit_checkpoint(owner: &Owner, quota: &Quota, held: &OwnerUsage) -> Result<()> {
    match quota.checkpoint_images.filter(|&l| held.checkpoint_images + 1 > l) {
        Some(limit) => Err(Error::QuotaExceeded {
            owner: owner.to_string(),
            quota: "checkpoint_images",
            would_hold: format!("{} checkpoint images", held.checkpoint_images + 1),
            limit: limit.to_string(),
            remedy: FREE_CHECKPOINTS,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory_mb: u64, cpus: f64) -> ResourceLimits {
        ResourceLimits {
            memory_mb,
            cpus,
            pids: 512,
        }
    }

    fn quota_kind(result: Result<()>) -> Option<&'static str> {
        match result {
            Err(Error::QuotaExceeded { quota, .. }) => Some(quota),
            Err(other) => panic!("not a quota error: {other}"),
            Ok(()) => None,
        }
    }

    #[test]
    fn each_quota_refuses_the_task_that_would_pass_it_and_names_itself() {
        let bob = Owner::new("bob").unwrap();
        let quota = Quota {
            tasks: Some(3),
            running_tasks: Some(2),
            memory_mb: Some(4096),
            cpus: Some(2.0),
            checkpoint_images: Some(1),
            http_sessions: None,
            background_executions: Some(1),
            exposed_ports: Some(2),
        };
        assert_eq!(quota_kind(admit_port(&bob, &quota, 1)), None);
        assert_eq!(quota_kind(admit_port(&bob, &quota, 2)), Some("exposed_ports"));
        assert_eq!(quota_kind(admit_background(&bob, &quota, 0)), None);
        assert_eq!(
            quota_kind(admit_background(&bob, &quota, 1)),
            Some("background_executions")
        );
        let held = OwnerUsage {
            tasks: 2,
            running_tasks: 1,
            memory_mb: 2048,
            cpus: 1.0,
            checkpoint_images: 0,
        };
        assert_eq!(
            quota_kind(admit_task(&bob, &quota, &held, &limits(2048, 1.0), true)),
            None
        );
        let full = OwnerUsage {
            tasks: 3,
            ..held.clone()
        };
        assert_eq!(
            quota_kind(admit_task(&bob, &quota, &full, &limits(64, 0.1), true)),
            Some("tasks")
        );
        // Resuming a task adds no task, only a running one.
        assert_eq!(
            quota_kind(admit_task(&bob, &quota, &full, &limits(64, 0.1), false)),
            None
        );
        let busy = OwnerUsage {
            running_tasks: 2,
            ..held.clone()
        };
        assert_eq!(
            quota_kind(admit_task(&bob, &quota, &busy, &limits(64, 0.1), false)),
            Some("running_tasks")
        );
        assert_eq!(
            quota_kind(admit_task(&bob, &quota, &held, &limits(4096, 0.5), true)),
            Some("memory_mb")
        );
        assert_eq!(
            quota_kind(admit_task(&bob, &quota, &held, &limits(64, 1.5), true)),
            Some("cpus")
        );
        assert_eq!(quota_kind(admit_checkpoint(&bob, &quota, &held)), None);
        let saved = OwnerUsage {
            checkpoint_images: 1,
            ..held
        };
        let error = admit_checkpoint(&bob, &quota, &saved).unwrap_err().to_string();
        assert!(
            error.contains("quotas.checkpoint_images") && error.contains("delete_task"),
            "{error}"
        );
    }

    #[test]
    fn an_unset_quota_is_unlimited() {
        let held = OwnerUsage {
            tasks: 10_000,
            running_tasks: 10_000,
            memory_mb: 1 << 40,
            cpus: 1e6,
            checkpoint_images: 10_000,
        };
        let local = Owner::default();
        assert!(admit_task(&local, &Quota::default(), &held, &limits(1 << 20, 64.0), true).is_ok());
        assert!(admit_checkpoint(&local, &Quota::default(), &held).is_ok());
        assert!(admit_port(&local, &Quota::default(), 10_000).is_ok());
    }
}
