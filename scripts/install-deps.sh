#!/usr/bin/env bash
# Installs the Debian 12 packages ttq builds with, if any is missing (apt-get; root or sudo).
# Nothing is downloaded at build time: these are all the dependencies there are.
set -euo pipefail
packages=(cmake make g++ libeigen3-dev libxsimd-dev catch2 libbenchmark-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ttq: installing missing packages: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
