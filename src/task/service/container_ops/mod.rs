//! The commands taskbox runs inside a task's container for itself, one typed operation per
//! script: each takes typed arguments, builds its `ExecSpec` (argv, user, stdin, working
//! directory) and turns the exit code and output into a typed outcome, so the service never
//! matches on exit codes or script text. `TaskService::run_op` runs them (through
//! `run_captured`, which adds the kill marker and the time limit); everything here is pure.
//!
//! The scripts are security-relevant: they confine paths to /workspace, keep the agent's git
//! configuration from running anything, and find a command's whole process tree. Change them
//! with care.

mod files;
mod git;
mod kill;
mod root;

pub use files::{FileBytes, FileCommand, FileOp, FileRefusal, ListFiles, ReadFile, WriteFile};
pub use git::{CommitWorkspace, PackCommits, Reset, ResetWorkspace, UnpackObjects, WorkspaceHead};
pub use kill::{KillTree, MARKER_VAR};
pub use root::{CA_BUNDLE_ENV, CA_BUNDLE_PATH, ChownWorkspace, PrepareContainer, Prepared, is_root};

use crate::runtime::ExecSpec;

/// One command taskbox runs in a container for itself.
pub trait ContainerOp {
    type Outcome;
    /// The command to run.
    fn into_spec(self) -> ExecSpec;
    /// What its exit code and output mean.
    fn outcome(output: Output) -> Self::Outcome;
}

/// How a command ended: its exit code (`None` when Docker could not tell) and its output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout for a command whose only meaning is success (exit 0).
    fn succeeded(self) -> Result<Vec<u8>, Failed> {
        match self.code {
            Some(0) => Ok(self.stdout),
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
    }
}
