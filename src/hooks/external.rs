//! External hooks: a command from config, run at its event with the event as JSON on stdin.
//! Exit 0 allows, exit 2 denies with stderr as the reason; any other exit, a failure to start
//! or a timeout warns, or denies when the hook is `fail_closed`. A hook past its timeout is
//! killed (its whole process group).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::config::ExternalHookConfig;
use super::manager::Hook;
use super::{Decision, HookContext};
use crate::task::TaskService;

/// Most of a hook's stderr kept as its reason.
const MAX_REASON: usize = 2000;

pub struct ExternalHook {
    name: String,
    config: ExternalHookConfig,
}

impl ExternalHook {
    pub fn new(config: ExternalHookConfig) -> Self {
        Self {
            name: config.name(),
            config,
        }
    }

    fn failed(&self, what: String) -> Decision {
        if self.config.fail_closed {
            Decision::Deny(format!("{what} (the hook is fail_closed)"))
        } else {
            Decision::Warn(what)
        }
    }
}

#[async_trait]
impl Hook for ExternalHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn handles(&self, context: &HookContext) -> bool {
        let tool_ok = self.config.tools.is_empty()
            || context
                .tool
                .as_ref()
                .is_some_and(|tool| self.config.tools.contains(tool));
        let task_ok = self.config.tasks.is_empty()
            || context
                .task
                .as_ref()
                .is_some_and(|t| self.config.tasks.iter().any(|x| *x == t.name || *x == t.id));
        context.event == self.config.event && tool_ok && task_ok
    }

    async fn run(&self, _: &TaskService, context: &HookContext) -> Decision {
        let input = context.to_json().to_string();
        let timeout = Duration::from_secs(self.config.timeout_s);
        match run_command(&self.config.command, input.as_bytes(), timeout).await {
            Ok(Outcome::Exited(0, _)) => Decision::ALLOW,
            Ok(Outcome::Exited(2, stderr)) => {
                let reason = stderr.trim();
                Decision::Deny(if reason.is_empty() {
                    "denied (the hook gave no reason on stderr)".to_string()
                } else {
                    reason.to_string()
                })
            }
            Ok(Outcome::Exited(code, stderr)) => {
                self.failed(format!("the hook failed with exit code {code}: {}", stderr.trim()))
            }
            Ok(Outcome::Signalled(stderr)) => {
                self.failed(format!("the hook was killed by a signal: {}", stderr.trim()))
            }
            Ok(Outcome::TimedOut) => self.failed(format!(
                "the hook did not finish within {} s and was killed",
                self.config.timeout_s
            )),
            Err(e) => self.failed(format!("the hook could not be run: {e}")),
        }
    }
}

enum Outcome {
    Exited(i32, String),
    Signalled(String),
    TimedOut,
}

async fn run_command(command: &[String], input: &[u8], timeout: Duration) -> std::io::Result<Outcome> {
    let Some((program, args)) = command.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what the hook started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    let run = async {
        if let Some(mut stdin) = stdin.take() {
            // A hook that does not read its input is fine.
            let _ = stdin.write_all(input).await;
        }
        let mut text = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(64 * 1024).read_to_end(&mut text).await;
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, text))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => {
            let (status, stderr) = result?;
            let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
            if stderr.len() > MAX_REASON {
                let cut = (0..=MAX_REASON)
                    .rev()
                    .find(|i| stderr.is_char_boundary(*i))
                    .unwrap_or(0);
                stderr.truncate(cut);
                stderr.push('…');
            }
            Ok(match status.code() {
                Some(code) => Outcome::Exited(code, stderr),
                None => Outcome::Signalled(stderr),
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            Ok(Outcome::TimedOut)
        }
    }
}

/// SIGKILL to the hook's process group (the child is its leader).
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
