//! Attachments: which agents, from which MCP sessions, are working in a task.

use rusqlite::{Row, params};

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Attachment, now};

impl Registry {
    /// Records an attachment; attaching again from the same session and agent is a no-op
    /// that returns the existing row.
    pub fn attach(&self, task_id: &str, agent: &str, session_id: &str) -> Result<Attachment> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, task_id, agent, session_id, attached_at, detached_at FROM attachments
                 WHERE task_id = ?1 AND agent = ?2 AND session_id = ?3 AND detached_at IS NULL",
            )?;
            let mut rows = stmt.query_map(params![task_id, agent, session_id], raw)?;
            rows.next().transpose()?
        };
        let row = match existing {
            Some(row) => row,
            None => {
                let at = ts_to_sql(&now());
                tx.execute_cached(
                    "INSERT INTO attachments (task_id, agent, session_id, attached_at) VALUES (?1, ?2, ?3, ?4)",
                    params![task_id, agent, session_id, at],
                )?;
                (
                    tx.last_insert_rowid(),
                    task_id.into(),
                    agent.into(),
                    session_id.into(),
                    at,
                    None,
                )
            }
        };
        tx.commit()?;
        into_attachment(row)
    }

    /// Ends the open attachments of `task_id` that match `agent` (any agent when `None`)
    /// and `session_id`; returns the attachments that were ended.
    pub fn detach(&self, task_id: &str, agent: Option<&str>, session_id: &str) -> Result<Vec<Attachment>> {
        let at = ts_to_sql(&now());
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "UPDATE attachments SET detached_at = ?4
             WHERE task_id = ?1 AND (?2 IS NULL OR agent = ?2) AND session_id = ?3 AND detached_at IS NULL
             RETURNING id, task_id, agent, session_id, attached_at, detached_at",
        )?;
        let rows = stmt
            .query_map(params![task_id, agent, session_id, at], raw)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(into_attachment).collect()
    }

    /// Ends every open attachment of an MCP session, on any task.
    pub fn detach_session(&self, session_id: &str) -> Result<Vec<Attachment>> {
        let at = ts_to_sql(&now());
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "UPDATE attachments SET detached_at = ?2 WHERE session_id = ?1 AND detached_at IS NULL
             RETURNING id, task_id, agent, session_id, attached_at, detached_at",
        )?;
        let rows = stmt
            .query_map(params![session_id, at], raw)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(into_attachment).collect()
    }

    pub fn active_attachments(&self, task_id: &str) -> Result<Vec<Attachment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, task_id, agent, session_id, attached_at, detached_at FROM attachments
             WHERE task_id = ?1 AND detached_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([task_id], raw)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(into_attachment).collect()
    }
}

type RawAttachment = (i64, String, String, String, String, Option<String>);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawAttachment> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn into_attachment((id, task_id, agent, session_id, attached_at, detached_at): RawAttachment) -> Result<Attachment> {
    Ok(Attachment {
        id,
        task_id,
        agent,
        session_id,
        attached_at: ts_from_sql("attached_at", attached_at)?,
        detached_at: detached_at.map(|t| ts_from_sql("detached_at", t)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tasks::tests::sample_task;

    #[test]
    fn attach_is_idempotent_and_detach_ends_only_matching_rows() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("alpha");
        reg.insert_task(&task).unwrap();
        let a = reg.attach(&task.id, "claude", "s1").unwrap();
        assert_eq!(reg.attach(&task.id, "claude", "s1").unwrap().id, a.id);
        reg.attach(&task.id, "opencode", "s2").unwrap();
        assert_eq!(reg.active_attachments(&task.id).unwrap().len(), 2);

        assert!(reg.detach(&task.id, Some("claude"), "s2").unwrap().is_empty());
        let other = sample_task("beta");
        reg.insert_task(&other).unwrap();
        reg.attach(&other.id, "opencode", "s2").unwrap();
        let ended = reg.detach(&task.id, None, "s1").unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].agent, "claude");
        assert!(ended[0].detached_at.is_some());
        let left = reg.active_attachments(&task.id).unwrap();
        assert_eq!(left.iter().map(|a| a.agent.as_str()).collect::<Vec<_>>(), ["opencode"]);
        // A session that ends leaves no attachment behind, on any task.
        assert_eq!(reg.detach_session("s2").unwrap().len(), 2);
        assert!(reg.active_attachments(&task.id).unwrap().is_empty());
        assert!(reg.active_attachments(&other.id).unwrap().is_empty());
    }
}
