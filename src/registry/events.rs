//! The registry's index of task events (the JSONL file under tasks/<id>/ is the record).

use rusqlite::params;

use super::{Registry, Result, ts_to_sql};
use crate::domain::Event;

impl Registry {
    pub fn insert_event(&self, event: &Event) -> Result<()> {
        self.conn().execute(
            "INSERT INTO events (task_id, type, at, data_json) VALUES (?1, ?2, ?3, ?4)",
            params![event.task_id, event.kind, ts_to_sql(&event.at), event.data.to_string()],
        )?;
        Ok(())
    }

    /// Indexes several events in one transaction.
    pub fn insert_events(&self, events: &[Event]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO events (task_id, type, at, data_json) VALUES (?1, ?2, ?3, ?4)")?;
            for event in events {
                stmt.execute(params![
                    event.task_id,
                    event.kind,
                    ts_to_sql(&event.at),
                    event.data.to_string()
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
