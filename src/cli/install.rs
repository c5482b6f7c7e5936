//! `taskbox install claude|opencode` and `taskbox uninstall`: register the server with a client
//! and install the slash commands in that client's own format and folder.
//!
//! The client's config file is merged, never replaced: other servers and keys stay, the
//! previous file is kept as `<file>.taskbox-backup`, and running it twice changes nothing.
//!
//! A project directory may come from anyone (a cloned repository), so nothing here writes
//! through a symbolic link taskbox did not make: a linked config, settings file or command
//! folder is refused with the link named, a linked backup or command file is replaced by a
//! file of its own (and said so). Every write is a new file renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::mcp::prompts::{self, Command};

/// Marks command files taskbox wrote, so uninstall removes only those.
const MARKER: &str = "<!-- installed by taskbox -->";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Client {
    Claude,
    Opencode,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[arg(value_enum)]
    pub client: Client,
    /// Project directory to install into (default: the current directory).
    #[arg(long, conflicts_with = "user")]
    pub project: Option<PathBuf>,
    /// Install for the user (all projects) instead of one project.
    #[arg(long)]
    pub user: bool,
    /// Claude Code only: also install the PreToolUse hook that keeps the agent in its sandbox
    /// (into .claude/settings.json). `uninstall` removes it whether or not this is given.
    #[arg(long)]
    pub hooks: bool,
}

/// Where a client keeps its config, commands and (Claude Code) settings with hooks.
struct Target {
    /// The project directory or the user's home: links above it are the user's own choice,
    /// links below it are refused.
    root: PathBuf,
    config: PathBuf,
    commands: PathBuf,
    settings: Option<PathBuf>,
}

/// The command Claude Code runs for the hook; also how uninstall recognises taskbox's entry.
const HOOK_ARGS: &str = "hook claude-code pre-tool-use";

fn target(args: &InstallArgs) -> anyhow::Result<Target> {
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set; use --project")
    };
    Ok(match (args.client, args.user) {
        (Client::Claude, false) => {
            let dir = project_dir(args)?;
            Target {
                config: dir.join(".mcp.json"),
                commands: dir.join(".claude/commands"),
                settings: Some(dir.join(".claude/settings.json")),
                root: dir,
            }
        }
        (Client::Claude, true) => Target {
            root: home()?,
            config: home()?.join(".claude.json"),
            commands: home()?.join(".claude/commands"),
            settings: Some(home()?.join(".claude/settings.json")),
        },
        (Client::Opencode, false) => {
            let dir = project_dir(args)?;
            Target {
                config: dir.join("opencode.json"),
                commands: dir.join(".opencode/command"),
                settings: None,
                root: dir,
            }
        }
        (Client::Opencode, true) => {
            let config = match std::env::var_os("XDG_CONFIG_HOME") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => home()?.join(".config"),
            }
            .join("opencode");
            Target {
                root: config.clone(),
                config: config.join("opencode.json"),
                commands: config.join("command"),
                settings: None,
            }
        }
    })
}

