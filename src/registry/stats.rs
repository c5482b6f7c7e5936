//! Statistics over a task's or an owner's executions, checkpoints and decisions; the overall
//! figures come from the aggregates migration 004 keeps current.

use rusqlite::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::executions::FAILED;
use super::{Cached, Registry, Result};
use crate::domain::Owner;

#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Stats {
    /// Tasks per status (overall statistics only).
    pub tasks_by_status: Vec<(String, u64)>,
    pub executions: u64,
    pub failed_executions: u64,
    pub failure_rate: f64,
    pub duration_p50_ms: Option<u64>,
    pub duration_p95_ms: Option<u64>,
    pub checkpoints: u64,
    pub decisions: u64,
    /// (command, times run), most frequent first.
    pub top_commands: Vec<(String, u64)>,
}

impl Registry {
    /// Statistics of one task, or of all the owner's tasks when `task_id` is `None`. While the
    /// owner is the only one with tasks, the overall figures come from the aggregates
    /// migration 004 keeps current; otherwise they are computed over the owner's executions.
    pub fn stats(&self, owner: &Owner, task_id: Option<&str>) -> Result<Stats> {
        match task_id {
            Some(task_id) => self.scoped_stats("task_id = ?1", task_id),
            None if self.only_owner(owner)? => self.overall_stats(),
            None => {
                let mut stats =
                    self.scoped_stats("task_id IN (SELECT id FROM tasks WHERE owner = ?1)", owner.as_str())?;
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(
                    "SELECT status, COUNT(*) FROM tasks WHERE owner = ?1 GROUP BY status ORDER BY status",
                )?;
                stats.tasks_by_status = stmt
                    .query_map([owner.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(stats)
            }
        }
    }

    /// Statistics over the executions, checkpoints and decisions whose rows match `scope`
    /// (an SQL condition on `task_id` with one parameter, `key`).
    fn scoped_stats(&self, scope: &str, key: &str) -> Result<Stats> {
        let conn = self.conn();
        let (executions, failed): (i64, i64) = conn.query_row_cached(
            &format!("SELECT COUNT(*), COALESCE(SUM({FAILED}), 0) FROM executions WHERE {scope}"),
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let timed: i64 = conn.query_row_cached(
            &format!("SELECT COUNT(*) FROM executions WHERE {scope} AND duration_ms IS NOT NULL"),
            [key],
            |r| r.get(0),
        )?;
        let percentile = |p: f64| -> Result<Option<u64>> {
            if timed == 0 {
                return Ok(None);
            }
            let value: i64 = conn.query_row_cached(
                &format!(
                    "SELECT duration_ms FROM executions WHERE {scope} AND duration_ms IS NOT NULL
                     ORDER BY duration_ms LIMIT 1 OFFSET ?2"
                ),
                params![key, rank(timed, p)],
                |r| r.get(0),
            )?;
            Ok(Some(value.max(0) as u64))
        };
        let (p50, p95) = (percentile(0.5)?, percentile(0.95)?);
        let count =
            |sql: &str| -> Result<u64> { Ok(conn.query_row_cached(sql, [key], |r| r.get::<_, i64>(0))? as u64) };
        let checkpoints = count(&format!("SELECT COUNT(*) FROM checkpoints WHERE {scope}"))?;
        let decisions = count(&format!("SELECT COUNT(*) FROM decisions WHERE {scope}"))?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT command, COUNT(*) AS n FROM executions WHERE {scope}
             GROUP BY command ORDER BY n DESC, command LIMIT 5"
        ))?;
        let top_commands = stmt
            .query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Stats {
            tasks_by_status: Vec::new(),
            executions: executions as u64,
            failed_executions: failed as u64,
            failure_rate: rate(failed, executions),
            duration_p50_ms: p50,
            duration_p95_ms: p95,
            checkpoints,
            decisions,
            top_commands,
        })
    }

