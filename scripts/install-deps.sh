#!/usr/bin/env bash
# Installs the Debian packages every part of the project needs: the union of
# scripts/deps/*.apt. apt-get runs only when something is missing, so a second
# run on the same machine costs a dpkg query.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: must run as root (apt-get install); try: sudo bash $0" >&2
  exit 1
fi

mapfile -t wanted < <(cat scripts/deps/*.apt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} Debian packages already installed"
  exit 0
fi
echo "install-deps: installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
