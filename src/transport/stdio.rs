//! MCP over stdin/stdout: the way Claude Code and opencode start a local server. stdout
//! carries only protocol messages; logs go to stderr.
//!
//! The session ends when the client closes stdin or the process gets SIGTERM/SIGINT. Either
//! way the server then ends the session's attachments and shuts the service down gracefully:
//! a creation in flight finishes or rolls back, running executions are killed and recorded.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;

use crate::error::{Error, Result};
use crate::mcp::TaskboxServer;
use crate::task::TaskService;

/// How long shutdown waits for work in flight (a creation may be building an image).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Serves one MCP session on stdin/stdout until the client closes the stream or a signal.
pub async fn serve(service: Arc<TaskService>) -> Result<()> {
    let server = TaskboxServer::new(service.clone());
    let session_id = server.session_id().to_string();
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Transport(format!("MCP initialisation over stdio failed: {e}")))?;
    let stop = running.cancellation_token();
    tokio::select! {
        reason = running.waiting() => match reason {
            Ok(reason) => tracing::info!(?reason, "stdio session ended"),
            Err(e) => tracing::warn!(error = %e, "stdio session ended abnormally"),
        },
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            stop.cancel();
        }
    }
    service.end_session(&session_id).await;
    service.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, naming it.
pub(crate) async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
}
