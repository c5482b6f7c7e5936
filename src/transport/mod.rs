//! Transports that carry MCP to `TaskboxServer`: stdio (one local session per process) and
//! HTTP (Streamable HTTP and legacy SSE, many sessions of many owners; see http.rs), which
//! also serves the web dashboard at `/ui` (ui/).

mod auth;
pub mod http;
mod limits;
mod origin;
mod sse;
pub mod stdio;
mod ui;
