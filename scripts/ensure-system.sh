#!/usr/bin/env bash
# Install the system programs the lab needs (redis-server; chromium for the browser check)
# when they are missing. Debian/Ubuntu via apt-get; elsewhere, say what to install and stop.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [[ "${1:-}" == "--with-browser" ]]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
fi
[[ ${#need[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "stampede-lab needs: ${need[*]}. There is no apt-get here: install them with your" >&2
  echo "package manager (macOS: 'brew install redis chromium') and run make again." >&2
  exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing ${need[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
