//! The task commands for people (`taskbox ls`, `show`, `exec`, `logs` (logs.rs), `shell`
//! (shell.rs), `diff`, `checkpoint`, `restore`, `stop`, `resume`, `rm`): the same `TaskService` calls the tools make, as the local
//! owner. Tables fit the terminal; colour only on one; `--json` for scripts. docs/cli.md.

// These commands print their answer on stdout for a person or a script; they never run in
// `serve`, whose stdout is the protocol's alone.
#![allow(clippy::print_stdout)]

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::progress::Bar;
use crate::domain::{Owner, Task, TaskStatus};
use crate::task::TaskService;
use crate::task::service::ExecRequest;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List your tasks: running and stopped ones, or every status with --all.
    Ls {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// A task's record, container state, executions and disk use.
    Show {
        task: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a task's container; its output is printed and its exit code returned.
    Exec {
        task: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, last = true)]
        command: Vec<String>,
        /// Seconds before the command is killed.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// A task's events, one line each; -f follows new ones as they happen.
    Logs {
        task: String,
        /// Keep printing events as they come (Ctrl-C ends).
        #[arg(long, short)]
        follow: bool,
        /// How many of the latest events to print first.
        #[arg(long = "lines", short = 'n', default_value_t = 20)]
        lines: u32,
    },
    /// An interactive shell in a task's container, as the agent's user.
    Shell { task: String },
    /// The task branch's changes against where it started, as a patch.
    Diff { task: String },
    /// Checkpoint a task (its workspace as a commit, its container as an image).
    Checkpoint {
        task: String,
        #[arg(long)]
        label: Option<String>,
    },
    /// Restore a checkpoint (`TASK:N` or its id).
    Restore { checkpoint: String },
    /// Stop a task's container (its work is synced to the branch first).
    Stop { task: String },
    /// Start a stopped task again.
    Resume { task: String },
    /// Delete a task: its container, network, workspace and records (the branch stays).
    Rm {
        task: String,
        /// Do it without asking.
        #[arg(long, short)]
        yes: bool,
    },
}

pub async fn run(service: &TaskService, command: TaskCommand) -> anyhow::Result<()> {
    run_command(service, command).await.map_err(for_people)
}

/// The service's hint for an unknown task names the agents' tools; a person has commands.
fn for_people(error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<crate::error::Error>() {
        Some(crate::error::Error::TaskNotFound { task }) => {
            anyhow::anyhow!("no task named or with id '{task}'; `taskbox ls --all` lists your tasks")
        }
        _ => error,
    }
}

async fn run_command(service: &TaskService, command: TaskCommand) -> anyhow::Result<()> {
    let owner = Owner::local();
    let resolve = |name: &str| {
        service
            .resolve_for(&owner, name)
            .map(|t| t.id)
            .map_err(|e| for_people(e.into()))
    };
    match command {
        TaskCommand::Ls { all, json } => {
            let page = service.list(&owner, None, 500, 0)?;
            let tasks: Vec<&Task> = page
                .tasks
                .iter()
                .filter(|t| {
                    all || matches!(
                        t.status,
                        TaskStatus::Running | TaskStatus::Stopped | TaskStatus::Creating
                    )
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&tasks)?);
            } else {
                print_table(&tasks);
            }
        }
        TaskCommand::Show { task, json } => {
            let report = service.status(&resolve(&task)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let t = &report.task;
                println!("{} ({})", t.name, t.id);
                println!("  status     {}", paint(t.status));
                if let Some(reason) = &t.status_reason {
                    println!("  reason     {reason}");
                }
                println!("  image      {}", t.image);
                println!("  network    {}", t.network.as_str());
                println!("  branch     {}", t.repo.branch.as_deref().unwrap_or("-"));
                println!("  workspace  {}", t.workspace.display());
                if let Some(c) = &report.container {
                    println!("  container  {} ({})", short(&c.id), c.state);
                }
                let e = &report.executions;
                println!("  executions {} ({} failed, {} running)", e.total, e.failed, e.running);
                if let Some(bytes) = report.disk.workspace_bytes {
                    println!("  disk       {} in the workspace", human_bytes(bytes));
                }
            }
        }
        TaskCommand::Exec { task, command, timeout } => {
            let id = resolve(&task).map_err(own_failure)?;
            let code = exec(service, &id, command, timeout).await.map_err(own_failure)?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        TaskCommand::Logs { task, follow, lines } => super::logs::run(service, &resolve(&task)?, follow, lines).await?,
        TaskCommand::Shell { task } => {
            let id = resolve(&task).map_err(own_failure)?;
            super::shell::run(service, &id).await.map_err(own_failure)?
        }
        TaskCommand::Diff { task } => {
            let diff = Bar::new(format!("diff {task}"))
                .run(service.diff(&resolve(&task)?))
                .await?;
            print!("{}", diff.patch);
            if let Some(full) = diff.full_patch {
                eprintln!("taskbox: the patch was cut; the whole patch is in {full}");
            }
        }
        TaskCommand::Checkpoint { task, label } => {
            let made = Bar::new(format!("checkpoint {task}"))
                .run(service.create_checkpoint(&resolve(&task)?, label))
                .await?;
            println!("checkpoint {} ({})", made.reference, made.checkpoint.id);
        }
        TaskCommand::Restore { checkpoint } => {
            let restored = Bar::new(format!("restore {checkpoint}"))
                .run(service.restore_checkpoint(&owner, &checkpoint))
                .await?;
            println!("restored {}:{}", restored.task.name, restored.restored.seq);
        }
        TaskCommand::Stop { task } => {
            let (task, warnings) = Bar::new(format!("stop {task}"))
                .run(service.stop(&resolve(&task)?, None))
                .await?;
            warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            println!("{} {}", task.name, paint(task.status));
        }
        TaskCommand::Resume { task } => {
            let task = Bar::new(format!("resume {task}"))
                .run(service.resume(&resolve(&task)?))
                .await?;
            println!("{} {}", task.name, paint(task.status));
        }
        TaskCommand::Rm { task, yes } => {
            let id = resolve(&task)?;
            if !yes {
                anyhow::ensure!(
                    std::io::stdin().is_terminal(),
                    "refusing to delete '{task}' without --yes when not asked on a terminal"
                );
                eprint!("delete task '{task}' (container, workspace, records; the branch stays)? [y/N] ");
                let mut answer = String::new();
                std::io::stdin()
                    .read_line(&mut answer)
                    .context("cannot read the answer")?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    anyhow::bail!("not deleted");
                }
            }
            println!("{}", service.delete(&id, true).await?);
        }
    }
    Ok(())
}

