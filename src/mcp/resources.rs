//! MCP resources: a task's state, events, decisions and plan, and the kept output of an
//! execution, as `taskbox://` URIs clients can attach to a conversation. Text that is valid
//! UTF-8 is served as text, anything else as a base64 blob, so it reads back byte for byte.

use base64::Engine;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

use crate::domain::Owner;
use crate::error::{Error, Result};
use crate::task::TaskService;
use crate::task::service::TaskFile;

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
            "The whole stdout and stderr of an execution whose output was cut in its reply (over 64 KiB per stream)",
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
    let parts: Vec<&str> = rest.split('/').collect();
    let contents = match parts.as_slice() {
        [task, "executions", execution, "output"] => service
            .execution_output(&service.resolve_for(owner, task)?.id, execution)?
            .into_iter()
            .map(|(stream, bytes)| {
                let part_uri = if stream == "stdout" {
                    uri.to_string()
                } else {
                    format!("{uri}#stderr")
                };
                contents(part_uri, None, bytes)
            })
            .collect(),
        [task, name] => {
            let (_, file, _) = FILES.iter().find(|(n, _, _)| n == name).ok_or_else(not_ours)?;
            let (_, bytes) = service.task_file(&service.resolve_for(owner, task)?.id, *file)?;
            vec![contents(uri.to_string(), Some(file.mime_type()), bytes)]
        }
        _ => return Err(not_ours()),
    };
    Ok(ReadResourceResult::new(contents))
}

fn contents(uri: String, mime: Option<&str>, bytes: Vec<u8>) -> ResourceContents {
    let content = match String::from_utf8(bytes) {
        Ok(text) => ResourceContents::text(text, uri),
        Err(e) => ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()), uri),
    };
    match mime {
        Some(mime) => content.with_mime_type(mime),
        None => content,
    }
}