    fn overall_stats(&self) -> Result<Stats> {
        let conn = self.conn();
        let (executions, failed): (i64, i64) =
            conn.query_row_cached("SELECT total, failed FROM exec_totals WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let timed: i64 = conn.query_row_cached("SELECT COALESCE(SUM(n), 0) FROM exec_durations", [], |r| r.get(0))?;
        let percentile = |p: f64| -> Result<Option<u64>> {
            if timed == 0 {
                return Ok(None);
            }
            // The duration at sorted position k is the first whose running count passes k.
            let value: i64 = conn.query_row_cached(
                "SELECT ms FROM (SELECT ms, SUM(n) OVER (ORDER BY ms) AS seen FROM exec_durations)
                 WHERE seen > ?1 ORDER BY ms LIMIT 1",
                [rank(timed, p)],
                |r| r.get(0),
            )?;
            Ok(Some(value.max(0) as u64))
        };
        let (p50, p95) = (percentile(0.5)?, percentile(0.95)?);
        let count = |sql: &str| -> Result<u64> { Ok(conn.query_row_cached(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        let checkpoints = count("SELECT COUNT(*) FROM checkpoints")?;
        let decisions = count("SELECT COUNT(*) FROM decisions")?;
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        };
        Ok(Stats {
            tasks_by_status: pairs("SELECT status, COUNT(*) FROM tasks GROUP BY status ORDER BY status")?,
            executions: executions as u64,
            failed_executions: failed as u64,
            failure_rate: rate(failed, executions),
            duration_p50_ms: p50,
            duration_p95_ms: p95,
            checkpoints,
            decisions,
            top_commands: pairs("SELECT command, n FROM exec_commands ORDER BY n DESC, command LIMIT 5")?,
        })
    }
}

/// The 0-based position of the p-th percentile among `count` sorted values.
fn rank(count: i64, p: f64) -> i64 {
    ((count - 1) as f64 * p).round() as i64
}

fn rate(failed: i64, total: i64) -> f64 {
    if total == 0 { 0.0 } else { failed as f64 / total as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ExecutionStatus;
    use crate::registry::ExecutionFilter;
    use crate::registry::executions::tests::finished;
    use crate::registry::tasks::tests::sample_task;
    use pretty_assertions::assert_eq;

    #[test]
    fn executions_filter_and_stats_add_up() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("stats");
        reg.insert_task(&task).unwrap();
        for (i, (cmd, exit)) in [("make", 0), ("make", 2), ("make test", 0), ("ls", 0)]
            .iter()
            .enumerate()
        {
            reg.insert_execution(&finished(&task.id, cmd, *exit, (i as u64 + 1) * 10), "s-1")
                .unwrap();
        }
        let (failed, total) = reg
            .list_executions(
                &task.id,
                &ExecutionFilter {
                    failed: true,
                    ..Default::default()
                },
                10,
                0,
            )
            .unwrap();
        assert_eq!((failed.len(), total), (1, 1));
        assert_eq!(failed[0].exit_code, Some(2));
        let filter = ExecutionFilter {
            command: Some("make".into()),
            ..Default::default()
        };
        assert_eq!(reg.list_executions(&task.id, &filter, 2, 0).unwrap().1, 3);
        assert_eq!(reg.list_executions(&task.id, &filter, 2, 0).unwrap().0.len(), 2);

        let stats = reg.stats(&Owner::local(), Some(&task.id)).unwrap();
        assert_eq!(stats.executions, 4);
        assert_eq!(stats.failed_executions, 1);
        assert_eq!(stats.failure_rate, 0.25);
        assert_eq!(stats.duration_p50_ms, Some(30));
        assert_eq!(stats.duration_p95_ms, Some(40));
        assert_eq!(stats.top_commands[0], ("make".to_string(), 2));
        // The aggregates behind the overall figures agree with counting directly, through
        // updates (an execution finishing) and deletes (the task going).
        let overall = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!(overall.tasks_by_status, [("creating".to_string(), 1)]);
        assert_eq!(
            (
                overall.executions,
                overall.failed_executions,
                overall.duration_p50_ms,
                overall.duration_p95_ms
            ),
            (4, 1, Some(30), Some(40))
        );
        assert_eq!(overall.top_commands, stats.top_commands);
        // A finished execution whose exit code could not be read counts as not failed.
        let mut unknown = finished(&task.id, "true", 0, 1);
        unknown.exit_code = None;
        reg.insert_execution(&unknown, "s-1").unwrap();
        reg.finish_execution(&unknown).unwrap();
        let mut running = finished(&task.id, "sleep 1", 0, 0);
        running.status = ExecutionStatus::Running;
        running.exit_code = None;
        running.duration_ms = None;
        reg.insert_execution(&running, "s-1").unwrap();
        running.status = ExecutionStatus::TimedOut;
        running.duration_ms = Some(50);
        reg.finish_execution(&running).unwrap();
        let overall = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!(
            (overall.executions, overall.failed_executions, overall.duration_p95_ms),
            (6, 2, Some(50))
        );
        reg.delete_task(&task.id).unwrap();
        let overall = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!(
            (overall.executions, overall.failed_executions, overall.duration_p50_ms),
            (0, 0, None)
        );
        assert!(overall.top_commands.is_empty());
    }
}
