//! What agents ask about past work: event history, executions with filters, decisions,
//! full-text search across tasks, and statistics.

use rusqlite::{OptionalExtension, Row, params};
use schemars::JsonSchema;
use serde::Serialize;

use super::{Registry, Result, ts_from_sql, ts_to_sql};
use crate::domain::{Decision, Event, Owner, Timestamp};

/// Filters of `task_executions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    pub exit_code: Option<i64>,
    /// Only executions that failed (non-zero exit, timeout, cancelled, error).
    pub failed: bool,
    /// Commands containing this text.
    pub command: Option<String>,
}

/// One full-text match.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SearchHit {
    pub task_id: String,
    /// task (name and description), decision, or command.
    pub kind: String,
    /// The matching text, with the matches in [brackets].
    pub snippet: String,
    /// bm25: lower is better.
    pub score: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Stats {
    /// Tasks per status (overall statistics only).
    pub tasks_by_status: Vec<(String, u64)>,
    pub executions: u64,
    pub failed_executions: u64,
    pub failure_rate: f64,
    pub duration_p50_ms: Option<u64>,
    pub duration_p95_ms: Option<u64>,
    pub checkpoints: u64,
    pub decisions: u64,
    /// (command, times run), most frequent first.
    pub top_commands: Vec<(String, u64)>,
}

pub(super) const FAILED: &str =
    "(status IN ('timed_out', 'cancelled', 'failed') OR (status = 'finished' AND COALESCE(exit_code, 0) != 0))";

impl Registry {
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
        let total: i64 = conn.query_row(
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
                    kind,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((events, total as u64))
    }

