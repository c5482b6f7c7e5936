//! Task rows: insert, look up by id or name, list with filters, optimistic update, purge.

use std::path::PathBuf;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params_from_iter};

use super::{Cached, Registry, RegistryError, Result, ts_from_sql, ts_to_sql};
use crate::domain::{NetworkMode, Owner, ResourceLimits, Task, TaskRepo, TaskStatus, now};

pub(super) const COLUMNS: &str = "id, name, description, status, status_reason, image, container_id, network, \
     network_name, workspace, shell, exec_user, memory_mb, cpus, pids, env_json, created_at, updated_at, version, \
     repo_path, repo_private, branch, base_commit, synced_commit, container_image, forked_from, owner, allow_json, secrets_json, volumes_json";

const COLUMN_COUNT: usize = 30;

/// `?1, ?2, … ?19` starting at `first`.
pub(super) fn placeholders(first: usize) -> String {
    (first..first + COLUMN_COUNT)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The task's values in `COLUMNS` order.
pub(super) fn bind(task: &Task) -> [Value; COLUMN_COUNT] {
    let text = |s: &str| Value::Text(s.to_string());
    let opt = |s: &Option<String>| s.as_deref().map_or(Value::Null, text);
    [
        text(&task.id),
        text(&task.name),
        opt(&task.description),
        text(task.status.as_str()),
        opt(&task.status_reason),
        text(&task.image),
        opt(&task.container_id),
        text(task.network.as_str()),
        opt(&task.network_name),
        text(&task.workspace.to_string_lossy()),
        opt(&task.shell),
        opt(&task.exec_user),
        Value::Integer(task.limits.memory_mb as i64),
        Value::Real(task.limits.cpus),
        Value::Integer(task.limits.pids),
        text(&serde_json::to_string(&task.env).unwrap_or_else(|_| "{}".into())),
        text(&ts_to_sql(&task.created_at)),
        text(&ts_to_sql(&task.updated_at)),
        Value::Integer(task.version),
        task.repo
            .path
            .as_ref()
            .map_or(Value::Null, |p| text(&p.to_string_lossy())),
        Value::Integer(i64::from(task.repo.private)),
        opt(&task.repo.branch),
        opt(&task.repo.base_commit),
        opt(&task.repo.synced_commit),
        opt(&task.container_image),
        opt(&task.forked_from),
        text(task.owner.as_str()),
        if task.allow.is_empty() {
            Value::Null
        } else {
            text(&serde_json::to_string(&task.allow).unwrap_or_else(|_| "[]".into()))
        },
        text(&serde_json::to_string(&task.secrets).unwrap_or_else(|_| "[]".into())),
        text(&serde_json::to_string(&task.volumes).unwrap_or_else(|_| "[]".into())),
    ]
}

/// One page of `list_tasks`, with the total that matches the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub total: u64,
}

