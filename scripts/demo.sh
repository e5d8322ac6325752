#!/usr/bin/env bash
# Installs what is missing, builds the tools and runs the main demo: perplexity of the bundled
# stories260K model on the bundled TinyStories and WikiText-2 texts for FP32, RTN, static AWQ
# and TTQ at 2/3/4 bits (ttq-compare; about 75 s on 2 cores). Flags go to ttq-compare.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build/release" -j"$(nproc)" --target ttq_compare
"$root/build/release/bin/ttq-compare" "$@"
