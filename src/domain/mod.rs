//! The domain at the bottom of the crate: the plain task data types, ids and name rules, and
//! the pure lifecycle state machine. It imports nothing of the crate, so every other module may
//! use it and no arrow points back (docs/architecture.md, "Module map").

mod error;
pub mod lifecycle;
mod model;
mod tool;
pub mod volumes;

pub use error::{DomainError, DomainResult};
pub use model::*;
pub use tool::Tool;
