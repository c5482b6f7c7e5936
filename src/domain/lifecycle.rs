//! The task lifecycle as a pure state machine (docs/architecture.md, "Lifecycle"). Every status change goes
//! through `transition`, so an illegal move is refused in one place with a message that names
//! the current status and what to do instead.
//!
//! ```text
//! creating ──ok──▶ running ◀──resume── stopped
//!    │               │  └────stop────────▶ │
//!    └─fail─▶ failed ◀┘ (container died)   │
//!  running|stopped ──complete──▶ completed
//!  stopped|completed|failed ──cleanup──▶ archived
//!  running|stopped|failed ──restore──▶ running   (container recreated from a checkpoint)
//!  any but creating ──delete(confirm)──▶ (purged)
//! ```

use crate::domain::TaskStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The container of a new task is up.
    Started,
    /// Creation failed half-way.
    CreationFailed,
    Stop,
    Resume,
    /// The container died or vanished behind the server's back.
    ContainerDied,
    Complete,
    Cleanup,
    /// Back to a checkpoint: a new container, the workspace reset.
    Restore,
}

impl LifecycleEvent {
    fn verb(self) -> &'static str {
        match self {
            Self::Started => "start",
            Self::CreationFailed => "fail creation of",
            Self::Stop => "stop",
            Self::Resume => "resume",
            Self::ContainerDied => "mark as failed",
            Self::Complete => "complete",
            Self::Cleanup => "clean up",
            Self::Restore => "restore",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {verb} a task that is {from}; {hint}")]
pub struct LifecycleError {
    pub from: TaskStatus,
    pub event: LifecycleEvent,
    pub verb: &'static str,
    pub hint: &'static str,
}

pub fn transition(from: TaskStatus, event: LifecycleEvent) -> Result<TaskStatus, LifecycleError> {
    use LifecycleEvent as E;
    use TaskStatus as S;
    let to = match (from, event) {
        (S::Creating, E::Started) => S::Running,
        (S::Creating, E::CreationFailed) => S::Failed,
        (S::Running, E::Stop) => S::Stopped,
        (S::Stopped, E::Resume) => S::Running,
        (S::Running, E::ContainerDied) => S::Failed,
        (S::Stopped, E::ContainerDied) => S::Failed,
        (S::Running | S::Stopped, E::Complete) => S::Completed,
        (S::Stopped | S::Completed | S::Failed, E::Cleanup) => S::Archived,
        (S::Running | S::Stopped | S::Failed, E::Restore) => S::Running,
        _ => {
            return Err(LifecycleError {
                from,
                event,
                verb: event.verb(),
                hint: hint(from, event),
            });
        }
    };
    Ok(to)
}

/// Deletion is not a status change (the task is purged), but it is refused while the task
/// is still being created, when its container may not be known yet.
pub fn can_delete(status: TaskStatus) -> Result<(), LifecycleError> {
    if status == TaskStatus::Creating {
        return Err(LifecycleError {
            from: status,
            event: LifecycleEvent::Cleanup,
            verb: "delete",
            hint: "wait for creation to finish, then delete it",
        });
    }
    Ok(())
}

fn hint(from: TaskStatus, event: LifecycleEvent) -> &'static str {
    use LifecycleEvent as E;
    use TaskStatus as S;
    match (from, event) {
        (S::Running, E::Resume) => "it is already running; call execute_in_task",
        (S::Stopped, E::Stop) => "it is already stopped; call resume_task to start it again",
        (S::Completed, _) => "it is completed; create a new task to continue the work",
        (S::Archived, _) => "it is archived (its container and workspace are gone); create a new task",
        (S::Failed, _) => "it failed (see get_task_status for the reason); delete it or create a new task",
        (S::Creating, _) => "it is still being created; wait and retry",
        (S::Running, E::Cleanup) => "stop or complete it first",
        _ => "check get_task_status for what is possible now",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleEvent as E;
    use TaskStatus as S;
    use pretty_assertions::assert_eq;

    const EVENTS: [LifecycleEvent; 8] = [
        E::Started,
        E::CreationFailed,
        E::Stop,
        E::Resume,
        E::ContainerDied,
        E::Complete,
        E::Cleanup,
        E::Restore,
    ];

    /// The whole table: every (status, event) pair, legal or not.
    #[test]
    fn every_transition_matches_the_design() {
        let legal = [
            (S::Creating, E::Started, S::Running),
            (S::Creating, E::CreationFailed, S::Failed),
            (S::Running, E::Stop, S::Stopped),
            (S::Stopped, E::Resume, S::Running),
            (S::Running, E::ContainerDied, S::Failed),
            (S::Stopped, E::ContainerDied, S::Failed),
            (S::Running, E::Complete, S::Completed),
            (S::Stopped, E::Complete, S::Completed),
            (S::Stopped, E::Cleanup, S::Archived),
            (S::Completed, E::Cleanup, S::Archived),
            (S::Failed, E::Cleanup, S::Archived),
            (S::Running, E::Restore, S::Running),
            (S::Stopped, E::Restore, S::Running),
            (S::Failed, E::Restore, S::Running),
        ];
        let mut checked = 0;
        for from in S::ALL {
            for event in EVENTS {
                let expected = legal
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} {event:?}"),
                    (Err(err), None) => {
                        assert_eq!(err.from, from);
                        let text = err.to_string();
                        assert!(text.contains(from.as_str()), "{text}");
                    }
                    (got, want) => panic!("{from:?} {event:?}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, S::ALL.len() * EVENTS.len());
    }

    #[test]
    fn illegal_moves_say_what_to_do() {
        let err = transition(S::Stopped, E::Stop).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot stop a task that is stopped; it is already stopped; call resume_task to start it again"
        );
        let err = transition(S::Running, E::Resume).unwrap_err();
        assert!(
            err.to_string().contains(super::super::Tool::ExecuteInTask.as_str()),
            "{err}"
        );
    }

    #[test]
    fn delete_is_refused_only_while_creating() {
        for status in S::ALL {
            assert_eq!(can_delete(status).is_ok(), status != S::Creating, "{status:?}");
        }
    }
}
