//! The registry's index of task events (the JSONL file under tasks/<id>/ is the record).
//!
//! Inside `indexing_once` (a tool call), the events a call records are indexed together, in
//! one transaction when the call's work is done, instead of one transaction per write: an
//! execution records eight event lines in four writes (docs/performance.md). A call still
//! running after `LONGEST_WAIT` (a long command, a clone) has what it recorded so far indexed
//! then, and again each `LONGEST_WAIT`, so the dashboard's feed and `taskbox logs -f`, which
//! read the index, show it while it runs.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Event, Timestamp};

tokio::task_local! {
    static DEFERRED: RefCell<Deferred>;
}

/// How long a call's events may wait for the call's end before they are indexed.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// A call's events not indexed yet, indexed when it is dropped: at the end of the call, or
/// when the call is cancelled (its future dropped), so no line of the log misses its row.
struct Deferred {
    registry: Arc<Registry>,
    events: Vec<Event>,
}

impl Deferred {
    fn index(&mut self) {
        let events = std::mem::take(&mut self.events);
        if let Err(e) = self.registry.index_now(&events) {
            // The log is the record; the start's index check re-reads a task whose counts differ.
            tracing::warn!(events = events.len(), error = %e, "cannot index the call's events");
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        self.index();
    }
}

/// Runs `work` with the events it records on `registry` indexed once, together, at its end
/// (or each `LONGEST_WAIT` while it runs longer).
pub async fn indexing_once<F: Future>(registry: Arc<Registry>, work: F) -> F::Output {
    let deferred = Deferred {
        registry,
        events: Vec::new(),
    };
    DEFERRED
        .scope(RefCell::new(deferred), async {
            let mut work = std::pin::pin!(work);
            loop {
                tokio::select! {
                    biased;
                    output = &mut work => return output,
                    () = tokio::time::sleep(LONGEST_WAIT) => DEFERRED.with(|d| d.borrow_mut().index()),
                }
            }
        })
        .await
}

impl Registry {
    /// Indexes an event, or, inside `indexing_once` on this registry, notes it for the end of
    /// the call.
    pub fn insert_event(&self, event: &Event) -> Result<()> {
        self.insert_events(std::slice::from_ref(event))
    }

    /// Indexes several events in one transaction (or notes them, as `insert_event`).
    pub fn insert_events(&self, events: &[Event]) -> Result<()> {
        let deferred = DEFERRED.try_with(|deferred| {
            let mut deferred = deferred.borrow_mut();
            let ours = std::ptr::eq(Arc::as_ptr(&deferred.registry), self);
            if ours {
                deferred.events.extend_from_slice(events);
            }
            ours
        });
        if deferred == Ok(true) {
            return Ok(());
        }
        self.index_now(events)
    }

    fn index_now(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
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

/// Inserts the events' index rows on `conn` (a transaction of the caller's). An event of a task
/// whose row is gone gets none: deleting a task deletes its rows (`ON DELETE CASCADE`), and a
/// call that deleted its task indexes the task's events after the delete.
pub(super) fn index_events(conn: &rusqlite::Connection, events: &[Event]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (task_id, type, at, data_json)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?1)",
    )?;
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

#[cfg(test)]
mod tests {
    use std::future::pending;
    use std::time::Duration;

    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::domain::EventKind;
    use crate::registry::tasks::tests::sample_task;

    fn registry_with_task() -> (Arc<Registry>, String) {
        let registry = Arc::new(Registry::open_in_memory().unwrap());
        let task = sample_task("events");
        registry.insert_task(&task).unwrap();
        (registry, task.id)
    }

    fn indexed(registry: &Registry, task: &str) -> Vec<i64> {
        let (events, _) = registry.list_events(task, &[], None, None, 100, 0).unwrap();
        events.iter().rev().map(|e| e.data["n"].as_i64().unwrap()).collect()
    }

    fn event(task: &str, n: i64) -> Event {
        Event::new(task, EventKind::ToolCall, json!({ "n": n }))
    }

    #[tokio::test]
    async fn a_calls_events_are_indexed_together_at_its_end() {
        let (registry, task) = registry_with_task();
        let other = Arc::new(Registry::open_in_memory().unwrap());
        let other_task = sample_task("other");
        other.insert_task(&other_task).unwrap();
        indexing_once(registry.clone(), async {
            registry.insert_event(&event(&task, 1)).unwrap();
            registry.insert_events(&[event(&task, 2), event(&task, 3)]).unwrap();
            assert_eq!(
                indexed(&registry, &task),
                Vec::<i64>::new(),
                "indexed before the call's end"
            );
            // Another registry is not the call's: its events are indexed at once.
            other.insert_event(&event(&other_task.id, 9)).unwrap();
            assert_eq!(indexed(&other, &other_task.id), [9]);
        })
        .await;
        assert_eq!(indexed(&registry, &task), [1, 2, 3]);
        // Outside a call, at once.
        registry.insert_event(&event(&task, 4)).unwrap();
        assert_eq!(indexed(&registry, &task), [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_long_calls_events_are_indexed_while_it_runs() {
        let (registry, task) = registry_with_task();
        indexing_once(registry.clone(), async {
            registry.insert_event(&event(&task, 1)).unwrap();
            tokio::time::sleep(LONGEST_WAIT + Duration::from_millis(300)).await;
            assert_eq!(indexed(&registry, &task), [1], "not indexed while the call runs");
            registry.insert_event(&event(&task, 2)).unwrap();
            assert_eq!(indexed(&registry, &task), [1]);
        })
        .await;
        assert_eq!(indexed(&registry, &task), [1, 2]);
    }

    #[tokio::test]
    async fn a_call_that_deletes_a_task_still_indexes_its_other_events() {
        let (registry, task) = registry_with_task();
        let deleted = sample_task("deleted");
        registry.insert_task(&deleted).unwrap();
        indexing_once(registry.clone(), async {
            registry.insert_event(&event(&deleted.id, 1)).unwrap();
            registry.insert_event(&event(&task, 2)).unwrap();
            assert!(registry.delete_task(&deleted.id).unwrap());
        })
        .await;
        assert_eq!(indexed(&registry, &task), [2]);
        assert_eq!(indexed(&registry, &deleted.id), Vec::<i64>::new());
    }

    #[tokio::test]
    async fn a_cancelled_calls_events_are_indexed_all_the_same() {
        let (registry, task) = registry_with_task();
        let call = indexing_once(registry.clone(), async {
            registry.insert_event(&event(&task, 1)).unwrap();
            pending::<()>().await;
        });
        // The client gives up on the call: its future is dropped mid-way.
        assert!(tokio::time::timeout(Duration::from_millis(20), call).await.is_err());
        assert_eq!(indexed(&registry, &task), [1]);
    }
}
