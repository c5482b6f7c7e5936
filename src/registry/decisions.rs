//! Decisions recorded with `record_decision`, as the registry indexes them (the record itself
//! is `decisions.md` in the task directory); FTS5 indexes their text through triggers.

use rusqlite::{Row, params};

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::Decision;

impl Registry {
    pub fn insert_decision(&self, d: &Decision) -> Result<i64> {
        let conn = self.conn();
        conn.execute_cached(
            "INSERT INTO decisions (task_id, decision, rationale, agent, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![d.task_id, d.decision, d.rationale, d.agent, ts_to_sql(&d.created_at)],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Newest first.
    pub fn list_decisions(&self, task_id: &str, limit: u32, offset: u64) -> Result<(Vec<Decision>, u64)> {
        let conn = self.conn();
        let total: i64 =
            conn.query_row_cached("SELECT COUNT(*) FROM decisions WHERE task_id = ?1", [task_id], |r| {
                r.get(0)
            })?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, task_id, decision, rationale, agent, created_at FROM decisions
             WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt
            .query_map(params![task_id, limit, offset as i64], raw_decision)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let decisions = rows
            .into_iter()
            .map(|(id, task_id, decision, rationale, agent, at)| {
                Ok(Decision {
                    id,
                    task_id,
                    decision,
                    rationale,
                    agent,
                    created_at: ts_from_sql("created_at", at)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((decisions, total as u64))
    }
}

type RawDecision = (i64, String, String, Option<String>, Option<String>, String);

fn raw_decision(r: &Row<'_>) -> rusqlite::Result<RawDecision> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}
