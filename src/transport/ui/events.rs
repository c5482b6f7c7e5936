//! `GET /ui/tasks/{id}/events?after=N`: the task's events after position N as server-sent
//! events (`task-event`, id = the position), read from the registry's index every half
//! second; a reconnecting browser resumes from `Last-Event-ID`. The stream ends when the
//! session ends (sign-out, its token revoked) or the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::Ui;
use super::pages::summary;
use super::session::{self, Session};

/// How often the registry is asked for new events.
const POLL: Duration = Duration::from_millis(500);
/// Most events sent per poll: a task with a flood of events is sent in steps.
const BATCH: u32 = 100;

#[derive(Deserialize)]
pub struct After {
    after: Option<i64>,
}

pub async fn stream(
    State(ui): State<Arc<Ui>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Response {
    // Another owner's task is not found, like one that does not exist.
    let Ok(task) = ui.service.resolve_for(&session.owner, &id) else {
        return (StatusCode::NOT_FOUND, "no such task\n").into_response();
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = resume.or(query.after).unwrap_or(0).max(0);
    let cookie = session::cookie_value(&headers, &ui.cookie).unwrap_or_default();
    let state = (ui, task.id, after, cookie);
    let events = futures_util::stream::unfold(state, |(ui, task_id, mut after, cookie)| async move {
        loop {
            // The session may have ended (sign-out, token revoked) since the stream opened.
            ui.live_session(&cookie)?;
            let batch = match ui.service.events_after(&task_id, after, BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read events for the dashboard");
                    Vec::new()
                }
            };
            if let Some((last, _)) = batch.last() {
                after = *last;
                let sse: Vec<Result<SseEvent, Infallible>> = batch
                    .iter()
                    .map(|(id, event)| {
                        let data = serde_json::json!({
                            "at": event.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                            "type": event.kind.as_str(),
                            "summary": summary(event),
                        });
                        Ok(SseEvent::default()
                            .event("task-event")
                            .id(id.to_string())
                            .data(data.to_string()))
                    })
                    .collect();
                return Some((futures_util::stream::iter(sse), (ui, task_id, after, cookie)));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = ui.stop.cancelled() => return None,
            }
        }
    })
    .flatten();
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