/// Quotes a word for the shell the command runs under, unless it needs none.
/// Runs `taskbox exec`'s command: its output printed, its exit code returned (124 when it
/// timed out and was killed, as `timeout(1)` says).
async fn exec(service: &TaskService, id: &str, command: Vec<String>, timeout: Option<u64>) -> anyhow::Result<i32> {
    let request = ExecRequest {
        command: command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "),
        timeout_s: timeout,
        // A person at a terminal waits for the command: no soft timeout.
        yield_after_s: Some(0),
        ..Default::default()
    };
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    let result = service.execute(id, request, cancel).await?;
    std::io::stdout().write_all(result.stdout.as_bytes())?;
    std::io::stderr().write_all(result.stderr.as_bytes())?;
    if result.timed_out {
        eprintln!("taskbox: the command timed out and was killed");
        return Ok(EXIT_TIMED_OUT);
    }
    Ok(result.exit_code.map_or(1, |code| i32::try_from(code).unwrap_or(1)))
}

/// `exec`'s status for a command that timed out.
const EXIT_TIMED_OUT: i32 = 124;

/// A failure of taskbox itself in `exec` or `shell` (no such task, Docker unreachable…),
/// whose exit status must not pass for the command's: 125, as `docker exec` uses.
fn own_failure(error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(super::Exiting { code: 125, error })
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// The status, coloured when stdout is a terminal.
fn paint(status: TaskStatus) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return status.to_string();
    }
    let colour = match status {
        TaskStatus::Running => "32",
        TaskStatus::Stopped | TaskStatus::Creating => "33",
        TaskStatus::Failed => "31",
        TaskStatus::Completed | TaskStatus::Archived => "2",
    };
    format!("\x1b[{colour}m{status}\x1b[0m")
}

/// The terminal's width, `COLUMNS`, or 100 when printing elsewhere.
pub(super) fn width() -> usize {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout())
        && size.ws_col > 0
    {
        return size.ws_col as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

fn print_table(tasks: &[&Task]) {
    if tasks.is_empty() {
        eprintln!("no tasks (taskbox ls --all shows finished ones too)");
        return;
    }
    let name_w = tasks.iter().map(|t| t.name.chars().count()).max().unwrap_or(4).max(4);
    let fixed = name_w + 2 + 10 + 2 + 30 + 2 + 20 + 2;
    let desc_w = width().saturating_sub(fixed).max(10);
    println!(
        "{:name_w$}  {:10}  {:30}  {:20}  DESCRIPTION",
        "NAME", "STATUS", "ID", "CREATED"
    );
    for t in tasks {
        let status = format!("{:10}", t.status.to_string());
        let status = status.replacen(t.status.as_str(), &paint(t.status), 1);
        let description: String = t.description.as_deref().unwrap_or("").chars().take(desc_w).collect();
        println!(
            "{:name_w$}  {status}  {:30}  {:20}  {description}",
            t.name,
            t.id,
            t.created_at.format("%Y-%m-%d %H:%M:%S").to_string()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_the_shell_would_change_them() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("-la"), "-la");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