fn project_dir(args: &InstallArgs) -> anyhow::Result<PathBuf> {
    let dir = match &args.project {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(dir)
}

pub fn install(args: &InstallArgs, commands_dir: Option<&Path>) -> anyhow::Result<()> {
    let target = target(args)?;
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the taskbox binary's path")?;
    let binary = binary.to_string_lossy().into_owned();
    let entry = match args.client {
        Client::Claude => json!({ "type": "stdio", "command": binary, "args": ["serve"] }),
        Client::Opencode => json!({ "type": "local", "command": [binary, "serve"], "enabled": true }),
    };
    let changed = edit_config(&target.config, &target.root, |config| {
        let servers = servers(config, args.client)?;
        // Keep what the user added to the entry (env, say); set what taskbox owns.
        let mut merged = servers
            .get("taskbox")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Value::Object(ours) = &entry {
            merged.extend(ours.clone());
        }
        servers.insert("taskbox".into(), Value::Object(merged));
        Ok(())
    })?;
    eprintln!(
        "{} {}",
        if changed {
            "registered taskbox in"
        } else {
            "taskbox already registered in"
        },
        target.config.display()
    );
    refuse_links_up_to(&target.commands, &target.root)?;
    std::fs::create_dir_all(&target.commands)?;
    for command in prompts::load(commands_dir)? {
        let path = target.commands.join(format!("{}.md", command.name));
        let kind = FileKind::of(&path)?;
        if kind == FileKind::Link {
            eprintln!(
                "replacing {}: it was a symbolic link, not a file taskbox wrote",
                path.display()
            );
        } else if kind == FileKind::File && !std::fs::read_to_string(&path).unwrap_or_default().contains(MARKER) {
            eprintln!("kept {} (not written by taskbox)", path.display());
            continue;
        }
        write_file(&path, client_command(&command, args.client).as_bytes(), None)?;
    }
    eprintln!("installed the slash commands in {}", target.commands.display());
    if args.hooks {
        let settings = target
            .settings
            .as_deref()
            .context("--hooks is for Claude Code; opencode has no PreToolUse hooks")?;
        let command = format!("{} {HOOK_ARGS}", shell_quote(&binary));
        edit_config(settings, &target.root, |config| {
            let pre = pre_tool_use(config)?;
            remove_taskbox_hooks(pre);
            pre.push(json!({
                "matcher": "Bash|Write|Edit|MultiEdit|NotebookEdit",
                "hooks": [{ "type": "command", "command": command, "timeout": 10 }],
            }));
            Ok(())
        })?;
        eprintln!("installed the PreToolUse hook in {}", settings.display());
    }
    eprintln!("{}", next_step(args));
    Ok(())
}

/// What the user still has to do in the client after an install.
fn next_step(args: &InstallArgs) -> &'static str {
    match (args.client, args.user) {
        // Claude Code lists a project's .mcp.json server as pending until approved once.
        (Client::Claude, false) => {
            "next: start `claude` in this project and approve the `taskbox` server when asked (until then \
             `claude mcp list` shows it as pending approval); then type /create-task"
        }
        (Client::Claude, true) => "next: start `claude` anywhere and type /create-task",
        (Client::Opencode, _) => "next: start `opencode`; taskbox's tools and commands are enabled",
    }
}

/// The `hooks.PreToolUse` array of Claude Code settings, created when missing.
fn pre_tool_use(config: &mut Map<String, Value>) -> anyhow::Result<&mut Vec<Value>> {
    config
        .entry("hooks")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("`hooks` in the Claude Code settings is not an object")?
        .entry("PreToolUse")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .context("`hooks.PreToolUse` in the Claude Code settings is not an array")
}

/// Removes taskbox's hook from every PreToolUse entry, and the entries left with no hook; the
/// user's hooks, even in the same entry, stay.
fn remove_taskbox_hooks(pre: &mut Vec<Value>) {
    for entry in pre.iter_mut() {
        if let Some(hooks) = entry.get_mut("hooks").and_then(Value::as_array_mut) {
            hooks.retain(|h| !h["command"].as_str().is_some_and(|c| c.ends_with(HOOK_ARGS)));
        }
    }
    pre.retain(|entry| entry["hooks"].as_array().is_none_or(|hooks| !hooks.is_empty()));
}

pub fn uninstall(args: &InstallArgs) -> anyhow::Result<()> {
    let target = target(args)?;
    if let Some(settings) = target.settings.as_deref().filter(|s| s.exists()) {
        let removed = edit_config(settings, &target.root, |config| {
            remove_taskbox_hooks(pre_tool_use(config)?);
            Ok(())
        })?;
        if removed {
            eprintln!("removed taskbox's PreToolUse hook from {}", settings.display());
        }
    }
    if target.config.exists() {
        let removed = edit_config(&target.config, &target.root, |config| {
            servers(config, args.client)?.remove("taskbox");
            Ok(())
        })?;
        if removed {
            eprintln!("removed taskbox from {}", target.config.display());
        }
    }
    if let Ok(entries) = std::fs::read_dir(&target.commands) {
        for entry in entries.flatten() {
            let path = entry.path();
            // Only files taskbox wrote: never a link, whatever it points to.
            if FileKind::of(&path)? == FileKind::File
                && std::fs::read_to_string(&path).is_ok_and(|text| text.contains(MARKER))
            {
                std::fs::remove_file(&path)?;
            }
        }
        eprintln!("removed taskbox's slash commands from {}", target.commands.display());
    }
    Ok(())
}

/// The object holding MCP servers in the client's config: `mcpServers` (Claude Code) or `mcp`
/// (opencode), created when missing; anything else there is the user's and is not touched.
fn servers(config: &mut Map<String, Value>, client: Client) -> anyhow::Result<&mut Map<String, Value>> {
    let key = match client {
        Client::Claude => "mcpServers",
        Client::Opencode => "mcp",
    };
    config
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .with_context(|| format!("`{key}` in the client's config is not a JSON object; fix it, then run this again"))
}

