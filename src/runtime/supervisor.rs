//! The in-container process supervisor (`supervisor/supervise.c`, built static by build.rs):
//! where it lives on the host and in containers, and the command lines that use it. See
//! docs/architecture.md, "Executions and their supervisor".
//!
//! The binary is written once per data directory (`bin/supervise`, replaced atomically when
//! this build's differs) and bind-mounted read-only into every task container at
//! `SUPERVISOR_PATH`, so root in the container can neither replace nor remove it. A
//! container made before this existed has no such mount; taskbox then falls back to the
//! environment-marker kill for foreground commands and refuses background ones.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The supervisor, as built for this server.
pub const SUPERVISOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/supervise"));

/// Where containers see the supervisor (a read-only bind mount).
pub const SUPERVISOR_PATH: &str = "/.taskbox/bin/supervise";
/// Where containers see the task's run directory, one subdirectory per background
/// execution (a bind mount of `tasks/<id>/run`, outside the container's filesystem, so
/// checkpoint images never hold it).
pub const RUN_DIR: &str = "/.taskbox/run";

/// The supervisor's exit status when it could not set up (the reason is on its stderr).
pub const SETUP_FAILED: i64 = 125;

/// How long the supervisor waits between passing a signal to the tree and killing it.
pub const GRACE_S: u64 = 5;

/// Writes the supervisor into `<home>/bin/supervise` unless it is already there, and returns
/// its path. Replaced by rename: containers that mounted an older one keep it until they are
/// recreated or restarted.
pub fn install(home: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = home.join("bin");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let path = dir.join("supervise");
    if std::fs::read(&path).is_ok_and(|existing| existing == SUPERVISOR) {
        return Ok(path);
    }
    let mut temp = tempfile::NamedTempFile::new_in(&dir)?;
    temp.write_all(SUPERVISOR)?;
    temp.as_file().sync_all()?;
    // Executable by the container's users; the directory above is private on the host.
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o755))?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// How a supervised command is run.
#[derive(Debug, Clone, PartialEq)]
pub enum Supervision {
    /// The command shares the exec's streams; the server reads them.
    Foreground,
    /// A foreground command whose output goes to the files in `RUN_DIR/<id>` while the
    /// supervisor stays the exec's process: the server waits for it like a foreground
    /// command, and can stop waiting at any moment (the soft timeout, `yield_after_s`),
    /// leaving a background execution behind. `timeout_s` kills the tree at once.
    Attached {
        cap_bytes: u64,
        timeout_s: u64,
        stall_s: u64,
        /// As for `Background`; the command's own stdin follows the patterns.
        redact: bool,
    },
    /// Detached, with its files in `RUN_DIR/<id>`.
    Background {
        cap_bytes: u64,
        timeout_s: Option<u64>,
        /// Seconds of silence after which it reports a wait for input or a stall (0: never).
        stall_s: u64,
        /// Redact secret values from the output files: the patterns come on its stdin
        /// (`redaction_input`).
        redact: bool,
    },
}

/// The start of the supervisor's stdin under `--redact`: a line with the patterns' length in
/// bytes, then one line per pattern, `NAME HEX` (the pattern's bytes in hex, so any byte can
/// be passed), replaced by `[secret:NAME]` in the output files. The supervisor reads exactly
/// that much, so an attached command's own input can follow.
pub fn redaction_input<'a>(patterns: impl Iterator<Item = (&'a [u8], &'a str)>) -> Vec<u8> {
    let mut lines = Vec::new();
    for (pattern, name) in patterns {
        lines.extend_from_slice(name.as_bytes());
        lines.push(b' ');
        for byte in pattern {
            lines.extend_from_slice(format!("{byte:02x}").as_bytes());
        }
        lines.push(b'\n');
    }
    let mut input = format!("{}\n", lines.len()).into_bytes();
    input.extend(lines);
    input
}

/// The user a root supervisor runs its command as (`--user UID:GID`): the command then
/// cannot signal or trace its supervisor, so it cannot let its processes escape to PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropTo {
    pub uid: u32,
    pub gid: u32,
    /// Set HOME to the uid's home (`--home`): the exec runs as root, whose HOME Docker set.
    pub set_home: bool,
}

/// `supervise run …` around `command`; with `drop_to` the exec must run as root.
pub fn run_argv(
    exec_id: &str,
    supervision: &Supervision,
    drop_to: Option<DropTo>,
    command: Vec<String>,
) -> Vec<String> {
    let mut argv = vec![
        SUPERVISOR_PATH.to_string(),
        "run".into(),
        "--id".into(),
        exec_id.to_string(),
    ];
    if let Some(to) = drop_to {
        argv.extend(["--user".into(), format!("{}:{}", to.uid, to.gid)]);
        if to.set_home {
            argv.push("--home".into());
        }
    }
    argv.extend(["--grace".into(), GRACE_S.to_string()]);
    // With run files: (attached, cap, timeout, stall, redact).
    let files = match *supervision {
        Supervision::Foreground => None,
        Supervision::Attached {
            cap_bytes,
            timeout_s,
            stall_s,
            redact,
        } => Some((true, cap_bytes, Some(timeout_s), stall_s, redact)),
        Supervision::Background {
            cap_bytes,
            timeout_s,
            stall_s,
            redact,
        } => Some((false, cap_bytes, timeout_s, stall_s, redact)),
    };
    if let Some((attached, cap_bytes, timeout_s, stall_s, redact)) = files {
        if redact {
            argv.push("--redact".into());
        }
        argv.extend(["--dir".into(), run_dir_in_container(exec_id)]);
        if attached {
            argv.push("--attach".into());
        }
        argv.extend(["--cap".into(), cap_bytes.to_string()]);
        argv.extend(["--stall".into(), stall_s.to_string()]);
        if let Some(timeout) = timeout_s {
            argv.extend(["--timeout".into(), timeout.to_string()]);
        }
    }
    argv.push("--".into());
    argv.extend(command);
    argv
}

