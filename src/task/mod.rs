//! `TaskService`, the one place where an operation on a task is carried out, and the output
//! capture its executions use. The data types it works on live in `crate::domain`.

pub mod bounded;
pub mod cookies;
pub mod output;
pub mod ports;
pub mod redact;
pub mod run_files;
pub mod service;

pub use service::{Health, TaskService};
