#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3.11 for the Dockerfile's BASE_IMAGE
# argument, for machines that cannot pull python:3.11-slim from Docker Hub.
#
#   scripts/build-base-image.sh            # builds crypto-forecast-base:bookworm unless it exists
#   scripts/build-base-image.sh --force    # rebuilds it
#   BASE_IMAGE=name:tag scripts/build-base-image.sh
#
# How: debootstrap (variant minbase) writes a root filesystem with python3 and python3-venv from
# the Debian mirror this machine's apt uses (or DEBIAN_MIRROR), then `docker import` turns it into
# an image. The host's CA bundle (CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) replaces
# the image's, so pip inside a build trusts what the host trusts (e.g. a TLS-inspecting proxy).
# Needs root (debootstrap), a running Docker daemon and debootstrap; about 80 s and 300 MB.
set -euo pipefail

image=${BASE_IMAGE:-crypto-forecast-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  *) echo "usage: $0 [--force]   (env: BASE_IMAGE, DEBIAN_SUITE, DEBIAN_MIRROR, CA_BUNDLE)" >&2
     exit 2 ;;
esac

say() { echo "build-base-image: $*" >&2; }

if [ "$force" -eq 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  say "$image exists (use --force to rebuild)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  say "debootstrap needs root: run this script as root (or with sudo)"
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  say "debootstrap is missing: apt-get install debootstrap"
  exit 1
fi

# The mirror apt already uses (deb822 sources first, then the classic list).
mirror_of_this_machine() {
  local file
  for file in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$file"
    return
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
      /etc/apt/sources.list
  fi
}
mirror=${DEBIAN_MIRROR:-$(mirror_of_this_machine)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /tmp/base-rootfs.XXXXXX)
log=$(mktemp /tmp/base-debootstrap.XXXXXX.log)
trap 'rm -rf "$rootfs" "$log"' EXIT

start=$(date +%s)
say "debootstrap $suite from $mirror into $rootfs"
if ! debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,passwd \
    "$suite" "$rootfs" "$mirror" >"$log" 2>&1; then
  say "debootstrap failed:"
  tail -n 30 "$log" >&2
  exit 1
fi

if [ -f "$ca_bundle" ]; then
  cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
# Smaller image: no package lists, caches, docs or man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/tmp/*

python=$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')
tar -C "$rootfs" --numeric-owner -c . \
  | docker import --change 'CMD ["python3"]' \
      --message "debootstrap $suite minbase + python3 $python" - "$image" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
say "built $image (Python $python, $((size / 1024 / 1024)) MiB) in $(( $(date +%s) - start )) s"
