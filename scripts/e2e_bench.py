#!/usr/bin/env python3
"""End-to-end speed of the tools, FP32 against the default TTQ, for docs/performance.md.

Runs each pair of commands in alternation (FP32, TTQ, FP32, TTQ, ...) so that a machine whose
speed drifts affects both alike, and records every run's own figures (the tools' --json output:
prefill and decode tokens/s, total seconds) and wall time, then medians and the median of the
pair-by-pair ratios. The ISA is the one ttq::dispatch runs (set TTQ_ISA=avx2 on an AVX-512
machine for the AVX2 figure).

  ttq-generate: the default TTQ (4 bits) vs --method fp32, a ~25-token prompt, 128 new tokens
  ttq-ppl:      the default TTQ (3 bits) vs --method fp32, 2,048 WikiText-2 tokens, ctx 512

Usage: scripts/e2e_bench.py --model SmolLM2.gguf [--bin build/release/bin] [--runs 5]
       [--out docs/data/e2e.json]
The model: scripts/fetch-smollm2.sh prints its path.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PROMPT = ("Once upon a time, in a small village at the edge of a great forest, there lived a curious "
          "little robot who loved to explore")


def run(cmd, env):
    start = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    wall = time.monotonic() - start
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return wall, rows[-1]


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx512f+vnni" if {"avx512f", "avx512_vnni"} <= flags else ("avx2" if "avx2" in flags else "baseline")
    except OSError:
        pass
    return platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--bin", default=os.path.join("build", "release", "bin"))
    ap.add_argument("--text", default=os.path.join("tools", "data", "wikitext-2-raw.test.txt"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join("docs", "data", "e2e.json"))
    args = ap.parse_args()
    env = dict(os.environ)
    gen = [os.path.join(args.bin, "ttq-generate"), "--model", args.model, "--prompt", PROMPT, "-n", "128", "--no-fp32",
           "--json", "--threads", str(args.threads)]
    ppl = [os.path.join(args.bin, "ttq-ppl"), "--model", args.model, "--text", args.text, "--ctx", "512", "--limit-tokens",
           "2048", "--json", "--threads", str(args.threads)]
    cases = {
        "generate": {"fp32": gen + ["--method", "fp32"], "ttq": gen + ["--bits", "4"]},
        "ppl": {"fp32": ppl + ["--method", "fp32"], "ttq": ppl + ["--bits", "3"]},
    }
    result = {"isa": os.environ.get("TTQ_ISA") or cpu_flags(), "threads": args.threads, "runs": args.runs,
              "load_average_at_start": os.getloadavg()[0], "cases": {}}
    for name, pair in cases.items():
        runs = {"fp32": [], "ttq": []}
        for i in range(args.runs):
            for method in ("fp32", "ttq"):
                wall, figures = run(pair[method], env)
                figures["wall_seconds"] = wall
                runs[method].append(figures)
                print(f"{name} {method} run {i + 1}: {wall:.2f} s", file=sys.stderr, flush=True)
        ratios = [t["wall_seconds"] / f["wall_seconds"] for f, t in zip(runs["fp32"], runs["ttq"])]
        summary = {"ratio_wall_median": statistics.median(ratios), "commands": {m: " ".join(c) for m, c in pair.items()}}
        for method, rows in runs.items():
            keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
            summary[method] = {k: statistics.median(r[k] for r in rows) for k in keys}
            summary[method]["backend"] = rows[0].get("backend", "")
        result["cases"][name] = summary
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v["ratio_wall_median"] for k, v in result["cases"].items()}))


if __name__ == "__main__":
    main()
