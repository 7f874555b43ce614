#!/usr/bin/env bash
# Install the Debian 12 packages taskq builds and tests with (only the
# missing ones; apt-get runs only when something is missing).  With
# --fuzz, also clang and its libFuzzer runtime (scripts/fuzz.sh).
# Besides the libraries: systemd for systemd-analyze (the unit checks),
# scdoc for the man pages, man-db and file for the man-page and package
# checks, python3-zmq/msgpack for the interop test.
#
# usage: scripts/deps.sh [--fuzz]
set -euo pipefail

pkgs=(build-essential cmake pkg-config libzmq3-dev libmsgpack-dev check
      libsqlite3-dev libsystemd-dev libjansson-dev libinih-dev iproute2 util-linux
      bsdutils python3 python3-zmq python3-msgpack
      systemd scdoc man-db file)
[ "${1:-}" = "--fuzz" ] && pkgs+=(clang libclang-rt-14-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
