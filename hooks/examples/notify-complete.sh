#!/bin/sh
# taskbox external hook, for event "task_completed": tells the developer a task is done and
# its work waits on its branch. Appends a line to a log file (the first argument, default
# ~/.local/state/taskbox/notifications.log) and shows a desktop notification when
# notify-send is installed.
#
#   [[hooks.external]]
#   event = "task_completed"
#   command = ["/path/to/taskbox/hooks/examples/notify-complete.sh"]
input=$(cat)
field() { printf '%s' "$input" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n 1; }
name=$(field name)
branch=$(field branch)
log=${1:-$HOME/.local/state/taskbox/notifications.log}
mkdir -p "$(dirname "$log")"
message="taskbox: task ${name:-?} completed; review branch ${branch:-(none)} (taskbox diff, git log)"
printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$message" >>"$log"
if command -v notify-send >/dev/null 2>&1; then
  notify-send "taskbox" "$message" 2>/dev/null || true
fi
exit 0
