#!/bin/sh
# taskbox external hook, for event "before_exec": refuses commands that destroy data
# wholesale or rewrite shared history, before they run in the task's container.
#
#   [[hooks.external]]
#   event = "before_exec"
#   command = ["/path/to/taskbox/hooks/examples/deny-destructive.sh"]
#
# The event arrives as JSON on stdin; exit 2 with a reason on stderr denies, exit 0 allows.
input=$(cat)
case "$input" in
  *'"operation":"execute"'*) ;;
  *) exit 0 ;; # file operations are confined to /workspace already
esac
# The command string from the JSON (escaped quotes kept as \"; enough for these patterns).
command=$(printf '%s' "$input" | sed -n 's/.*"command":"\(\([^"\\]\|\\.\)*\)".*/\1/p')
deny() {
  echo "deny-destructive.sh refused this command: $1. Run a narrower command instead." >&2
  exit 2
}
printf '%s' "$command" | grep -Eq '(^|[;&|[:space:]])rm[[:space:]]+(-[[:alpha:]]+[[:space:]]+)*-[[:alpha:]]*[rR][[:alpha:]]*[[:space:]]+(-[[:alpha:]]+[[:space:]]+)*(/|/\*|~|~/|\*|\.|\.\.)([[:space:];&|]|$)' \
  && deny "it removes a whole tree (/, ~, . or *)"
printf '%s' "$command" | grep -Eq 'git[[:space:]]+push([[:space:]].*)?[[:space:]](--force|-f|--force-with-lease)([[:space:]=]|$)' \
  && deny "it force-pushes"
printf '%s' "$command" | grep -Eq '(^|[;&|[:space:]])(mkfs(\.[a-z0-9]+)?|wipefs|shred)[[:space:]]' \
  && deny "it wipes a file system or device"
printf '%s' "$command" | grep -Eq ':\(\)[[:space:]]*\{' && deny "it is a fork bomb"
exit 0
