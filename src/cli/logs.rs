//! `taskbox logs TASK [-f] [-n N]`: a task's events as one line each, oldest first, and with
//! `-f` those that come after, as they happen (the registry indexes every server's events, so
//! what an agent does through any server shows up). docs/cli.md.

#![allow(clippy::print_stdout)]

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::domain::Event;
use crate::task::TaskService;

/// How often `-f` looks for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// The most events read at once.
const PAGE: u32 = 500;

pub async fn run(service: &TaskService, task_id: &str, follow: bool, last: u32) -> anyhow::Result<()> {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let newest = service.history(task_id, &[], None, None, last.clamp(1, PAGE), 0)?;
    let mut seen = newest.total;
    print_events(newest.items.into_iter().rev(), colour)?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let total = service.history(task_id, &[], None, None, 1, 0)?.total;
        if total <= seen {
            // Fewer after a registry rebuild: start counting again from there.
            seen = total;
            continue;
        }
        let new = (total - seen).min(u64::from(PAGE)) as u32;
        let page = service.history(task_id, &[], None, None, new, 0)?;
        seen = page.total;
        print_events(page.items.into_iter().rev(), colour)?;
    }
    Ok(())
}

fn print_events(events: impl Iterator<Item = Event>, colour: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for event in events {
        let at = event.at.format("%Y-%m-%d %H:%M:%S");
        let kind = event.kind.as_str();
        let kind = if colour {
            format!("\x1b[1m{kind:<18}\x1b[0m")
        } else {
            format!("{kind:<18}")
        };
        writeln!(out, "{at}  {kind}  {}", summary(&event))?;
    }
    out.flush()?;
    Ok(())
}

/// The few fields of an event's data a person reads first, in one line with no control
/// characters (commands and messages come from agents).
fn summary(event: &Event) -> String {
    let d = &event.data;
    let text = |key: &str| d.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let number = |key: &str| d.get(key).and_then(|v| v.as_i64());
    let line = match event.kind.as_str() {
        "execution" => {
            let ending = match (number("exit_code"), text("status")) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(status)) => status,
                (None, None) => "running".into(),
            };
            let background = if d["background"] == true { " (background)" } else { "" };
            format!("{ending}{background}: {}", text("command").unwrap_or_default())
        }
        "tool_call" => {
            let outcome = if d["ok"] == false { " failed" } else { "" };
            format!("{}{outcome}", text("tool").unwrap_or_default())
        }
        "status_changed" => format!(
            "{} -> {}",
            text("from").unwrap_or_default(),
            text("to").unwrap_or_default()
        ),
        "decision_recorded" => text("decision").unwrap_or_default(),
        "checkpoint_created" | "checkpoint_restored" => {
            format!(
                "{} {}",
                number("seq").map(|n| format!("#{n}")).unwrap_or_default(),
                text("label").unwrap_or_default()
            )
        }
        "agent_attached" | "agent_detached" => text("agent").unwrap_or_default(),
        "hook" => format!(
            "{} {}: {}",
            text("hook").unwrap_or_default(),
            text("decision").unwrap_or_default(),
            text("message").unwrap_or_default()
        ),
        _ => d.to_string(),
    };
    let clean: String = line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    clean.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;
    use serde_json::json;

    #[test]
    fn an_execution_reads_as_its_ending_and_command_without_control_characters() {
        let event = Event::new(
            "t-1",
            EventKind::Execution,
            json!({ "exit_code": 2, "command": "make\ttest\n\x1b[31m" }),
        );
        assert_eq!(summary(&event), "exit 2: make test  [31m");
        let running = Event::new(
            "t-1",
            EventKind::Execution,
            json!({ "command": "sleep 9", "background": true }),
        );
        assert_eq!(summary(&running), "running (background): sleep 9");
    }
}
