//! The SQLite task registry shared by every server process on one data dir.
//!
//! WAL mode and a busy timeout let several `taskbox serve` processes read and write at once;
//! writes that read-then-write use `BEGIN IMMEDIATE` so they queue instead of failing, and
//! task rows carry an optimistic `version`. No row is cached in memory (only prepared
//! statements are, `Cached`).

mod attachments;
mod checkpoints;
mod decisions;
mod events;
mod executions;
mod metrics;
mod pool;
mod ports;
mod rebuild;
mod search;
mod stats;
mod tasks;
mod tokens;
mod ui;
mod usage;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

pub use events::indexing_once;
pub use executions::{ExecutionFilter, RunningExecution};
pub use metrics::RegistryCounts;
pub use pool::PoolEntry;
pub use ports::{ExposedPort, PortOfTask};
pub use rebuild::{TaskRecords, TaskSummary};
pub use search::{SearchHit, fts_query as memory_query};
pub use stats::Stats;
pub use tasks::TaskPage;
pub use tokens::TokenRecord;
pub use ui::UiLogin;
pub use usage::OwnerUsage;

const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/001_initial_schema.sql")),
    M::up(include_str!("../../migrations/002_workspaces.sql")),
    M::up(include_str!("../../migrations/003_task_memory.sql")),
    M::up(include_str!("../../migrations/004_stats_aggregates.sql")),
    M::up(include_str!("../../migrations/005_owners_and_tokens.sql")).foreign_key_check(),
    M::up(include_str!("../../migrations/006_recovery.sql")),
    M::up(include_str!("../../migrations/007_background_executions.sql")),
    M::up(include_str!("../../migrations/008_creation_server.sql")),
    M::up(include_str!("../../migrations/009_exposed_ports.sql")),
    M::up(include_str!("../../migrations/010_task_secrets.sql")),
    M::up(include_str!("../../migrations/011_network_allowlist.sql")),
    M::up(include_str!("../../migrations/014_ui_logins.sql")),
    M::up(include_str!("../../migrations/013_task_volumes.sql")),
    // Numbered 012 but applied after 014 and 013: data directories already past them must
    // find the list only appended to (the version is the count of migrations applied).
    M::up(include_str!("../../migrations/012_pool.sql")),
];

/// A new file with mode 0600 (the registry may not import `store`, so this is its own).
fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

/// How many prepared statements a connection keeps (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 256;

/// `execute` and `query_row` through the connection's statement cache: rusqlite's own
/// `Connection::execute` and `query_row` parse the SQL again on every call.
trait Cached {
    fn execute_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, row)
    }
}

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
    #[error("owner {owner} already has a task named '{name}'")]
    NameTaken { owner: String, name: String },
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
        let lock = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| RegistryError::Open(format!("{}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| RegistryError::Open(format!("cannot lock {}: {e}", lock_path.display())))?;
        // 0600 before SQLite opens it: its -wal and -shm files take the database's mode.
        let made = private_file().create(true).truncate(false).write(true).open(path);
        if let Err(e) = made.and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }) {
            return Err(RegistryError::Open(format!("{}: {e}", path.display())));
        }
        let registry = Self::init(Connection::open(path)?);
        let _ = lock.unlock();
        registry
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_handler(Some(wait_for_busy_database))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Foreign keys are off while migrating (the bundled SQLite turns them on by default): a
        // migration that rebuilds a table (005) drops the old one, which with foreign keys on
        // would delete every row that refers to it. Migrations that need it check the keys.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Every statement the registry runs is kept prepared (`Cached`): parsing SQL was the
        // largest part of a command's own CPU time (docs/performance.md). The registry runs
        // fewer distinct statements than this.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// The connection; a poisoned lock only means another thread panicked mid-call, and
    /// SQLite's own transactions keep the data consistent, so carry on with it. Waiting for
    /// another call of this process to finish happens off the async runtime.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                off_the_runtime(|| self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
            }
        }
    }
}

/// Runs a wait where it cannot stall the async runtime (docs/architecture.md, "Blocking
/// work"): on tokio's multi-thread runtime the worker first hands its other tasks to another
/// thread (`block_in_place`), so one session waiting for the registry never holds up the
/// others; on any other thread it just waits.
fn off_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// SQLite's busy handler: another process holds the write lock. Waits with backoff (1, 2, 4,
/// 8, 16 ms, then 50 ms a try) for up to `BUSY_TIMEOUT` in all, off the async runtime.
fn wait_for_busy_database(attempt: i32) -> bool {
    let step = match attempt {
        0..=4 => Duration::from_millis(1 << attempt),
        _ => Duration::from_millis(50),
    };
    let waited = match attempt {
        0..=5 => Duration::from_millis((1 << attempt) - 1),
        _ => Duration::from_millis(31) + Duration::from_millis(50) * (attempt - 5) as u32,
    };
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    off_the_runtime(|| std::thread::sleep(step));
    true
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

    /// One worker thread: while a call waits for another process's write lock, the worker's
    /// other tasks still run (they would stall for the whole wait if it blocked the worker).
    #[test]
    fn waiting_for_a_locked_registry_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let registry = std::sync::Arc::new(Registry::open(&path).unwrap());
        let other_process = Connection::open(&path).unwrap();
        other_process.execute_batch("BEGIN IMMEDIATE").unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            other_process.execute_batch("COMMIT").unwrap();
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ticks = runtime.block_on(async move {
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let counter = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
            // Blocks on the other connection's write lock for about 600 ms.
            let writer = tokio::spawn(async move { registry.revoke_token("t-none") });
            writer.await.unwrap().unwrap();
            ticker.abort();
            ticks.load(std::sync::atomic::Ordering::Relaxed) - before
        });
        holder.join().unwrap();
        assert!(
            ticks >= 20,
            "the runtime stalled while the registry waited: {ticks} ticks"
        );
    }

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
