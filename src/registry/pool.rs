//! The warm pool's entries (migration 012, docs/architecture.md "The warm pool"): reserved
//! (`filling`) by the server that makes one, `ready` once made, and claimed by a creation in
//! the transaction that inserts its task (`usage.rs`), or taken for removal, each at most once
//! whichever server asks.

use rusqlite::{OptionalExtension, Row, params};

use super::{Cached, Registry, Result, ts_to_sql};
use crate::domain::now;

/// One entry as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolEntry {
    /// The id the task that claims it gets (its container, network and workspace are named
    /// after it).
    pub id: String,
    pub image: String,
    pub spec: String,
    /// `filling` or `ready`.
    pub state: String,
    /// The lease of the server that made (or makes) it.
    pub server_id: String,
    pub container_id: Option<String>,
    pub network_name: Option<String>,
    pub shell: Option<String>,
    pub exec_user: Option<String>,
}

impl PoolEntry {
    pub fn is_ready(&self) -> bool {
        self.state == "ready"
    }
}

pub(super) const COLUMNS: &str = "id, image, spec, state, server_id, container_id, network_name, shell, exec_user";

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<PoolEntry> {
    Ok(PoolEntry {
        id: row.get(0)?,
        image: row.get(1)?,
        spec: row.get(2)?,
        state: row.get(3)?,
        server_id: row.get(4)?,
        container_id: row.get(5)?,
        network_name: row.get(6)?,
        shell: row.get(7)?,
        exec_user: row.get(8)?,
    })
}

/// The oldest ready entry of `spec`, deleted: the claim itself, inside the caller's transaction.
pub(super) fn claim_in(tx: &rusqlite::Transaction<'_>, spec: &str) -> Result<Option<PoolEntry>> {
    let entry = tx
        .query_row_cached(
            &format!(
                "SELECT {COLUMNS} FROM pool_entries WHERE spec = ?1 AND state = 'ready' ORDER BY created_at LIMIT 1"
            ),
            [spec],
            from_row,
        )
        .optional()?;
    if let Some(entry) = &entry {
        tx.execute_cached("DELETE FROM pool_entries WHERE id = ?1", [&entry.id])?;
    }
    Ok(entry)
}

impl Registry {
    /// Reserves a place for a new entry of `image` and `spec` when fewer than `size` of them
    /// are ready or being made: counted and inserted in one transaction, so servers refilling
    /// at once never make more than `size`. `false`: the pool is full.
    pub fn reserve_pool_entry(&self, id: &str, image: &str, spec: &str, size: u32, server: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: i64 = tx.query_row_cached(
            "SELECT COUNT(*) FROM pool_entries WHERE image = ?1 AND spec = ?2",
            [image, spec],
            |r| r.get(0),
        )?;
        if held >= i64::from(size) {
            return Ok(false);
        }
        tx.execute_cached(
            "INSERT INTO pool_entries (id, image, spec, state, server_id, created_at)
             VALUES (?1, ?2, ?3, 'filling', ?4, ?5)",
            params![id, image, spec, server, ts_to_sql(&now())],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Marks a reserved entry ready with what was made; `false` when its row is gone (taken
    /// for removal meanwhile): the caller then removes what it made.
    pub fn pool_entry_ready(
        &self,
        id: &str,
        container: &str,
        network: Option<&str>,
        shell: &str,
        exec_user: Option<&str>,
    ) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE pool_entries SET state = 'ready', container_id = ?2, network_name = ?3, shell = ?4,
                    exec_user = ?5, created_at = ?6
             WHERE id = ?1 AND state = 'filling'",
            params![id, container, network, shell, exec_user, ts_to_sql(&now())],
        )?;
        Ok(changed > 0)
    }

    /// Every entry, oldest first.
    pub fn pool_entries(&self) -> Result<Vec<PoolEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM pool_entries ORDER BY created_at"))?;
        let rows = stmt.query_map([], from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Whether an entry with this id is recorded (ready or being made): its Docker objects
    /// and directories are in use.
    pub fn is_pool_entry(&self, id: &str) -> Result<bool> {
        let found: Option<i64> = self
            .conn()
            .query_row_cached("SELECT 1 FROM pool_entries WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// Deletes the entry's row when it is still in `state`, for removing what it holds; `false`
    /// when it is gone or changed (claimed, removed, made ready by another server).
    pub fn take_pool_entry(&self, id: &str, state: &str) -> Result<bool> {
        let deleted = self
            .conn()
            .execute_cached("DELETE FROM pool_entries WHERE id = ?1 AND state = ?2", [id, state])?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tasks::tests::sample_task;

    #[test]
    fn reservations_stop_at_the_size_and_a_ready_entry_is_claimed_once() {
        let registry = Registry::open_in_memory().unwrap();
        assert!(registry.reserve_pool_entry("t-a", "img", "s1", 2, "srv").unwrap());
        assert!(registry.reserve_pool_entry("t-b", "img", "s1", 2, "srv").unwrap());
        assert!(
            !registry.reserve_pool_entry("t-c", "img", "s1", 2, "srv").unwrap(),
            "full"
        );
        // Another spec of the same image has its own places.
        assert!(registry.reserve_pool_entry("t-d", "img", "s2", 2, "srv").unwrap());
        // Filling entries are not claimed.
        let mut task = sample_task("first");
        let claimed = registry
            .insert_task_admitted_from_pool(&mut task, Some("s1"), |_, _| {}, |_| Ok::<(), ()>(()))
            .unwrap()
            .unwrap();
        assert_eq!(claimed, None);
        assert!(
            registry
                .pool_entry_ready("t-a", "c-a", Some("n-a"), "bash", Some("1000:1000"))
                .unwrap()
        );
        assert!(
            !registry.pool_entry_ready("t-a", "c-a", None, "bash", None).unwrap(),
            "once"
        );
        let mut task = sample_task("second");
        let claimed = registry
            .insert_task_admitted_from_pool(
                &mut task,
                Some("s1"),
                |task, entry| task.id = entry.id.clone(),
                |_| Ok::<(), ()>(()),
            )
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                claimed.id.as_str(),
                claimed.container_id.as_deref(),
                claimed.exec_user.as_deref()
            ),
            ("t-a", Some("c-a"), Some("1000:1000"))
        );
        // The task row took the entry's id; the entry is gone, so nobody claims it again.
        assert!(registry.get_task("t-a").unwrap().is_some());
        assert!(!registry.is_pool_entry("t-a").unwrap());
        assert!(registry.is_pool_entry("t-b").unwrap());
        // Taking for removal only succeeds in the state asked for.
        assert!(!registry.take_pool_entry("t-b", "ready").unwrap());
        assert!(registry.take_pool_entry("t-b", "filling").unwrap());
        assert_eq!(
            registry
                .pool_entries()
                .unwrap()
                .iter()
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>(),
            ["t-d"]
        );
    }

    #[test]
    fn a_refused_creation_claims_nothing() {
        let registry = Registry::open_in_memory().unwrap();
        assert!(registry.reserve_pool_entry("t-a", "img", "s1", 1, "srv").unwrap());
        assert!(registry.pool_entry_ready("t-a", "c-a", None, "sh", None).unwrap());
        let mut task = sample_task("refused");
        let refused = registry
            .insert_task_admitted_from_pool(&mut task, Some("s1"), |t, e| t.id = e.id.clone(), |_| Err("quota"))
            .unwrap();
        assert_eq!(refused, Err("quota"));
        assert!(registry.is_pool_entry("t-a").unwrap());
    }
}
