#!/usr/bin/env bash
# Install what the container stacks' test needs when it is missing: a Docker engine (dockerd),
# the docker client, compose (v2 plugin or v1) and debootstrap (the stand-in base images).
# Debian/Ubuntu via apt-get, as root or with sudo, like scripts/ensure-system.sh; without
# either, say what is missing and stop with 0: tests/test_compose_stack.py then skips with the
# reason (it needs an engine it can start or reach).
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || docker info >/dev/null 2>&1 || need+=(docker.io)
if ! { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }; then
  need+=(docker-compose)
fi
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[[ ${#need[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "ensure-docker: missing ${need[*]} and no root or sudo to install them" >&2
    exit 0
  fi
  sudo="sudo"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-docker: missing ${need[*]}; no apt-get here, install them by hand" >&2
  exit 0
fi
echo "installing ${need[*]} with ${sudo:+sudo }apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
