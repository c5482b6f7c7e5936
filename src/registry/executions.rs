//! Execution rows: one per `execute_in_task` call, inserted when it starts and completed when
//! it ends, so a crash mid-execution still leaves a `running` record behind.

use rusqlite::{Row, params};

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Execution, ExecutionCounts, ExecutionStatus};

const COLUMNS: &str = "id, task_id, command, workdir, user, explanation, status, exit_code, timed_out, \
     stdout_bytes, stderr_bytes, truncated, started_at, finished_at, duration_ms, background";

/// Running executions first (what is going on now), then newest first.
const ORDER: &str = "ORDER BY (status = 'running') DESC, started_at DESC, id DESC";

/// Filters of `task_executions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    pub exit_code: Option<i64>,
    /// Only executions that failed (non-zero exit, timeout, cancelled, error).
    pub failed: bool,
    /// Commands containing this text.
    pub command: Option<String>,
}

/// An SQL condition on an `executions` row: the execution failed.
pub(super) const FAILED: &str = "(status IN ('timed_out', 'cancelled', 'failed', 'interrupted') OR (status = 'finished' AND COALESCE(exit_code, 0) != 0))";

/// A `running` row, with the server that runs it (`None` for rows made before schema 6).
#[derive(Debug, Clone, PartialEq)]
pub struct RunningExecution {
    pub execution: Execution,
    pub server_id: Option<String>,
}

/// Inserts an execution's whole row on `conn` (a new execution, or one a rebuild restores).
pub(super) fn write_execution_row(
    conn: &rusqlite::Connection,
    exec: &Execution,
    server_id: Option<&str>,
) -> Result<()> {
    conn.execute_cached(
        &format!(
            "INSERT INTO executions ({COLUMNS}, server_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        params![
            exec.id,
            exec.task_id,
            exec.command,
            exec.workdir,
            exec.user,
            exec.explanation,
            exec.status.as_str(),
            exec.exit_code,
            exec.timed_out,
            exec.stdout_bytes as i64,
            exec.stderr_bytes as i64,
            exec.truncated,
            ts_to_sql(&exec.started_at),
            exec.finished_at.as_ref().map(ts_to_sql),
            exec.duration_ms.map(|d| d as i64),
            exec.background,
            server_id,
        ],
    )?;
    Ok(())
}

impl Registry {
    /// Inserts an execution run by server `server_id` (its lease tells whether it is alive).
    pub fn insert_execution(&self, exec: &Execution, server_id: &str) -> Result<()> {
        write_execution_row(&self.conn(), exec, Some(server_id))
    }

    pub fn finish_execution(&self, exec: &Execution) -> Result<()> {
        self.complete(exec, false).map(drop)
    }

