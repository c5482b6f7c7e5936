//! Killing an execution's whole process tree.

use super::{ContainerOp, Failed, Output, sh};
use crate::runtime::ExecSpec;

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

#[cfg(test)]
mod tests {
    use super::*;

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
