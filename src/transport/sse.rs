//! The legacy HTTP+SSE transport of MCP 2024-11-05, for clients that speak only it. rmcp 3
//! ships no server for it, so it is built here over rmcp's sink/stream transport:
//!
//! - `GET /sse` opens the session: an SSE stream whose first event, `endpoint`, names the URL to
//!   post to (`/message?sessionId=…`); every server message then goes out as a `message` event.
//! - `POST /message?sessionId=…` hands one client message to the session and answers 202; the
//!   reply, if any, arrives on the SSE stream.
//!
//! The session ends when the client closes the stream (or the server shuts down). A session
//! is bound to the owner that opened it: another owner's posts get 404, as for an unknown id.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

use super::auth::Principal;
use super::http::Shared;
use crate::domain::Owner;

/// Messages a session buffers in each direction before a sender waits.
const CHANNEL_CAPACITY: usize = 64;

/// The open legacy SSE sessions of this server.
#[derive(Default)]
pub struct SseSessions {
    sessions: Mutex<HashMap<String, SseSession>>,
}

struct SseSession {
    owner: Owner,
    /// The token's id (the principal's key), for the per-token cap.
    key: String,
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
}

impl SseSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SseSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open sessions of one token (its principal's key).
    pub(super) fn count_for(&self, key: &str) -> usize {
        self.lock().values().filter(|s| s.key == key).count()
    }
}

/// Removes the session when the SSE stream is dropped (the client went away): the server
/// side then sees its input end and the MCP session closes.
struct Registration {
    sessions: Arc<SseSessions>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
        tracing::debug!(session = %self.id, "legacy SSE session closed");
    }
}

/// `GET /sse`: opens a session and streams its messages.
pub async fn open(State(shared): State<Arc<Shared>>, Extension(principal): Extension<Principal>) -> Response {
    let mut id_bytes = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut id_bytes) {
        tracing::error!(error = %e, "no randomness for a session id");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let (to_server, from_client) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_CAPACITY);
    let (to_client, from_server) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_CAPACITY);
    // rmcp's idle timeouts do not cover legacy SSE sessions, so without the quota one token
    // could hold connections without end.
    if let Some(refusal) = shared.refuse_session_past_quota(&principal).await {
        return refusal;
    }
    {
        shared.sse.lock().insert(
            id.clone(),
            SseSession {
                owner: principal.owner.clone(),
                key: principal.key.clone(),
                to_server,
            },
        );
    }
    let registration = Registration {
        sessions: shared.sse.clone(),
        id: id.clone(),
    };

    let server = shared.server_for(&principal);
    let incoming = futures_util::stream::unfold(from_client, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let transport = (PollSender::new(to_client), Box::pin(incoming));
    let stop = shared.sessions_stop.child_token();
    tokio::spawn(async move {
        match server.serve_with_ct(transport, stop).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => tracing::debug!(error = %e, "legacy SSE session ended before initialisation"),
        }
    });
    tracing::debug!(session = %id, owner = %principal.owner, "legacy SSE session opened");
    let events = events(id, from_server, registration, shared.sessions_stop.clone());
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// The session's SSE events: `endpoint` first, then each server message, until the server
/// side ends or the server shuts down.
fn events(
    id: String,
    from_server: mpsc::Receiver<ServerJsonRpcMessage>,
    registration: Registration,
    stop: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/message?sessionId={id}"));
    let messages = futures_util::stream::unfold((from_server, registration), |(mut rx, registration)| async move {
        let message = rx.recv().await?;
        let data = serde_json::to_string(&message).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialise a server message");
            String::from("{}")
        });
        Some((Event::default().event("message").data(data), (rx, registration)))
    });
    futures_util::stream::once(async move { endpoint })
        .chain(messages)
        .take_until(stop.cancelled_owned())
        .map(Ok)
}

#[derive(Debug, Deserialize)]
pub struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// `POST /message?sessionId=…`: one client message for the session; 202 once it is queued.
pub async fn post(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<MessageQuery>,
    body: Bytes,
) -> Response {
    let sender = shared
        .sse
        .lock()
        .get(&query.session_id)
        .filter(|session| session.owner == principal.owner)
        .map(|session| session.to_server.clone());
    let Some(sender) = sender else {
        return (
            StatusCode::NOT_FOUND,
            "Not Found: no such session; open one with GET /sse\n",
        )
            .into_response();
    };
    let message: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Bad Request: not a JSON-RPC message: {e}\n"),
            )
                .into_response();
        }
    };
    match sender.send(message).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "Not Found: the session has ended\n").into_response(),
    }
}
