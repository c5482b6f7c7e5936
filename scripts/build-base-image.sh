#!/usr/bin/env bash
# Makes sure the image `debian:bookworm-slim` exists locally, which taskbox's Dockerfiles
# start FROM. Tries a pull first; on air-gapped hosts (no registry reachable) builds an
# equivalent root file system from Debian's packages with debootstrap and `docker import`s it
# under that tag. Idempotent: does nothing when the image is already there.
set -euo pipefail

image=${BASE_IMAGE:-debian:bookworm-slim}
log() { printf 'build-base-image: %s\n' "$*" >&2; }

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image already present"
  exit 0
fi

if timeout 60 docker pull "$image" >&2 2>/dev/null; then
  log "pulled $image"
  exit 0
fi
log "could not pull $image (no registry reachable?); building it with debootstrap"

if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "debootstrap is missing: install it (apt-get install debootstrap) as root and re-run"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq debootstrap >&2
fi

rootfs=$(mktemp -d /tmp/taskbox-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # Use the mirror this host's apt already reaches, so proxies and local mirrors keep working.
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE '^(deb|URIs:)\s+\S+' | awk '{print $NF}' | grep -E '^https?://' \
    | grep -vE 'security|nodesource|google' | head -n 1 || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
log "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
# Keep apt in the image pointed at the same mirror, and trim what a slim image leaves out.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import - "$image" >&2
log "imported $image"
