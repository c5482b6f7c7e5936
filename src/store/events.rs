//! Layer 2: `events.jsonl`, the append-only event log of a task. Each event is one JSON line,
//! written with a single `write` call on an `O_APPEND` file and fsync'd before returning (or,
//! within a tool call, once before its reply: `durable.rs`), so lines from several server
//! processes never interleave and an acknowledged event survives a crash.

use std::io::{BufRead, Write};
use std::path::Path;

use super::{Result, StoreError, TaskStore, io_err};
use crate::domain::Event;

impl TaskStore {
    pub fn append_event(&self, event: &Event) -> Result<()> {
        append_lines(&self.events_path(&event.task_id), std::slice::from_ref(event))
    }

    /// Appends several events of one task with one write and one fsync.
    pub fn append_events(&self, task_id: &str, events: &[Event]) -> Result<()> {
        append_lines(&self.events_path(task_id), events)
    }

    /// The server's own log (`<data dir>/events.jsonl`): what happened with no task to file
    /// it under, such as the hooks run when a server starts.
    pub fn append_server_events(&self, path: &Path, events: &[Event]) -> Result<()> {
        append_lines(path, events)
    }

    /// Reads every event; a torn last line (crash mid-append) is skipped, not fatal.
    pub fn read_events(&self, task_id: &str) -> Result<Vec<Event>> {
        let path = self.events_path(task_id);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut events = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(io_err(&path))?;
            if let Ok(event) = serde_json::from_str(&line) {
                events.push(event);
            }
        }
        Ok(events)
    }
}

fn append_lines(path: &Path, events: &[Event]) -> Result<()> {
    let mut lines = Vec::new();
    for event in events {
        serde_json::to_writer(&mut lines, event).map_err(|source| StoreError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        lines.push(b'\n');
    }
    let mut file = super::private_file()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(&lines).map_err(io_err(path))?;
    super::durable::sync_or_defer(path, file).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;
    use serde_json::json;

    #[test]
    fn appends_lines_and_skips_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::new(dir.path().to_path_buf());
        store.create_task_dir("t-1").unwrap();
        store
            .append_event(&Event::new("t-1", EventKind::TaskCreated, json!({"a": 1})))
            .unwrap();
        store
            .append_event(&Event::new("t-1", EventKind::Execution, json!({"exit_code": 0})))
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(store.events_path("t-1"))
            .unwrap();
        f.write_all(b"{\"at\": \"20").unwrap();
        let kinds: Vec<_> = store.read_events("t-1").unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::TaskCreated, EventKind::Execution]);
    }
}
