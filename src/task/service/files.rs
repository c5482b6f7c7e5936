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
use super::repo::git_script;
use crate::error::{Error, Result};
use crate::runtime::ExecSpec;

/// Resolves `$1` and exits 90 unless it is /workspace or below it; the real operation follows.
const CONFINE: &str = r#"p=$(realpath -m -- "$1") || exit 90
case "$p" in /workspace|/workspace/*) ;; *) exit 90 ;; esac
"#;

const READ_SCRIPT: &str = r#"[ -e "$p" ] || exit 91
[ -d "$p" ] && exit 92
[ -f "$p" ] || exit 95
[ -r "$p" ] || exit 93
wc -c < "$p"
head -c "$2" -- "$p""#;

const WRITE_SCRIPT: &str = r#"[ -d "$p" ] && exit 92
[ -e "$p" ] && [ ! -f "$p" ] && exit 95
mkdir -p -- "$(dirname -- "$p")" || exit 93
cat > "$p" || exit 93"#;

const LIST_SCRIPT: &str = r#"[ -e "$p" ] || exit 91
[ -d "$p" ] || exit 94
cd "$p" || exit 93
if g rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  g -c core.quotePath=false ls-files --cached --others --exclude-standard -z
else
  find . -mindepth 1 \( -name .git -prune \) -o -type f -printf '%P\0'
fi"#;

/// Largest file read_file and edit_file load.
const READ_CAP: usize = 1024 * 1024;
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
        let (code, out) = self
            .file_op(task, path, READ_SCRIPT, &[&(READ_CAP + 1).to_string()], None)
            .await?;
        check(code, path)?;
        let newline = out.iter().position(|b| *b == b'\n').unwrap_or(out.len());
        let size: u64 = String::from_utf8_lossy(&out[..newline]).trim().parse().unwrap_or(0);
        let mut data = out.get(newline + 1..).unwrap_or_default();
        let truncated = data.len() > READ_CAP;
        data = &data[..data.len().min(READ_CAP)];
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
        let text = String::from_utf8_lossy(data);
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
        let (code, _) = self
            .file_op(task, path, WRITE_SCRIPT, &[], Some(content.as_bytes().to_vec()))
            .await?;
        check(code, path)?;
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
        let (code, raw) = self
            .file_op(task, path, READ_SCRIPT, &[&(READ_CAP + 1).to_string()], None)
            .await?;
        check(code, path)?;
        let newline = raw.iter().position(|b| *b == b'\n').unwrap_or(raw.len());
        if std::str::from_utf8(raw.get(newline + 1..).unwrap_or_default()).is_err() {
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
        let (code, out) = self.file_op(task, path, LIST_SCRIPT, &[], None).await?;
        check(code, path)?;
        let depth = depth.max(1);
        let mut entries = std::collections::BTreeSet::new();
        for raw in out.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            let file = String::from_utf8_lossy(raw);
            let parts: Vec<&str> = file.split('/').collect();
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
        }
        let truncated = entries.len() > LIST_CAP;
        Ok(Listing {
            path: display_path(path),
            entries: entries.into_iter().take(LIST_CAP).collect(),
            truncated,
        })
    }

    /// Runs `CONFINE` + `script` in the task's running container with the path as `$1`.
    async fn file_op(
        &self,
        task: &str,
        path: &str,
        script: &str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<(Option<i64>, Vec<u8>)> {
        if path.contains('\0') {
            return Err(Error::invalid("path", "it contains a NUL byte"));
        }
        let operation = match script {
            READ_SCRIPT => "read_file",
            WRITE_SCRIPT => "write_file",
            _ => "list_files",
        };
        let task = self.resolve(Some(task))?;
        let task = self
            .guard_command(task, serde_json::json!({ "operation": operation, "path": path }))
            .await?;
        let container = self.require_running(&task)?;
        let target = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/workspace/{path}")
        };
        let mut all_args = vec![target.as_str()];
        all_args.extend_from_slice(args);
        let cmd = git_script(&format!("{CONFINE}{script}"), "taskbox-file", &all_args);
        let spec = ExecSpec {
            cmd,
            user: task.exec_user.clone(),
            workdir: Some("/workspace".into()),
            stdin,
            ..Default::default()
        };
        let (code, out, _) = self.run_captured_bytes(&container, spec).await?;
        Ok((code, out))
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() { ".".into() } else { path.to_string() }
}

fn check(code: Option<i64>, path: &str) -> Result<()> {
    let reason = match code {
        Some(0) => return Ok(()),
        Some(90) => "it is outside /workspace (after following '..' and symlinks); file tools only work in /workspace",
        Some(91) => "it does not exist; list_files shows what does",
        Some(92) => "it is a directory; use list_files",
        Some(93) => "it cannot be read or written (permissions); use execute_in_task with user \"root\" if needed",
        Some(94) => "it is not a directory",
        Some(95) => "it is not a regular file (a pipe or device, say); use execute_in_task",
        _ => "the file operation failed in the container",
    };
    Err(Error::invalid("path", format!("'{path}': {reason}")))
}
