//! git in the workspace, for the server: committing and packing for a sync, HEAD for the
//! hooks, resetting for a restore. Every script runs as the agent's user, behind
//! `GIT_PRELUDE`.

use std::path::Path;

use git2::Oid;

use super::{ContainerOp, Failed, Output, Stdout, sh};
use crate::runtime::ExecSpec;

/// Prefix of every script that runs git for the server inside the container: the repository
/// is /workspace whatever the agent set in `.git/config` (`core.worktree`, say), and nothing
/// the agent configured runs or interferes (hooks, fsmonitor, signing).
const GIT_PRELUDE: &str = r#"export GIT_DIR=/workspace/.git GIT_WORK_TREE=/workspace GIT_OPTIONAL_LOCKS=0
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c commit.gpgsign=false -c user.name=taskbox -c user.email=taskbox@localhost "$@"; }
"#;

/// Commits the workspace's changes and prints HEAD. With `scan` as its second argument, the
/// patterns of the task's secrets come on stdin, one per line: staged files (as git would
/// commit them, in the index) that hold one are unstaged, so they stay in the workspace but
/// out of the commit, and their paths are printed first, each ended by NUL. The patterns sit
/// in a 0600 file in /dev/shm (a tmpfs: never in the container's layers, so never in a
/// checkpoint image) for as long as the script runs.
const COMMIT_SCRIPT: &str = r#"set -e
cd /workspace
g rev-parse --git-dir >/dev/null 2>&1 || { echo "/workspace is not a git repository any more (was .git removed?); restore a checkpoint" >&2; exit 3; }
g add -A
if [ "$2" = scan ] && ! g diff --cached --quiet; then
  pat=$(mktemp -p /dev/shm taskbox-scan.XXXXXX 2>/dev/null || mktemp)
  trap 'rm -f "$pat" "$pat.found"' EXIT
  cat >"$pat"
  st=0
  g diff --cached --name-only -z --no-renames --diff-filter=d -- \
    | GIT_LITERAL_PATHSPECS=1 xargs -0 -r sh -c 'git -c core.fsmonitor=false grep --cached -l -z -F -f "$0" -- "$@"; s=$?; [ $s -le 1 ] || exit 255' "$pat" >"$pat.found" || st=$?
  # xargs: 0 every file list had a match, 123 some had none; anything else is a failure,
  # and a commit that could not be scanned is not made.
  [ $st -eq 0 ] || [ $st -eq 123 ] || { echo "cannot look for secrets' values in the files to commit (exit $st)" >&2; exit 5; }
  if [ -s "$pat.found" ]; then
    GIT_LITERAL_PATHSPECS=1 xargs -0 -r git -c core.hooksPath=/dev/null -c core.fsmonitor=false reset -q -- <"$pat.found"
    cat "$pat.found"
  fi
fi
if ! g diff --cached --quiet; then
  g commit -q --no-verify -m "$1"
fi
g rev-parse --verify HEAD"#;

/// Writes a pack of everything HEAD needs that the commits given as arguments (when the
/// workspace still has them) do not already provide. No delta search (`--window=0`): the
/// objects left after excluding the known commits rarely delta against each other, and the
/// search dominated the cost of checkpointing large changes.
const PACK_SCRIPT: &str = r#"cd /workspace
known=
for c in "$@"; do
  if g cat-file -e "$c^{commit}" 2>/dev/null; then known="$known ^$c"; fi
done
g rev-list --objects HEAD $known | g pack-objects --stdout -q --window=0"#;

/// Prints HEAD's symbolic name, or its commit when detached.
const HEAD_SCRIPT: &str = "cd /workspace && { g symbolic-ref -q HEAD || g rev-parse --short HEAD; }";

/// Resets the workspace to a commit (as the agent's user, inside the container): tracked
/// files as in the commit, untracked files removed; ignored files (build outputs, caches) stay.
/// Exits 4 when the workspace lacks the commit (the agent may have pruned it).
const RESET_SCRIPT: &str = r#"set -e
cd /workspace
g cat-file -e "$1^{commit}" 2>/dev/null || exit 4
g reset -q --hard "$1"
g clean -fdq"#;

/// Unpacks the objects of a commit a workspace lost, from a pack on stdin.
const UNPACK_SCRIPT: &str = "cd /workspace && g unpack-objects -q";

/// `sh -c <prelude + script> <name> <args…>` as `user`.
pub(super) fn git_spec(script: &str, name: &str, args: &[&str], user: Option<&str>) -> ExecSpec {
    let mut argv = vec![name];
    argv.extend_from_slice(args);
    ExecSpec {
        cmd: sh(&format!("{GIT_PRELUDE}{script}"), &argv),
        user: user.map(String::from),
        ..Default::default()
    }
}

