//! The Claude Code PreToolUse hook (`taskbox hook claude-code pre-tool-use`). While the project
//! Claude Code works in has a running taskbox task with an agent attached, the agent's host
//! tools that run commands or change files (Bash, Write, Edit, MultiEdit, NotebookEdit) are
//! denied (or asked about, by config), with a reason that points at the sandbox's tools.
//! Harmless read-only shell commands on an allowlist pass.

use serde::Deserialize;
use serde_json::{Value, json};

/// What Claude Code sends on stdin (the fields used here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PreToolUseInput {
    pub tool_name: String,
    #[serde(default)]
    pub tool_input: Value,
    #[serde(default)]
    pub cwd: Option<String>,
}

/// How a blocked tool is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    #[default]
    Deny,
    Ask,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeCodeHookConfig {
    pub decision: Decision,
    /// Shell commands allowed on the host anyway: a command passes when it is one of these or
    /// starts with one followed by a space, and has no shell operators (`;`, `&&`, `|`, `>`,
    /// `$(`, backquotes …) that could chain another command.
    pub allow: Vec<String>,
}

impl Default for ClaudeCodeHookConfig {
    fn default() -> Self {
        Self {
            decision: Decision::Deny,
            allow: [
                "git status",
                "git diff",
                "git log",
                "git show",
                "ls",
                "pwd",
                "cat",
                "head",
                "tail",
                "wc",
                "which",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

const FILE_TOOLS: [&str; 4] = ["Write", "Edit", "MultiEdit", "NotebookEdit"];

/// The hook's answer for `input` when `task` (name) is the project's sandboxed task; `None`
/// lets the tool run (Claude Code then applies its own permissions).
pub fn decide(input: &PreToolUseInput, task: Option<&str>, config: &ClaudeCodeHookConfig) -> Option<Value> {
    let task = task?;
    let reason = if input.tool_name == "Bash" {
        let command = input
            .tool_input
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if allowed(command, &config.allow) {
            return None;
        }
        format!(
            "This project is being worked on in the taskbox sandbox task '{task}'. Run commands there with the MCP tool execute_in_task (task \"{task}\"), not in the host shell."
        )
    } else if FILE_TOOLS.contains(&input.tool_name.as_str()) {
        format!(
            "This project is being worked on in the taskbox sandbox task '{task}'. Change files there with the MCP tools write_file / edit_file (task \"{task}\"), so the change lands in the task's workspace and on its branch."
        )
    } else {
        return None;
    };
    Some(json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": config.decision.as_str(),
            "permissionDecisionReason": reason,
        }
    }))
}

fn allowed(command: &str, allow: &[String]) -> bool {
    let command = command.trim();
    const OPERATORS: [&str; 10] = [";", "&", "|", ">", "<", "`", "$(", "\n", "\\", "${"];
    // Options that make a reading command write (git diff/log --output=FILE).
    const WRITING: [&str; 2] = ["--output", " -o "];
    if OPERATORS.iter().chain(WRITING.iter()).any(|op| command.contains(op)) {
        return false;
    }
    allow.iter().any(|prefix| {
        command == prefix
            || command
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with(' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn input(tool: &str, tool_input: Value) -> PreToolUseInput {
        PreToolUseInput {
            tool_name: tool.into(),
            tool_input,
            cwd: Some("/src/app".into()),
        }
    }

    fn decision(out: Option<Value>) -> Option<String> {
        out.map(|v| {
            v["hookSpecificOutput"]["permissionDecision"]
                .as_str()
                .unwrap()
                .to_string()
        })
    }

    #[test]
    fn recorded_inputs_get_the_expected_decisions() {
        let config = ClaudeCodeHookConfig::default();
        let cases = [
            ("Bash", json!({ "command": "rm -rf target" }), Some("deny")),
            ("Bash", json!({ "command": "cargo test" }), Some("deny")),
            ("Bash", json!({ "command": "git status" }), None),
            ("Bash", json!({ "command": "git log --oneline -5" }), None),
            ("Bash", json!({ "command": "ls; rm -rf /" }), Some("deny")),
            ("Bash", json!({ "command": "cat x > y" }), Some("deny")),
            ("Bash", json!({ "command": "lsblk" }), Some("deny")),
            ("Bash", json!({ "command": "git status && rm x" }), Some("deny")),
            (
                "Bash",
                json!({ "command": "git diff --output=src/lib.rs" }),
                Some("deny"),
            ),
            ("Bash", json!({ "command": "git branch -D taskbox/x" }), Some("deny")),
            ("Bash", json!({ "command": "taskbox uninstall claude" }), Some("deny")),
            (
                "Write",
                json!({ "file_path": "/src/app/a.rs", "content": "x" }),
                Some("deny"),
            ),
            ("Edit", json!({ "file_path": "/src/app/a.rs" }), Some("deny")),
            ("MultiEdit", json!({}), Some("deny")),
            ("Read", json!({ "file_path": "/src/app/a.rs" }), None),
            ("Grep", json!({ "pattern": "x" }), None),
            ("mcp__taskbox__execute_in_task", json!({ "command": "rm -rf /" }), None),
        ];
        for (tool, tool_input, want) in cases {
            let got = decision(decide(&input(tool, tool_input.clone()), Some("fix-login"), &config));
            assert_eq!(got.as_deref(), want, "{tool} {tool_input}");
        }
        // No sandboxed task for the project: nothing is blocked.
        assert_eq!(
            decide(&input("Bash", json!({ "command": "rm -rf /" })), None, &config),
            None
        );
    }

    #[test]
    fn reasons_point_at_the_sandbox_tools_and_ask_is_configurable() {
        let config = ClaudeCodeHookConfig {
            decision: Decision::Ask,
            ..Default::default()
        };
        let out = decide(&input("Bash", json!({ "command": "make" })), Some("t1"), &config).unwrap();
        assert_eq!(out["hookSpecificOutput"]["hookEventName"], "PreToolUse");
        assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "ask");
        assert!(
            out["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .contains(crate::domain::Tool::ExecuteInTask.as_str())
        );
        let out = decide(&input("Write", json!({})), Some("t1"), &config).unwrap();
        assert!(
            out["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .contains(crate::domain::Tool::WriteFile.as_str())
        );
    }
}
