#!/usr/bin/env bash
# Local stand-ins for lab_env's base images, for a machine that cannot pull from a registry:
# Debian bookworm made with debootstrap from Debian's own packages (python3 with venv, and
# redis-server), imported into the local engine under two names. Offline from any image
# registry; needs root (debootstrap), a Debian mirror and a running Docker engine.
#
#   scripts/make-standin-images.sh            # prints the two PYTHON_IMAGE=/REDIS_IMAGE= lines
#   PYTHON_IMAGE=... REDIS_IMAGE=... docker compose -f lab_env/docker-compose.yml build
#
# Idempotent: when both images exist it only prints their names. The root filesystem is kept
# as a tarball under data/standin/ (git-ignored), so a machine that lost its images re-imports
# it in seconds instead of running debootstrap again (about a minute and 270 MB).
set -euo pipefail

PYTHON_IMAGE="${STANDIN_PYTHON_IMAGE:-stampede-standin/python:3.11-bookworm}"
REDIS_IMAGE="${STANDIN_REDIS_IMAGE:-stampede-standin/redis:7-bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-venv,redis-server,redis-tools
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${STANDIN_CACHE:-$root/data/standin}"
tarball="$cache/$SUITE-python3-redis.tar"

say() { echo "make-standin-images: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
  say "no Docker engine answers (docker info failed); start dockerd first"
  exit 1
fi

if docker image inspect "$PYTHON_IMAGE" "$REDIS_IMAGE" >/dev/null 2>&1; then
  say "both images exist, nothing to do"
else
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null 2>&1 || {
      say "debootstrap is missing: apt-get install debootstrap"
      exit 1
    }
    [[ $(id -u) -eq 0 ]] || { say "debootstrap needs root"; exit 1; }
    # The machine's own Debian mirror (its apt sources), else Debian's default.
    mirror="${DEBIAN_MIRROR:-$( { grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
      2>/dev/null || true; } | head -1 | awk '{print $2}')}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    mkdir -p "$cache"
    work="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    say "debootstrap $SUITE ($PACKAGES) from $mirror"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$mirror" \
      > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # What an image does not need: package lists, caches, docs, the build host's resolver.
    rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/* \
      "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/tmp/*
    : > "$work/rootfs/etc/resolv.conf"
    tar -C "$work/rootfs" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
  fi
  say "importing $tarball"
  # `python` as well as python3, as in the public image; redis-server is on PATH in both.
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "stampede-lab stand-in: Debian $SUITE minbase + $PACKAGES" \
    "$tarball" "$PYTHON_IMAGE" >/dev/null
  docker tag "$PYTHON_IMAGE" "$REDIS_IMAGE"
fi
echo "PYTHON_IMAGE=$PYTHON_IMAGE"
echo "REDIS_IMAGE=$REDIS_IMAGE"
