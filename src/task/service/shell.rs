//! `taskbox shell TASK`: what a person's interactive shell in a task runs. The CLI owns the
//! terminal, so it runs the exec itself (`docker exec -it`, which gives it a PTY, window
//! resizes and Ctrl-C to the foreground job); the service checks the task as for any command
//! (recovery, the safety hooks) and says what to run: the task's shell, under the supervisor
//! and as the agent's user, like an agent's command (docs/cli.md).

use serde_json::json;

use super::TaskService;
use super::exec::command_env;
use crate::domain::{Event, EventKind, new_execution_id};
use crate::error::Result;
use crate::runtime::supervisor::{self, Supervision};

/// The exec a shell session runs.
#[derive(Debug, Clone)]
pub struct ShellSession {
    pub container: String,
    /// The exec's user (`uid:gid`; root when the supervisor drops to the agent's user).
    pub user: Option<String>,
    pub workdir: String,
    pub argv: Vec<String>,
    /// The command's environment, `KEY=VALUE`; the CLI hands it over in a 0600 file, never on
    /// a command line other local users can read.
    pub env: Vec<String>,
}

impl TaskService {
    /// Checks `task_id` as `execute_in_task` would and returns the exec of an interactive shell
    /// in it; records a `shell` event.
    pub async fn shell_session(&self, task_id: &str) -> Result<ShellSession> {
        let task = self.resolve(Some(task_id))?;
        let (task, seen) = self
            .guard_command_seen(task, json!({ "command": "(interactive shell)" }))
            .await?;
        let container = self.require_running(&task)?;
        let id = new_execution_id();
        // No secrets: a terminal is not redacted, so a person's shell does not get them
        // (docs/secrets.md).
        let env = command_env(self.network_env(&task).await?, &task.env, &Default::default(), &[], &id);
        let shell = task.shell.as_deref().unwrap_or("sh");
        let mut argv = vec![shell.to_string()];
        if shell == "bash" {
            argv.push("-l".into());
        }
        let mut user = task.exec_user.clone();
        if self.has_supervisor(&container, seen).await {
            // Closing the terminal (SIGHUP) ends everything the shell started.
            let drop_to;
            (user, drop_to) = self.supervised_as(task.exec_user.as_deref(), &env);
            argv = supervisor::run_argv(&id, &Supervision::Foreground, drop_to, argv);
        }
        self.record(Event::new(
            &task.id,
            EventKind::Other("shell".into()),
            json!({ "shell_id": id, "by": "taskbox shell" }),
        ))?;
        Ok(ShellSession {
            container,
            user,
            workdir: "/workspace".into(),
            argv,
            env,
        })
    }
}
