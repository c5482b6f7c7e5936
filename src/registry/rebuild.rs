//! Putting a task's records back into an empty or damaged registry from the task files
//! (docs/architecture.md, "Rebuilding the registry"). Rows keep the ids, sequence numbers
//! and times the files hold, so a rebuilt registry answers as the lost one did; the search
//! indexes and statistics aggregates follow through their triggers.

use rusqlite::params;

use super::tasks::{COLUMNS, bind, placeholders};
use super::{Cached, Registry, Result, ts_to_sql};
use crate::domain::{Attachment, Checkpoint, Decision, Event, Execution, Task};

/// Everything the registry holds about one task.
#[derive(Debug, Clone, Default)]
pub struct TaskRecords {
    pub task: Option<Task>,
    pub attachments: Vec<Attachment>,
    pub executions: Vec<Execution>,
    pub checkpoints: Vec<Checkpoint>,
    pub decisions: Vec<Decision>,
    pub events: Vec<Event>,
}

/// Ids of a task's rows, sorted, and its number of indexed events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSummary {
    pub finished_executions: Vec<String>,
    pub checkpoints: Vec<String>,
    pub decisions: Vec<String>,
    pub events: usize,
}

impl TaskRecords {
    /// The same summary of what the files hold.
    pub fn summary(&self) -> TaskSummary {
        let sorted = |mut ids: Vec<String>| {
            ids.sort();
            ids.dedup();
            ids
        };
        TaskSummary {
            finished_executions: sorted(self.executions.iter().map(|e| e.id.clone()).collect()),
            checkpoints: sorted(self.checkpoints.iter().map(|c| c.id.clone()).collect()),
            decisions: sorted(self.decisions.iter().map(|d| d.id.to_string()).collect()),
            events: self.events.len(),
        }
    }
}

impl Registry {
    /// Inserts one task and its records in one transaction, replacing any rows the task
    /// already has.
    pub fn restore_task(&self, records: &TaskRecords) -> Result<()> {
        let Some(task) = &records.task else {
            return Ok(());
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Cascades to the task's executions, attachments, decisions and checkpoints.
        tx.execute_cached("DELETE FROM tasks WHERE id = ?1", [&task.id])?;
        tx.execute_cached("DELETE FROM events WHERE task_id = ?1", [&task.id])?;
        tx.execute_cached(
            &format!("INSERT INTO tasks ({COLUMNS}) VALUES ({})", placeholders(1)),
            rusqlite::params_from_iter(bind(task)),
        )?;
        for a in &records.attachments {
            tx.execute_cached(
                "INSERT INTO attachments (id, task_id, agent, session_id, attached_at, detached_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    a.id,
                    a.task_id,
                    a.agent,
                    a.session_id,
                    ts_to_sql(&a.attached_at),
                    a.detached_at.as_ref().map(ts_to_sql)
                ],
            )?;
        }
        for e in &records.executions {
            super::executions::write_execution_row(&tx, e, None)?;
        }
        for c in &records.checkpoints {
            tx.execute_cached(
                "INSERT OR REPLACE INTO checkpoints (id, task_id, seq, label, automatic, git_commit, image_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.id,
                    c.task_id,
                    c.seq,
                    c.label,
                    c.automatic,
                    c.git_commit,
                    c.image_id,
                    ts_to_sql(&c.created_at)
                ],
            )?;
        }
        for d in &records.decisions {
            tx.execute_cached(
                "INSERT OR REPLACE INTO decisions (id, task_id, decision, rationale, agent, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.id,
                    d.task_id,
                    d.decision,
                    d.rationale,
                    d.agent,
                    ts_to_sql(&d.created_at)
                ],
            )?;
        }
        super::events::index_events(&tx, &records.events)?;
        tx.commit()?;
        Ok(())
    }

    /// What the registry holds about one task, in the shape a rebuild produces, to compare
    /// the two (`taskbox doctor`). Events are counted, not read.
    pub fn task_summary(&self, task_id: &str) -> Result<TaskSummary> {
        let conn = self.conn();
        let ids = |sql: &str| -> Result<Vec<String>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([task_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(rows)
        };
        let finished_executions =
            ids("SELECT id FROM executions WHERE task_id = ?1 AND status != 'running' ORDER BY id")?;
        let checkpoints = ids("SELECT id FROM checkpoints WHERE task_id = ?1 ORDER BY id")?;
        let decisions = ids("SELECT CAST(id AS TEXT) FROM decisions WHERE task_id = ?1 ORDER BY id")?;
        let events: i64 = conn.query_row_cached("SELECT COUNT(*) FROM events WHERE task_id = ?1", [task_id], |r| {
            r.get(0)
        })?;
        Ok(TaskSummary {
            finished_executions,
            checkpoints,
            decisions,
            events: events.max(0) as usize,
        })
    }

    /// Replaces the task's events index with `events` (what its events.jsonl holds).
    pub fn reindex_events(&self, task_id: &str, events: &[Event]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_cached("DELETE FROM events WHERE task_id = ?1", [task_id])?;
        super::events::index_events(&tx, events)?;
        tx.commit()?;
        Ok(())
    }

    /// How many events of the task are indexed.
    pub fn indexed_events(&self, task_id: &str) -> Result<usize> {
        let n: i64 =
            self.conn()
                .query_row_cached("SELECT COUNT(*) FROM events WHERE task_id = ?1", [task_id], |r| {
                    r.get(0)
                })?;
        Ok(n.max(0) as usize)
    }

    /// The ids of every task the registry holds.
    pub fn task_ids(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT id FROM tasks ORDER BY id")?;
        let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// SQLite's own check of the file (`PRAGMA quick_check`): `None` when it is sound, else
    /// what it found.
    pub fn damage(&self) -> Result<Option<String>> {
        let found: String = self.conn().query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        Ok((found != "ok").then_some(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::executions::tests::finished;
    use crate::registry::tasks::tests::sample_task;

    #[test]
    fn a_restored_task_keeps_its_executions_whole_and_replaces_its_old_rows() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("alpha");
        let mut background = finished(&task.id, "npm run dev", 0, 1200);
        background.background = true;
        let records = TaskRecords {
            task: Some(task.clone()),
            executions: vec![background.clone(), finished(&task.id, "make", 2, 30)],
            ..Default::default()
        };
        reg.restore_task(&records).unwrap();
        // A second restore replaces the rows rather than adding to them.
        reg.restore_task(&records).unwrap();
        let restored = reg.get_execution(&background.id).unwrap().unwrap();
        assert!(restored.background, "the background flag survives a rebuild");
        assert_eq!(
            (restored.command, restored.exit_code, restored.duration_ms),
            (background.command, background.exit_code, background.duration_ms)
        );
        assert_eq!(reg.task_summary(&task.id).unwrap().finished_executions.len(), 2);
        assert_eq!(reg.stats(&task.owner, Some(&task.id)).unwrap().executions, 2);
    }
}