/// Commits every change in the workspace (tracked and untracked, honouring .gitignore),
/// leaving out files that hold one of `scan`'s patterns.
pub struct CommitWorkspace<'a> {
    pub message: &'a str,
    pub user: Option<&'a str>,
    /// Patterns no committed file may hold (secrets' values), one per line; `None`: no scan.
    pub scan: Option<Vec<u8>>,
}

/// The most of the commit script's stdout read: the left-out paths, then HEAD.
const COMMIT_STDOUT: usize = 1024 * 1024;

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The workspace's HEAD.
    pub head: Oid,
    /// Files left out because they hold a pattern (as git names them; lossy UTF-8).
    pub left_out: Vec<String>,
}

impl ContainerOp for CommitWorkspace<'_> {
    /// Exit 3: /workspace is no repository any more (stderr says what to do); any failure, or
    /// a HEAD that is no commit id, is `Failed`.
    type Outcome = Result<Committed, Failed>;

    fn stdout(&self) -> Stdout {
        Stdout::Memory(COMMIT_STDOUT)
    }

    fn into_spec(self) -> ExecSpec {
        let args: &[&str] = match self.scan {
            Some(_) => &[self.message, "scan"],
            None => &[self.message],
        };
        ExecSpec {
            stdin: self.scan.clone(),
            ..git_spec(COMMIT_SCRIPT, "taskbox-sync", args, self.user)
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        let failed = output.failed();
        let stdout = output.succeeded()?;
        // Left-out paths, each ended by NUL, come before HEAD's line.
        let (paths, rest) = match stdout.iter().rposition(|&b| b == 0) {
            Some(at) => (&stdout[..at], &stdout[at + 1..]),
            None => (&[][..], &stdout[..]),
        };
        let left_out = paths
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let head = String::from_utf8_lossy(rest)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .parse()
            .map_err(|_| failed)?;
        Ok(Committed { head, left_out })
    }
}

/// A pack of the workspace's HEAD, without what the `known` commits provide, streamed to the
/// file `to` and refused past `limit` bytes while it is read.
pub struct PackCommits<'a> {
    pub known: &'a [Oid],
    pub user: Option<&'a str>,
    pub to: &'a Path,
    pub limit: u64,
}

#[derive(Debug, PartialEq)]
pub enum Packed {
    /// The pack is in the file: this many bytes (0 when nothing was new).
    Written(u64),
    /// It passed the limit; the command was killed and the file holds only its start.
    TooLarge,
    Failed(Failed),
}

impl ContainerOp for PackCommits<'_> {
    type Outcome = Packed;

    fn stdout(&self) -> Stdout {
        Stdout::File {
            path: self.to.to_path_buf(),
            limit: self.limit,
        }
    }

    fn into_spec(self) -> ExecSpec {
        let known: Vec<String> = self.known.iter().map(Oid::to_string).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        git_spec(PACK_SCRIPT, "taskbox-pack", &known, self.user)
    }

    fn outcome(output: Output) -> Packed {
        match output.code {
            _ if output.stdout_cut => Packed::TooLarge,
            Some(0) => Packed::Written(output.stdout_bytes),
            _ => Packed::Failed(output.failed()),
        }
    }
}

/// The workspace's HEAD: `refs/heads/<branch>`, or a commit when detached.
pub struct WorkspaceHead<'a> {
    pub user: Option<&'a str>,
}

impl ContainerOp for WorkspaceHead<'_> {
    /// `None` when git does not answer (no git in the image, no repository).
    type Outcome = Option<String>;

    fn into_spec(self) -> ExecSpec {
        git_spec(HEAD_SCRIPT, "taskbox-head", &[], self.user)
    }

    fn outcome(output: Output) -> Self::Outcome {
        let stdout = output.succeeded().ok()?;
        Some(String::from_utf8_lossy(&stdout).trim().to_string()).filter(|h| !h.is_empty())
    }
}

/// Resets the workspace to `commit` (see `RESET_SCRIPT`).
pub struct ResetWorkspace<'a> {
    pub commit: &'a str,
    pub user: Option<&'a str>,
}

#[derive(Debug, PartialEq)]
pub enum Reset {
    Done,
    /// Exit 4: the workspace lacks the commit; give it the objects (`UnpackObjects`) and reset
    /// again.
    MissingCommit,
    Failed(Failed),
}

impl ContainerOp for ResetWorkspace<'_> {
    type Outcome = Reset;

    fn into_spec(self) -> ExecSpec {
        git_spec(RESET_SCRIPT, "taskbox-reset", &[self.commit], self.user)
    }

    fn outcome(output: Output) -> Reset {
        match output.code {
            Some(4) => Reset::MissingCommit,
            _ => match output.succeeded() {
                Ok(_) => Reset::Done,
                Err(failed) => Reset::Failed(failed),
            },
        }
    }
}

/// Gives the workspace the objects of the pack in the file `pack` (from the host repository),
/// streamed to its stdin.
pub struct UnpackObjects<'a> {
    pub pack: &'a Path,
    pub user: Option<&'a str>,
}

