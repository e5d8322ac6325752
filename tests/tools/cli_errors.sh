#!/usr/bin/env bash
# The CLI tools on bad input (issue 16): every case must fail loudly -- exit status 2, a message
# on stderr naming the user's flag or input -- and print nothing on stdout, or (the controls)
# succeed with valid output. One group of cases per class of defect:
#   1 a result computed from nothing   2 numbers parsed loosely   3 degenerate configurations
#   4 messages that blame the wrong thing   5 output that is not what it claims
# and of issue 27:
#   6 finite input that overflowed (a crafted model)   7 output that was not written
#   8 input read without bound   9 smaller ones (environment variables, data, end of text)
# Usage: cli_errors.sh TTQ_PPL TTQ_GENERATE TTQ_COMPARE TTQ_LAYER_ERROR DATA_DIR
set -u
ppl=$1 gen=$2 cmp=$3 lay=$4 data=$5
export TTQ_DATA_DIR=$data
export TTQ_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
wiki="$data/wikitext-2-raw.test.txt"
# Small, fast evaluations: a few windows of the WikiText stream.
small=(--text "$wiki" --ctx 32 --limit-tokens 128)

# expect_error NAME PATTERN CMD...: exit status 2, stderr matches PATTERN (extended regex), stdout empty.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [[ $rc -eq 2 ]] && grep -Eq -- "$pattern" "$tmp/err" && [[ ! -s "$tmp/out" ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $name: exit $rc (want 2), stderr must match /$pattern/, stdout must be empty"
    echo "  stderr: $(head -c 600 "$tmp/err")"
    echo "  stdout: $(head -c 300 "$tmp/out")"
  fi
}

# expect_ok NAME PATTERN CMD...: exit status 0, stdout matches PATTERN.
expect_ok() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [[ $rc -eq 0 ]] && grep -Eq -- "$pattern" "$tmp/out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $name: exit $rc (want 0), stdout must match /$pattern/"
    echo "  stderr: $(head -c 600 "$tmp/err")"
    echo "  stdout: $(head -c 300 "$tmp/out")"
  fi
}

: >"$tmp/empty.txt"
printf '<|endoftext|>\n\n<|endoftext|>\n' >"$tmp/separators.txt"
mkdir "$tmp/a_directory"

# --- 1. A result computed from nothing is an error, naming the input.
expect_error "ppl: empty text" "empty\.txt.*nothing to score" "$ppl" --text "$tmp/empty.txt"
expect_error "ppl: only separators" "separators\.txt.*nothing to score" "$ppl" --text "$tmp/separators.txt" --separator '<|endoftext|>'
expect_error "ppl: a directory as --text" "--text: '.*a_directory' is a directory" "$ppl" --text "$tmp/a_directory"
expect_error "ppl: a missing --text" "--text: cannot open '.*no_such\.txt': no such file" "$ppl" --text "$tmp/no_such.txt"
expect_error "ppl: a one-token budget" "--text .*nothing to score.*token budget 1" "$ppl" --text "$wiki" --limit-tokens 1
expect_error "ppl: a one-token budget, documents" "nothing to score" "$ppl" --limit-tokens 1
expect_error "ppl: empty separator" "--separator: expected a non-empty line" "$ppl" "${small[@]}" --separator ''
expect_error "ppl: separator never in the text" "no line equals the separator" "$ppl" "${small[@]}" --separator '<|endoftext|>'
expect_error "ppl: static AWQ on an empty calibration text" "--calib-text .*empty\.txt.*nothing to score" \
  "$ppl" "${small[@]}" --method awq --calib-text "$tmp/empty.txt"
expect_error "ppl: static AWQ on a one-token calibration budget" "--calib-tokens: expected an integer in 4\.\." \
  "$ppl" "${small[@]}" --method awq --calib-tokens 1
