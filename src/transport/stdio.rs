//! MCP over stdin/stdout: the way Claude Code and opencode start a local server. stdout
//! carries only protocol messages; logs go to stderr.

use std::sync::Arc;

use rmcp::ServiceExt;

use crate::error::{Error, Result};
use crate::mcp::TaskboxServer;
use crate::task::TaskService;

/// Serves one MCP session on stdin/stdout until the client closes the stream.
pub async fn serve(service: Arc<TaskService>) -> Result<()> {
    let server = TaskboxServer::new(service);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Transport(format!("MCP initialisation over stdio failed: {e}")))?;
    let reason = running
        .waiting()
        .await
        .map_err(|e| Error::Transport(format!("MCP session ended abnormally: {e}")))?;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}