impl Registry {
    /// Inserts a new task; `NameTaken` when the owner already has a task of that name (two
    /// servers creating it at once: the second insert fails here).
    pub fn insert_task(&self, task: &Task) -> Result<()> {
        let inserted = self.conn().execute_cached(
            &format!("INSERT INTO tasks ({COLUMNS}) VALUES ({})", placeholders(1)),
            params_from_iter(bind(task)),
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(RegistryError::NameTaken {
                    owner: task.owner.as_str().to_string(),
                    name: task.name.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn get_task(&self, id: &str) -> Result<Option<Task>> {
        self.query_one(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"), id)
    }

    /// Every owner's tasks of a network mode (the egress proxy's listeners follow the
    /// allowlist tasks of all owners).
    pub fn tasks_with_network(&self, network: NetworkMode) -> Result<Vec<Task>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE network = ?1"))?;
        let raws = stmt
            .query_map([network.as_str()], RawTask::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawTask::into_task).collect()
    }

    /// The owner's task of that name (names are unique per owner).
    pub fn get_task_by_name(&self, owner: &Owner, name: &str) -> Result<Option<Task>> {
        self.query_owned(
            &format!("SELECT {COLUMNS} FROM tasks WHERE owner = ?1 AND name = ?2"),
            owner,
            name,
        )
    }

    /// The owner's task with this id, else with this name: tools accept either as `task`.
    /// Another owner's task is not found, exactly like a task that does not exist.
    pub fn find_task(&self, owner: &Owner, id_or_name: &str) -> Result<Option<Task>> {
        let by_id = self.query_owned(
            &format!("SELECT {COLUMNS} FROM tasks WHERE owner = ?1 AND id = ?2"),
            owner,
            id_or_name,
        )?;
        match by_id {
            Some(task) => Ok(Some(task)),
            None => self.get_task_by_name(owner, id_or_name),
        }
    }

    fn query_one(&self, sql: &str, key: &str) -> Result<Option<Task>> {
        let conn = self.conn();
        let raw = conn.query_row_cached(sql, [key], RawTask::from_row).optional()?;
        raw.map(RawTask::into_task).transpose()
    }

    fn query_owned(&self, sql: &str, owner: &Owner, key: &str) -> Result<Option<Task>> {
        let conn = self.conn();
        let raw = conn
            .query_row_cached(sql, [owner.as_str(), key], RawTask::from_row)
            .optional()?;
        raw.map(RawTask::into_task).transpose()
    }

    /// Writes `task` if its `version` is still the stored one; returns it with the new version.
    pub fn update_task(&self, task: &Task) -> Result<Task> {
        let mut updated = task.clone();
        updated.version = task.version + 1;
        updated.updated_at = now();
        // Every column is rewritten (the id and created_at with their own values), in the same
        // order as the insert; the extra last parameter is the version this write expects.
        let mut values = bind(&updated).to_vec();
        values.push(Value::Integer(task.version));
        let changed = self.conn().execute_cached(
            &format!(
                "UPDATE tasks SET ({COLUMNS}) = ({}) WHERE id = ?1 AND version = ?{}",
                placeholders(1),
                COLUMN_COUNT + 1
            ),
            params_from_iter(values),
        )?;
        if changed == 0 {
            return Err(RegistryError::Conflict {
                task: task.id.clone(),
                expected: task.version,
            });
        }
        Ok(updated)
    }

    /// Every owner's tasks, newest first (for the server's own upkeep, never for a session).
    pub fn list_tasks(&self, status: Option<TaskStatus>, limit: u32, offset: u64) -> Result<TaskPage> {
        self.list_tasks_where(None, status, limit, offset)
    }

    /// One owner's tasks, newest first.
    pub fn list_owner_tasks(
        &self,
        owner: &Owner,
        status: Option<TaskStatus>,
        limit: u32,
        offset: u64,
    ) -> Result<TaskPage> {
        self.list_tasks_where(Some(owner), status, limit, offset)
    }

    fn list_tasks_where(
        &self,
        owner: Option<&Owner>,
        status: Option<TaskStatus>,
        limit: u32,
        offset: u64,
    ) -> Result<TaskPage> {
        // One statement per case: `?1 IS NULL OR status = ?1` would keep SQLite from using
        // the indexes, scanning and sorting every task on each call.
        let text = |s: &str| Value::Text(s.to_string());
        let (filter, args): (&str, Vec<rusqlite::types::Value>) = match (owner, status) {
            (Some(owner), Some(status)) => (
                "WHERE owner = ?1 AND status = ?2",
                vec![text(owner.as_str()), text(status.as_str())],
            ),
            (Some(owner), None) => ("WHERE owner = ?1", vec![text(owner.as_str())]),
            (None, Some(status)) => ("WHERE status = ?1", vec![text(status.as_str())]),
            (None, None) => ("", Vec::new()),
        };
        let n = args.len();
        let conn = self.conn();
        let total: i64 = conn.query_row_cached(
            &format!("SELECT COUNT(*) FROM tasks {filter}"),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks {filter} ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
            n + 1,
            n + 2
        ))?;
        let mut values = args;
        values.push(Value::Integer(i64::from(limit)));
        values.push(Value::Integer(offset as i64));
        let raws = stmt
            .query_map(params_from_iter(values.iter()), RawTask::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let tasks = raws.into_iter().map(RawTask::into_task).collect::<Result<Vec<_>>>()?;
        Ok(TaskPage {
            tasks,
            total: total as u64,
        })
    }

    /// Refreshes the lease of a task being created: while its server refreshes it, no other
    /// server takes the creation for a dead one. Does nothing once the task left `creating`,
    /// and leaves `version` alone (the lease is not a change of the task).
    /// `server` is the creating server's lease id, so that others know at once when it died.
    pub fn heartbeat(&self, id: &str, server: &str) -> Result<()> {
        self.conn().execute_cached(
            "UPDATE tasks SET heartbeat_at = ?2, creating_server = ?3 WHERE id = ?1 AND status = 'creating'",
            [id, &ts_to_sql(&now()), server],
        )?;
        Ok(())
    }

    /// When a `creating` task's server last showed it was alive (its last heartbeat, else its
    /// creation time), and which server that is; `None` when there is no such row.
    pub fn creation_lease(&self, id: &str) -> Result<Option<(chrono::DateTime<chrono::Utc>, Option<String>)>> {
        let value: Option<(String, Option<String>)> = self
            .conn()
            .query_row_cached(
                "SELECT COALESCE(heartbeat_at, created_at), creating_server FROM tasks WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        value
            .map(|(at, server)| Ok((ts_from_sql("heartbeat_at", at)?, server)))
            .transpose()
    }

    /// Removes the task and, through the foreign keys, every row that belongs to it.
    pub fn delete_task(&self, id: &str) -> Result<bool> {
        Ok(self.conn().execute_cached("DELETE FROM tasks WHERE id = ?1", [id])? > 0)
    }

    /// Whether every task there is belongs to `owner` (true with no tasks at all): then the
    /// registry-wide aggregates and indexes are the owner's own. Two index lookups.
    pub(super) fn only_owner(&self, owner: &Owner) -> Result<bool> {
        let conn = self.conn();
        let first: Option<String> = conn
            .query_row_cached("SELECT owner FROM tasks ORDER BY owner LIMIT 1", [], |r| r.get(0))
            .optional()?;
        let last: Option<String> = conn
            .query_row_cached("SELECT owner FROM tasks ORDER BY owner DESC LIMIT 1", [], |r| r.get(0))
            .optional()?;
        Ok(match (first, last) {
            (Some(first), Some(last)) => first == owner.as_str() && last == owner.as_str(),
            _ => true,
        })
    }
}

/// Row values as SQLite returns them; converted outside the row callback so that bad data
/// becomes a `Corrupt` error naming the column instead of a generic conversion failure.
struct RawTask {
    id: String,
    name: String,
    description: Option<String>,
    status: String,
    status_reason: Option<String>,
    image: String,
    container_id: Option<String>,
    network: String,
    network_name: Option<String>,
    workspace: String,
    shell: Option<String>,
    exec_user: Option<String>,
    memory_mb: i64,
    cpus: f64,
    pids: i64,
    env_json: String,
    created_at: String,
    updated_at: String,
    version: i64,
    repo_path: Option<String>,
    repo_private: bool,
    branch: Option<String>,
    base_commit: Option<String>,
    synced_commit: Option<String>,
    container_image: Option<String>,
    forked_from: Option<String>,
    owner: String,
    allow_json: Option<String>,
    secrets_json: String,
    volumes_json: String,
}

impl RawTask {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            status: r.get(3)?,
            status_reason: r.get(4)?,
            image: r.get(5)?,
            container_id: r.get(6)?,
            network: r.get(7)?,
            network_name: r.get(8)?,
            workspace: r.get(9)?,
            shell: r.get(10)?,
            exec_user: r.get(11)?,
            memory_mb: r.get(12)?,
            cpus: r.get(13)?,
            pids: r.get(14)?,
            env_json: r.get(15)?,
            created_at: r.get(16)?,
            updated_at: r.get(17)?,
            version: r.get(18)?,
            repo_path: r.get(19)?,
            repo_private: r.get(20)?,
            branch: r.get(21)?,
            base_commit: r.get(22)?,
            synced_commit: r.get(23)?,
            container_image: r.get(24)?,
            forked_from: r.get(25)?,
            owner: r.get(26)?,
            allow_json: r.get(27)?,
            secrets_json: r.get(28)?,
            volumes_json: r.get(29)?,
        })
    }

    fn into_task(self) -> Result<Task> {
        let status = self.status.parse::<TaskStatus>().map_err(|_| RegistryError::Corrupt {
            column: "status",
            value: self.status.clone(),
        })?;
        let network = self
            .network
            .parse::<NetworkMode>()
            .map_err(|_| RegistryError::Corrupt {
                column: "network",
                value: self.network.clone(),
            })?;
        let env = serde_json::from_str(&self.env_json).map_err(|_| RegistryError::Corrupt {
            column: "env_json",
            value: self.env_json.clone(),
        })?;
        let allow = match &self.allow_json {
            None => Vec::new(),
            Some(json) => serde_json::from_str(json).map_err(|_| RegistryError::Corrupt {
                column: "allow_json",
                value: json.clone(),
            })?,
        };
        let secrets = serde_json::from_str(&self.secrets_json).map_err(|_| RegistryError::Corrupt {
            column: "secrets_json",
            value: self.secrets_json.clone(),
        })?;
        let volumes = serde_json::from_str(&self.volumes_json).map_err(|_| RegistryError::Corrupt {
            column: "volumes_json",
            value: self.volumes_json.clone(),
        })?;
        Ok(Task {
            allow,
            secrets,
            volumes,
            id: self.id,
            name: self.name,
            description: self.description,
            status,
            status_reason: self.status_reason,
            image: self.image,
            container_id: self.container_id,
            network,
            network_name: self.network_name,
            workspace: PathBuf::from(self.workspace),
            shell: self.shell,
            exec_user: self.exec_user,
            limits: ResourceLimits {
                memory_mb: self.memory_mb.max(0) as u64,
                cpus: self.cpus,
                pids: self.pids,
            },
            env,
            repo: TaskRepo {
                path: self.repo_path.map(PathBuf::from),
                private: self.repo_private,
                branch: self.branch,
                base_commit: self.base_commit,
                synced_commit: self.synced_commit,
            },
            container_image: self.container_image,
            forked_from: self.forked_from,
            owner: Owner::new(&self.owner).map_err(|_| RegistryError::Corrupt {
                column: "owner",
                value: self.owner.clone(),
            })?,
            created_at: ts_from_sql("created_at", self.created_at)?,
            updated_at: ts_from_sql("updated_at", self.updated_at)?,
            version: self.version,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::new_task_id;
    use pretty_assertions::assert_eq;

    pub(crate) fn sample_task(name: &str) -> Task {
        let at = now();
        Task {
            id: new_task_id(),
            name: name.into(),
            description: Some("a test task".into()),
            status: TaskStatus::Creating,
            status_reason: None,
            image: "taskbox-base".into(),
            container_id: None,
            network: NetworkMode::Egress,
            allow: Vec::new(),
            network_name: None,
            workspace: PathBuf::from("/tmp/ws"),
            shell: None,
            exec_user: Some("agent".into()),
            limits: ResourceLimits {
                memory_mb: 2048,
                cpus: 2.0,
                pids: 512,
            },
            env: [("A".to_string(), "1".to_string())].into(),
            repo: TaskRepo {
                path: Some(PathBuf::from("/src/repo")),
                private: false,
                branch: Some(format!("taskbox/{name}")),
                base_commit: Some("0123abcd".into()),
                synced_commit: None,
            },
            container_image: None,
            forked_from: None,
            created_at: at,
            updated_at: at,
            version: 1,
            owner: Owner::local(),
            secrets: vec!["TOKEN".into()],
            volumes: vec![crate::domain::TaskVolume {
                kind: crate::domain::VolumeKind::Named,
                name: "data".into(),
                volume: "taskbox-0123abcd.local.named-data".into(),
                path: "/data".into(),
            }],
        }
    }

    /// Timestamps round-trip at microsecond precision; align the sample with that.
    fn stored(mut task: Task) -> Task {
        task.created_at = ts_from_sql("t", ts_to_sql(&task.created_at)).unwrap();
        task.updated_at = ts_from_sql("t", ts_to_sql(&task.updated_at)).unwrap();
        task
    }

    #[test]
    fn insert_then_find_by_id_and_name() {
        let reg = Registry::open_in_memory().unwrap();
        let task = stored(sample_task("alpha"));
        reg.insert_task(&task).unwrap();
        assert_eq!(reg.get_task(&task.id).unwrap(), Some(task.clone()));
        let local = Owner::local();
        assert_eq!(reg.find_task(&local, "alpha").unwrap(), Some(task.clone()));
        assert_eq!(reg.find_task(&local, &task.id).unwrap(), Some(task.clone()));
        assert_eq!(reg.find_task(&local, "beta").unwrap(), None);
        // Another owner finds it neither by name nor by id.
        let bob = Owner::new("bob").unwrap();
        assert_eq!(reg.find_task(&bob, "alpha").unwrap(), None);
        assert_eq!(reg.find_task(&bob, &task.id).unwrap(), None);
    }

    #[test]
    fn names_are_unique_per_owner() {
        let reg = Registry::open_in_memory().unwrap();
        reg.insert_task(&sample_task("alpha")).unwrap();
        assert!(reg.insert_task(&sample_task("alpha")).is_err());
        let mut bobs = sample_task("alpha");
        bobs.owner = Owner::new("bob").unwrap();
        reg.insert_task(&bobs).unwrap();
        let bob = Owner::new("bob").unwrap();
        assert_eq!(reg.get_task_by_name(&bob, "alpha").unwrap().unwrap().id, bobs.id);
        let page = reg.list_owner_tasks(&bob, None, 10, 0).unwrap();
        assert_eq!((page.total, page.tasks.len()), (1, 1));
        assert_eq!(reg.list_tasks(None, 10, 0).unwrap().total, 2);
    }

    #[test]
    fn update_bumps_version_and_stale_writes_conflict() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("alpha");
        reg.insert_task(&task).unwrap();

        let mut first = task.clone();
        first.status = TaskStatus::Running;
        let saved = reg.update_task(&first).unwrap();
        assert_eq!(saved.version, 2);
        assert_eq!(reg.get_task(&task.id).unwrap().unwrap().status, TaskStatus::Running);

        // A second writer still holding version 1 must not overwrite the first one's change.
        let mut stale = task.clone();
        stale.status = TaskStatus::Failed;
        let err = reg.update_task(&stale).unwrap_err();
        assert!(matches!(err, RegistryError::Conflict { expected: 1, .. }), "{err}");
        assert_eq!(reg.get_task(&task.id).unwrap().unwrap().status, TaskStatus::Running);
    }

    #[test]
    fn list_filters_pages_and_counts() {
        let reg = Registry::open_in_memory().unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut task = sample_task(&format!("t{i}"));
            if i % 2 == 0 {
                task.status = TaskStatus::Running;
            }
            reg.insert_task(&task).unwrap();
            ids.push(task.id);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let all = reg.list_tasks(None, 2, 0).unwrap();
        assert_eq!(all.total, 5);
        assert_eq!(
            all.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["t4", "t3"]
        );
        let running = reg.list_tasks(Some(TaskStatus::Running), 10, 1).unwrap();
        assert_eq!(running.total, 3);
        assert_eq!(
            running.tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["t2", "t0"]
        );
    }

    #[test]
    fn delete_purges_dependent_rows() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("alpha");
        reg.insert_task(&task).unwrap();
        reg.attach(&task.id, "agent", "session").unwrap();
        assert!(reg.delete_task(&task.id).unwrap());
        assert_eq!(reg.get_task(&task.id).unwrap(), None);
        let left: i64 = reg
            .conn()
            .query_row("SELECT COUNT(*) FROM attachments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        assert!(!reg.delete_task(&task.id).unwrap());
    }
}
