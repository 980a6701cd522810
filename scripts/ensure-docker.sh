#!/usr/bin/env bash
# Make sure a Docker daemon answers and debootstrap is there, for the image test
# (tests/test_image.py, make image-test). Idempotent and quick when all is in place:
#   - installs Debian's docker.io and debootstrap when missing (apt-get update only if needed);
#   - starts dockerd in the background when no daemon answers, and waits for it (60 s at most, two tries).
# Exit 0 when the daemon answers; 1, with the reason on stderr, when it cannot (e.g. no root, no
# privileges to start a daemon): callers print that and go on, and the image test then skips.
set -euo pipefail

say() { echo "ensure-docker: $*" >&2; }

docker_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and cannot install (needs root and apt-get)"
    exit 1
  fi
  say "installing ${missing[*]}"
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$log" 2>&1; then
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } >"$log" 2>&1; then
      say "apt-get install ${missing[*]} failed:"
      tail -n 20 "$log" >&2
      rm -f "$log"
      exit 1
    fi
  fi
  rm -f "$log"
fi

docker_answers && exit 0

if [ "$(id -u)" -ne 0 ]; then
  say "no Docker daemon answers and starting one needs root"
  exit 1
fi
daemon_log=${DOCKERD_LOG:-/var/log/dockerd.log}
# Two tries: on a busy machine dockerd can give up waiting for its containerd ("timeout waiting
# for containerd to start"); a daemon killed earlier can leave stale pid files behind.
for try in 1 2; do
  say "starting dockerd in the background (try $try; log: $daemon_log)"
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      rm -f "$pidfile"
    fi
  done
  setsid dockerd >"$daemon_log" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 60); do
    docker_answers && exit 0
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
say "dockerd did not come up; the last lines of $daemon_log:"
tail -n 15 "$daemon_log" >&2
exit 1