expect_error "compare: a three-token WikiText budget" "--wikitext-tokens: expected an integer" "$cmp" --wikitext-tokens 3
expect_error "compare: --clip unknown" "--clip: expected none, diag or block, got 'full'" "$cmp" --clip full

# --- 2. Numbers parsed strictly: whole string, no wrap, range-checked, the flag named.
expect_error "ppl: --bits wraps to 3" "--bits: expected an integer in 2\.\.8, got '4294967299'" "$ppl" "${small[@]}" --bits 4294967299
expect_error "ppl: --group wraps to 32" "--group: expected an integer in 0\.\..*got '4294967328'" "$ppl" "${small[@]}" --group 4294967328
expect_error "ppl: --bits with trailing text" "--bits: expected an integer" "$ppl" "${small[@]}" --bits 3x
expect_error "ppl: --bits with a leading space" "--bits: expected an integer" "$ppl" "${small[@]}" --bits ' 3'
expect_error "ppl: --bits beyond int64" "--bits: expected an integer" "$ppl" "${small[@]}" --bits 99999999999999999999999
expect_error "ppl: --alpha-grid abc" "--alpha-grid: expected a number.*got 'abc'" "$ppl" "${small[@]}" --alpha-grid abc
expect_error "ppl: --alpha-grid empty item" "--alpha-grid: expected a number.*got ''" "$ppl" "${small[@]}" --alpha-grid 0.1,,0.3
expect_error "ppl: --rank beyond the layers" "--rank 1000: larger than min\(d_out, d_in\)" "$ppl" "${small[@]}" --alpha 0.5 --rank 1000
expect_error "ppl: --clip unknown" "--clip: expected none, diag or block, got 'foo'" "$ppl" "${small[@]}" --clip foo
expect_error "ppl: --clip with a fixed alpha" "--clip applies only to --method ttq with --alpha auto" "$ppl" "${small[@]}" --alpha 0.5 --clip block
expect_error "ppl: --clip-rank without --clip block" "--clip-rank applies only to --clip block" "$ppl" "${small[@]}" --clip diag --clip-rank 4
expect_error "ppl: --relative-floor 1" "--relative-floor: expected a number in" "$ppl" "${small[@]}" --relative-floor 1
expect_error "ppl: --ctx wraps" "--ctx: expected an integer" "$ppl" --text "$wiki" --ctx 4294967328
expect_error "ppl: --ctx beyond the model" "--ctx 4096 exceeds the model's context length" "$ppl" --text "$wiki" --ctx 4096 --limit-tokens 128
expect_error "ppl: negative --limit-tokens" "--limit-tokens: expected an integer in 0\.\." "$ppl" --text "$wiki" --limit-tokens -5
expect_error "ppl: --alpha nan" "--alpha: expected a number in \[0, 4\], got 'nan'" "$ppl" "${small[@]}" --alpha nan
expect_error "ppl: --lambda out of range" "--lambda: expected a number in \[0, 1\]" "$ppl" "${small[@]}" --alpha 0.5 --lambda 2
expect_error "ppl: --threads as a float" "--threads: expected an integer in 1\.\.1024" "$ppl" "${small[@]}" --threads 1e3
expect_error "ppl: a flag given twice" "flag --bits given twice" "$ppl" "${small[@]}" --bits 3 --bits 4
expect_error "ppl: --lambda ignored by --alpha auto" "--lambda applies only to --method ttq with a fixed --alpha" \
  "$ppl" "${small[@]}" --lambda 0.1
expect_error "ppl: --rank ignored by RTN" "--rank applies only to --method ttq" "$ppl" "${small[@]}" --method rtn --rank 4
expect_error "generate: -n -5" "--tokens: expected an integer in 1\.\." "$gen" -n -5
expect_error "generate: --bits wraps" "--bits: expected an integer in 2\.\.8" "$gen" --bits 4294967299
expect_error "layer-error: negative --seed" "--seed: expected an integer in 0\.\.4294967295" "$lay" --seed -1
expect_error "layer-error: --d-in 0" "--d-in: expected an integer in 1\.\." "$lay" --random --d-in 0
expect_error "layer-error: --d-in without --random" "--d-in applies only with --random" "$lay" --d-in 64
expect_error "ppl: TTQ_NUM_THREADS=abc" "argument 'TTQ_NUM_THREADS': expected an integer in 1\.\.1024, got 'abc'" \
  env TTQ_NUM_THREADS=abc "$ppl" "${small[@]}"