/// What `signal` asks of a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorSignal {
    /// Passed to the whole tree, then KILL after the grace period.
    Term,
    Int,
    Hup,
    Quit,
    /// The whole tree at once.
    Kill,
    /// Closes the command's standard input.
    Eof,
}

impl SupervisorSignal {
    /// From a signal name as a client gives it (`TERM`, `SIGTERM`, `kill`).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_uppercase();
        Some(match name.strip_prefix("SIG").unwrap_or(&name) {
            "TERM" => Self::Term,
            "INT" => Self::Int,
            "HUP" => Self::Hup,
            "QUIT" => Self::Quit,
            "KILL" => Self::Kill,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Hup => "HUP",
            Self::Quit => "QUIT",
            Self::Kill => "KILL",
            Self::Eof => "EOF",
        }
    }
}

/// `supervise signal …`: exits 0 once every named supervisor is gone, 3 when none was
/// found, 4 when some outlived `wait_s`.
pub fn signal_argv(signal: SupervisorSignal, wait_s: u64, exec_ids: &[&str]) -> Vec<String> {
    let mut argv = vec![
        SUPERVISOR_PATH.to_string(),
        "signal".into(),
        signal.as_str().into(),
        wait_s.to_string(),
    ];
    argv.extend(exec_ids.iter().map(|id| id.to_string()));
    argv
}

/// `supervise reap …`: kills what escaped to PID 1 but the container's first process and the
/// supervisors of `keep` (running background executions); prints how many it killed.
pub fn reap_argv(keep: &[&str]) -> Vec<String> {
    let mut argv = vec![SUPERVISOR_PATH.to_string(), "reap".into()];
    argv.extend(keep.iter().map(|id| id.to_string()));
    argv
}

pub fn run_dir_in_container(exec_id: &str) -> String {
    format!("{RUN_DIR}/{exec_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_is_embedded_and_installed_once() {
        assert!(SUPERVISOR.starts_with(b"\x7fELF"), "not an executable");
        let home = tempfile::tempdir().unwrap();
        let path = install(home.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), SUPERVISOR);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        install(home.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    }

    #[test]
    fn command_lines() {
        let fg = run_argv(
            "e-1",
            &Supervision::Foreground,
            None,
            vec!["sh".into(), "-c".into(), "x".into()],
        );
        assert_eq!(
            fg,
            [
                SUPERVISOR_PATH,
                "run",
                "--id",
                "e-1",
                "--grace",
                "5",
                "--",
                "sh",
                "-c",
                "x"
            ]
        );
        let bg = Supervision::Background {
            cap_bytes: 10,
            timeout_s: Some(3),
            stall_s: 20,
            redact: true,
        };
        let bg = run_argv("e-2", &bg, None, vec!["true".into()]);
        assert_eq!(
            bg[4..],
            [
                "--grace",
                "5",
                "--redact",
                "--dir",
                "/.taskbox/run/e-2",
                "--cap",
                "10",
                "--stall",
                "20",
                "--timeout",
                "3",
                "--",
                "true"
            ]
        );
        let dropped = DropTo {
            uid: 1000,
            gid: 1001,
            set_home: true,
        };
        let as_user = run_argv("e-3", &Supervision::Foreground, Some(dropped), vec!["true".into()]);
        assert_eq!(as_user[4..8], ["--user", "1000:1001", "--home", "--grace"]);
        assert_eq!(reap_argv(&["e-2"]), [SUPERVISOR_PATH, "reap", "e-2"]);
        let attached = Supervision::Attached {
            cap_bytes: 10,
            timeout_s: 120,
            stall_s: 20,
            redact: false,
        };
        assert_eq!(
            run_argv("e-4", &attached, None, vec!["true".into()])[4..],
            [
                "--grace",
                "5",
                "--dir",
                "/.taskbox/run/e-4",
                "--attach",
                "--cap",
                "10",
                "--stall",
                "20",
                "--timeout",
                "120",
                "--",
                "true"
            ]
        );
        assert_eq!(
            signal_argv(SupervisorSignal::Kill, 5, &["e-1", "e-2"]),
            [SUPERVISOR_PATH, "signal", "KILL", "5", "e-1", "e-2"]
        );
        assert_eq!(SupervisorSignal::parse("sigint"), Some(SupervisorSignal::Int));
        assert_eq!(
            SupervisorSignal::parse("EOF"),
            None,
            "EOF is send_input's, not a signal"
        );
        assert_eq!(SupervisorSignal::parse("USR1"), None);
    }

    #[test]
    fn redaction_patterns_go_as_names_and_hex() {
        let patterns = [(&b"ab\n"[..], "TOKEN"), (&b"\xff"[..], "KEY")];
        assert_eq!(redaction_input(patterns.into_iter()), b"20\nTOKEN 61620a\nKEY ff\n");
    }
}
