//! The MCP layer: `TaskboxServer` implements rmcp's `ServerHandler`. One instance serves one
//! MCP session and holds only per-session conveniences (the current task, the log level);
//! everything authoritative lives behind `TaskService`.

mod error;
mod logging;
mod progress;
pub mod prompts;
mod resources;
mod server;
pub mod tools;

pub use server::{ExecLimit, INSTRUCTIONS, TaskboxServer, load_commands};
pub use tools::Tool;
