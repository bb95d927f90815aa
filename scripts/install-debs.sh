#!/usr/bin/env bash
# Install the Debian packages listed in the given files when they are missing and we can.
# Idempotent: does nothing (and touches no network) when every package is already installed.
set -euo pipefail
missing=()
for f in "$@"; do
  [ -f "$f" ] || continue
  while read -r pkg _; do
    case "$pkg" in ""|\#*) continue ;; esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < "$f"
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "xmr: missing Debian packages (${missing[*]}) and no apt-get here; install them by hand" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "xmr: missing Debian packages (${missing[*]}); run: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "xmr: installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
