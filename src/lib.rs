//! taskbox: an MCP server that gives AI coding agents task sandboxes — hardened Docker
//! containers with git-backed workspaces and a persistent record of everything they did.
//!
//! Data flows one way: transport → `mcp` → `task::TaskService` → (`registry`, `store`,
//! `runtime`, `workspace`). See docs/architecture.md.

#![deny(clippy::print_stdout)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod config;
pub mod domain;
pub mod egress;
pub mod error;
pub mod hooks;
pub mod mcp;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod task;
pub mod transport;
pub mod workspace;

pub use error::{Error, Result};
