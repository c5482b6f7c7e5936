//! File tools: read, write, edit and list files under /workspace.
//!
//! Each runs inside the container, as the commands' user, so it sees exactly what
//! execute_in_task sees and symlinks resolve in the container's file system. Every path is
//! resolved (`realpath -m`: `..` and symlinks followed) and refused unless it lies in
//! /workspace. Checking on the host instead would race with the agent swapping a directory
//! for a symlink between the check and the write, with the server's privileges.

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use super::container_ops::{FileBytes, FileCommand, FileOp, FileRefusal, ListFiles, Paths, ReadFile, WriteFile};
use crate::error::{Error, Result};

/// Bytes inspected for NUL to call a file binary (as git does).
const BINARY_SNIFF: usize = 8000;
/// Most entries list_files returns.
const LIST_CAP: usize = 2000;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FileContent {
    pub path: String,
    /// The requested lines (all of them by default); `null` for a binary file.
    pub content: Option<String>,
    pub binary: bool,
    /// Size of the whole file in bytes.
    pub size: u64,
    pub start_line: usize,
    pub end_line: usize,
    /// Lines in the part of the file that was read.
    pub total_lines: usize,
    /// Only the first MiB of a larger file was read.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WriteOutcome {
    pub path: String,
    pub bytes: usize,
    /// For edits: how many occurrences were replaced.
    pub replacements: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct ListEntry {
    /// Relative to the listed directory; directories end with '/'.
    pub path: String,
    /// "file" or "dir" (a directory deeper entries were folded into).
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Listing {
    pub path: String,
    pub entries: Vec<ListEntry>,
    pub truncated: bool,
}

impl TaskService {
    pub async fn read_file(
        &self,
        task: &str,
        path: &str,
        start_line: Option<usize>,
        end_line: Option<usize>,
    ) -> Result<FileContent> {
        let FileBytes { size, data, truncated } = self.file_op(task, ReadFile { path }).await?;
        let shown = display_path(path);
        if data[..data.len().min(BINARY_SNIFF)].contains(&0) {
            return Ok(FileContent {
                path: shown,
                content: None,
                binary: true,
                size,
                start_line: 0,
                end_line: 0,
                total_lines: 0,
                truncated,
            });
        }
        let text = String::from_utf8_lossy(&data);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let total = lines.len();
        let start = start_line.unwrap_or(1).max(1);
        let end = end_line.unwrap_or(total).min(total);
        if start > end.max(1) && total > 0 {
            return Err(Error::invalid(
                "start_line",
                format!("line {start} is past the end of the file ({total} lines)"),
            ));
        }
        let content = lines.get(start - 1..end).map(|l| l.concat()).unwrap_or_default();
        Ok(FileContent {
            path: shown,
            content: Some(content),
            binary: false,
            size,
            start_line: if total == 0 { 0 } else { start },
            end_line: end,
            total_lines: total,
            truncated,
        })
    }

    pub async fn write_file(&self, task: &str, path: &str, content: &str) -> Result<WriteOutcome> {
        let write = WriteFile {
            path,
            content: content.as_bytes(),
        };
        self.file_op(task, write).await?;
        Ok(WriteOutcome {
            path: display_path(path),
            bytes: content.len(),
            replacements: None,
        })
    }

    /// Replaces `old_text` by `new_text`: exactly one occurrence, or all with `replace_all`.
    pub async fn edit_file(
        &self,
        task: &str,
        path: &str,
        old_text: &str,
        new_text: &str,
        replace_all: bool,
    ) -> Result<WriteOutcome> {
        if old_text.is_empty() {
            return Err(Error::invalid(
                "old_text",
                "it is empty; pass the exact text to replace",
            ));
        }
        let raw = self.file_op(task, ReadFile { path }).await?;
        if std::str::from_utf8(&raw.data).is_err() {
            return Err(Error::invalid(
                "path",
                "the file is not UTF-8 text; editing it here would corrupt it, use execute_in_task",
            ));
        }
        let current = self.read_file(task, path, None, None).await?;
        let text = match current.content {
            Some(text) if !current.truncated => text,
            Some(_) => {
                return Err(Error::invalid(
                    "path",
                    "the file is over 1 MiB; edit it with execute_in_task",
                ));
            }
            None => {
                return Err(Error::invalid(
                    "path",
                    "the file is binary; edit it with execute_in_task",
                ));
            }
        };
        let count = text.matches(old_text).count();
        match count {
            0 => {
                return Err(Error::invalid(
                    "old_text",
                    "not found in the file; it must match exactly, whitespace included (read_file shows the text)",
                ));
            }
            n if n > 1 && !replace_all => {
                return Err(Error::invalid(
                    "old_text",
                    format!("found {n} times; add surrounding text to make it unique, or pass replace_all: true"),
                ));
            }
            _ => {}
        }
        let updated = if replace_all {
            text.replace(old_text, new_text)
        } else {
            text.replacen(old_text, new_text, 1)
        };
        let written = self.write_file(task, path, &updated).await?;
        Ok(WriteOutcome {
            replacements: Some(count),
            ..written
        })
    }

    /// Files under `path` (git-tracked and untracked, .gitignore honoured), folded into their
    /// directories below `depth` levels.
    pub async fn list_files(&self, task: &str, path: &str, depth: usize) -> Result<Listing> {
        let files = self.file_op(task, ListFiles { path }).await?;
        let (entries, truncated) = fold_listing(&files, depth.max(1));
        Ok(Listing {
            path: display_path(path),
            entries,
            truncated,
        })
    }

    /// Runs a file operation in the task's running container, as the commands' user, after
    /// the `before_exec` hooks.
    async fn file_op<O: FileOp>(&self, task: &str, op: O) -> Result<O::Outcome> {
        let path = op.path().to_string();
        if path.contains('\0') {
            return Err(Error::invalid("path", "it contains a NUL byte"));
        }
        let task = self.resolve(Some(task))?;
        let task = self
            .guard_command(task, serde_json::json!({ "operation": O::OPERATION, "path": path }))
            .await?;
        let container = self.require_running(&task)?;
        let user = task.exec_user.as_deref();
        self.run_op(&container, FileCommand { op, user })
            .await?
            .map_err(|refusal| refused(&path, refusal))
    }
}

/// Folds paths deeper than `depth` into their directories, keeping the first `LIST_CAP`
/// entries as it goes: memory holds the listing as printed (bounded by `ListFiles`) and at
/// most `LIST_CAP + 1` entries, however many files there are.
fn fold_listing(files: &Paths, depth: usize) -> (Vec<ListEntry>, bool) {
    let mut entries = std::collections::BTreeSet::new();
    let mut truncated = files.cut;
    for file in files.iter() {
        let file = String::from_utf8_lossy(file);
        let parts: Vec<&str> = file.splitn(depth + 1, '/').collect();
        let entry = if parts.len() > depth {
            ListEntry {
                path: format!("{}/", parts[..depth].join("/")),
                kind: "dir".into(),
            }
        } else {
            ListEntry {
                path: file.into_owned(),
                kind: "file".into(),
            }
        };
        entries.insert(entry);
        if entries.len() > LIST_CAP {
            entries.pop_last();
            truncated = true;
        }
    }
    (entries.into_iter().collect(), truncated)
}

fn display_path(path: &str) -> String {
    if path.is_empty() { ".".into() } else { path.to_string() }
}

fn refused(path: &str, refusal: FileRefusal) -> Error {
    let reason = match refusal {
        FileRefusal::OutsideWorkspace => {
            "it is outside /workspace (after following '..' and symlinks); file tools only work in /workspace"
        }
        FileRefusal::NotFound => "it does not exist; list_files shows what does",
        FileRefusal::IsDirectory => "it is a directory; use list_files",
        FileRefusal::Unreadable => {
            "it cannot be read or written (permissions); use execute_in_task with user \"root\" if needed"
        }
        FileRefusal::NotDirectory => "it is not a directory",
        FileRefusal::NotRegularFile => "it is not a regular file (a pipe or device, say); use execute_in_task",
        FileRefusal::Failed => "the file operation failed in the container",
    };
    Error::invalid("path", format!("'{path}': {reason}"))
}