    pub fn insert_decision(&self, d: &Decision) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO decisions (task_id, decision, rationale, agent, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![d.task_id, d.decision, d.rationale, d.agent, ts_to_sql(&d.created_at)],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Newest first.
    pub fn list_decisions(&self, task_id: &str, limit: u32, offset: u64) -> Result<(Vec<Decision>, u64)> {
        let conn = self.conn();
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM decisions WHERE task_id = ?1", [task_id], |r| {
            r.get(0)
        })?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, task_id, decision, rationale, agent, created_at FROM decisions
             WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt
            .query_map(params![task_id, limit, offset as i64], raw_decision)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let decisions = rows
            .into_iter()
            .map(|(id, task_id, decision, rationale, agent, at)| {
                Ok(Decision {
                    id,
                    task_id,
                    decision,
                    rationale,
                    agent,
                    created_at: ts_from_sql("created_at", at)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((decisions, total as u64))
    }

    /// Full-text matches over the owner's task names and descriptions, decisions and commands,
    /// best first. `query` is an FTS5 expression (see `fts_query`).
    pub fn search(&self, owner: &Owner, query: &str, per_kind: u32) -> Result<Vec<SearchHit>> {
        if !self.only_owner(owner)? {
            return self.search_owned(owner, query, per_kind);
        }
        // Each kind takes its own best matches. Commands, by far the most rows, come newest
        // first: FTS5 walks them in rowid order without scoring every match, where ranking
        // would score them all. Scores of different kinds do not compare; callers rank kinds.
        // Each inner query is FTS5 alone with its LIMIT, so FTS5 picks the top rows itself and
        // snippet() runs on those only; joining inside would make SQLite sort every match,
        // computing a snippet for each.
        let sql = "
            SELECT t.id, 'task', m.snip, m.score FROM
                (SELECT rowid AS rid, snippet(search_tasks, 0, '[', ']', '…', 12) AS snip, bm25(search_tasks) AS score
                 FROM search_tasks WHERE search_tasks MATCH ?1 ORDER BY rank LIMIT ?2) m
                JOIN tasks t ON t.rowid = m.rid
            UNION ALL
            SELECT d.task_id, 'decision', m.snip, m.score FROM
                (SELECT rowid AS rid, snippet(search_decisions, 0, '[', ']', '…', 12) AS snip, bm25(search_decisions) AS score
                 FROM search_decisions WHERE search_decisions MATCH ?1 ORDER BY rank LIMIT ?2) m
                JOIN decisions d ON d.id = m.rid
            UNION ALL
            SELECT e.task_id, 'command', m.snip, 0.0 FROM
                (SELECT rowid AS rid, snippet(search_commands, 0, '[', ']', '…', 12) AS snip
                 FROM search_commands WHERE search_commands MATCH ?1 ORDER BY rowid DESC LIMIT ?2) m
                JOIN executions e ON e.rowid = m.rid
            ORDER BY 4";
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let hits = stmt
            .query_map(params![query, per_kind], search_hit)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(hits)
    }

    /// `search` when other owners have tasks too: each kind is joined to its task and filtered
    /// by owner before its LIMIT, so other owners' matches can neither show nor crowd out this
    /// owner's. Slower than the plain search (snippets of every match are computed), which is
    /// why it is used only when the data dir is shared.
    fn search_owned(&self, owner: &Owner, query: &str, per_kind: u32) -> Result<Vec<SearchHit>> {
        let sql = "
            SELECT * FROM (SELECT t.id, 'task', snippet(search_tasks, 0, '[', ']', '…', 12), bm25(search_tasks) AS score
                FROM search_tasks JOIN tasks t ON t.rowid = search_tasks.rowid
                WHERE search_tasks MATCH ?1 AND t.owner = ?3 ORDER BY score LIMIT ?2)
            UNION ALL
            SELECT * FROM (SELECT d.task_id, 'decision', snippet(search_decisions, 0, '[', ']', '…', 12), bm25(search_decisions) AS score
                FROM search_decisions JOIN decisions d ON d.id = search_decisions.rowid JOIN tasks t ON t.id = d.task_id
                WHERE search_decisions MATCH ?1 AND t.owner = ?3 ORDER BY score LIMIT ?2)
            UNION ALL
            SELECT * FROM (SELECT e.task_id, 'command', snippet(search_commands, 0, '[', ']', '…', 12), 0.0
                FROM search_commands JOIN executions e ON e.rowid = search_commands.rowid JOIN tasks t ON t.id = e.task_id
                WHERE search_commands MATCH ?1 AND t.owner = ?3 ORDER BY search_commands.rowid DESC LIMIT ?2)
            ORDER BY 4";
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let hits = stmt
            .query_map(params![query, per_kind, owner.as_str()], search_hit)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(hits)
    }

    /// Whether every task there is belongs to `owner` (true with no tasks at all): then the
    /// registry-wide aggregates and indexes are the owner's own. Two index lookups.
    fn only_owner(&self, owner: &Owner) -> Result<bool> {
        let conn = self.conn();
        let first: Option<String> = conn
            .query_row("SELECT owner FROM tasks ORDER BY owner LIMIT 1", [], |r| r.get(0))
            .optional()?;
        let last: Option<String> = conn
            .query_row("SELECT owner FROM tasks ORDER BY owner DESC LIMIT 1", [], |r| r.get(0))
            .optional()?;
        Ok(match (first, last) {
            (Some(first), Some(last)) => first == owner.as_str() && last == owner.as_str(),
            _ => true,
        })
    }

    /// Statistics of one task, or of all the owner's tasks when `task_id` is `None`. While the
    /// owner is the only one with tasks, the overall figures come from the aggregates
    /// migration 004 keeps current; otherwise they are computed over the owner's executions.
    pub fn stats(&self, owner: &Owner, task_id: Option<&str>) -> Result<Stats> {
        match task_id {
            Some(task_id) => self.scoped_stats("task_id = ?1", task_id),
            None if self.only_owner(owner)? => self.overall_stats(),
            None => {
                let mut stats =
                    self.scoped_stats("task_id IN (SELECT id FROM tasks WHERE owner = ?1)", owner.as_str())?;
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(
                    "SELECT status, COUNT(*) FROM tasks WHERE owner = ?1 GROUP BY status ORDER BY status",
                )?;
                stats.tasks_by_status = stmt
                    .query_map([owner.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(stats)
            }
        }
    }

    /// Statistics over the executions, checkpoints and decisions whose rows match `scope`
    /// (an SQL condition on `task_id` with one parameter, `key`).
    fn scoped_stats(&self, scope: &str, key: &str) -> Result<Stats> {
        let conn = self.conn();
        let (executions, failed): (i64, i64) = conn.query_row(
            &format!("SELECT COUNT(*), COALESCE(SUM({FAILED}), 0) FROM executions WHERE {scope}"),
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let timed: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM executions WHERE {scope} AND duration_ms IS NOT NULL"),
            [key],
            |r| r.get(0),
        )?;
        let percentile = |p: f64| -> Result<Option<u64>> {
            if timed == 0 {
                return Ok(None);
            }
            let value: i64 = conn.query_row(
                &format!(
                    "SELECT duration_ms FROM executions WHERE {scope} AND duration_ms IS NOT NULL
                     ORDER BY duration_ms LIMIT 1 OFFSET ?2"
                ),
                params![key, rank(timed, p)],
                |r| r.get(0),
            )?;
            Ok(Some(value.max(0) as u64))
        };
        let (p50, p95) = (percentile(0.5)?, percentile(0.95)?);
        let count = |sql: &str| -> Result<u64> { Ok(conn.query_row(sql, [key], |r| r.get::<_, i64>(0))? as u64) };
        let checkpoints = count(&format!("SELECT COUNT(*) FROM checkpoints WHERE {scope}"))?;
        let decisions = count(&format!("SELECT COUNT(*) FROM decisions WHERE {scope}"))?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT command, COUNT(*) AS n FROM executions WHERE {scope}
             GROUP BY command ORDER BY n DESC, command LIMIT 5"
        ))?;
        let top_commands = stmt
            .query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Stats {
            tasks_by_status: Vec::new(),
            executions: executions as u64,
            failed_executions: failed as u64,
            failure_rate: rate(failed, executions),
            duration_p50_ms: p50,
            duration_p95_ms: p95,
            checkpoints,
            decisions,
            top_commands,
        })
    }

    fn overall_stats(&self) -> Result<Stats> {
        let conn = self.conn();
        let (executions, failed): (i64, i64) =
            conn.query_row("SELECT total, failed FROM exec_totals WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let timed: i64 = conn.query_row("SELECT COALESCE(SUM(n), 0) FROM exec_durations", [], |r| r.get(0))?;
        let percentile = |p: f64| -> Result<Option<u64>> {
            if timed == 0 {
                return Ok(None);
            }
            // The duration at sorted position k is the first whose running count passes k.
            let value: i64 = conn.query_row(
                "SELECT ms FROM (SELECT ms, SUM(n) OVER (ORDER BY ms) AS seen FROM exec_durations)
                 WHERE seen > ?1 ORDER BY ms LIMIT 1",
                [rank(timed, p)],
                |r| r.get(0),
            )?;
            Ok(Some(value.max(0) as u64))
        };
        let (p50, p95) = (percentile(0.5)?, percentile(0.95)?);
        let count = |sql: &str| -> Result<u64> { Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        let checkpoints = count("SELECT COUNT(*) FROM checkpoints")?;
        let decisions = count("SELECT COUNT(*) FROM decisions")?;
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        };
        Ok(Stats {
            tasks_by_status: pairs("SELECT status, COUNT(*) FROM tasks GROUP BY status ORDER BY status")?,
            executions: executions as u64,
            failed_executions: failed as u64,
            failure_rate: rate(failed, executions),
            duration_p50_ms: p50,
            duration_p95_ms: p95,
            checkpoints,
            decisions,
            top_commands: pairs("SELECT command, n FROM exec_commands ORDER BY n DESC, command LIMIT 5")?,
        })
    }
}

/// The 0-based position of the p-th percentile among `count` sorted values.
fn rank(count: i64, p: f64) -> i64 {
    ((count - 1) as f64 * p).round() as i64
}

fn rate(failed: i64, total: i64) -> f64 {
    if total == 0 { 0.0 } else { failed as f64 / total as f64 }
}

type RawDecision = (i64, String, String, Option<String>, Option<String>, String);

fn raw_decision(r: &Row<'_>) -> rusqlite::Result<RawDecision> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

/// Turns free text into an FTS5 query: every word must match, the last one also as the start
/// of a word (as someone typing would expect). Only the last is a prefix query: FTS5 answers a
/// prefix by merging the doclists of every word it starts, which for common words over
/// millions of commands was the slowest part of a search. Quoting each word keeps FTS5
/// operators and punctuation in the input from being parsed.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let last = words.len().checked_sub(1)?;
    let terms: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"{w}\"{}", if i == last { "*" } else { "" }))
        .collect();
    Some(terms.join(" "))
}

/// A row of the search queries: task id, kind, snippet, score.
fn search_hit(row: &rusqlite::Row<'_>) -> rusqlite::Result<SearchHit> {
    Ok(SearchHit {
        task_id: row.get(0)?,
        kind: row.get(1)?,
        snippet: row.get(2)?,
        score: row.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Execution, ExecutionStatus, now};
    use crate::registry::executions::tests::exec;
    use crate::registry::tasks::tests::sample_task;
    use pretty_assertions::assert_eq;

    /// A finished execution with this exit code and duration.
    fn execution(task_id: &str, command: &str, exit: i64, ms: u64) -> Execution {
        Execution {
            status: ExecutionStatus::Finished,
            exit_code: Some(exit),
            finished_at: Some(now()),
            duration_ms: Some(ms),
            ..exec(task_id, command)
        }
    }

    /// With two owners, each sees only its own matches and figures.
    #[test]
    fn search_and_stats_are_per_owner() {
        let reg = Registry::open_in_memory().unwrap();
        let mine = sample_task("login-a");
        reg.insert_task(&mine).unwrap();
        let mut theirs = sample_task("login-b");
        theirs.owner = Owner::new("bob").unwrap();
        reg.insert_task(&theirs).unwrap();
        reg.insert_execution(&execution(&mine.id, "make login", 0, 5)).unwrap();
        reg.insert_execution(&execution(&theirs.id, "make login", 1, 7))
            .unwrap();
        reg.insert_execution(&execution(&theirs.id, "secret login", 1, 9))
            .unwrap();
        let bob = Owner::new("bob").unwrap();
        for (owner, task) in [(Owner::local(), &mine), (bob.clone(), &theirs)] {
            let hits = reg.search(&owner, &fts_query("login").unwrap(), 10).unwrap();
            assert!(!hits.is_empty());
            assert!(hits.iter().all(|h| h.task_id == task.id), "{hits:?}");
        }
        let local = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!((local.executions, local.failed_executions), (1, 0));
        assert_eq!(local.top_commands, vec![("make login".to_string(), 1)]);
        assert_eq!(local.tasks_by_status, vec![("creating".to_string(), 1)]);
        let bobs = reg.stats(&bob, None).unwrap();
        assert_eq!((bobs.executions, bobs.failed_executions), (2, 2));
        assert_eq!(bobs.duration_p95_ms, Some(9));
    }

    #[test]
    fn search_ranks_names_and_finds_decisions_and_commands_with_snippets() {
        let reg = Registry::open_in_memory().unwrap();
        let mut login = sample_task("fix-login");
        login.description = Some("The login form rejects valid passwords".into());
        reg.insert_task(&login).unwrap();
        let mut other = sample_task("docs");
        other.description = Some("Write the user guide".into());
        reg.insert_task(&other).unwrap();
        reg.insert_execution(&execution(&other.id, "grep -r login src/", 0, 5))
            .unwrap();
        reg.insert_decision(&Decision {
            id: 0,
            task_id: other.id.clone(),
            decision: "Document the login flow last".into(),
            rationale: Some("it is changing".into()),
            agent: None,
            created_at: now(),
        })
        .unwrap();

        let hits = reg.search(&Owner::local(), &fts_query("login").unwrap(), 10).unwrap();
        let summary: Vec<(&str, &str)> = hits.iter().map(|h| (h.task_id.as_str(), h.kind.as_str())).collect();
        assert_eq!(
            summary[0],
            (login.id.as_str(), "task"),
            "the task named after it ranks first"
        );
        assert!(summary.contains(&(other.id.as_str(), "decision")));
        assert!(summary.contains(&(other.id.as_str(), "command")));
        assert!(hits[0].snippet.contains("[login]"), "{}", hits[0].snippet);
        // Prefixes match; FTS5 syntax in the input is harmless.
        assert_eq!(
            reg.search(&Owner::local(), &fts_query("passw").unwrap(), 10)
                .unwrap()
                .len(),
            1
        );
        assert!(
            reg.search(&Owner::local(), &fts_query("NOT \"x\" OR (").unwrap(), 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(fts_query("  --  "), None);
        assert_eq!(
            fts_query("cargo test pars").as_deref(),
            Some("\"cargo\" \"test\" \"pars\"*")
        );
        // Deleting a task takes its text out of the index.
        reg.delete_task(&other.id).unwrap();
        let hits = reg.search(&Owner::local(), &fts_query("login").unwrap(), 10).unwrap();
        assert!(hits.iter().all(|h| h.task_id == login.id));
    }

    #[test]
    fn executions_filter_and_stats_add_up() {
        let reg = Registry::open_in_memory().unwrap();
        let task = sample_task("stats");
        reg.insert_task(&task).unwrap();
        for (i, (cmd, exit)) in [("make", 0), ("make", 2), ("make test", 0), ("ls", 0)]
            .iter()
            .enumerate()
        {
            reg.insert_execution(&execution(&task.id, cmd, *exit, (i as u64 + 1) * 10))
                .unwrap();
        }
        let (failed, total) = reg
            .list_executions(
                &task.id,
                &ExecutionFilter {
                    failed: true,
                    ..Default::default()
                },
                10,
                0,
            )
            .unwrap();
        assert_eq!((failed.len(), total), (1, 1));
        assert_eq!(failed[0].exit_code, Some(2));
        let filter = ExecutionFilter {
            command: Some("make".into()),
            ..Default::default()
        };
        assert_eq!(reg.list_executions(&task.id, &filter, 2, 0).unwrap().1, 3);
        assert_eq!(reg.list_executions(&task.id, &filter, 2, 0).unwrap().0.len(), 2);

        let stats = reg.stats(&Owner::local(), Some(&task.id)).unwrap();
        assert_eq!(stats.executions, 4);
        assert_eq!(stats.failed_executions, 1);
        assert_eq!(stats.failure_rate, 0.25);
        assert_eq!(stats.duration_p50_ms, Some(30));
        assert_eq!(stats.duration_p95_ms, Some(40));
        assert_eq!(stats.top_commands[0], ("make".to_string(), 2));
        // The aggregates behind the overall figures agree with counting directly, through
        // updates (an execution finishing) and deletes (the task going).
        let overall = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!(overall.tasks_by_status, [("creating".to_string(), 1)]);
        assert_eq!(
            (
                overall.executions,
                overall.failed_executions,
                overall.duration_p50_ms,
                overall.duration_p95_ms
            ),
            (4, 1, Some(30), Some(40))
        );
        assert_eq!(overall.top_commands, stats.top_commands);
        // A finished execution whose exit code could not be read counts as not failed.
        let mut unknown = execution(&task.id, "true", 0, 1);
        unknown.exit_code = None;
        reg.insert_execution(&unknown).unwrap();
        reg.finish_execution(&unknown).unwrap();
        let mut running = execution(&task.id, "sleep 1", 0, 0);
        running.status = ExecutionStatus::Running;
        running.exit_code = None;
        running.duration_ms = None;
        reg.insert_execution(&running).unwrap();
        running.status = ExecutionStatus::TimedOut;
        running.duration_ms = Some(50);
        reg.finish_execution(&running).unwrap();
        let overall = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!(
            (overall.executions, overall.failed_executions, overall.duration_p95_ms),
            (6, 2, Some(50))
        );
        reg.delete_task(&task.id).unwrap();
        let overall = reg.stats(&Owner::local(), None).unwrap();
        assert_eq!(
            (overall.executions, overall.failed_executions, overall.duration_p50_ms),
            (0, 0, None)
        );
        assert!(overall.top_commands.is_empty());
    }
}