expect_error "compare: --group wraps" "--group: expected an integer" "$cmp" --group 4294967328

# --- 3. Degenerate configurations that would destroy the weights are refused.
expect_error "ppl: --group 1 (AWQ format)" "--group 1: every one-weight group dequantizes to about \+-1e-5" "$ppl" "${small[@]}" --bits 8 --group 1
expect_error "ppl: a one-weight last group" "--group 57: the last group of each row of projection 'blk\.0\.ffn_down\.weight'" \
  "$ppl" "${small[@]}" --group 57
expect_error "ppl: --group larger than a layer" "--group 100: larger than the rows of projection" "$ppl" "${small[@]}" --group 100
expect_error "generate: --group 1" "--group 1: " "$gen" --group 1
expect_error "layer-error: --group 1" "--group 1: every one-weight group dequantizes to about \+-1e-5" "$lay" --group 1
expect_error "ppl: --group 2 (one-signed pairs clipped)" "--group 2: groups of 2 weights often share one sign" "$ppl" "${small[@]}" --bits 8 --group 2
expect_error "layer-error: a one-weight last group" "--group 5: the last group of each row of the layer" "$lay" --random --d-in 16 --group 5
expect_error "compare: --group 1" "--group 1: " "$cmp" --group 1

# --- 4. Messages name the user's argument.
expect_error "ppl: --model is a directory" "--model: gguf: '.*a_directory' is a directory" "$ppl" --model "$tmp/a_directory"
expect_error "generate: --model is a directory" "is a directory" "$gen" --model "$tmp/a_directory"
expect_error "ppl: --model is not a GGUF file" "--model: gguf: .*in '.*wikitext" "$ppl" --model "$wiki"
expect_error "ppl: --alpha 1e308" "--alpha: expected a number in \[0, 4\], got '1e308'" "$ppl" "${small[@]}" --alpha 1e308
expect_error "ppl: --p 1e308" "--p: expected a number in \[1, 32\] or inf, got '1e308'" "$ppl" "${small[@]}" --p 1e308
expect_error "ppl: --alpha-grid 1e308" "--alpha-grid: expected a number in \[0, 4\], got '1e308'" "$ppl" "${small[@]}" --alpha-grid 0,1e308
expect_error "ppl: --p below 1" "--p: expected a number in \[1, 32\]" "$ppl" "${small[@]}" --p 0.5
expect_error "ppl: an unknown --method" "--method: expected fp32, rtn, awq or ttq, got 'gptq'" "$ppl" "${small[@]}" --method gptq
expect_error "ppl: an unknown --awq-mode" "--awq-mode: expected per-projection or llm-awq, got 'llm_awq'" "$ppl" "${small[@]}" --method awq --awq-mode llm_awq
expect_error "ppl: --awq-mode without --method awq" "--awq-mode applies only to --method awq" "$ppl" "${small[@]}" --awq-mode llm-awq
expect_error "ppl: --p with llm-awq's procedure" "--p applies only to --awq-mode per-projection and --method ttq" "$ppl" "${small[@]}" --method awq --awq-mode llm-awq --p 2
expect_error "ppl: an unknown --protocol" "--protocol: expected paper, causal, stream or llama-cpp, got 'x'" "$ppl" "${small[@]}" --protocol x
expect_error "layer-error: an unknown --tensor" "--tensor: no tensor 'nope'" "$lay" --tensor nope

