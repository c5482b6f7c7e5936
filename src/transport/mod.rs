//! Transports that carry MCP to `TaskboxServer`: stdio now (one session per process).

pub mod stdio;
