//! The task commands that need a terminal, driven through a real one (tmux): `taskbox shell`
//! (a PTY as the agent's user, window resizes, Ctrl-C to the foreground job, nothing left
//! running after exit) and `taskbox logs -f` (an agent's command shows up as it happens).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

/// A tmux server of the test's own (its own socket), one session per command.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `taskbox ARGS` in a new 120x40 session `name` that stays after it exits.
    fn start(&self, name: &str, home: &Path, args: &str) {
        let command = format!(
            "env TASKBOX_HOME={} TASKBOX_CONFIG={} {BIN} {args}; echo \"[exited $?]\"; sleep 600",
            home.display(),
            home.join("config.toml").display()
        );
        self.run(&["new-session", "-d", "-s", name, "-x", "120", "-y", "40", &command]);
    }

    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", name, "-S", "-200"])
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `line` and Enter.
    fn line(&self, name: &str, line: &str) {
        self.keys(name, &["-l", line]);
        self.keys(name, &["Enter"]);
    }

    /// Waits up to 30 s for `text` on the screen; returns the screen.
    fn wait_for(&self, name: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen(name);
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{text:?} not on the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_gets_a_shell_in_a_task_and_follows_its_events() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "cli-terminal").await;
    let task = create(&client, "tty").await;
    let container = task["container_id"].as_str().unwrap().to_string();
    let tmux = Tmux::new();

    tmux.start("shell", &home.path(), "shell tty");
    // Arithmetic the shell does, so the typed line itself never matches.
    tmux.line("shell", "echo \"ID=$(id -u):$(id -g) HOME=$HOME AT=$(pwd) $((6 * 7))\"");
    tmux.wait_for("shell", "ID=1000:1000 HOME=/home/agent AT=/workspace 42");
    tmux.line("shell", "echo \"SIZE=$(stty size)\"");
    tmux.wait_for("shell", "SIZE=40 120");
    tmux.run(&["resize-window", "-t", "shell", "-x", "100", "-y", "30"]);
    tmux.line("shell", "echo \"RESIZED=$(stty size)\"");
    tmux.wait_for("shell", "RESIZED=30 100");

    // Ctrl-C reaches the foreground job, not the shell.
    tmux.line("shell", "sleep 1020");
    let deadline = Instant::now() + Duration::from_secs(20);
    while container_processes(&container, "sleep 1020").is_empty() {
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.keys("shell", &["C-c"]);
    tmux.line("shell", "echo \"AFTER=$((40 + 2))\"");
    tmux.wait_for("shell", "AFTER=42");
    assert_eq!(container_processes(&container, "sleep 1020"), "");

    // Leaving the shell ends what it left running, and its exit status is the CLI's.
    tmux.line("shell", "(sleep 1021 &); exit 3");
    tmux.wait_for("shell", "[exited 3]");
    assert_eq!(container_processes(&container, "sleep 1021"), "");

    // logs -f: the shell just recorded, then an agent's command as it happens.
    tmux.start("logs", &home.path(), "logs tty -f");
    tmux.wait_for("logs", "shell");
    call(
        &client,
        "execute_in_task",
        json!({ "task": "tty", "command": "echo live-$((20 + 1))" }),
    )
    .await;
    let screen = tmux.wait_for("logs", "exit 0: echo live-$((20 + 1))");
    assert!(!screen.contains("[exited"), "logs -f ended:\n{screen}");
    tmux.keys("logs", &["C-c"]);
    tmux.wait_for("logs", "[exited 0]");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_work_shows_a_progress_bar_on_a_terminal_and_nothing_when_piped() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "cli-progress").await;
    create(&client, "bar").await;
    client.cancel().await.unwrap();
    let tmux = Tmux::new();

    // Everything the terminal receives, escape sequences and all, goes to `raw`: the bar is
    // erased when the work ends, so the screen alone would not show it was there.
    let raw = home.path().join("terminal.raw");
    let command = format!(
        "sleep 1; env TASKBOX_HOME={home} TASKBOX_CONFIG={home}/config.toml {BIN} checkpoint bar --label on-a-terminal; echo \"[exited $?]\"; sleep 600",
        home = home.path().display()
    );
    tmux.run(&["new-session", "-d", "-s", "bar", "-x", "120", "-y", "40", &command]);
    tmux.run(&["pipe-pane", "-o", "-t", "bar", &format!("cat >> {}", raw.display())]);
    let screen = tmux.wait_for("bar", "[exited 0]");
    // `bar:1` or a later number: the session's end may have checkpointed the task already.
    assert!(screen.contains("checkpoint bar:"), "{screen}");
    assert!(!screen.contains('⠋'), "the bar is erased at the end:\n{screen}");
    let raw = std::fs::read_to_string(&raw).unwrap();
    // The first frame, drawn at once (its elapsed time is 0.0 s unless the machine is busy).
    assert!(
        raw.contains("\r\x1b[2K⠋ checkpoint bar  0."),
        "the first frame, drawn at once: {raw:?}"
    );
    let frames = raw.matches("\r\x1b[2K").count();
    assert!(frames >= 2, "drawn in place, then erased: {raw:?}");

    // Piped, stderr carries no bar (and the answer is on stdout as before).
    let out = std::process::Command::new(BIN)
        .args(["checkpoint", "bar", "--label", "piped"])
        .env("TASKBOX_HOME", home.path())
        .env("TASKBOX_CONFIG", home.path().join("config.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .split_whitespace()
            .nth(1)
            .is_some_and(|label| label.starts_with("bar:")),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains('⠋') && !stderr.contains("\x1b["),
        "no bar off a terminal: {stderr:?}"
    );
}