# --- 5. Output is what it claims: valid JSON for any path; nothing printed before an error.
latin1=$'caf\xe9.txt'
head -c 4000 "$wiki" >"$tmp/$latin1"
expect_ok "ppl: --json with a non-UTF-8 path" '"text": ".*caf\\?.*\.txt"' "$ppl" --text "$tmp/$latin1" --ctx 32 --limit-tokens 96 --json
if grep -q $'\xe9' "$tmp/out"; then
  fail=$((fail + 1)); echo "FAIL: the JSON holds the raw byte 0xE9 (not UTF-8)"
elif ! grep -q $'\xef\xbf\xbd' "$tmp/out"; then
  fail=$((fail + 1)); echo "FAIL: the JSON does not hold U+FFFD for the byte 0xE9"
else
  pass=$((pass + 1))
fi
if command -v python3 >/dev/null; then
  if python3 -c 'import json, sys; json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))' "$tmp/out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: ttq-ppl --json is not valid JSON: $(head -c 400 "$tmp/out")"
  fi
fi
expect_error "compare: --group too large, before any output" "--group 100: larger than the rows" "$cmp" --group 100
expect_error "layer-error: --group too large, before any output" "--group 300: larger than the rows of the layer" "$lay" --group 300
# Controls: the tools still work on good input.
expect_ok "ppl: a small stream run" '"ppl": [0-9]' "$ppl" "${small[@]}" --json
expect_ok "ppl: static AWQ reports the tokens it calibrated and searched on" '"calib_tokens": 64, "calib_search_tokens": 64,' \
  "$ppl" "${small[@]}" --method awq --calib-tokens 64 --json
expect_ok "ppl: a document budget" 'perplexity [0-9]' "$ppl" --limit-tokens 300 --ctx 64
expect_ok "layer-error: per-channel" '^\| 5 \|' "$lay" --group 0 --tokens 16

# --- 6. Finite input whose intermediates overflow: an error naming the activations, never a
# crash (issue 27). A crafted copy of stories260K whose first attention norm weight is 1e20: the
# activations entering the q/k/v projections reach 1e20, whose square is no float.
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if command -v python3 >/dev/null; then
  python3 "$script_dir/patch_gguf_tensor.py" "$data/stories260K.gguf" "$tmp/norm1e20.gguf" blk.0.attn_norm.weight 1e20
  expect_error "ppl: activations of 1e20 with --clip block" "argument 'x': element .* is -?[0-9.]+e\+(19|20): its square overflows float" \
    "$ppl" --model "$tmp/norm1e20.gguf" "${small[@]}" --clip block
  expect_error "ppl: activations of 1e20 with --clip diag" "argument 'x': .*square overflows float" \
    "$ppl" --model "$tmp/norm1e20.gguf" "${small[@]}" --clip diag
  expect_error "ppl: activations of 1e20, no clip (not an error about 'scales')" "argument 'x': .*square overflows float" \
    "$ppl" --model "$tmp/norm1e20.gguf" "${small[@]}"
  expect_error "generate: activations of 1e20 with --clip block" "argument 'x': .*square overflows float" \
    "$gen" --model "$tmp/norm1e20.gguf" --clip block -n 4 --no-fp32
else
  echo "note: python3 not found; the crafted-model cases are skipped"
fi

# --- 7. Output that was not written is not success: exit status 1 and a message (issue 27).
# expect_unwritten NAME REDIRECT CMD...: REDIRECT is "full" (stdout on /dev/full) or "closed".
expect_unwritten() {
  local name=$1 how=$2
  shift 2
  local rc
  if [[ $how == full ]]; then
    "$@" >/dev/full 2>"$tmp/err"
    rc=$?
  else
    "$@" >&- 2>"$tmp/err"
    rc=$?
  fi
  if [[ $rc -eq 1 ]] && grep -Eq -- "cannot write the output to stdout" "$tmp/err"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $name: exit $rc (want 1), stderr must say the output could not be written"
    echo "  stderr: $(head -c 600 "$tmp/err")"
  fi
}
if [[ -w /dev/full ]]; then
  expect_unwritten "ppl --json on a full disk" full "$ppl" "${small[@]}" --json
  expect_unwritten "ppl (text) on a full disk" full "$ppl" "${small[@]}"
  expect_unwritten "generate --json on a full disk" full "$gen" -n 4 --no-fp32 --json
  expect_unwritten "layer-error on a full disk" full "$lay" --random --d-in 32 --d-out 16 --tokens 8
  expect_unwritten "compare --help on a full disk" full "$cmp" --help
