//! The MCP tools, one file per area. Each handler parses its `*Params`, calls `TaskService`
//! and shapes the result; the doc comments on the params become the JSON schema descriptions.

mod agents;
mod exec;
mod tasks;

pub use agents::{AttachParams, DetachParams};
pub use exec::ExecuteParams;
pub use tasks::{CreateTaskParams, DeleteTaskParams, ListTasksParams, StopTaskParams, TaskParams};
