//! What runs as root on the workspace: handing it to the image's user (and finding the shell)
//! when a container is prepared, handing back what root commands left before a sync, and
//! clearing set-id bits.

use super::{ContainerOp, Failed, Output, sh};
use crate::runtime::ExecSpec;

/// Gives the workspace's files to the user `$1` (`user:` or `user:group`; empty: nothing to
/// do). Only what that user does not own yet: all of a fresh workspace, next to nothing later.
const CHOWN_TO_USER: &str =
    r#"if [ -n "$1" ]; then find /workspace ! -user "${1%%:*}" -exec chown -h "$1" {} + || exit 3; fi"#;

/// Prints the shell commands run under: bash when the image has it.
const DETECT_SHELL: &str = "if [ -x /bin/bash ]; then echo bash; else echo sh; fi";

/// Clears set-user-id and set-group-id bits in the workspace. The workspace is a host
/// directory, so a setuid-root file made by a root command would be a way to root on the
/// host for anyone who runs it there.
const STRIP_SETID_SCRIPT: &str = "find /workspace -xdev -type f -perm /6000 -exec chmod ug-s {} + 2>/dev/null; true";

/// Whether an image's configured user is root (Docker's default when the image sets none).
pub fn is_root(user: &str) -> bool {
    matches!(user.split(':').next().unwrap_or(""), "" | "root" | "0")
}

/// The `$1` of `CHOWN_TO_USER` for an image's user.
fn chown_owner(image_user: &str) -> String {
    match image_user {
        user if is_root(user) => String::new(),
        user if user.contains(':') => user.to_string(),
        user => format!("{user}:"),
    }
}

fn as_root(cmd: Vec<String>) -> ExecSpec {
    ExecSpec {
        cmd,
        user: Some("root".into()),
        ..Default::default()
    }
}

/// One root exec when a container starts: hands the workspace to the image's user (the
/// server may run as another uid) and finds the shell commands will run under.
pub struct PrepareContainer<'a> {
    pub image_user: &'a str,
}

impl ContainerOp for PrepareContainer<'_> {
    /// The shell: "bash" or "sh".
    type Outcome = Result<&'static str, Failed>;

    fn into_spec(self) -> ExecSpec {
        let script = format!("{CHOWN_TO_USER}\n{DETECT_SHELL}");
        as_root(sh(&script, &["prepare", &chown_owner(self.image_user)]))
    }

    fn outcome(output: Output) -> Self::Outcome {
        let stdout = output.succeeded()?;
        Ok(if String::from_utf8_lossy(&stdout).trim() == "bash" {
            "bash"
        } else {
            "sh"
        })
    }
}

/// Hands files a root command left in the workspace (mode 0600, say) back to the agent's
/// user, so that a commit, which runs as that user, can read them.
pub struct ChownWorkspace {
    owner: String,
}

impl ChownWorkspace {
    /// `None` when the user is root: root owns everything it needs already.
    pub fn to(user: &str) -> Option<Self> {
        let owner = chown_owner(user);
        (!owner.is_empty()).then_some(Self { owner })
    }
}

impl ContainerOp for ChownWorkspace {
    /// Exit 3: `chown` failed; stderr says on what.
    type Outcome = Result<(), Failed>;

    fn into_spec(self) -> ExecSpec {
        as_root(sh(CHOWN_TO_USER, &["taskbox-chown", &self.owner]))
    }

    fn outcome(output: Output) -> Self::Outcome {
        output.succeeded().map(drop)
    }
}

/// See `STRIP_SETID_SCRIPT`; run after root commands and before a task stops.
pub struct StripSetid;

impl ContainerOp for StripSetid {
    /// The script ignores what it cannot change.
    type Outcome = ();

    fn into_spec(self) -> ExecSpec {
        as_root(sh(STRIP_SETID_SCRIPT, &[]))
    }

    fn outcome(_: Output) {}
}

#[cfg(test)]
mod tests {
    use super::super::tests::output;
    use super::*;

    #[test]
    fn root_commands_run_as_root_with_the_owner_as_one() {
        let prepare = PrepareContainer { image_user: "dev" }.into_spec();
        assert_eq!(prepare.user.as_deref(), Some("root"));
        assert_eq!(prepare.cmd[3..], ["prepare", "dev:"]);
        assert_eq!(prepare.cmd[2], format!("{CHOWN_TO_USER}\n{DETECT_SHELL}"));
        // A root image hands nothing over, but still finds its shell.
        assert_eq!(PrepareContainer { image_user: "" }.into_spec().cmd[4], "");
        let chown = ChownWorkspace::to("dev:staff").unwrap().into_spec();
        assert_eq!(chown.cmd, ["sh", "-c", CHOWN_TO_USER, "taskbox-chown", "dev:staff"]);
        assert!(ChownWorkspace::to("0").is_none());
        assert_eq!(StripSetid.into_spec().cmd, ["sh", "-c", STRIP_SETID_SCRIPT]);
    }

    #[test]
    fn the_shell_is_bash_only_when_found() {
        assert_eq!(PrepareContainer::outcome(output(0, b"bash\n", "")), Ok("bash"));
        assert_eq!(PrepareContainer::outcome(output(0, b"sh\n", "")), Ok("sh"));
        assert_eq!(
            PrepareContainer::outcome(output(3, b"", "chown: denied"))
                .unwrap_err()
                .stderr,
            "chown: denied"
        );
    }

    #[test]
    fn root_is_any_spelling_of_uid_zero() {
        for user in ["", "root", "0", "root:root", "0:0"] {
            assert!(is_root(user), "{user}");
        }
        assert!(!is_root("dev") && !is_root("1000:1000"));
    }
}
