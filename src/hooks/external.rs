//! External hooks: a command from config, run at its event with the event as JSON on stdin.
//! Exit 0 allows, exit 2 denies with stderr as the reason; any other exit, a failure to start
//! or a timeout warns, or denies when the hook is `fail_closed`. A hook past its timeout is
//! killed (its whole process group).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::config::ExternalHookConfig;
use super::host::HookHost;
use super::manager::Hook;
use super::{Decision, HookContext};

/// Most of a hook's stderr kept as its reason.
const MAX_REASON: usize = 2000;

/// Most of a hook's stderr read at all.
const MAX_STDERR: usize = 64 * 1024;

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

    async fn run(&self, _: &dyn HookHost, context: &HookContext) -> Decision {
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
    let stdin = child.stdin.take();
    let input = input.to_vec();
    tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // A hook that does not read its input is fine.
            let _ = stdin.write_all(&input).await;
        }
    });
    // stderr is drained on its own task, keeping the first MAX_STDERR bytes, so a chatty hook
    // never blocks on a full pipe and a background child holding stderr open does not hold
    // up the decision once the hook itself has exited.
    let stderr = child.stderr.take();
    let collected = tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let room = MAX_STDERR.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
        kept
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            collected.abort();
            return Ok(Outcome::TimedOut);
        }
    };
    // Whatever the hook wrote before exiting is in the pipe already.
    let stderr = tokio::time::timeout(Duration::from_millis(200), collected)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // Children the hook left behind go with it.
    if let Some(pid) = pid {
        kill_group(pid);
    }
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

/// SIGKILL to the hook's process group (the child is its leader); a group already gone is fine.
fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}
