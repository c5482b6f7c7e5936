#!/usr/bin/env bash
# Builds a release tarball of taskbox and its SHA-256:
#   <out>/taskbox-<version>-<commit>-<arch>-linux.tar.gz and <that>.sha256
# (default out: dist/). It holds bin/taskbox (commands, hooks, Dockerfiles, migrations and the
# supervisor are compiled in), README.md, CHANGELOG.md, LICENSE, docs/, hooks/, commands/ and
# docker-images/ for reading. Check it with `sha256sum -c <file>.sha256` in <out>.
#
# The archive is reproducible for one binary: sorted names, owner 0, and every mtime set to the
# commit's time. TASKBOX_BINARY=path packages that binary instead of building
# `cargo build --release --locked` (the tests package the debug build this way).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"

if [ -n "${TASKBOX_BINARY:-}" ]; then
  binary="$TASKBOX_BINARY"
else
  echo "package: building the release binary (about 6 minutes from cold)" >&2
  cargo build --release --locked
  binary="${CARGO_TARGET_DIR:-target}/release/taskbox"
fi
[ -x "$binary" ] || { echo "package: no executable at $binary" >&2; exit 1; }

# "taskbox 0.1.0 (commit 0123456789ab)"
read -r _ version _ commit <<<"$("$binary" --version | tr -d '()')"
[ -n "$version" ] && [ -n "$commit" ] || { echo "package: cannot read the version of $binary" >&2; exit 1; }
name="taskbox-$version-$commit-$(uname -m)-linux"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin"
install -m 0755 "$binary" "$stage/$name/bin/taskbox"
cp -R README.md CHANGELOG.md LICENSE docs hooks commands docker-images "$stage/$name/"

epoch="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
mkdir -p "$out"
tarball="$out/$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$stage" -cf - "$name" | gzip -n >"$tarball"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "package: $tarball" >&2
cat "$tarball.sha256"
