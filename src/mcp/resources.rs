//! MCP resources: a task's state, events, decisions and plan, and the kept output of an
//! execution, as `taskbox://` URIs clients can attach to a conversation. Text that is valid
//! UTF-8 is served as text, anything else as a base64 blob, so it reads back byte for byte.
//!
//! A read returns one page of each file (1 MiB, `PAGE_BYTES`) from `?offset=N` (default 0);
//! `_meta` says where it is (`offset`, `size`) and the URI of the next page (`next`), so a
//! 256 MiB output is never loaded or encoded whole.

use base64::Engine;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use crate::domain::Owner;
use crate::error::{Error, Result};
use crate::task::TaskService;
use crate::task::service::{FilePage, PAGE_BYTES, TaskFile};

const PREFIX: &str = "taskbox://tasks/";

const FILES: [(&str, TaskFile, &str); 4] = [
    ("state", TaskFile::State, "The task's current state (state.json)"),
    (
        "events",
        TaskFile::Events,
        "The task's event log, one JSON object per line (events.jsonl)",
    ),
    (
        "decisions",
        TaskFile::Decisions,
        "The decisions recorded in the task (decisions.md)",
    ),
    ("plan", TaskFile::Plan, "The task's plan (plan.md)"),
];

pub fn templates() -> Vec<ResourceTemplate> {
    let mut templates: Vec<ResourceTemplate> = FILES
        .iter()
        .map(|(name, file, description)| {
            ResourceTemplate::new(format!("{PREFIX}{{task}}/{name}"), format!("task {name}"))
                .with_description(*description)
                .with_mime_type(file.mime_type())
        })
        .collect();
    templates.push(
        ResourceTemplate::new(
            format!("{PREFIX}{{task}}/executions/{{execution}}/output"),
            "execution output".to_string(),
        )
        .with_description(
            "The whole stdout and stderr of an execution whose output was cut in its reply (over 64 KiB per stream), 1 MiB per read: append ?offset=N for the next page (_meta.next)",
        ),
    );
    templates
}

/// The state, events and decisions resources of the given tasks.
pub fn listed(tasks: &[crate::domain::Task]) -> Vec<Resource> {
    tasks
        .iter()
        .flat_map(|task| {
            FILES[..3].iter().map(move |(name, file, description)| {
                Resource::new(format!("{PREFIX}{}/{name}", task.name), format!("{} {name}", task.name))
                    .with_description(*description)
                    .with_mime_type(file.mime_type())
            })
        })
        .collect()
}

/// Reads one of the owner's task resources; another owner's task is not found.
pub fn read(service: &TaskService, owner: &Owner, uri: &str) -> Result<ReadResourceResult> {
    let not_ours = || {
        Error::invalid(
            "uri",
            format!("'{uri}' is not a taskbox resource; see resources/templates/list for the URI forms"),
        )
    };
    let rest = uri.strip_prefix(PREFIX).ok_or_else(not_ours)?;
    let (rest, offset) = match rest.split_once('?') {
        None => (rest, 0),
        Some((rest, query)) => {
            let offset = query
                .strip_prefix("offset=")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::invalid(
                        "uri",
                        format!("'?{query}' is not understood; the only query is ?offset=<bytes>, from _meta.next"),
                    )
                })?;
            (rest, offset)
        }
    };
    let base = format!("{PREFIX}{rest}");
    let parts: Vec<&str> = rest.split('/').collect();
    let contents = match parts.as_slice() {
        [task, "executions", execution, "output"] => service
            .execution_output(&service.resolve_for(owner, task)?.id, execution, offset)?
            .into_iter()
            .map(|(stream, page)| {
                let fragment = if stream == "stdout" { "" } else { "#stderr" };
                contents(uri, &base, fragment, None, page)
            })
            .collect(),
        [task, name] => {
            let (_, file, _) = FILES.iter().find(|(n, _, _)| n == name).ok_or_else(not_ours)?;
            let page = service.task_file(&service.resolve_for(owner, task)?.id, *file, offset)?;
            vec![contents(uri, &base, "", Some(file.mime_type()), page)]
        }
        _ => return Err(not_ours()),
    };
    Ok(ReadResourceResult::new(contents))
}

/// One page as text when it is UTF-8 (a character the page boundary cut in two is left for
/// the next page), else as base64.
fn contents(uri: &str, base: &str, fragment: &str, mime: Option<&str>, mut page: FilePage) -> ResourceContents {
    if let Err(e) = std::str::from_utf8(&page.bytes)
        && e.error_len().is_none()
        && e.valid_up_to() > 0
        && page.bytes.len() == PAGE_BYTES
    {
        page.bytes.truncate(e.valid_up_to());
    }
    let next = page.next().map(|next| format!("{base}?offset={next}{fragment}"));
    let mut meta = serde_json::Map::new();
    meta.insert("offset".into(), page.offset.into());
    meta.insert("size".into(), page.size.into());
    meta.insert("next".into(), next.into());
    let uri = format!("{uri}{fragment}");
    let content = match String::from_utf8(page.bytes) {
        Ok(text) => ResourceContents::text(text, uri),
        Err(e) => ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()), uri),
    };
    let content = content.with_meta(rmcp::model::MetaObject(meta));
    match mime {
        Some(mime) => content.with_mime_type(mime),
        None => content,
    }
}
