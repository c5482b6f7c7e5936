//! What the web dashboard (`transport/ui/`) keeps in the registry: its one-time sign-in codes
//! (by hash; redeeming one deletes it, so it signs in once), and the task's event feed read
//! by row id, which the dashboard's live stream follows.

use rusqlite::{OptionalExtension, params};

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Event, Owner, Timestamp, now};

/// A redeemed sign-in code: whom it signs in, and the token it was asked for with.
#[derive(Debug, Clone, PartialEq)]
pub struct UiLogin {
    pub owner: Owner,
    pub token_id: Option<String>,
}

impl Registry {
    /// Records a sign-in code (its hash); codes past their time are dropped on the way.
    pub fn insert_ui_login(&self, hash: &str, login: &UiLogin, expires_at: &Timestamp) -> Result<()> {
        let conn = self.conn();
        conn.execute_cached("DELETE FROM ui_logins WHERE expires_at < ?1", [ts_to_sql(&now())])?;
        conn.execute_cached(
            "INSERT INTO ui_logins (hash, owner, token_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, login.owner.as_str(), login.token_id, ts_to_sql(expires_at)],
        )?;
        Ok(())
    }

    /// Takes the code whose hash this is: deleted in the same statement that reads it, so of
    /// two servers or requests redeeming it at once, one gets it. `None` when unknown, used
    /// already or expired.
    pub fn take_ui_login(&self, hash: &str) -> Result<Option<UiLogin>> {
        let conn = self.conn();
        let row = conn
            .query_row_cached(
                "DELETE FROM ui_logins WHERE hash = ?1 RETURNING owner, token_id, expires_at",
                [hash],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((owner, token_id, expires_at)) = row else {
            return Ok(None);
        };
        if ts_from_sql("expires_at", expires_at)? < now() {
            return Ok(None);
        }
        let owner = Owner::new(&owner).map_err(|_| super::RegistryError::Corrupt {
            column: "owner",
            value: owner.clone(),
        })?;
        Ok(Some(UiLogin { owner, token_id }))
    }

    /// Up to `limit` events of a task after the index row `after`, oldest first, each with its
    /// row id (the position a live reader resumes from).
    pub fn events_after(&self, task_id: &str, after: i64, limit: u32) -> Result<Vec<(i64, Event)>> {
        self.read_events(
            "SELECT id, task_id, type, at, data_json FROM events WHERE task_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            task_id,
            after,
            limit,
        )
    }

    /// The task's newest `limit` events, newest first, each with its row id.
    pub fn recent_events(&self, task_id: &str, limit: u32) -> Result<Vec<(i64, Event)>> {
        self.read_events(
            "SELECT id, task_id, type, at, data_json FROM events WHERE task_id = ?1 AND id > ?2 ORDER BY id DESC LIMIT ?3",
            task_id,
            0,
            limit,
        )
    }

    fn read_events(&self, sql: &str, task_id: &str, after: i64, limit: u32) -> Result<Vec<(i64, Event)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map(params![task_id, after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, task_id, kind, at, data)| {
                Ok((
                    id,
                    Event {
                        at: ts_from_sql("at", at)?,
                        task_id,
                        kind: kind.into(),
                        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_signs_in_once_and_not_after_it_expires() {
        let reg = Registry::open_in_memory().unwrap();
        let login = UiLogin {
            owner: Owner::new("alice").unwrap(),
            token_id: Some("tok-1".into()),
        };
        let later = now() + chrono::TimeDelta::minutes(5);
        reg.insert_ui_login("h1", &login, &later).unwrap();
        assert_eq!(reg.take_ui_login("h1").unwrap(), Some(login.clone()));
        assert_eq!(reg.take_ui_login("h1").unwrap(), None, "a code signs in once");
        assert_eq!(reg.take_ui_login("unknown").unwrap(), None);
        let earlier = now() - chrono::TimeDelta::seconds(1);
        reg.insert_ui_login("h2", &login, &earlier).unwrap();
        assert_eq!(reg.take_ui_login("h2").unwrap(), None, "an expired code is refused");
        // Expired codes are dropped when the next one is made.
        reg.insert_ui_login("h3", &login, &earlier).unwrap();
        reg.insert_ui_login("h4", &login, &later).unwrap();
        let left: i64 = reg
            .conn()
            .query_row("SELECT COUNT(*) FROM ui_logins", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
    }

    #[test]
    fn events_are_read_after_a_position_and_newest_first() {
        let reg = Registry::open_in_memory().unwrap();
        reg.conn()
            .execute_batch(
                "INSERT INTO tasks (id, name, status, image, network, workspace, memory_mb, cpus, pids, created_at, updated_at)
                 VALUES ('t-1', 'a', 'running', 'i', 'none', '/w', 1, 1.0, 1, '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'),
                        ('t-2', 'b', 'running', 'i', 'none', '/w', 1, 1.0, 1, '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');",
            )
            .unwrap();
        for (task, n) in [("t-1", 1), ("t-2", 2), ("t-1", 3), ("t-1", 4)] {
            let event = Event::new(task, crate::domain::EventKind::ToolCall, serde_json::json!({ "n": n }));
            reg.insert_event(&event).unwrap();
        }
        let n = |events: Vec<(i64, Event)>| {
            events
                .iter()
                .map(|(_, e)| e.data["n"].as_i64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(n(reg.recent_events("t-1", 2).unwrap()), [4, 3]);
        let all = reg.events_after("t-1", 0, 10).unwrap();
        assert_eq!(n(all.clone()), [1, 3, 4]);
        assert_eq!(n(reg.events_after("t-1", all[0].0, 10).unwrap()), [3, 4]);
        assert_eq!(n(reg.events_after("t-1", all[0].0, 1).unwrap()), [3]);
        assert!(reg.events_after("t-1", all[2].0, 10).unwrap().is_empty());
    }
}
