#!/usr/bin/env bash
# Installs what is missing, builds ttq (Release, build/release) and runs the whole test suite
# with CTest, then the Python package's tests (scripts/test-python.sh: pip install . into
# build/python-venv, pytest). The README's test command and the first step of CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build/release" -j"$(nproc)"
ctest --test-dir "$root/build/release" --output-on-failure
"$root/scripts/test-python.sh"