impl ContainerOp for UnpackObjects<'_> {
    type Outcome = Result<(), Failed>;

    fn into_spec(self) -> ExecSpec {
        ExecSpec {
            stdin_file: Some(self.pack.to_path_buf()),
            ..git_spec(UNPACK_SCRIPT, "taskbox-unpack", &[], self.user)
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        output.succeeded().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::output;
    use super::*;

    fn argv(spec: &ExecSpec) -> Vec<&str> {
        spec.cmd.iter().map(String::as_str).collect()
    }

    #[test]
    fn git_scripts_run_behind_the_prelude_as_the_agents_user() {
        let commit = CommitWorkspace {
            message: "taskbox: sync",
            user: Some("dev"),
            scan: None,
        }
        .into_spec();
        let script = format!("{GIT_PRELUDE}{COMMIT_SCRIPT}");
        assert_eq!(argv(&commit), ["sh", "-c", &script, "taskbox-sync", "taskbox: sync"]);
        assert_eq!(commit.user.as_deref(), Some("dev"));
        let oid = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
        let pack = PackCommits {
            known: &[oid],
            user: None,
            to: Path::new("/tmp/p"),
            limit: 1,
        }
        .into_spec();
        assert_eq!(argv(&pack)[3..], ["taskbox-pack", &oid.to_string()]);
        assert_eq!(argv(&WorkspaceHead { user: None }.into_spec())[3..], ["taskbox-head"]);
        let reset = ResetWorkspace {
            commit: "abc",
            user: None,
        }
        .into_spec();
        assert_eq!(argv(&reset)[3..], ["taskbox-reset", "abc"]);
        let unpack = UnpackObjects {
            pack: Path::new("/data/t/restore.pack"),
            user: None,
        }
        .into_spec();
        assert_eq!(argv(&unpack)[3..], ["taskbox-unpack"]);
        assert_eq!(unpack.stdin_file.as_deref(), Some(Path::new("/data/t/restore.pack")));
    }

    #[test]
    fn a_commit_is_heads_id_on_the_last_line() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        let out = output(0, format!("[main 0123456] wip\n{id}\n").as_bytes(), "");
        let head = Oid::from_str(id).unwrap();
        assert_eq!(CommitWorkspace::outcome(out), Ok(Committed { head, left_out: vec![] }));
        let scanned = output(0, format!("leak.txt\0dir/a b\n.txt\0{id}\n").as_bytes(), "");
        assert_eq!(
            CommitWorkspace::outcome(scanned),
            Ok(Committed {
                head,
                left_out: vec!["leak.txt".into(), "dir/a b\n.txt".into()]
            })
        );
        let scan = CommitWorkspace {
            message: "m",
            user: None,
            scan: Some(b"value\n".to_vec()),
        }
        .into_spec();
        assert_eq!(argv(&scan)[3..], ["taskbox-sync", "m", "scan"]);
        assert_eq!(scan.stdin.as_deref(), Some(&b"value\n"[..]));
        let no_repo = CommitWorkspace::outcome(output(3, b"", "/workspace is not a git repository\n"));
        assert_eq!(
            no_repo,
            Err(Failed {
                code: Some(3),
                stderr: "/workspace is not a git repository".into()
            })
        );
        assert_eq!(
            CommitWorkspace::outcome(output(0, b"garbage\n", "")).unwrap_err().code,
            Some(0)
        );
    }

    #[test]
    fn a_pack_past_its_limit_is_too_large_whatever_the_exit() {
        let written = Output {
            stdout_bytes: 7,
            ..output(0, b"", "")
        };
        assert_eq!(PackCommits::outcome(written), Packed::Written(7));
        let cut = Output {
            stdout_cut: true,
            code: None,
            ..Default::default()
        };
        assert_eq!(PackCommits::outcome(cut), Packed::TooLarge);
        assert!(matches!(PackCommits::outcome(output(128, b"", "fatal\n")), Packed::Failed(f) if f.stderr == "fatal"));
    }

    #[test]
    fn head_is_none_unless_git_answers() {
        assert_eq!(
            WorkspaceHead::outcome(output(0, b"refs/heads/main\n", "")).as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(WorkspaceHead::outcome(output(0, b"\n", "")), None);
        assert_eq!(WorkspaceHead::outcome(output(127, b"", "git: not found")), None);
    }

    #[test]
    fn reset_tells_a_missing_commit_from_a_failure() {
        assert_eq!(ResetWorkspace::outcome(output(0, b"", "")), Reset::Done);
        assert_eq!(ResetWorkspace::outcome(output(4, b"", "")), Reset::MissingCommit);
        assert!(matches!(
            ResetWorkspace::outcome(output(128, b"", "fatal: bad\n")),
            Reset::Failed(Failed { stderr, .. }) if stderr == "fatal: bad"
        ));
    }
}
