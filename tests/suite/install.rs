//! `taskbox install` / `uninstall` into temp projects: other servers and keys survive, a
//! backup is kept, it is idempotent, the commands land in each client's folder and format,
//! and the written .mcp.json starts a server whose tools and prompts a real client lists.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use pretty_assertions::assert_eq;
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

fn taskbox(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("TASKBOX_CONFIG", dir.join("no-config.toml"))
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_claude_merges_and_the_written_entry_serves_tools_and_prompts() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    let original = json!({ "mcpServers": { "other": { "command": "other-server", "args": ["--x"] } }, "keep": 1 });
    std::fs::write(dir.join(".mcp.json"), original.to_string()).unwrap();
    std::fs::create_dir_all(dir.join(".claude/commands")).unwrap();
    std::fs::write(dir.join(".claude/commands/mine.md"), "my own command\n").unwrap();

    let out = taskbox(&["install", "claude", "--project", dir.to_str().unwrap()], dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The step Claude Code still needs: approving the project's server once.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pending approval"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = read_json(&dir.join(".mcp.json"));
    assert_eq!(config["mcpServers"]["other"], original["mcpServers"]["other"]);
    assert_eq!(config["keep"], 1);
    assert_eq!(config["mcpServers"]["taskbox"]["args"], json!(["serve"]));
    assert_eq!(read_json(&dir.join(".mcp.json.taskbox-backup")), original);
    let create = std::fs::read_to_string(dir.join(".claude/commands/create-task.md")).unwrap();
    assert!(
        create.starts_with("---\ndescription: Create a task sandbox"),
        "{create}"
    );
    assert!(create.contains("argument-hint: <name> [description]"));
    assert!(create.contains("`name` \"$1\" and `description` \"$2\""), "{create}");
    assert_eq!(std::fs::read_dir(dir.join(".claude/commands")).unwrap().count(), 15);

    // Idempotent: the same files again.
    let before = std::fs::read_to_string(dir.join(".mcp.json")).unwrap();
    assert!(
        taskbox(&["install", "claude", "--project", dir.to_str().unwrap()], dir)
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(dir.join(".mcp.json")).unwrap(), before);
    // What the user adds to the entry (env, say) survives a reinstall.
    let mut edited = read_json(&dir.join(".mcp.json"));
    edited["mcpServers"]["taskbox"]["env"] = json!({ "TASKBOX_HOME": "/data/tb" });
    std::fs::write(dir.join(".mcp.json"), edited.to_string()).unwrap();
    assert!(
        taskbox(&["install", "claude", "--project", dir.to_str().unwrap()], dir)
            .status
            .success()
    );
    assert_eq!(
        read_json(&dir.join(".mcp.json"))["mcpServers"]["taskbox"]["env"]["TASKBOX_HOME"],
        "/data/tb"
    );

    // The entry as written starts a server a real client can use.
    let entry = &config["mcpServers"]["taskbox"];
    let home = Home::new();
    let program = entry["command"].as_str().unwrap().to_string();
    let args: Vec<String> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let home_path = home.path();
    let command = tokio::process::Command::new(program).configure(|cmd| {
        cmd.args(&args)
            .current_dir(&home_path)
            .env("TASKBOX_HOME", &home_path)
            .env("TASKBOX_LOG", "warn");
    });
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("installed-client", "1"),
    )
    .serve(TokioChildProcess::new(command).unwrap())
    .await
    .unwrap();
    assert!(
        client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "create_task_sandbox")
    );
    assert_eq!(client.list_all_prompts().await.unwrap().len(), 14);
    client.cancel().await.unwrap();

    // Uninstall: taskbox's entry and commands go; everything else stays.
    assert!(
        taskbox(&["uninstall", "claude", "--project", dir.to_str().unwrap()], dir)
            .status
            .success()
    );
    let config = read_json(&dir.join(".mcp.json"));
    assert_eq!(config["mcpServers"], original["mcpServers"]);
    assert_eq!(config["keep"], 1);
    let left: Vec<String> = std::fs::read_dir(dir.join(".claude/commands"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["mine.md"]);
}

