//! Exposed ports (`expose_port`): which container ports of a task are forwarded, and which
//! server's listeners serve them now. See docs/architecture.md, "Ports".

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Owner, TaskStatus};

/// One exposed port, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedPort {
    pub task_id: String,
    /// The port inside the container.
    pub port: u16,
    /// The loopback listener's port on the host (the last one it had).
    pub host_port: Option<u16>,
    /// The authenticated listener's port under `serve --http` (the last one it had).
    pub public_port: Option<u16>,
    /// The host name in that listener's URL.
    pub public_host: Option<String>,
    /// The lease of the server whose listeners serve it; `None`: closed.
    pub server_id: Option<String>,
    pub exposed_at: DateTime<Utc>,
}

/// An exposed port with what its forward needs to know of the task.
#[derive(Debug, Clone, PartialEq)]
pub struct PortOfTask {
    pub exposed: ExposedPort,
    pub owner: Owner,
    pub status: TaskStatus,
}

const COLUMNS: &str = "p.task_id, p.port, p.host_port, p.public_port, p.public_host, p.server_id, p.exposed_at";

type Raw = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
);

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn port_number(column: &'static str, value: i64) -> Result<u16> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p > 0)
        .ok_or(super::RegistryError::Corrupt {
            column,
            value: value.to_string(),
        })
}

fn into_port((task_id, port, host_port, public_port, public_host, server_id, exposed_at): Raw) -> Result<ExposedPort> {
    Ok(ExposedPort {
        task_id,
        port: port_number("exposed_ports.port", port)?,
        host_port: host_port
            .map(|p| port_number("exposed_ports.host_port", p))
            .transpose()?,
        public_port: public_port
            .map(|p| port_number("exposed_ports.public_port", p))
            .transpose()?,
        public_host,
        server_id,
        exposed_at: ts_from_sql("exposed_ports.exposed_at", exposed_at)?,
    })
}

impl Registry {
    /// Records an exposed port; `false` when the task has it exposed already.
    pub fn insert_port(&self, task_id: &str, port: u16, at: &DateTime<Utc>) -> Result<bool> {
        let conn = self.conn();
        let inserted = conn.execute_cached(
            "INSERT OR IGNORE INTO exposed_ports (task_id, port, exposed_at) VALUES (?1, ?2, ?3)",
            params![task_id, port, ts_to_sql(at)],
        )?;
        Ok(inserted == 1)
    }

    /// Forgets an exposed port (its listeners could not be opened for a new expose).
    pub fn remove_port(&self, task_id: &str, port: u16) -> Result<()> {
        self.conn().execute_cached(
            "DELETE FROM exposed_ports WHERE task_id = ?1 AND port = ?2",
            params![task_id, port],
        )?;
        Ok(())
    }

    pub fn get_port(&self, task_id: &str, port: u16) -> Result<Option<ExposedPort>> {
        let conn = self.conn();
        let row = conn
            .query_row_cached(
                &format!("SELECT {COLUMNS} FROM exposed_ports p WHERE p.task_id = ?1 AND p.port = ?2"),
                params![task_id, port],
                raw,
            )
            .optional()?;
        row.map(into_port).transpose()
    }

