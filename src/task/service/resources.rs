//! Reading a task's files for MCP resources: its state, event log, decisions, plan, and the
//! kept output of executions. Every read is one page (`PAGE_BYTES` from an offset): a kept
//! output can be 256 MiB and an event log grows without end, and neither is ever loaded whole.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::TaskService;
use crate::error::{Error, Result};

/// The most one resource read returns of one file.
pub const PAGE_BYTES: usize = 1 << 20;

/// A page of a file: `bytes` from `offset`, of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePage {
    pub bytes: Vec<u8>,
    pub offset: u64,
    pub size: u64,
}

impl FilePage {
    /// Where the next page starts, unless this one reached the end.
    pub fn next(&self) -> Option<u64> {
        let end = self.offset + self.bytes.len() as u64;
        (end < self.size).then_some(end)
    }
}

fn read_page(path: &Path, offset: u64) -> std::io::Result<FilePage> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let offset = offset.min(size);
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(PAGE_BYTES.min((size - offset) as usize));
    file.take(PAGE_BYTES as u64).read_to_end(&mut bytes)?;
    Ok(FilePage { bytes, offset, size })
}

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
    /// A page of one of a task's files, from `offset`.
    pub fn task_file(&self, task: &str, file: TaskFile, offset: u64) -> Result<FilePage> {
        let task = self.resolve(Some(task))?;
        let path = self.store.task_dir(&task.id).join(file.file_name());
        match read_page(&path, offset) {
            Ok(page) => Ok(page),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::invalid(
                "uri",
                format!("task '{}' has no {} yet", task.name, file.file_name()),
            )),
            Err(e) => Err(Error::Store(crate::store::StoreError::Io { path, source: e })),
        }
    }

    /// A page (from `offset`) of the kept output of an execution, for stdout and stderr where
    /// kept: the spill file of a stream cut in the reply, else what the reply held (kept since
    /// the dashboard; an empty stream has no file).
    pub fn execution_output(&self, task: &str, execution: &str, offset: u64) -> Result<Vec<(&'static str, FilePage)>> {
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
            if let Ok(page) = read_page(&dir.join(name), offset) {
                streams.push((stream, page));
            }
        }
        if streams.is_empty() {
            return Err(Error::invalid(
                "uri",
                format!(
                    "no kept output for {execution}: it printed nothing, or ran before taskbox kept every output (then it was in the reply only)"
                ),
            ));
        }
        Ok(streams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_at_most_page_bytes_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let data: Vec<u8> = (0..PAGE_BYTES * 2 + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let first = read_page(&path, 0).unwrap();
        assert_eq!(
            (first.bytes.len(), first.size, first.next()),
            (PAGE_BYTES, data.len() as u64, Some(PAGE_BYTES as u64))
        );
        let last = read_page(&path, 2 * PAGE_BYTES as u64).unwrap();
        assert_eq!((last.bytes.as_slice(), last.next()), (&data[2 * PAGE_BYTES..], None));
        assert_eq!(read_page(&path, u64::MAX).unwrap().bytes.len(), 0);
    }
}
