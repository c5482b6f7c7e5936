#!/usr/bin/env bash
# Makes sure a Docker daemon answers on this machine: installs Docker Engine from the
# distribution's packages when it is missing (root only), starts dockerd when it is not
# running, and waits until `docker info` succeeds. Idempotent: does nothing when Docker works.
set -euo pipefail

log() { printf 'provision-docker: %s\n' "$*" >&2; }

# gVisor's runsc, when installed, is registered as the Docker runtime `runsc` for tasks under
# `[container] runtime = "runsc"` (docs/security.md, "Stronger isolation"). Debian's runsc
# (2022) needs the ptrace platform, and its own networking fails here, so it runs with
# --network=none: such containers have loopback only. Prints "changed" when daemon.json changed.
register_runsc() {
  local runsc config=/etc/docker/daemon.json
  runsc=$(command -v runsc || true)
  [ -n "$runsc" ] && [ "$(id -u)" = 0 ] || return 0
  if ! command -v python3 >/dev/null 2>&1; then
    log "runsc is installed but python3 is not, to edit $config: register runsc by hand"
    return 0
  fi
  mkdir -p /etc/docker
  RUNSC="$runsc" CONFIG="$config" python3 - <<'PY'
import json, os
path, runsc = os.environ["CONFIG"], os.environ["RUNSC"]
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
wanted = {"path": runsc, "runtimeArgs": ["--platform=ptrace", "--network=none"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    with open(path + ".tmp", "w") as f:
        json.dump(config, f, indent=2)
    os.replace(path + ".tmp", path)
    print("changed")
PY
}

if docker info >/dev/null 2>&1; then
  if [ "$(register_runsc)" = changed ]; then
    # dockerd reloads its runtimes on SIGHUP, without stopping containers.
    if [ -f /var/run/docker.pid ] && kill -HUP "$(cat /var/run/docker.pid)" 2>/dev/null; then
      log "registered runsc with the running Docker daemon"
      sleep 1
    else
      log "registered runsc in /etc/docker/daemon.json; restart dockerd to use it"
    fi
  fi
  log "Docker daemon already answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "dockerd is not installed and this is not root: install Docker Engine (e.g. 'sudo apt-get install docker.io') and re-run"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "dockerd is not installed and no apt-get is available: install Docker Engine by hand and re-run"
    exit 1
  fi
  log "installing Docker Engine from the distribution's packages (docker.io)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq docker.io >&2
fi

if [ "$(id -u)" != 0 ]; then
  log "dockerd is installed but not running, and only root can start it here: start the docker service and re-run"
  exit 1
fi

# A dockerd that was killed leaves its pid file behind, and a new dockerd refuses to start
# while it names a pid; remove it when no process with that pid is alive.
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ]; then
  oldpid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -z "$oldpid" ] || ! kill -0 "$oldpid" 2>/dev/null; then
    log "removing stale $pidfile (pid '${oldpid}' is not running)"
    rm -f "$pidfile"
  fi
fi
# Same story for containerd, which dockerd starts itself.
rm -f /var/run/docker/containerd/containerd.pid 2>/dev/null || true

register_runsc >/dev/null

logfile=${DOCKERD_LOG:-/var/log/taskbox-dockerd.log}
log "starting dockerd (log: $logfile)"
nohup dockerd >"$logfile" 2>&1 &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker daemon is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; last lines of $logfile:"
tail -n 20 "$logfile" >&2 || true
exit 1