fi
expect_unwritten "ppl --json with stdout closed" closed "$ppl" "${small[@]}" --json
expect_unwritten "generate with stdout closed" closed "$gen" -n 4 --no-fp32
expect_unwritten "layer-error with stdout closed" closed "$lay" --random --d-in 32 --d-out 16 --tokens 8

# --- 8. No input is read without bound (issue 27): only regular files, at most 256 MiB of text.
# (A time limit: before the bound, /dev/zero was read until memory ran out, and a FIFO blocked.)
mkfifo "$tmp/fifo"
truncate -s 300M "$tmp/huge.txt"  # sparse: no disk used
expect_error "ppl: --text /dev/zero" "--text: '/dev/zero' is not a regular file" timeout 20 "$ppl" --text /dev/zero --limit-tokens 128
expect_error "ppl: --text a FIFO" "--text: '.*fifo' is not a regular file" timeout 20 "$ppl" --text "$tmp/fifo" --limit-tokens 128
expect_error "ppl: --calib-text /dev/zero" "--calib-text: '/dev/zero' is not a regular file" \
  timeout 20 "$ppl" "${small[@]}" --method awq --calib-text /dev/zero
expect_error "ppl: a 300 MiB --text" "--text: '.*huge\.txt' is 314572800 bytes, more than the 256 MiB" \
  timeout 20 "$ppl" --text "$tmp/huge.txt" --limit-tokens 128

# --- 9. Smaller ones (issue 27).
expect_error "ppl: TTQ_ISA=bogus names the variable" "argument 'TTQ_ISA': expected scalar, avx2" env TTQ_ISA=bogus "$ppl" "${small[@]}"
expect_error "ppl: TTQ_HUGE_PAGES=yes" "argument 'TTQ_HUGE_PAGES': expected 0 or 1" env TTQ_HUGE_PAGES=yes "$ppl" "${small[@]}"
expect_ok "ppl: TTQ_HUGE_PAGES=0" '"ppl": [0-9]' env TTQ_HUGE_PAGES=0 "$ppl" "${small[@]}" --json
# FP32 and the TTQ methods do not need the bundled WikiText (only static AWQ's default calibration).
mkdir "$tmp/no_wikitext"
data_abs=$(cd "$data" && pwd)
ln -s "$data_abs/stories260K.gguf" "$data_abs/tinystories-valid.head32k.txt" "$tmp/no_wikitext/"
expect_ok "ppl: --method fp32 without the bundled WikiText" '"ppl": [0-9]' \
  "$ppl" --data-dir "$tmp/no_wikitext" --method fp32 --ctx 32 --limit-tokens 128 --json
expect_ok "ppl: --method ttq without the bundled WikiText" '"ppl": [0-9]' \
  "$ppl" --data-dir "$tmp/no_wikitext" --ctx 32 --limit-tokens 128 --json
expect_error "ppl: --method awq without the bundled WikiText names it" "wikitext-2-raw\.test\.txt' not found" \
  "$ppl" --data-dir "$tmp/no_wikitext" --method awq --ctx 32 --limit-tokens 128
# ttq-generate stops at the end of the text: stories260K ends a story with BOS (token 1).
expect_ok "generate: stops at the model's end of text" '"stop_reason": "(bos|eos)"' "$gen" --no-fp32 --json -n 400 --method fp32

echo "tests/tools/cli_errors.sh: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
