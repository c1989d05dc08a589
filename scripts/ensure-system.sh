#!/usr/bin/env bash
# Install the system programs the lab needs (redis-server; chromium for the browser check)
# when they are missing. Debian/Ubuntu via apt-get (as root, or with sudo); without root and
# without sudo (a JupyterHub or Binder user), or without apt-get, say what to do and stop.
set -euo pipefail

# The lab looks in the same places (src/stampede/lab.py, find_redis_server). STAMPEDE_REDIS_PLACES
# (colon-separated, as the lab reads it) replaces them: the tests point it at an empty folder to
# see what a machine without redis-server gets.
REDIS_PLACES="${STAMPEDE_REDIS_PLACES:-/usr/bin:/usr/sbin:/usr/local/bin:/opt/homebrew/bin:${HOME:-/nonexistent}/.local/bin}"
have_redis() {
  if [[ -n "${STAMPEDE_REDIS_SERVER:-}" ]]; then
    [[ -x "$STAMPEDE_REDIS_SERVER" ]] && return 0
    echo "STAMPEDE_REDIS_SERVER=$STAMPEDE_REDIS_SERVER is not an executable file" >&2
    exit 1
  fi
  command -v redis-server >/dev/null 2>&1 && return 0
  local dir places
  IFS=: read -r -a places <<< "$REDIS_PLACES"
  for dir in "${places[@]}"; do
    [[ -n "$dir" && -x "$dir/redis-server" ]] && return 0
  done
  return 1
}

need=()
have_redis || need+=(redis-server)
if [[ "${1:-}" == "--with-browser" ]]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
fi
[[ ${#need[@]} -eq 0 ]] && exit 0

without_root() {
  cat >&2 <<MSG
stampede-lab needs: ${need[*]}, and this user cannot install system packages
(not root, and no sudo it may use). Any one of these works:
  - ask whoever runs the machine or the hub image to install them
    (Debian/Ubuntu: apt-get install ${need[*]}; on Binder, binder/apt.txt already lists
    redis-server);
  - conda or mamba, no root needed: conda install -c conda-forge redis-server;
  - build Redis from its source release into ~/.local/bin (make && make PREFIX=~/.local install);
then put it on PATH, or point STAMPEDE_REDIS_SERVER at the redis-server program, and run
make again. (chromium is only needed for 'make test' and 'make book's browser check.)
MSG
  exit 1
}

if ! command -v apt-get >/dev/null 2>&1; then
  echo "stampede-lab needs: ${need[*]}. There is no apt-get here: install them with your" >&2
  echo "package manager (macOS: 'brew install redis chromium') and run make again." >&2
  [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null 2>&1 && without_root
  exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || without_root
  # sudo being installed is not being allowed to use it (a hub image often has sudo and no
  # sudoers entry for its users): without a terminal to ask for a password, it must work now.
  if ! sudo -n true 2>/dev/null; then
    [[ -t 0 ]] || without_root
    echo "installing ${need[*]} needs root: sudo may ask for your password" >&2
    sudo -v || without_root
  fi
  sudo="sudo"
fi
echo "installing ${need[*]} with ${sudo:+sudo }apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