#[test]
fn install_opencode_and_refuse_a_broken_config() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(
        dir.join("opencode.json"),
        json!({ "$schema": "https://opencode.ai/config.json", "mcp": { "other": { "type": "remote", "url": "http://x" } } })
            .to_string(),
    )
    .unwrap();
    // A private config stays private, and so does its backup.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("opencode.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = taskbox(&["install", "opencode", "--project", dir.to_str().unwrap()], dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("opencode.json"), 0o600);
    assert_eq!(mode("opencode.json.taskbox-backup"), 0o600);
    let config = read_json(&dir.join("opencode.json"));
    assert_eq!(config["mcp"]["other"]["type"], "remote");
    assert_eq!(config["mcp"]["taskbox"]["type"], "local");
    assert_eq!(config["mcp"]["taskbox"]["command"][1], "serve");
    let checkpoint = std::fs::read_to_string(dir.join(".opencode/command/checkpoint.md")).unwrap();
    assert!(checkpoint.contains("Arguments: [task] [label]"), "{checkpoint}");

    // A config that is not JSON is left alone, with a clear error.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join(".mcp.json"), "{ not json").unwrap();
    let out = taskbox(
        &["install", "claude", "--project", broken.path().to_str().unwrap()],
        broken.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JSON object"));
    assert_eq!(
        std::fs::read_to_string(broken.path().join(".mcp.json")).unwrap(),
        "{ not json"
    );
}

/// A project may come from anyone: links in it that taskbox did not make are never written
/// through. A linked config or folder is refused with the link named; a linked backup or command
/// file is replaced by a file of its own; uninstall removes no link.
#[test]
fn install_never_writes_through_a_link_it_did_not_make() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();

    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(dir.join(".mcp.json"), "{}").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(".mcp.json.taskbox-backup")).unwrap();
    std::fs::create_dir_all(dir.join(".claude/commands")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(".claude/commands/checkpoint.md")).unwrap();
    let out = taskbox(&["install", "claude", "--project", dir.to_str().unwrap()], dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        stderr.contains(".mcp.json.taskbox-backup: it was a symbolic link"),
        "{stderr}"
    );
    assert!(stderr.contains("checkpoint.md: it was a symbolic link"), "{stderr}");
    let backup = std::fs::symlink_metadata(dir.join(".mcp.json.taskbox-backup")).unwrap();
    assert!(backup.is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join(".mcp.json.taskbox-backup")).unwrap(),
        "{}"
    );

    // Uninstall leaves a link in the commands folder alone, even to a taskbox command.
    std::os::unix::fs::symlink(
        dir.join(".claude/commands/checkpoint.md"),
        dir.join(".claude/commands/linked.md"),
    )
    .unwrap();
    let out = taskbox(&["uninstall", "claude", "--project", dir.to_str().unwrap()], dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(dir.join(".claude/commands/linked.md")).is_ok());
    assert!(!dir.join(".claude/commands/checkpoint.md").exists());

    // A linked config, settings folder or commands folder: refused, nothing written there.
    for (link, target_is_dir) in [(".mcp.json", false), (".claude", true)] {
        let project = tempfile::tempdir().unwrap();
        let dir = project.path();
        let target = outside
            .path()
            .join(format!("target-of-{}", link.trim_start_matches('.')));
        if target_is_dir {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::write(&target, "{}").unwrap();
        }
        std::os::unix::fs::symlink(&target, dir.join(link)).unwrap();
        let out = taskbox(
            &["install", "claude", "--hooks", "--project", dir.to_str().unwrap()],
            dir,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{link}: {stderr}");
        assert!(
            stderr.contains("is a symbolic link") && stderr.contains(link),
            "{stderr}"
        );
        if target_is_dir {
            assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{link}");
        } else {
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        }
    }
}

/// The hook command Claude Code hands to a shell runs the binary whatever its path holds.
#[test]
fn the_hook_command_is_quoted_for_the_shell() {
    let tools = tempfile::tempdir().unwrap();
    let odd = tools.path().join("my tools' $(touch pwned) `x`;");
    std::fs::create_dir_all(&odd).unwrap();
    let binary = odd.join("taskbox");
    std::fs::copy(BIN, &binary).unwrap();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    let out = Command::new(&binary)
        .args(["install", "claude", "--hooks", "--project", dir.to_str().unwrap()])
        .current_dir(dir)
        .env("TASKBOX_CONFIG", dir.join("no-config.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let settings = read_json(&dir.join(".claude/settings.json"));
    let command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    // Claude Code runs it with a shell: the binary must start and answer the hook protocol.
    let run = Command::new("sh")
        .args(["-c", &format!("{command} < /dev/null")])
        .current_dir(dir)
        .env("TASKBOX_CONFIG", dir.join("no-config.toml"))
        .output()
        .unwrap();
    assert_ne!(
        run.status.code(),
        Some(127),
        "{command}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!dir.join("pwned").exists() && !tools.path().join("pwned").exists());
}
