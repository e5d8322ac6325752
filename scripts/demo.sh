#!/usr/bin/env bash
# Installs what is missing, builds the examples and runs the main demo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build/release" -j"$(nproc)" --target ttq_layer_error_table
"$root/build/release/examples/ttq_layer_error_table" "$@"
