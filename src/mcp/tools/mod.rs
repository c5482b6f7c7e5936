//! The MCP tools, one file per area. Each handler parses its `*Params`, calls `TaskService`
//! and shapes the result; the doc comments on the params become the JSON schema descriptions.

mod agents;
mod background;
mod checkpoints;
mod exec;
mod files;
mod memory;
mod params;
mod ports;
mod requests;
mod table;
mod tasks;

pub use agents::{AttachParams, DetachParams};
pub use background::{ExecutionOutputParams, KillExecutionParams, SendInputParams};
pub use checkpoints::{CreateCheckpointParams, RestoreCheckpointParams};
pub use exec::ExecuteParams;
pub use files::{EditFileParams, ListFilesParams, ReadFileParams, WriteFileParams};
pub use ports::ExposePortParams;
pub use table::Tool;
pub use tasks::{CreateTaskParams, DeleteTaskParams, ListTasksParams, StopTaskParams, TaskParams};
