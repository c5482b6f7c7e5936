//! Killing an execution's whole process tree: through its supervisor, and by the marker in
//! its environment.

use super::{ContainerOp, Failed, Output, sh};
use crate::runtime::ExecSpec;
use crate::runtime::supervisor::{SupervisorSignal, reap_argv, signal_argv};

/// The environment variable every execution (and every internal command) carries, with its
/// id; children inherit it, which is how `KILL_SCRIPT` finds them.
pub const MARKER_VAR: &str = "TASKBOX_EXEC_ID";

/// Kills every process carrying `TASKBOX_EXEC_ID=$1` and every descendant of one (a child
/// that cleared its environment is still a descendant); repeats while it finds any, so a
/// process forked during one sweep is caught by the next. Prints how many it killed.
const KILL_SCRIPT: &str = r#"id="$1"; round=0; total=0
while [ $round -lt 10 ]; do
  doomed=" "
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = "$$" ] && continue
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "TASKBOX_EXEC_ID=$id"; then
      doomed="$doomed$pid "
    fi
  done
  grown=1
  while [ -n "$grown" ] && [ "$doomed" != " " ]; do
    grown=
    for d in /proc/[0-9]*; do
      pid=${d#/proc/}
      case "$doomed" in *" $pid "*) continue ;; esac
      ppid=$(sed -n 's/^PPid:[[:space:]]*//p' "$d/status" 2>/dev/null)
      case "$doomed" in *" $ppid "*) doomed="$doomed$pid "; grown=1 ;; esac
    done
  done
  [ "$doomed" = " " ] && break
  kill -9 $doomed 2>/dev/null
  set -- $doomed
  total=$((total + $#))
  round=$((round + 1))
done
echo "$total""#;

/// Kills the process tree of execution `exec_id`, as the user it ran as (a process of
/// another user could not be signalled).
pub struct KillTree<'a> {
    pub exec_id: &'a str,
    pub user: Option<&'a str>,
}

impl ContainerOp for KillTree<'_> {
    /// How many processes it killed (0 when the tree had ended).
    type Outcome = Result<usize, Failed>;

    fn into_spec(self) -> ExecSpec {
        ExecSpec {
            cmd: sh(KILL_SCRIPT, &["taskbox-kill", self.exec_id]),
            user: self.user.map(String::from),
            ..Default::default()
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        // The container's output is not trusted: a short decimal number, else 0.
        output.succeeded().map(|stdout| {
            let text = String::from_utf8_lossy(&stdout[..stdout.len().min(20)]).into_owned();
            text.trim().parse().unwrap_or(0)
        })
    }
}

/// Signals the supervisors of these executions (`supervise signal`), as root so that it
/// reaches them whatever user they run as, and waits up to `wait_s` for them to end.
pub struct SignalSupervisors<'a> {
    pub signal: SupervisorSignal,
    pub wait_s: u64,
    pub exec_ids: &'a [&'a str],
}

impl ContainerOp for SignalSupervisors<'_> {
    /// Whether every one of them is gone (none found counts: it had ended already).
    type Outcome = Result<bool, Failed>;

    fn into_spec(self) -> ExecSpec {
        ExecSpec {
            cmd: signal_argv(self.signal, self.wait_s, self.exec_ids),
            user: Some("root".into()),
            ..Default::default()
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        match output.code {
            Some(0 | 3) => Ok(true),
            Some(4) => Ok(false),
            _ => Err(output.failed()),
        }
    }
}

/// Kills, as root, what escaped to the container's PID 1 (`supervise reap`): run after a root
/// command that may have killed its own supervisor. `keep` are the task's running background
/// executions, whose supervisors live there too.
pub struct ReapEscaped<'a> {
    pub keep: &'a [&'a str],
}

impl ContainerOp for ReapEscaped<'_> {
    /// How many processes it killed.
    type Outcome = Result<usize, Failed>;

    fn into_spec(self) -> ExecSpec {
        ExecSpec {
            cmd: reap_argv(self.keep),
            user: Some("0:0".into()),
            ..Default::default()
        }
    }

    fn outcome(output: Output) -> Self::Outcome {
        <KillTree as ContainerOp>::outcome(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::service::container_ops::tests::output;

    #[test]
    fn supervisors_are_signalled_as_root_and_the_exit_code_says_whether_they_are_gone() {
        let spec = SignalSupervisors {
            signal: SupervisorSignal::Term,
            wait_s: 3,
            exec_ids: &["e-1"],
        }
        .into_spec();
        assert_eq!(spec.cmd[1..], ["signal", "TERM", "3", "e-1"]);
        assert_eq!(spec.user.as_deref(), Some("root"));
        assert_eq!(SignalSupervisors::outcome(output(0, b"", "")), Ok(true));
        assert_eq!(SignalSupervisors::outcome(output(3, b"", "")), Ok(true));
        assert_eq!(SignalSupervisors::outcome(output(4, b"", "")), Ok(false));
        assert!(SignalSupervisors::outcome(output(126, b"", "no such file")).is_err());
    }

    #[test]
    fn the_killer_runs_as_the_executions_user_with_its_id_as_one() {
        let spec = KillTree {
            exec_id: "e-1",
            user: Some("dev"),
        }
        .into_spec();
        assert_eq!(spec.cmd, ["sh", "-c", KILL_SCRIPT, "taskbox-kill", "e-1"]);
        assert_eq!(spec.user.as_deref(), Some("dev"));
        assert!(KILL_SCRIPT.contains(&format!("{MARKER_VAR}=$id")));
    }

    #[test]
    fn the_killer_reports_how_many_it_killed_and_garbage_counts_as_none() {
        use super::super::tests::output;
        assert_eq!(KillTree::outcome(output(0, b"3\n", "")), Ok(3));
        assert_eq!(KillTree::outcome(output(0, b"lots", "")), Ok(0));
        assert_eq!(KillTree::outcome(output(0, &[b'9'; 4096], "")), Ok(0));
        assert!(KillTree::outcome(output(1, b"", "no /proc")).is_err());
    }
}
