//! What runs as root on the workspace: handing it to the image's user (and finding the shell)
//! when a container is prepared, and handing back what root commands left before a sync.
//! (Set-id bits are cleared from the host: `workspace::setid`.)

use super::{ContainerOp, Failed, Output, sh};
use crate::runtime::ExecSpec;

/// Gives the workspace's files to the user `$1` (`user:` or `user:group`; empty: nothing to
/// do). Only what that user does not own yet: all of a fresh workspace, next to nothing later.
const CHOWN_TO_USER: &str =
    r#"if [ -n "$1" ]; then find /workspace ! -user "${1%%:*}" -exec chown -h "$1" {} + || exit 3; fi"#;

/// Prints the shell commands run under: bash when the image has it.
const DETECT_SHELL: &str = "if [ -x /bin/bash ]; then echo bash; else echo sh; fi";

/// Prints `ids <uid>:<gid>` of the user named `$1` (before any agent code has run, so the
/// image's /etc/passwd is still the image's): commands then run as these numbers, never as a
/// name the agent could later remap to root.
const USER_IDS: &str =
    r#"u=${1%%:*}; case "$u" in ''|*[!0-9]*) [ -n "$u" ] && echo "ids $(id -u "$u"):$(id -g "$u")";; esac; true"#;

/// With `$2` = `certs`: adds the certificates on stdin (the host's trusted bundle) to the
/// image's trust store, both where `update-ca-certificates` keeps local ones (so a later
/// `apt-get install` that rebuilds the bundle keeps them) and to the bundle itself, once.
const TRUST_CERTIFICATES: &str = r#"if [ "$2" = certs ]; then
  mkdir -p /usr/local/share/ca-certificates /etc/ssl/certs || exit 4
  cat > /usr/local/share/ca-certificates/taskbox-host.crt || exit 4
  grep -q TASKBOX-HOST-CA /etc/ssl/certs/ca-certificates.crt 2>/dev/null ||
    { echo '# TASKBOX-HOST-CA'; cat /usr/local/share/ca-certificates/taskbox-host.crt; } >> /etc/ssl/certs/ca-certificates.crt || exit 4
fi"#;

/// With `$4` = `apt` (apt's cache is a volume): keeps what apt downloads there. Debian's and
/// Ubuntu's images delete every `.deb` after each install (`docker-clean`, moved aside where apt
/// ignores it) and `apt` (not `apt-get`) does by default. With `$5` = `uid:gid`: hands each
/// directory in `$6…` (the volumes' roots, the way down to the caches in the home) to it unless
/// it is its already; never through a link.
const SET_UP_VOLUMES: &str = r#"if [ "$4" = apt ] && [ -d /etc/apt/apt.conf.d ]; then
  if [ -f /etc/apt/apt.conf.d/docker-clean ]; then mv -f /etc/apt/apt.conf.d/docker-clean /etc/apt/apt.conf.d/docker-clean.disabled || exit 5; fi
  echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/99taskbox-keep-packages || exit 5
fi
if [ -n "$5" ]; then
  ids=$5; shift 5
  for d in "$@"; do
    if [ -d "$d" ] && [ ! -L "$d" ]; then find "$d" -maxdepth 0 ! -user "${ids%%:*}" -exec chown -h "$ids" {} + || exit 5; fi
  done
fi"#;

/// Where commands are told the trusted bundle is (`CA_BUNDLE_ENV`).
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The variables that point common clients at the bundle: OpenSSL and curl, git, Python's
/// requests and pip (which bring their own CA list otherwise), Node and npm, cargo.
pub const CA_BUNDLE_ENV: &[&str] = &[
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CARGO_HTTP_CAINFO",
];

/// What preparing a container found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// "bash" or "sh".
    pub shell: &'static str,
    /// `uid:gid` of the image's user when it was named; `None` for root or numeric users.
    pub user_ids: Option<String>,
}

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

/// Certificates, the workspace's owner (unless `$3` is `keep`), the shell, the user's ids,
/// the volumes (`SET_UP_VOLUMES`).
fn prepare_script() -> String {
    format!(
        "{TRUST_CERTIFICATES}\nif [ \"$3\" != keep ]; then\n{CHOWN_TO_USER}\nfi\n{DETECT_SHELL}\n{USER_IDS}\n{SET_UP_VOLUMES}"
    )
}

/// One root exec when a container starts: hands the workspace to the image's user (the
/// server may run as another uid) and finds the shell commands will run under.
pub struct PrepareContainer<'a> {
    pub image_user: &'a str,
    /// Hand `/workspace` to the user. A warm-pool entry is prepared with an empty workspace
    /// the server fills when a task claims it, and hands over then (`task/service/pool.rs`).
    pub hand_over_workspace: bool,
    /// Certificates to trust (`[network] ca_certificates`), added to the image's store.
    pub certificates: Option<Vec<u8>>,
    /// apt's cache is a volume: keep the packages it downloads.
    pub apt_cache: bool,
    /// `uid:gid` the volumes' directories are handed to (`None`: root's, nothing to do).
    pub volume_ids: Option<&'a str>,
    /// Those directories, parents first.
    pub owned_dirs: Vec<String>,
}

