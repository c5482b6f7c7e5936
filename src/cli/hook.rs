//! `taskbox hook claude-code pre-tool-use`: Claude Code's PreToolUse JSON on stdin, the
//! decision as JSON on stdout (nothing when the tool may run). A guardrail must never wedge a
//! session: input it cannot read is let through, with the reason on stderr.

use std::io::{Read, Write};

use clap::Subcommand;

use crate::config::Config;
use crate::hooks::claude_code::{PreToolUseInput, decide};
use crate::task::TaskService;

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Hooks for Claude Code.
    ClaudeCode {
        #[command(subcommand)]
        event: ClaudeCodeEvent,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClaudeCodeEvent {
    /// The PreToolUse hook that keeps an agent in its sandbox (see hooks/claude-code/).
    PreToolUse,
}

pub fn run(
    config: Config,
    service: impl FnOnce(Config) -> anyhow::Result<TaskService>,
    command: HookCommand,
) -> anyhow::Result<()> {
    let HookCommand::ClaudeCode {
        event: ClaudeCodeEvent::PreToolUse,
    } = command;
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let input: PreToolUseInput = match serde_json::from_str(&text) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("taskbox hook: cannot read the PreToolUse input ({e}); letting the tool run");
            return Ok(());
        }
    };
    let hook_config = config.hooks.claude_code.clone();
    let dir = input
        .cwd
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let task = service(config)?.sandboxed_task_for(&dir)?;
    if let Some(answer) = decide(&input, task.as_ref().map(|t| t.name.as_str()), &hook_config) {
        let mut stdout = std::io::stdout();
        stdout.write_all(answer.to_string().as_bytes())?;
        stdout.write_all(b"\n")?;
    }
    Ok(())
}
