#!/usr/bin/env bash
# Make sure `promtool` is on PATH: installs Debian's `prometheus` package (which ships it) when it
# is missing. Idempotent and quiet: does nothing when promtool is already there, prints apt's
# output only when apt fails. Needs apt-get and root (or sudo); elsewhere it says what to do.
set -euo pipefail

command -v promtool >/dev/null 2>&1 && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-promtool: promtool is missing and apt-get is not available;" \
    "install Prometheus, which ships promtool: https://prometheus.io/download/" >&2
  exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-promtool: promtool is missing; as root run: apt-get install prometheus" >&2
    exit 1
  fi
  as_root=(sudo)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {
  if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >"$log" 2>&1; then
    echo "install-promtool: '$*' failed:" >&2
    cat "$log" >&2
    exit 1
  fi
}

echo "install-promtool: installing Debian's prometheus package (it ships promtool)" >&2
run apt-get update -qq
run apt-get install -y -qq --no-install-recommends prometheus

if ! command -v promtool >/dev/null 2>&1; then
  echo "install-promtool: the prometheus package is installed but promtool is not on PATH" >&2
  exit 1
fi
