//! The Claude Code PreToolUse hook, end to end: recorded PreToolUse inputs through
//! `taskbox hook claude-code pre-tool-use` while a real task over the project runs with an
//! agent attached, and `install --hooks` into .claude/settings.json.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Runs the hook like Claude Code does; returns its stdout (the decision, or "").
fn hook(home: &Path, input: &Value) -> String {
    let mut child = Command::new(BIN)
        .args(["hook", "claude-code", "pre-tool-use"])
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn host_tools_are_denied_while_the_project_has_a_sandboxed_task() {
    require!(docker);
    let (home, repos) = home_with_repos();
    let repo = dev_repo(&repos, "app");
    let cwd = repo.join("src").display().to_string();
    let bash = |command: &str| json!({ "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": { "command": command }, "cwd": cwd });

    // No task yet: nothing is blocked.
    assert_eq!(hook(&home.path(), &bash("rm -rf target")), "");

    let client = connect(&home.path(), "claude-code").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "guarded", "repo_path": repo.display().to_string() }),
    )
    .await;

    let denied: Value = serde_json::from_str(&hook(&home.path(), &bash("rm -rf target"))).unwrap();
    let output = &denied["hookSpecificOutput"];
    assert_eq!(output["hookEventName"], "PreToolUse");
    assert_eq!(output["permissionDecision"], "deny");
    let reason = output["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("execute_in_task") && reason.contains("guarded"),
        "{reason}"
    );
    let write = json!({ "tool_name": "Write", "tool_input": { "file_path": format!("{cwd}/x.rs"), "content": "x" }, "cwd": cwd });
    let denied: Value = serde_json::from_str(&hook(&home.path(), &write)).unwrap();
    assert!(
        denied["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("write_file")
    );
    // Harmless commands, reads, other projects and unreadable input pass.
    assert_eq!(hook(&home.path(), &bash("git status")), "");
    assert_eq!(
        hook(
            &home.path(),
            &json!({ "tool_name": "Read", "tool_input": {}, "cwd": cwd })
        ),
        ""
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let other = json!({ "tool_name": "Bash", "tool_input": { "command": "rm x" }, "cwd": elsewhere.path() });
    assert_eq!(hook(&home.path(), &other), "");
    assert_eq!(hook(&home.path(), &json!("not an object")), "");

    // "ask" instead of "deny", by config.
    write_config(
        &home.path(),
        &format!(
            "[workspace]\nallowed_repo_roots = [\"{}\"]\n[hooks.claude_code]\ndecision = \"ask\"\n",
            repos.display()
        ),
    );
    let asked: Value = serde_json::from_str(&hook(&home.path(), &bash("make"))).unwrap();
    assert_eq!(asked["hookSpecificOutput"]["permissionDecision"], "ask");

    // Once no agent is attached, the host is the agent's again.
    call(&client, "detach_agent_from_task", json!({ "task": "guarded" })).await;
    assert_eq!(hook(&home.path(), &bash("rm -rf target")), "");
}

#[test]
fn install_hooks_merges_into_claude_settings_and_uninstall_removes_only_it() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::create_dir_all(dir.join(".claude")).unwrap();
    let theirs = json!({ "matcher": "Bash", "hooks": [{ "type": "command", "command": "my-linter" }] });
    std::fs::write(
        dir.join(".claude/settings.json"),
        json!({ "model": "x", "hooks": { "PreToolUse": [theirs.clone()] } }).to_string(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("TASKBOX_CONFIG", dir.join("none.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let path = dir.to_str().unwrap();
    run(&["install", "claude", "--project", path, "--hooks"]);
    run(&["install", "claude", "--project", path, "--hooks"]);
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".claude/settings.json")).unwrap()).unwrap();
    assert_eq!(settings["model"], "x");
    let pre = settings["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 2, "installed once, however often it runs: {pre:?}");
    assert_eq!(pre[0], theirs);
    assert_eq!(pre[1]["matcher"], "Bash|Write|Edit|MultiEdit|NotebookEdit");
    let command = pre[1]["hooks"][0]["command"].as_str().unwrap();
    assert!(command.ends_with(" hook claude-code pre-tool-use"), "{command}");
    assert!(Path::new(command.split(' ').next().unwrap()).exists());

    // A hook left pointing at an old binary is replaced; a user's hook sharing our entry stays
    // through uninstall.
    let read = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(".claude/settings.json")).unwrap()).unwrap()
    };
    let mut stale = read();
    stale["hooks"]["PreToolUse"][1]["hooks"][0]["command"] = json!("/old/taskbox hook claude-code pre-tool-use");
    let mine = json!({ "type": "command", "command": "my-audit" });
    stale["hooks"]["PreToolUse"][1]["hooks"]
        .as_array_mut()
        .unwrap()
        .push(mine.clone());
    std::fs::write(dir.join(".claude/settings.json"), stale.to_string()).unwrap();
    run(&["install", "claude", "--project", path, "--hooks"]);
    let pre = read()["hooks"]["PreToolUse"].as_array().unwrap().clone();
    assert_eq!(pre.len(), 3, "{pre:?}");
    assert_eq!(pre[1]["hooks"], json!([mine]));
    assert_eq!(pre[2]["hooks"][0]["command"], json!(command));

    run(&["uninstall", "claude", "--project", path]);
    assert_eq!(
        read()["hooks"]["PreToolUse"],
        json!([theirs, { "matcher": "Bash|Write|Edit|MultiEdit|NotebookEdit", "hooks": [mine] }])
    );
}
