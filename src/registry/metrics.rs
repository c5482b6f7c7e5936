//! Counts for `/metrics`, over every owner.

use super::{Registry, Result};

/// What the registry holds, counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryCounts {
    pub tasks_by_status: Vec<(String, u64)>,
    pub executions_by_status: Vec<(String, u64)>,
    /// (duration in ms, executions that took it), from the aggregates of migration 004.
    pub execution_durations_ms: Vec<(u64, u64)>,
}

impl Registry {
    pub fn counts(&self) -> Result<RegistryCounts> {
        let conn = self.conn();
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        };
        let tasks_by_status = pairs("SELECT status, COUNT(*) FROM tasks GROUP BY status ORDER BY status")?;
        let executions_by_status = pairs("SELECT status, COUNT(*) FROM executions GROUP BY status ORDER BY status")?;
        let mut stmt = conn.prepare_cached("SELECT ms, n FROM exec_durations ORDER BY ms")?;
        let execution_durations_ms = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RegistryCounts {
            tasks_by_status,
            executions_by_status,
            execution_durations_ms,
        })
    }

    /// Whether a write can start now (a lock taken and given back at once).
    pub fn writable(&self) -> bool {
        let conn = self.conn();
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok()
    }
}
