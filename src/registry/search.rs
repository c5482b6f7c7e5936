//! Full-text search across tasks: names and descriptions, decisions and commands, through the
//! FTS5 indexes migration 003 keeps current.

use rusqlite::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::{Registry, Result};
use crate::domain::Owner;

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

impl Registry {
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
    use crate::domain::{Decision, now};
    use crate::registry::executions::tests::finished;
    use crate::registry::tasks::tests::sample_task;
    use pretty_assertions::assert_eq;

    /// With two owners, each sees only its own matches and figures.
    #[test]
    fn search_and_stats_are_per_owner() {
        let reg = Registry::open_in_memory().unwrap();
        let mine = sample_task("login-a");
        reg.insert_task(&mine).unwrap();
        let mut theirs = sample_task("login-b");
        theirs.owner = Owner::new("bob").unwrap();
        reg.insert_task(&theirs).unwrap();
        reg.insert_execution(&finished(&mine.id, "make login", 0, 5), "s-1")
            .unwrap();
        reg.insert_execution(&finished(&theirs.id, "make login", 1, 7), "s-1")
            .unwrap();
        reg.insert_execution(&finished(&theirs.id, "secret login", 1, 9), "s-1")
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
        reg.insert_execution(&finished(&other.id, "grep -r login src/", 0, 5), "s-1")
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
}
