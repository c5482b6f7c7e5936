//! The registry's index of task events (the JSONL file under tasks/<id>/ is the record).

use rusqlite::params;

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Event, Timestamp};

impl Registry {
    pub fn insert_event(&self, event: &Event) -> Result<()> {
        self.conn().execute_cached(
            "INSERT INTO events (task_id, type, at, data_json) VALUES (?1, ?2, ?3, ?4)",
            params![
                event.task_id,
                event.kind.as_str(),
                ts_to_sql(&event.at),
                event.data.to_string()
            ],
        )?;
        Ok(())
    }

    /// Indexes several events in one transaction.
    pub fn insert_events(&self, events: &[Event]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        index_events(&tx, events)?;
        tx.commit()?;
        Ok(())
    }

    /// Events of a task, newest first, with optional type and time filters.
    pub fn list_events(
        &self,
        task_id: &str,
        types: &[String],
        since: Option<&Timestamp>,
        until: Option<&Timestamp>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Event>, u64)> {
        let types_json = serde_json::to_string(types).unwrap_or_else(|_| "[]".into());
        let since = since.map(ts_to_sql);
        let until = until.map(ts_to_sql);
        let filter = "task_id = ?1
             AND (json_array_length(?2) = 0 OR type IN (SELECT value FROM json_each(?2)))
             AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)";
        let conn = self.conn();
        let total: i64 = conn.query_row_cached(
            &format!("SELECT COUNT(*) FROM events WHERE {filter}"),
            params![task_id, types_json, since, until],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT task_id, type, at, data_json FROM events WHERE {filter} ORDER BY id DESC LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = stmt
            .query_map(params![task_id, types_json, since, until, limit, offset as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let events = rows
            .into_iter()
            .map(|(task_id, kind, at, data)| {
                Ok(Event {
                    at: ts_from_sql("at", at)?,
                    task_id,
                    kind: kind.into(),
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((events, total as u64))
    }
}

/// Inserts the events' index rows on `conn` (a transaction of the caller's).
pub(super) fn index_events(conn: &rusqlite::Connection, events: &[Event]) -> Result<()> {
    let mut stmt = conn.prepare_cached("INSERT INTO events (task_id, type, at, data_json) VALUES (?1, ?2, ?3, ?4)")?;
    for event in events {
        stmt.execute(params![
            event.task_id,
            event.kind.as_str(),
            ts_to_sql(&event.at),
            event.data.to_string()
        ])?;
    }
    Ok(())
}
