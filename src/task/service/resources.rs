//! Reading a task's files for MCP resources: its state, event log, decisions, plan, and the
//! kept output of executions.

use super::TaskService;
use crate::error::{Error, Result};

/// Which file of a task a resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFile {
    State,
    Events,
    Decisions,
    Plan,
}

impl TaskFile {
    fn file_name(self) -> &'static str {
        match self {
            Self::State => "state.json",
            Self::Events => "events.jsonl",
            Self::Decisions => "decisions.md",
            Self::Plan => "plan.md",
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Self::State => "application/json",
            Self::Events => "application/x-ndjson",
            Self::Decisions | Self::Plan => "text/markdown",
        }
    }
}

impl TaskService {
    /// The bytes of one of a task's files, and the task's id.
    pub fn task_file(&self, task: &str, file: TaskFile) -> Result<(String, Vec<u8>)> {
        let task = self.resolve(Some(task))?;
        let path = self.store.task_dir(&task.id).join(file.file_name());
        match std::fs::read(&path) {
            Ok(bytes) => Ok((task.id, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::invalid(
                "uri",
                format!("task '{}' has no {} yet", task.name, file.file_name()),
            )),
            Err(e) => Err(Error::Store(crate::store::StoreError::Io { path, source: e })),
        }
    }

    /// The kept output of an execution: (stream, bytes) for stdout and stderr, where kept.
    /// Output is kept on disk only for streams that were cut in the reply.
    pub fn execution_output(&self, task: &str, execution: &str) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let task = self.resolve(Some(task))?;
        let valid = execution.len() == 28
            && execution.starts_with("e-")
            && execution[2..].chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::invalid(
                "uri",
                format!("'{execution}' is not an execution id (e-…)"),
            ));
        }
        let dir = self.store.outputs_dir(&task.id);
        let mut streams = Vec::new();
        for (stream, name) in [
            ("stdout", format!("{execution}.log")),
            ("stderr", format!("{execution}.stderr.log")),
        ] {
            if let Ok(bytes) = std::fs::read(dir.join(name)) {
                streams.push((stream, bytes));
            }
        }
        if streams.is_empty() {
            return Err(Error::invalid(
                "uri",
                format!(
                    "no kept output for {execution}: only streams over the reply's cap are kept, the rest was in the reply itself"
                ),
            ));
        }
        Ok(streams)
    }
}
