//! Task memory: the history, executions and decisions of a task, search across tasks, and
//! statistics — what an agent picking up work, or a human reviewing it, asks about.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use crate::domain::{Decision, Event, EventKind, Owner, Task, Timestamp, now};
use crate::error::{Error, Result};
use crate::registry::memory_query;
use crate::registry::{ExecutionFilter, SearchHit, Stats};

/// Most rows a listing returns at once.
pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// One task in `find_task`'s answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FoundTask {
    pub task: Task,
    /// bm25 score of its best match (lower is better; compare only within a kind).
    pub score: f64,
    /// Up to three matches: kind (task, decision, command) and snippet.
    pub matches: Vec<SearchHit>,
}

impl TaskService {
    pub fn history(
        &self,
        task: &str,
        types: &[String],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        limit: u32,
        offset: u64,
    ) -> Result<Page<Event>> {
        let task = self.resolve(Some(task))?;
        let limit = check_limit(limit)?;
        let (items, total) =
            self.registry
                .list_events(&task.id, types, since.as_ref(), until.as_ref(), limit, offset)?;
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }

    /// Running executions first, then newest first; background executions that ended since
    /// they were last looked at are recorded first.
    pub async fn executions(
        &self,
        task: &str,
        filter: &ExecutionFilter,
        limit: u32,
        offset: u64,
    ) -> Result<Page<super::ListedExecution>> {
        let task = self.resolve(Some(task))?;
        self.settle_background(Some(&task.id)).await;
        let limit = check_limit(limit)?;
        let (items, total) = self.registry.list_executions(&task.id, filter, limit, offset)?;
        Ok(Page {
            items: self.listed(&task, items),
            total,
            limit,
            offset,
        })
    }

    /// Records a decision in the registry, `decisions.md` and the event log.
    pub fn record_decision(
        &self,
        task: &str,
        decision: &str,
        rationale: Option<&str>,
        agent: &str,
    ) -> Result<Decision> {
        let task = self.resolve(Some(task))?;
        if decision.trim().is_empty() {
            return Err(Error::invalid("decision", "it is empty; say what was decided"));
        }
        let mut record = Decision {
            id: 0,
            task_id: task.id.clone(),
            decision: decision.trim().to_string(),
            rationale: rationale.map(str::trim).filter(|r| !r.is_empty()).map(String::from),
            agent: Some(agent.to_string()),
            created_at: now(),
        };
        record.id = self.registry.insert_decision(&record)?;
        self.store.append_decision(&record)?;
        self.record(Event::new(
            &task.id,
            EventKind::DecisionRecorded,
            serde_json::json!(record),
        ))?;
        Ok(record)
    }

    pub fn decisions(&self, task: &str, limit: u32, offset: u64) -> Result<Page<Decision>> {
        let task = self.resolve(Some(task))?;
        let limit = check_limit(limit)?;
        let (items, total) = self.registry.list_decisions(&task.id, limit, offset)?;
        Ok(Page {
            items,
            total,
            limit,
            offset,
        })
    }

    /// Tasks whose name, description, decisions or commands match every word of `query`,
    /// best first.
    pub fn find(&self, owner: &Owner, query: &str, limit: u32) -> Result<Vec<FoundTask>> {
        let fts = memory_query(query).ok_or_else(|| {
            Error::invalid(
                "query",
                "it has no words to search for; pass words from a task's name, description, decisions or commands",
            )
        })?;
        let limit = check_limit(limit)?;
        // bm25 scores of different kinds come from different indexes and do not compare, so a
        // task ranks by the best kind of match it has (its own name or description, then a
        // decision, then a command), then by score within that kind.
        let rank = |hit: &SearchHit| (kind_rank(&hit.kind), hit.score);
        let by_order = |a: &(u8, f64), b: &(u8, f64)| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
        let mut by_task: BTreeMap<String, Vec<SearchHit>> = BTreeMap::new();
        for hit in self.registry.search(owner, &fts, limit.saturating_mul(3))? {
            by_task.entry(hit.task_id.clone()).or_default().push(hit);
        }
        let mut ranked: Vec<Vec<SearchHit>> = by_task.into_values().collect();
        for hits in &mut ranked {
            hits.sort_by(|a, b| by_order(&rank(a), &rank(b)));
        }
        ranked.sort_by(|a, b| by_order(&rank(&a[0]), &rank(&b[0])));
        let mut found = Vec::new();
        for mut matches in ranked.into_iter().take(limit as usize) {
            matches.truncate(3);
            if let Some(task) = self.registry.get_task(&matches[0].task_id)? {
                found.push(FoundTask {
                    task,
                    score: matches[0].score,
                    matches,
                });
            }
        }
        Ok(found)
    }

    /// Statistics of one of the owner's tasks, or over all of them when `task` is `None`.
    pub fn stats(&self, owner: &Owner, task: Option<&str>) -> Result<Stats> {
        match task {
            Some(task) => {
                let task = self.resolve_for(owner, task)?;
                Ok(self.registry.stats(owner, Some(&task.id))?)
            }
            None => Ok(self.registry.stats(owner, None)?),
        }
    }
}

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "task" => 0,
        "decision" => 1,
        _ => 2,
    }
}

fn check_limit(limit: u32) -> Result<u32> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::invalid("limit", format!("{limit} is outside 1..={MAX_PAGE}")));
    }
    Ok(limit)
}
