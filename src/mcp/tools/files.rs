//! File tools on /workspace: read_file, write_file, edit_file, list_files.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Tool;
use super::params::TaskRef;
use crate::error::Result;
use crate::mcp::server::{TaskboxServer, reply};

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileParams {
    #[serde(default)]
    pub task: TaskRef,
    /// File path, relative to /workspace (or absolute inside it).
    pub path: String,
    /// First line to return, 1-based (default 1).
    pub start_line: Option<usize>,
    /// Last line to return, inclusive (default: the last line).
    pub end_line: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileParams {
    #[serde(default)]
    pub task: TaskRef,
    /// File path, relative to /workspace; missing parent directories are created.
    pub path: String,
    /// The whole new content of the file.
    pub content: String,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditFileParams {
    #[serde(default)]
    pub task: TaskRef,
    /// File path, relative to /workspace.
    pub path: String,
    /// Exact text to replace, whitespace included; must occur exactly once unless replace_all.
    pub old_text: String,
    /// The replacement text.
    pub new_text: String,
    /// Replace every occurrence (default false).
    #[serde(default)]
    pub replace_all: bool,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesParams {
    #[serde(default)]
    pub task: TaskRef,
    /// Directory, relative to /workspace (default: /workspace itself).
    pub path: Option<String>,
    /// How many directory levels to show before folding into a directory entry (default 2).
    pub depth: Option<usize>,
}

#[tool_router(router = file_tools, vis = "pub(crate)")]
impl TaskboxServer {
    #[tool(
        description = "Read a text file in the task's /workspace, optionally a range of lines (start_line, end_line; 1-based, inclusive). Returns content, size, total_lines; binary files are reported as such without content; files over 1 MiB are read in part (truncated). Paths outside /workspace, '..' escapes and symlinks pointing out are refused.",
        annotations(read_only_hint = true)
    )]
    async fn read_file(&self, Parameters(p): Parameters<ReadFileParams>) -> Result<CallToolResult> {
        self.on_task(Tool::ReadFile, p.task, |id| async move {
            let file = self.service.read_file(&id, &p.path, p.start_line, p.end_line).await?;
            let text = match &file.content {
                Some(content) => content.clone(),
                None => format!("{} is a binary file of {} bytes.", file.path, file.size),
            };
            reply(text, &file)
        })
        .await
    }

    #[tool(
        description = "Write a file in the task's /workspace with the given content, creating parent directories; replaces the file if it exists. Returns the bytes written. Paths outside /workspace are refused.",
        annotations(destructive_hint = true, idempotent_hint = true)
    )]
    async fn write_file(&self, Parameters(p): Parameters<WriteFileParams>) -> Result<CallToolResult> {
        self.on_task(Tool::WriteFile, p.task, |id| async move {
            let written = self.service.write_file(&id, &p.path, &p.content).await?;
            reply(format!("Wrote {} bytes to {}.", written.bytes, written.path), &written)
        })
        .await
    }

    #[tool(
        description = "Edit a file in /workspace by exact replacement: old_text must occur exactly once (else the edit is refused, so add surrounding context), or pass replace_all to replace every occurrence. Returns the number of replacements.",
        annotations(destructive_hint = true, idempotent_hint = false)
    )]
    async fn edit_file(&self, Parameters(p): Parameters<EditFileParams>) -> Result<CallToolResult> {
        self.on_task(Tool::EditFile, p.task, |id| async move {
            let edited = self
                .service
                .edit_file(&id, &p.path, &p.old_text, &p.new_text, p.replace_all)
                .await?;
            let n = edited.replacements.unwrap_or(0);
            reply(format!("Replaced {n} occurrence(s) in {}.", edited.path), &edited)
        })
        .await
    }

    #[tool(
        description = "List files under a directory of /workspace (default the whole workspace), honouring .gitignore; deeper levels than `depth` (default 2) are folded into directory entries ending in '/'.",
        annotations(read_only_hint = true)
    )]
    async fn list_files(&self, Parameters(p): Parameters<ListFilesParams>) -> Result<CallToolResult> {
        self.on_task(Tool::ListFiles, p.task, |id| async move {
            let path = p.path.unwrap_or_default();
            let listing = self.service.list_files(&id, &path, p.depth.unwrap_or(2)).await?;
            let mut text: String = listing.entries.iter().map(|e| format!("{}\n", e.path)).collect();
            if listing.truncated {
                text.push_str("… (more entries; list a subdirectory)\n");
            }
            reply(text, &listing)
        })
        .await
    }
}
