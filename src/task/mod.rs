//! Tasks: the data model, the pure lifecycle state machine, and `TaskService`, the one place
//! where an operation on a task is carried out.

pub mod lifecycle;
pub mod model;
pub mod output;
pub mod service;

pub use model::*;
pub use service::TaskService;
