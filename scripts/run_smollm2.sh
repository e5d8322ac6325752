#!/usr/bin/env bash
# The Table 3 analogue on SmolLM2-135M-Instruct (fetched by scripts/fetch-smollm2.sh; its
# weights are Q4_1 in the GGUF, so "fp32" is that 4-bit model dequantized): FP32, RTN, static
# AWQ (calibrated on TinyStories), TTQ fixed and adaptive, 2 and 3 bits, paper protocol, on the
# first 4,096 tokens of WikiText-2 (8 windows of 512; the full text takes ~27 min per pass here).
# Appends one JSON object per run to docs/data/smollm2.jsonl. Usage: scripts/run_smollm2.sh [ttq-ppl]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ppl="${1:-$root/build/release/bin/ttq-ppl}"
model="$("$root/scripts/fetch-smollm2.sh" | tail -n 1)"
out="$root/docs/data/smollm2.jsonl"
mkdir -p "$(dirname "$out")"
common=(--model "$model" --text "$root/tools/data/wikitext-2-raw.test.txt" --ctx 512 --limit-tokens 4096 --json)
run() { echo "smollm2: $*" >&2; "$ppl" "${common[@]}" "$@" >> "$out"; }
run --method fp32
for bits in 3 2; do
  run --method rtn --bits "$bits"
  run --method ttq --bits "$bits" --alpha 0.5 --lambda 0.1 --p 2
  run --method ttq --bits "$bits" --alpha auto
  run --method awq --bits "$bits" --calib-text "$root/tools/data/tinystories-valid.head32k.txt" --calib-tokens 512
done