    /// The task's exposed ports, by port.
    pub fn task_ports(&self, task_id: &str) -> Result<Vec<ExposedPort>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM exposed_ports p WHERE p.task_id = ?1 ORDER BY p.port"
        ))?;
        let rows = stmt
            .query_map(params![task_id], raw)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(into_port).collect()
    }

    /// Every exposed port, with its task's owner and status (what the servers' keepers
    /// compare their listeners with).
    pub fn all_ports(&self) -> Result<Vec<PortOfTask>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, t.owner, t.status FROM exposed_ports p JOIN tasks t ON t.id = p.task_id
             ORDER BY p.task_id, p.port"
        ))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((raw(row)?, row.get::<_, String>(7)?, row.get::<_, String>(8)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(row, owner, status)| {
                Ok(PortOfTask {
                    exposed: into_port(row)?,
                    owner: Owner::new(&owner).map_err(|_| super::RegistryError::Corrupt {
                        column: "tasks.owner",
                        value: owner.clone(),
                    })?,
                    status: status.parse().map_err(|_| super::RegistryError::Corrupt {
                        column: "tasks.status",
                        value: status.clone(),
                    })?,
                })
            })
            .collect()
    }

    /// How many ports the owner has exposed, over all its tasks.
    pub fn owner_exposed_ports(&self, owner: &Owner) -> Result<u64> {
        let conn = self.conn();
        let n: i64 = conn.query_row_cached(
            "SELECT COUNT(*) FROM exposed_ports p JOIN tasks t ON t.id = p.task_id WHERE t.owner = ?1",
            params![owner.as_str()],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Makes `server_id` the server of the port if it is `expected` now (`None`: closed);
    /// `false` when another server took it first.
    pub fn claim_port(&self, task_id: &str, port: u16, expected: Option<&str>, server_id: &str) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE exposed_ports SET server_id = ?4 WHERE task_id = ?1 AND port = ?2 AND server_id IS ?3",
            params![task_id, port, expected, server_id],
        )?;
        Ok(changed == 1)
    }

    /// Records the ports the server's listeners got (while it is the port's server).
    pub fn set_port_listeners(
        &self,
        task_id: &str,
        port: u16,
        server_id: &str,
        host_port: Option<u16>,
        public: Option<(u16, &str)>,
    ) -> Result<bool> {
        let changed = self.conn().execute_cached(
            "UPDATE exposed_ports SET host_port = ?4, public_port = ?5, public_host = ?6
             WHERE task_id = ?1 AND port = ?2 AND server_id = ?3",
            params![
                task_id,
                port,
                server_id,
                host_port,
                public.map(|p| p.0),
                public.map(|p| p.1)
            ],
        )?;
        Ok(changed == 1)
    }

    /// Marks the port closed, if `server_id` serves it (`None`: whoever does).
    pub fn release_port(&self, task_id: &str, port: u16, server_id: Option<&str>) -> Result<()> {
        self.conn().execute_cached(
            "UPDATE exposed_ports SET server_id = NULL
             WHERE task_id = ?1 AND port = ?2 AND (?3 IS NULL OR server_id = ?3)",
            params![task_id, port, server_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    #[test]
    fn a_port_is_claimed_by_one_server_at_a_time_and_goes_with_its_task() {
        let reg = Registry::open_in_memory().unwrap();
        let task = crate::registry::tasks::tests::sample_task("web");
        reg.insert_task(&task).unwrap();
        assert!(reg.insert_port(&task.id, 8000, &now()).unwrap());
        assert!(!reg.insert_port(&task.id, 8000, &now()).unwrap(), "exposed twice");
        assert_eq!(reg.owner_exposed_ports(&task.owner).unwrap(), 1);
        assert!(reg.claim_port(&task.id, 8000, None, "s-1").unwrap());
        assert!(!reg.claim_port(&task.id, 8000, None, "s-2").unwrap(), "s-1 has it");
        assert!(!reg.set_port_listeners(&task.id, 8000, "s-2", Some(1), None).unwrap());
        assert!(
            reg.set_port_listeners(&task.id, 8000, "s-1", Some(40000), Some((40001, "example.org")))
                .unwrap()
        );
        let all = reg.all_ports().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].exposed.host_port, Some(40000));
        assert_eq!(all[0].exposed.public_host.as_deref(), Some("example.org"));
        assert_eq!(all[0].exposed.server_id.as_deref(), Some("s-1"));
        assert!(reg.claim_port(&task.id, 8000, Some("s-1"), "s-2").unwrap(), "s-1 died");
        reg.release_port(&task.id, 8000, Some("s-1")).unwrap();
        assert_eq!(
            reg.get_port(&task.id, 8000).unwrap().unwrap().server_id.as_deref(),
            Some("s-2")
        );
        reg.release_port(&task.id, 8000, None).unwrap();
        assert_eq!(reg.get_port(&task.id, 8000).unwrap().unwrap().server_id, None);
        reg.delete_task(&task.id).unwrap();
        assert!(reg.task_ports(&task.id).unwrap().is_empty());
    }
}
