//! The integration tests, in one binary so the helpers in `common/` compile once: each file
//! under `suite/` covers one area, through the real `taskbox` binary, real Docker and real
//! git, or (`suite/in_process.rs`) the MCP layer in process on the fake runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;
mod suite;
