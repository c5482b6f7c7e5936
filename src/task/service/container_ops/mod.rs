//! The commands taskbox runs inside a task's container for itself, one typed operation per
//! script: each takes typed arguments, builds its `ExecSpec` (argv, user, stdin, working
//! directory) and turns the exit code and output into a typed outcome, so the service never
//! matches on exit codes or script text. `TaskService::run_op` runs them (through
//! `run_captured`, which adds the kill marker and the time limit); everything here is pure.
//!
//! Everything these commands print comes from the container and is hostile: each op says how
//! much of its stdout it takes (`ContainerOp::stdout`, in memory or streamed to a file), and
//! stderr is kept only up to `STDERR_KEPT`; the rest is counted and dropped while it is read
//! (docs/security.md, "Memory budget").
//!
//! The scripts are security-relevant: they confine paths to /workspace, keep the agent's git
//! configuration from running anything, and find a command's whole process tree. Change them
//! with care.

mod files;
mod git;
mod kill;
mod ports;
mod root;

pub use files::{FileBytes, FileCommand, FileOp, FileRefusal, ListFiles, Paths, ReadFile, WriteFile};
pub use git::{CommitWorkspace, PackCommits, Packed, Reset, ResetWorkspace, UnpackObjects, WorkspaceHead};
pub use kill::{KillTree, MARKER_VAR, ReapEscaped, SignalSupervisors};
pub use ports::ListeningSockets;
pub use root::{CA_BUNDLE_ENV, CA_BUNDLE_PATH, ChownWorkspace, PrepareContainer, Prepared, is_root};

use std::path::PathBuf;

use crate::runtime::ExecSpec;

/// The most of an internal command's stdout kept in memory unless its op says otherwise:
/// these commands print a commit id or a ref name.
pub const STDOUT_KEPT: usize = 64 * 1024;
/// The most of an internal command's stderr kept (the start: where git says what failed).
pub const STDERR_KEPT: usize = 64 * 1024;

/// One command taskbox runs in a container for itself.
pub trait ContainerOp {
    type Outcome;
    /// Where its stdout goes and how much of it is taken; read before `into_spec`.
    fn stdout(&self) -> Stdout {
        Stdout::Memory(STDOUT_KEPT)
    }
    /// The command to run.
    fn into_spec(self) -> ExecSpec;
    /// What its exit code and output mean.
    fn outcome(output: Output) -> Self::Outcome;
}

/// Where an internal command's stdout goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Stdout {
    /// Kept in memory up to this many bytes; the rest is counted and dropped
    /// (`Output::stdout_cut`), and the command runs to its end.
    Memory(usize),
    /// Streamed to a new 0600 file, up to `limit` bytes; past it the command is killed and
    /// `Output::stdout_cut` is set. The caller removes the file.
    File { path: PathBuf, limit: u64 },
}

/// How a command ended: its exit code (`None` when Docker could not tell) and what was kept
/// of its output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub code: Option<i64>,
    /// At most the op's `Stdout::Memory` limit (empty for `Stdout::File`).
    pub stdout: Vec<u8>,
    /// At most `STDERR_KEPT` bytes.
    pub stderr: Vec<u8>,
    /// Bytes the command printed to stdout, kept or not.
    pub stdout_bytes: u64,
    /// stdout passed the op's limit: `stdout` (or the file) holds only its start.
    pub stdout_cut: bool,
}

impl Output {
    /// stdout for a command whose only meaning is success (exit 0). Output past the op's
    /// limit is a failure: it cannot be what the script prints.
    fn succeeded(self) -> Result<Vec<u8>, Failed> {
        match self.code {
            Some(0) if !self.stdout_cut => Ok(self.stdout),
            Some(0) => Err(Failed {
                code: Some(0),
                stderr: format!(
                    "it printed {} bytes, more than taskbox reads from this command; something in the container \
                     (a git alias, filter or a replaced binary) is printing in its place",
                    self.stdout_bytes
                ),
            }),
            _ => Err(self.failed()),
        }
    }

    fn failed(&self) -> Failed {
        Failed {
            code: self.code,
            stderr: String::from_utf8_lossy(&self.stderr).trim().to_string(),
        }
    }
}

/// A command that did not succeed: how it exited and what it said (trimmed).
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub code: Option<i64>,
    pub stderr: String,
}

/// `sh -c <script> <$0> <$1>…`.
fn sh(script: &str, args: &[&str]) -> Vec<String> {
    ["sh", "-c", script].iter().chain(args).map(|s| s.to_string()).collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn output(code: i64, stdout: &[u8], stderr: &str) -> Output {
        Output {
            code: Some(code),
            stdout: stdout.to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            stdout_bytes: stdout.len() as u64,
            stdout_cut: false,
        }
    }

    #[test]
    fn only_exit_zero_succeeds_and_failures_keep_trimmed_stderr() {
        assert_eq!(output(0, b"out", "").succeeded(), Ok(b"out".to_vec()));
        assert_eq!(
            output(3, b"", " no repo\n").succeeded(),
            Err(Failed {
                code: Some(3),
                stderr: "no repo".into()
            })
        );
        let unknown = Output {
            code: None,
            ..Default::default()
        };
        assert_eq!(unknown.succeeded().unwrap_err().code, None);
        let flooded = Output {
            stdout_cut: true,
            stdout_bytes: 1 << 30,
            ..output(0, b"0123", "")
        };
        assert!(flooded.succeeded().unwrap_err().stderr.contains("1073741824 bytes"));
    }
}