/// Reads the JSON object in `path` (or an empty one), lets `edit` change it, and writes it
/// back if that changed anything, keeping the previous file as a backup; returns whether it
/// wrote. Refuses a file that is not a JSON object rather than overwrite it, and a path that is
/// or passes through a symbolic link below `root`.
fn edit_config(
    path: &Path,
    root: &Path,
    edit: impl FnOnce(&mut Map<String, Value>) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    refuse_links_up_to(path, root)?;
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut config = match previous.as_deref().map(serde_json::from_str::<Value>) {
        None => Map::new(),
        Some(Ok(Value::Object(map))) => map,
        Some(_) => bail!(
            "{} is not a JSON object; fix or move it, then run this again",
            path.display()
        ),
    };
    let before = config.clone();
    edit(&mut config)?;
    if config == before && previous.is_some() {
        return Ok(false);
    }
    // The backup and the new file keep the original's permissions: ~/.claude.json, say, can
    // hold credentials and must not become world-readable.
    let mode = std::fs::metadata(path).map(|m| m.permissions()).ok();
    if let Some(previous) = previous {
        let backup = path.with_file_name(format!(
            "{}.taskbox-backup",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        ));
        if FileKind::of(&backup)? == FileKind::Link {
            eprintln!(
                "replacing {}: it was a symbolic link, not a backup taskbox wrote",
                backup.display()
            );
        }
        write_file(&backup, previous.as_bytes(), mode.clone())?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(config))? + "\n";
    write_file(path, text.as_bytes(), mode)?;
    Ok(true)
}

/// What is at a path, without following a link there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Missing,
    Link,
    File,
    Other,
}

impl FileKind {
    fn of(path: &Path) -> anyhow::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Ok(Self::Link),
            Ok(m) if m.is_file() => Ok(Self::File),
            Ok(_) => Ok(Self::Other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::Missing),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// Refuses `path` when it, or a directory between it and `root`, is a symbolic link: taskbox
/// would write where the link points, which whoever made the link chose, not the user.
fn refuse_links_up_to(path: &Path, root: &Path) -> anyhow::Result<()> {
    let mut at = Some(path);
    while let Some(current) = at.filter(|p| p.starts_with(root) && *p != root) {
        if FileKind::of(current)? == FileKind::Link {
            let target = std::fs::read_link(current).unwrap_or_default();
            bail!(
                "{} is a symbolic link (to {}); taskbox does not write through links it did not make. \
                 Replace it with a file or folder of its own, or edit the target yourself",
                current.display(),
                target.display()
            );
        }
        at = current.parent();
    }
    Ok(())
}

/// Writes a new file and renames it over `path`, so a link at `path` is replaced, never
/// written through. `mode`: the permissions to keep (default 0644).
fn write_file(path: &Path, bytes: &[u8], mode: Option<std::fs::Permissions>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = mode.unwrap_or_else(|| std::fs::Permissions::from_mode(0o644));
    crate::store::atomic_write(path, |f| {
        f.set_permissions(mode)?;
        std::io::Write::write_all(f, bytes)
    })?;
    Ok(())
}

/// A word for a POSIX shell: as it is when it holds only characters no shell treats
/// specially, else in single quotes (a quote inside becomes `'\''`).
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A command in the client's format: front matter it understands, and the arguments as the
/// positional `$1`, `$2`, … both Claude Code and opencode substitute.
fn client_command(command: &Command, client: Client) -> String {
    let mut body = command.body.clone();
    for (i, arg) in command.arguments.iter().enumerate() {
        body = body.replace(&format!("{{{{{}}}}}", arg.name), &format!("${}", i + 1));
    }
    let hint: Vec<String> = command
        .arguments
        .iter()
        .map(|a| {
            if a.required {
                format!("<{}>", a.name)
            } else {
                format!("[{}]", a.name)
            }
        })
        .collect();
    let mut text = format!("---\ndescription: {}\n", command.description);
    if client == Client::Claude && !hint.is_empty() {
        text.push_str(&format!("argument-hint: {}\n", hint.join(" ")));
    }
    text.push_str("---\n");
    if client == Client::Opencode && !hint.is_empty() {
        text.push_str(&format!("Arguments: {}\n\n", hint.join(" ")));
    }
    text.push_str(&body);
    text.push_str(&format!("\n\n{MARKER}\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_any_path() {
        assert_eq!(shell_quote("/usr/bin/taskbox"), "/usr/bin/taskbox");
        for path in ["/opt/my tools/taskbox", "/x/it's/$(rm -rf ~)/`id`;tb", "/a\"b\\c", ""] {
            let quoted = shell_quote(path);
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {quoted}")])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), path, "{quoted}");
        }
    }
}