    /// Foreground executions still `running`, of one task or of all, oldest first, with their
    /// servers. Background ones are left out: they outlive servers, and their status files
    /// say how they ended (recovery kills what this returns).
    pub fn running_executions(&self, task_id: Option<&str>) -> Result<Vec<RunningExecution>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, server_id FROM executions
             WHERE status = 'running' AND background = 0 AND (?1 IS NULL OR task_id = ?1)
             ORDER BY started_at, id"
        ))?;
        let rows = stmt
            .query_map([task_id], |r| {
                Ok((RawExecution::from_row(r)?, r.get::<_, Option<String>>(16)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(raw, server_id)| {
                Ok(RunningExecution {
                    execution: raw.into_execution()?,
                    server_id,
                })
            })
            .collect()
    }

    /// A running foreground execution goes on as a background one (its call stopped waiting
    /// for it: the soft timeout). Returns whether it was still running.
    pub fn make_background(&self, id: &str) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE executions SET background = 1 WHERE id = ?1 AND status = 'running'",
            [id],
        )?;
        Ok(changed == 1)
    }

    /// Records a `running` execution as interrupted; false when it was no longer running (its
    /// own server finished it meanwhile, which wins).
    pub fn interrupt_execution(&self, exec: &Execution) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE executions SET status = 'interrupted', finished_at = ?2, duration_ms = ?3
             WHERE id = ?1 AND status = 'running'",
            params![
                exec.id,
                exec.finished_at.as_ref().map(ts_to_sql),
                exec.duration_ms.map(|d| d as i64),
            ],
        )?;
        Ok(changed == 1)
    }

    /// Completes the execution only while its row is still `running`; returns whether it did.
    /// Several servers may notice the end of one background execution at once: only the one
    /// whose update lands records it.
    pub fn finish_running_execution(&self, exec: &Execution) -> Result<bool> {
        self.complete(exec, true)
    }

    /// Writes how the execution ended; with `only_running`, only while its row still says
    /// `running`. Returns whether a row changed.
    fn complete(&self, exec: &Execution, only_running: bool) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE executions SET status = ?2, exit_code = ?3, timed_out = ?4, stdout_bytes = ?5,
                 stderr_bytes = ?6, truncated = ?7, finished_at = ?8, duration_ms = ?9
             WHERE id = ?1 AND (?10 = 0 OR status = 'running')",
            params![
                exec.id,
                exec.status.as_str(),
                exec.exit_code,
                exec.timed_out,
                exec.stdout_bytes as i64,
                exec.stderr_bytes as i64,
                exec.truncated,
                exec.finished_at.as_ref().map(ts_to_sql),
                exec.duration_ms.map(|d| d as i64),
                only_running,
            ],
        )?;
        Ok(changed == 1)
    }

    pub fn get_execution(&self, id: &str) -> Result<Option<Execution>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM executions WHERE id = ?1"))?;
        let raw = stmt.query_map([id], RawExecution::from_row)?.next().transpose()?;
        raw.map(RawExecution::into_execution).transpose()
    }

    /// Background executions still `running`: of one task, or of every task.
    pub fn running_background(&self, task_id: Option<&str>) -> Result<Vec<Execution>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM executions WHERE status = 'running' AND background = 1
             AND (?1 IS NULL OR task_id = ?1) ORDER BY started_at"
        ))?;
        let raws = stmt
            .query_map([task_id], RawExecution::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawExecution::into_execution).collect()
    }

    /// Background executions the owner's tasks run now, as the registry last recorded them.
    pub fn owner_running_background(&self, owner: &crate::domain::Owner) -> Result<u64> {
        let count: i64 = self.conn().query_row_cached(
            "SELECT COUNT(*) FROM executions e JOIN tasks t ON t.id = e.task_id
             WHERE e.status = 'running' AND e.background = 1 AND t.owner = ?1",
            [owner.as_str()],
            |r| r.get(0),
        )?;
        Ok(count as u64)
    }

    /// The task's executions still `running` (foreground and background), oldest first.
    pub fn task_running_executions(&self, task_id: &str) -> Result<Vec<Execution>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM executions WHERE task_id = ?1 AND status = 'running' ORDER BY started_at LIMIT 100"
        ))?;
        let raws = stmt
            .query_map([task_id], RawExecution::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawExecution::into_execution).collect()
    }

    /// Executions of a task, newest first, filtered; with the number matching the filter.
    pub fn list_executions(
        &self,
        task_id: &str,
        filter: &ExecutionFilter,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Execution>, u64)> {
        let condition = format!(
            "task_id = ?1 AND (?2 IS NULL OR exit_code = ?2) AND (?3 = 0 OR {FAILED})
             AND (?4 IS NULL OR instr(command, ?4) > 0)"
        );
        let conn = self.conn();
        let total: i64 = conn.query_row_cached(
            &format!("SELECT COUNT(*) FROM executions WHERE {condition}"),
            params![task_id, filter.exit_code, filter.failed, filter.command],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM executions WHERE {condition} {ORDER} LIMIT ?5 OFFSET ?6"
        ))?;
        let raws = stmt
            .query_map(
                params![
                    task_id,
                    filter.exit_code,
                    filter.failed,
                    filter.command,
                    limit,
                    offset as i64
                ],
                RawExecution::from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let executions = raws
            .into_iter()
            .map(RawExecution::into_execution)
            .collect::<Result<Vec<_>>>()?;
        Ok((executions, total as u64))
    }

    /// Running first, then newest first.
    pub fn recent_executions(&self, task_id: &str, limit: u32) -> Result<Vec<Execution>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM executions WHERE task_id = ?1 {ORDER} LIMIT ?2"
        ))?;
        let raws = stmt
            .query_map(params![task_id, limit], RawExecution::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawExecution::into_execution).collect()
    }

    /// How many executions the task has had: an index-only count, cheap enough to ask after
    /// every execution (`execution_counts` reads every row for its status).
    pub fn count_executions(&self, task_id: &str) -> Result<u64> {
        let count: i64 =
            self.conn()
                .query_row_cached("SELECT COUNT(*) FROM executions WHERE task_id = ?1", [task_id], |r| {
                    r.get(0)
                })?;
        Ok(count as u64)
    }

    pub fn execution_counts(&self, task_id: &str) -> Result<ExecutionCounts> {
        let (total, failed, running): (i64, i64, i64) = self.conn().query_row_cached(
            "SELECT COUNT(*),
                    COALESCE(SUM(status IN ('timed_out', 'cancelled', 'failed', 'interrupted') OR (status = 'finished' AND exit_code != 0)), 0),
                    COALESCE(SUM(status = 'running'), 0)
             FROM executions WHERE task_id = ?1",
            [task_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(ExecutionCounts {
            total: total as u64,
            failed: failed as u64,
            running: running as u64,
        })
    }
}

struct RawExecution {
    id: String,
    task_id: String,
    command: String,
    workdir: Option<String>,
    user: Option<String>,
    explanation: Option<String>,
    status: String,
    exit_code: Option<i64>,
    timed_out: bool,
    stdout_bytes: i64,
    stderr_bytes: i64,
    truncated: bool,
    started_at: String,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    background: bool,
}

impl RawExecution {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            task_id: r.get(1)?,
            command: r.get(2)?,
            workdir: r.get(3)?,
            user: r.get(4)?,
            explanation: r.get(5)?,
            status: r.get(6)?,
            exit_code: r.get(7)?,
            timed_out: r.get(8)?,
            stdout_bytes: r.get(9)?,
            stderr_bytes: r.get(10)?,
            truncated: r.get(11)?,
            started_at: r.get(12)?,
            finished_at: r.get(13)?,
            duration_ms: r.get(14)?,
            background: r.get(15)?,
        })
    }

    fn into_execution(self) -> Result<Execution> {
        Ok(Execution {
            id: self.id,
            task_id: self.task_id,
            command: self.command,
            workdir: self.workdir,
            user: self.user,
            explanation: self.explanation,
            status: ExecutionStatus::parse(&self.status),
            exit_code: self.exit_code,
            timed_out: self.timed_out,
            stdout_bytes: self.stdout_bytes.max(0) as u64,
            stderr_bytes: self.stderr_bytes.max(0) as u64,
            truncated: self.truncated,
            started_at: ts_from_sql("started_at", self.started_at)?,
            finished_at: self.finished_at.map(|t| ts_from_sql("finished_at", t)).transpose()?,
            duration_ms: self.duration_ms.map(|d| d.max(0) as u64),
            background: self.background,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{new_execution_id, now};
    use crate::registry::tasks::tests::sample_task;
    use pretty_assertions::assert_eq;

    /// A running execution of `command`, to insert in tests.
    pub(crate) fn exec(task_id: &str, command: &str) -> Execution {
        Execution {
            id: new_execution_id(),
            task_id: task_id.into(),
            command: command.into(),
            workdir: None,
            user: None,
            explanation: Some("why".into()),
            status: ExecutionStatus::Running,
            exit_code: None,
            timed_out: false,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            started_at: now(),
            finished_at: None,
            duration_ms: None,
            background: false,
        }
    }

    /// A finished execution with this exit code and duration.
    pub(crate) fn finished(task_id: &str, command: &str, exit: i64, ms: u64) -> Execution {
        Execution {
            status: ExecutionStatus::Finished,
            exit_code: Some(exit),
            finished_at: Some(now()),
            duration_ms: Some(ms),
            ..exec(task_id, command)
        }
    }

    #[test]
    fn insert_finish_list_and_count() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("alpha");
        reg.insert_task(&task).unwrap();

        let mut ok = exec(&task.id, "true");
        reg.insert_execution(&ok, "s-1").unwrap();
        ok.status = ExecutionStatus::Finished;
        ok.exit_code = Some(0);
        ok.finished_at = Some(now());
        ok.duration_ms = Some(5);
        ok.stdout_bytes = 10;
        reg.finish_execution(&ok).unwrap();

        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut bad = exec(&task.id, "false");
        reg.insert_execution(&bad, "s-1").unwrap();
        bad.status = ExecutionStatus::Finished;
        bad.exit_code = Some(1);
        reg.finish_execution(&bad).unwrap();

        std::thread::sleep(std::time::Duration::from_millis(2));
        let running = exec(&task.id, "sleep 9");
        reg.insert_execution(&running, "s-1").unwrap();

        let counts = reg.execution_counts(&task.id).unwrap();
        assert_eq!(reg.count_executions(&task.id).unwrap(), counts.total);
        assert_eq!(
            counts,
            ExecutionCounts {
                total: 3,
                failed: 1,
                running: 1
            }
        );
        // The running one, with its server; interrupting it counts it as failed, once.
        let left = reg.running_executions(Some(&task.id)).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].execution.id.as_str(), left[0].server_id.as_deref()),
            (running.id.as_str(), Some("s-1"))
        );
        assert!(reg.running_executions(Some("t-other")).unwrap().is_empty());
        assert!(reg.interrupt_execution(&running).unwrap());
        assert!(
            !reg.interrupt_execution(&running).unwrap(),
            "only a running row is interrupted"
        );
        assert_eq!(reg.execution_counts(&task.id).unwrap().failed, 2);
        let aggregated: i64 = reg
            .conn()
            .query_row("SELECT failed FROM exec_totals WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(aggregated, 2, "the aggregates count an interrupted execution as failed");
        let recent = reg.recent_executions(&task.id, 2).unwrap();
        assert_eq!(
            recent.iter().map(|e| e.command.as_str()).collect::<Vec<_>>(),
            ["sleep 9", "false"]
        );
        let first = &reg.recent_executions(&task.id, 3).unwrap()[2];
        assert_eq!(first.stdout_bytes, 10);
        assert_eq!(first.duration_ms, Some(5));
    }
}
