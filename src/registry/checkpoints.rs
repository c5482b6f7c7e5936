//! Checkpoint rows (layer 4's index; the manifests under tasks/<id>/checkpoints/ hold the same).

use rusqlite::{OptionalExtension, Row, params};

use super::{Cached, Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::Checkpoint;

const COLUMNS: &str = "id, task_id, seq, label, automatic, git_commit, image_id, created_at";

impl Registry {
    /// Inserts the checkpoint with the task's next sequence number, which it returns. The
    /// number is taken in the same statement, so concurrent checkpoints never share one.
    pub fn insert_checkpoint(&self, c: &Checkpoint) -> Result<i64> {
        Ok(self.conn().query_row_cached(
            "INSERT INTO checkpoints (id, task_id, seq, label, automatic, git_commit, image_id, created_at)
             SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5, ?6, ?7 FROM checkpoints WHERE task_id = ?2
             RETURNING seq",
            params![
                c.id,
                c.task_id,
                c.label,
                c.automatic,
                c.git_commit,
                c.image_id,
                ts_to_sql(&c.created_at)
            ],
            |r| r.get(0),
        )?)
    }

    /// Newest first.
    pub fn list_checkpoints(&self, task_id: &str) -> Result<Vec<Checkpoint>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM checkpoints WHERE task_id = ?1 ORDER BY seq DESC"
        ))?;
        let rows = stmt.query_map([task_id], raw)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(into_checkpoint).collect()
    }

    pub fn get_checkpoint(&self, id: &str) -> Result<Option<Checkpoint>> {
        let row = self
            .conn()
            .query_row_cached(&format!("SELECT {COLUMNS} FROM checkpoints WHERE id = ?1"), [id], raw)
            .optional()?;
        row.map(into_checkpoint).transpose()
    }

    pub fn get_checkpoint_by_seq(&self, task_id: &str, seq: i64) -> Result<Option<Checkpoint>> {
        let row = self
            .conn()
            .query_row_cached(
                &format!("SELECT {COLUMNS} FROM checkpoints WHERE task_id = ?1 AND seq = ?2"),
                params![task_id, seq],
                raw,
            )
            .optional()?;
        row.map(into_checkpoint).transpose()
    }

    pub fn delete_checkpoint(&self, id: &str) -> Result<()> {
        self.conn()
            .execute_cached("DELETE FROM checkpoints WHERE id = ?1", [id])?;
        Ok(())
    }
}

type RawCheckpoint = (
    String,
    String,
    i64,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
    String,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawCheckpoint> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn into_checkpoint(
    (id, task_id, seq, label, automatic, git_commit, image_id, created_at): RawCheckpoint,
) -> Result<Checkpoint> {
    Ok(Checkpoint {
        id,
        task_id,
        seq,
        label,
        automatic,
        git_commit,
        image_id,
        created_at: ts_from_sql("created_at", created_at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{new_checkpoint_id, now};
    use crate::registry::tasks::tests::sample_task;
    use pretty_assertions::assert_eq;

    fn checkpoint(task_id: &str, automatic: bool) -> Checkpoint {
        Checkpoint {
            id: new_checkpoint_id(),
            task_id: task_id.into(),
            seq: 0,
            label: None,
            automatic,
            git_commit: Some("abc".into()),
            image_id: Some("sha256:1".into()),
            created_at: now(),
        }
    }

    #[test]
    fn sequence_numbers_count_per_task_and_lookups_work() {
        let reg = Registry::open_in_memory().unwrap();
        let (a, b) = (sample_task("a"), sample_task("b"));
        reg.insert_task(&a).unwrap();
        reg.insert_task(&b).unwrap();
        let first = checkpoint(&a.id, false);
        assert_eq!(reg.insert_checkpoint(&first).unwrap(), 1);
        assert_eq!(reg.insert_checkpoint(&checkpoint(&a.id, true)).unwrap(), 2);
        assert_eq!(reg.insert_checkpoint(&checkpoint(&b.id, true)).unwrap(), 1);
        let list = reg.list_checkpoints(&a.id).unwrap();
        assert_eq!(list.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(reg.get_checkpoint(&first.id).unwrap().unwrap().seq, 1);
        assert_eq!(reg.get_checkpoint_by_seq(&a.id, 2).unwrap().unwrap().automatic, true);
        reg.delete_checkpoint(&first.id).unwrap();
        assert_eq!(reg.get_checkpoint(&first.id).unwrap(), None);
        // A new checkpoint never reuses a number still in use.
        assert_eq!(reg.insert_checkpoint(&checkpoint(&a.id, false)).unwrap(), 3);
    }
}