impl ContainerOp for PrepareContainer<'_> {
    type Outcome = Result<Prepared, Failed>;

    fn into_spec(self) -> ExecSpec {
        let script = prepare_script();
        let certs = if self.certificates.is_some() { "certs" } else { "" };
        let workspace = if self.hand_over_workspace { "" } else { "keep" };
        let apt = if self.apt_cache { "apt" } else { "" };
        let ids = match (self.volume_ids, self.owned_dirs.is_empty()) {
            (Some(ids), false) => ids,
            _ => "",
        };
        let owner = chown_owner(self.image_user);
        let mut args = vec!["prepare", owner.as_str(), certs, workspace, apt, ids];
        if !ids.is_empty() {
            args.extend(self.owned_dirs.iter().map(String::as_str));
        }
        let mut spec = as_root(sh(&script, &args));
        spec.stdin = self.certificates;
        spec
    }

    fn outcome(output: Output) -> Self::Outcome {
        let stdout = output.succeeded()?;
        let text = String::from_utf8_lossy(&stdout);
        let mut lines = text.lines();
        let shell = if lines.next().map(str::trim) == Some("bash") {
            "bash"
        } else {
            "sh"
        };
        let valid = |ids: &str| {
            ids.split_once(':')
                .is_some_and(|(u, g)| u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok())
        };
        let user_ids = lines
            .filter_map(|l| l.trim().strip_prefix("ids "))
            .find(|ids| valid(ids))
            .map(str::to_string);
        Ok(Prepared { shell, user_ids })
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

#[cfg(test)]
mod tests {
    use super::super::tests::output;
    use super::*;

    #[test]
    fn root_commands_run_as_root_with_the_owner_as_one() {
        let prepare = PrepareContainer {
            image_user: "dev",
            hand_over_workspace: true,
            certificates: None,
            apt_cache: false,
            volume_ids: None,
            owned_dirs: Vec::new(),
        }
        .into_spec();
        assert_eq!(prepare.user.as_deref(), Some("root"));
        assert_eq!(prepare.cmd[3..], ["prepare", "dev:", "", "", "", ""]);
        assert_eq!(prepare.cmd[2], prepare_script());
        assert!(prepare.cmd[2].contains(CHOWN_TO_USER) && prepare.cmd[2].contains(SET_UP_VOLUMES));
        // A pool entry's empty workspace stays the server's until a task claims it.
        let pooled = PrepareContainer {
            image_user: "dev",
            hand_over_workspace: false,
            certificates: None,
            apt_cache: false,
            volume_ids: None,
            owned_dirs: Vec::new(),
        }
        .into_spec();
        assert_eq!(pooled.cmd[3..], ["prepare", "dev:", "", "keep", "", ""]);
        // Volumes: apt's flag, then the ids and the directories to hand over.
        let with_volumes = PrepareContainer {
            image_user: "dev",
            hand_over_workspace: true,
            certificates: None,
            apt_cache: true,
            volume_ids: Some("1000:1000"),
            owned_dirs: vec!["/home/dev".into(), "/home/dev/.npm".into()],
        }
        .into_spec();
        assert_eq!(
            with_volumes.cmd[3..],
            [
                "prepare",
                "dev:",
                "",
                "",
                "apt",
                "1000:1000",
                "/home/dev",
                "/home/dev/.npm"
            ]
        );
        assert_eq!(prepare.stdin, None);
        // Certificates to trust arrive on stdin, with `certs` as $2.
        let pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
        let with_certs = PrepareContainer {
            image_user: "dev",
            hand_over_workspace: true,
            certificates: Some(pem.clone()),
            apt_cache: false,
            volume_ids: None,
            owned_dirs: Vec::new(),
        }
        .into_spec();
        assert_eq!(with_certs.cmd[5], "certs");
        assert_eq!(with_certs.stdin, Some(pem));
        // A root image hands nothing over, but still finds its shell.
        assert_eq!(
            PrepareContainer {
                image_user: "",
                hand_over_workspace: true,
                certificates: None,
                apt_cache: false,
                volume_ids: None,
                owned_dirs: Vec::new(),
            }
            .into_spec()
            .cmd[4],
            ""
        );
        let chown = ChownWorkspace::to("dev:staff").unwrap().into_spec();
        assert_eq!(chown.cmd, ["sh", "-c", CHOWN_TO_USER, "taskbox-chown", "dev:staff"]);
        assert!(ChownWorkspace::to("0").is_none());
    }

    #[test]
    fn the_shell_is_bash_only_when_found() {
        let prepared = |shell, ids: Option<&str>| {
            Ok(Prepared {
                shell,
                user_ids: ids.map(String::from),
            })
        };
        assert_eq!(
            PrepareContainer::outcome(output(0, b"bash\n", "")),
            prepared("bash", None)
        );
        assert_eq!(PrepareContainer::outcome(output(0, b"sh\n", "")), prepared("sh", None));
        assert_eq!(
            PrepareContainer::outcome(output(0, b"bash\nids 1000:1000\n", "")),
            prepared("bash", Some("1000:1000"))
        );
        // Anything but two numbers is not taken as ids.
        assert_eq!(
            PrepareContainer::outcome(output(0, b"bash\nids agent:0\n", "")),
            prepared("bash", None)
        );
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
