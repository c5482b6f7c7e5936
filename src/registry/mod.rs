//! The SQLite task registry shared by every server process on one data dir.
//!
//! WAL mode and a busy timeout let several `taskbox serve` processes read and write at once;
//! writes that read-then-write use `BEGIN IMMEDIATE` so they queue instead of failing, and
//! task rows carry an optimistic `version`. Nothing here is cached in memory.

mod attachments;
mod checkpoints;
mod decisions;
mod events;
mod executions;
mod search;
mod stats;
mod tasks;
mod tokens;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

pub use executions::{ExecutionCounts, ExecutionFilter};
pub use search::{SearchHit, fts_query as memory_query};
pub use stats::Stats;
pub use tasks::TaskPage;
pub use tokens::TokenRecord;

const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/001_initial_schema.sql")),
    M::up(include_str!("../../migrations/002_workspaces.sql")),
    M::up(include_str!("../../migrations/003_task_memory.sql")),
    M::up(include_str!("../../migrations/004_stats_aggregates.sql")),
    M::up(include_str!("../../migrations/005_owners_and_tokens.sql")).foreign_key_check(),
];

/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot migrate the registry schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("task {task} was changed by another caller (expected version {expected}); read it again and retry")]
    Conflict { task: String, expected: i64 },
    #[error("cannot open the registry: {0}")]
    Open(String),
    #[error("bad value in column {column}: {value}")]
    Corrupt { column: &'static str, value: String },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

pub struct Registry {
    conn: Mutex<Connection>,
}

impl Registry {
    pub fn open(path: &Path) -> Result<Self> {
        // Switching to WAL and migrating take write locks that SQLite's busy handler cannot
        // wait for (a deferred transaction upgrading its lock fails at once), so servers
        // starting together take turns through an exclusive lock on a file beside the db.
        let lock_path = path.with_extension("db.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| RegistryError::Open(format!("{}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| RegistryError::Open(format!("cannot lock {}: {e}", lock_path.display())))?;
        let registry = Self::init(Connection::open(path)?);
        let _ = lock.unlock();
        registry
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Foreign keys are off while migrating (the bundled SQLite turns them on by default): a
        // migration that rebuilds a table (005) drops the old one, which with foreign keys on
        // would delete every row that refers to it. Migrations that need it check the keys.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// The connection; a poisoned lock only means another thread panicked mid-call, and
    /// SQLite's own transactions keep the data consistent, so carry on with it.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) fn ts_to_sql(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn ts_from_sql(column: &'static str, value: String) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| RegistryError::Corrupt { column, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_idempotent() {
        Migrations::from_slice(MIGRATIONS).validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        drop(Registry::open(&path).unwrap());
        let again = Registry::open(&path).unwrap();
        let mode: String = again.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = again.conn().query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
    }

    /// Schema 5 rebuilds the tasks table: rows, their rowids (the search index's keys) and
    /// every row that refers to a task must come through, owned by the local owner.
    #[test]
    fn owners_migration_keeps_tasks_and_what_refers_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        Migrations::from_slice(&MIGRATIONS[..4]).to_latest(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO tasks (id, name, description, status, image, network, workspace, memory_mb, cpus, pids,
                 created_at, updated_at) VALUES
             ('t-1', 'fix-login', 'the login form', 'running', 'i', 'none', '/w', 1, 1.0, 1, '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z');
             INSERT INTO executions (id, task_id, command, status, started_at) VALUES ('e-1', 't-1', 'make test', 'finished', '2024-01-01T00:00:00Z');
             INSERT INTO attachments (task_id, agent, session_id, attached_at) VALUES ('t-1', 'a', 's', '2024-01-01T00:00:00Z');",
        )
        .unwrap();
        drop(conn);
        let reg = Registry::open(&path).unwrap();
        let local = crate::domain::Owner::local();
        let task = reg.find_task(&local, "fix-login").unwrap().unwrap();
        assert_eq!((task.id.as_str(), task.owner.as_str()), ("t-1", "local"));
        assert_eq!(
            reg.search(&local, &memory_query("login").unwrap(), 10).unwrap().len(),
            1
        );
        assert_eq!(reg.search(&local, &memory_query("make").unwrap(), 10).unwrap().len(), 1);
        assert_eq!(reg.active_attachments("t-1").unwrap().len(), 1);
        assert_eq!(reg.stats(&local, None).unwrap().executions, 1);
        // Foreign keys are on again afterwards: deleting the task cascades.
        reg.delete_task("t-1").unwrap();
        let left: i64 = reg
            .conn()
            .query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
