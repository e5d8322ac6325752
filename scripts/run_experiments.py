#!/usr/bin/env python3
"""Run the perplexity experiment grid of docs/results.md with ttq-ppl.

Each configuration is one ttq-ppl process (one at a time: the machine is shared). Its JSON result,
plus an `experiment` tag, the exact command line and a configuration key, is appended to
docs/data/results.jsonl as soon as it finishes, so a partial run is useful and a rerun resumes:
a configuration whose key is already in the file is skipped. A configuration is identified by its
arguments only, so a run that several experiments need (e.g. RTN at 3 bits, g32, TinyStories,
paper protocol) is measured once; `experiment` names the first experiment that asked for it, and
scripts/make_results.py looks rows up by key, never by tag.

Usage (from anywhere; paths are relative to the repository root):

    python3 scripts/run_experiments.py [TTQ_PPL] [--only sweep,table3,...] [--dry-run]

Experiments, in the order they run (the lead needs the first ones first):

    sweep     fixed-exponent TTQ over p x alpha x lambda (3 bits, g32, TinyStories, paper),
              then the top settings re-checked on the causal protocol and on WikiText
    table3    bits 2..5 x methods x text x protocol (uses the fixed setting the sweep chose)
    rank      TTQ auto with a low-rank residual, r in {0, 2, 4, 8, 16}, 2 and 3 bits
    table2    group size at 3 bits
    table1    static AWQ against its number of calibration tokens, TTQ as the zero-token reference
    adaptive  cost and quality of the exponent grid of `--alpha auto` (repeated runs for timing)
    clip      TTQ with the online clip search (diag, block, block of rank 4) at 2-4 bits, both texts
              and protocols, next to RTN and AWQ+clip calibrated on either text
    floor     TTQ auto and TTQ+clip block with --relative-floor 0.1 and 0.5 (2-3 bits, both texts and
              protocols): what keeping channels the prompt did not use costs or gains
    smollm2   the second model (SmolLM2-135M-Instruct, fetched by scripts/fetch-smollm2.sh): RTN,
              AWQ+clip, TTQ auto and TTQ+clip block at 2/3/4 bits x group 32/64/128 x both protocols,
              on a WikiText-2 prefix (SMOLLM2_TOKENS; the whole split would take days on 2 cores)
    gemma3    the paper's Table 3 on its own model family (Gemma 3 270M, fetched by
              scripts/fetch-gemma3.sh): group 128, the paper's `stream` protocol with 2,048-token
              windows, the first GEMMA3_WINDOWS windows of WikiText-2 and of C4, 2/3/4/5 bits: RTN,
              static AWQ calibrated on either text (llm-awq's procedure with its clip, and the
              per-projection one), TTQ as the paper runs it (fixed exponent, no clip, r = 0 and 16),
              and the library's default TTQ

Exit status 1 when a configuration failed (the tool exited non-zero, or exited 0 without a JSON
result: nothing is recorded for it, and a rerun retries it) or a result could not be written to
the results file (a full disk: the partial line is cut off and the run stops). A run is a success
only when every configuration it ran is in the file.

The grid lives in this file only; make_results.py imports it (`configs`, `choose_fixed`) so the
tables always describe exactly what was run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join("docs", "data", "results.jsonl")
DEFAULT_TOOL = os.path.join("build-results", "bin", "ttq-ppl")

# Evaluation texts. TinyStories: the 46 bundled documents, each scored on its own (BOS + text,
# <= 512 tokens). WikiText-2: the documented prefix of 40,960 tokens of the test split as one
# stream cut into 512-token windows (the full split is 809k tokens, 100+ s per run).
TS_FILE = "tools/data/tinystories-valid.head32k.txt"
WT_FILE = "tools/data/wikitext-2-raw.test.txt"
WT_PREFIX = 40960
TEXTS = {
    "tinystories": ["--text", TS_FILE, "--separator", "<|endoftext|>"],
    "wikitext": ["--text", WT_FILE, "--limit-tokens", str(WT_PREFIX)],
}
# SmolLM2's grid: the first SMOLLM2_TOKENS tokens of the same WikiText-2 split (its tokenizer),
# the largest prefix whose 72 runs fit in about 90 minutes on 2 cores (docs/results.md says so).
SMOLLM2_TOKENS = 4096
# Kept out of TEXTS, which the stories260K grids loop over.
TEXT_ARGS = {**TEXTS, "wikitext-smollm2": ["--text", WT_FILE, "--limit-tokens", str(SMOLLM2_TOKENS)]}
PROTOCOLS = ("paper", "causal")
C4_FILE = "tools/data/c4-validation-00000.first1025docs.txt"
CALIB_FILES = {"tinystories": TS_FILE, "wikitext": WT_FILE, "c4": C4_FILE}

# Gemma 3 270M under the paper's protocol (ttq-ppl --protocol stream --ctx 2048): the first
# GEMMA3_WINDOWS windows of each text. The whole texts are 144 (WikiText-2) and 243 (C4) windows;
# scripts/make_results.py states the prefix. One window costs the output head alone 0.7 TFLOP
# (262,144-token vocabulary): on the shared 2-core machine (AVX-512, heavily loaded) one window took
# 200 s in FP32, 140 s RTN, 180 s TTQ auto, 540 s TTQ r=16 (4 bits, g128); llm-awq's search on
# 128 x 512 calibration tokens costs far more than the evaluation (size GEMMA3_WINDOWS on a quiet
# machine with --dry-run and one cell of each kind).
GEMMA3_CTX = 2048
GEMMA3_WINDOWS = 8
GEMMA3_TEXTS = {"wikitext": WT_FILE, "c4": C4_FILE}
TEXT_ARGS.update({f"gemma3-{name}": ["--text", path, "--ctx", str(GEMMA3_CTX), "--limit-tokens",
                                     str(GEMMA3_WINDOWS * GEMMA3_CTX)] for name, path in GEMMA3_TEXTS.items()})

# Fixed-exponent settings with a name: the paper's secondary summary (p=2, alpha=0.5,
# lambda=0.1), and the best of the independent implementation's 18-point sweep.
PAPER_LIKE = (2.0, 0.5, 0.1)
REFERENCE_BEST = (2.0, 0.1, 0.5)

SWEEP_P = (1.0, 2.0, 4.0, math.inf)
SWEEP_ALPHA = (0.1, 0.2, 0.3, 0.5, 0.7)
SWEEP_LAMBDA = (0.0, 0.01, 0.1, 0.3, 0.5)
SWEEP_TOP = 5

ALPHA_GRIDS = {
    "{0, 0.5}": "0,0.5",
    "{0, 0.25, 0.5, 0.75}": "0,0.25,0.5,0.75",
    "{0, 0.1, ..., 0.9} (default)": None,
    "{0, 0.05, ..., 0.95}": ",".join(f"{0.05 * i:.2f}" for i in range(20)),
}
TIMING_REPEATS = 3


def num(x: float) -> str:
    """A number as ttq-ppl reads it (strtod): 'inf', '0.1', '2'."""
    if math.isinf(x):
        return "inf"
    return f"{x:g}"


@dataclass(frozen=True)
class Method:
    """One quantization method with its settings, as ttq-ppl flags."""
    kind: str                      # fp32 | rtn | awq | ttq
    p: float | None = None
    alpha: float | None = None     # None: auto (ttq)
    lam: float | None = None
    rank: int = 0
    calib: str | None = None       # awq: tinystories | wikitext
    calib_tokens: int = 2000
    clip: bool = False
    grid: str | None = None        # ttq auto: --alpha-grid value
    awq_norm: bool = False
    ttq_clip: str | None = None    # ttq auto: --clip diag|block (None: no flag, the default none)
    clip_rank: int = 0             # ttq auto, --clip block: --clip-rank
    relative_floor: float = 0.0    # ttq auto: --relative-floor (0: no flag, the default)
    awq_mode: str | None = None    # awq: None (the default per-projection search) | "llm-awq"

    def flags(self) -> list[str]:
        f = ["--method", self.kind]
        if self.kind == "awq":
            if self.awq_mode:  # llm-awq's procedure fixes its statistic (mean |x|): no --p
                f += ["--awq-mode", self.awq_mode]
            else:
                f += ["--p", num(self.p if self.p is not None else 1.0)]
            f += ["--calib-text", CALIB_FILES[self.calib], "--calib-tokens", str(self.calib_tokens)]
            if self.clip:
                f += ["--awq-clip"]
        elif self.kind == "ttq":
            if self.alpha is None:
                f += ["--alpha", "auto", "--p", num(self.p if self.p is not None else 1.0)]
                if self.grid:
                    f += ["--alpha-grid", self.grid]
                if self.awq_norm:
                    f += ["--awq-normalisation"]
                if self.ttq_clip:
                    f += ["--clip", self.ttq_clip]
                    if self.clip_rank:
                        f += ["--clip-rank", str(self.clip_rank)]
                if self.relative_floor:
                    f += ["--relative-floor", num(self.relative_floor)]
            else:
                f += ["--alpha", num(self.alpha), "--p", num(self.p), "--lambda", num(self.lam)]
            f += ["--rank", str(self.rank)]
        return f


def fixed(setting: tuple[float, float, float], rank: int = 0) -> Method:
    p, a, l = setting
    return Method("ttq", p=p, alpha=a, lam=l, rank=rank)


RTN = Method("rtn")
FP32 = Method("fp32")
AUTO = Method("ttq", p=1.0)


def awq(calib: str, tokens: int = 2000, clip: bool = False) -> Method:
    return Method("awq", p=1.0, calib=calib, calib_tokens=tokens, clip=clip)


def llm_awq(calib: str, clip: bool = True) -> Method:
    """Static AWQ exactly as llm-awq runs it (--awq-mode llm-awq), with its calibration budget:
    128 samples of 512 tokens (the whole text where it has fewer)."""
    return Method("awq", calib=calib, calib_tokens=128 * 512, clip=clip, awq_mode="llm-awq")


@dataclass
class Config:
    experiment: str
    method: Method
    text: str = "tinystories"
    protocol: str = "paper"
    bits: int = 3
    group: int = 32
    repeat: int = 0
    model: str | None = None       # None: the bundled stories260K; "smollm2": scripts/fetch-smollm2.sh's
    args: list[str] = field(init=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        # The key names the model symbolically (its cache path differs per machine); model_args()
        # resolves it when the run starts.
        a = ["--model", self.model] if self.model else []
        a += list(self.method.flags())
        if self.method.kind != "fp32":
            a += ["--bits", str(self.bits), "--group", str(self.group)]
        a += TEXT_ARGS[self.text] + ["--protocol", self.protocol]
        self.args = a
        self.key = shlex.join(a) + (f" #repeat={self.repeat}" if self.repeat else "")

    def command_args(self) -> list[str]:
        """The tool's arguments, with the model's symbolic name replaced by its file."""
        if not self.model:
            return list(self.args)
        return ["--model", model_path(self.model)] + self.args[2:]


_MODEL_PATHS: dict[str, str] = {}


def model_path(name: str) -> str:
    """The file of a named model ("smollm2", "gemma3"), fetched (once, then cached) by its script."""
    if name not in _MODEL_PATHS:
        if name not in ("smollm2", "gemma3"):
            raise ValueError(f"unknown model {name!r}")
        out = subprocess.run(["bash", os.path.join(ROOT, "scripts", f"fetch-{name}.sh")], check=True,
                             capture_output=True, text=True).stdout
        _MODEL_PATHS[name] = out.strip().splitlines()[-1]
    return _MODEL_PATHS[name]


def load_results(path: str) -> dict[str, dict]:
    """Key -> record of every line of results.jsonl (the last one wins)."""
    out: dict[str, dict] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    out[rec["key"]] = rec
    return out


# ---------------------------------------------------------------- the grid

def sweep_grid() -> list[Config]:
    return [Config("sweep", fixed((p, a, l)))
            for p in SWEEP_P for a in SWEEP_ALPHA for l in SWEEP_LAMBDA]


def sweep_top(results: dict[str, dict]) -> list[tuple[float, float, float]]:
    """The SWEEP_TOP best settings of the sweep on TinyStories (paper), best first."""
    scored = []
    for c in sweep_grid():
        r = results.get(c.key)
        if r is not None:
            m = c.method
            scored.append((r["ppl"], (m.p, m.alpha, m.lam)))
    scored.sort(key=lambda t: t[0])
    return [s for _, s in scored[:SWEEP_TOP]]


def recheck_candidates(results: dict[str, dict]) -> list[tuple[float, float, float]]:
    cands = sweep_top(results)
    for s in (PAPER_LIKE, REFERENCE_BEST):
        if s not in cands:
            cands.append(s)
    return cands


RECHECK_CONDITIONS = [("tinystories", "paper"), ("tinystories", "causal"),
                      ("wikitext", "paper"), ("wikitext", "causal")]


def recheck_grid(results: dict[str, dict]) -> list[Config]:
    return [Config("sweep-recheck", fixed(s), text=t, protocol=pr)
            for s in recheck_candidates(results) for t, pr in RECHECK_CONDITIONS]


def choose_fixed(results: dict[str, dict]) -> tuple[tuple[float, float, float] | None, list]:
    """The recommended fixed setting: among the re-checked candidates (the sweep's top 5 on
    TinyStories plus the paper-like and the reference's best), the lowest mean log-perplexity over
    the four conditions (TinyStories and WikiText, paper and causal protocols): the geometric mean
    of the perplexities, so each condition's relative change counts equally. Returns the setting
    (None while a condition is missing) and the table [(setting, [ppl per condition], geo-mean)]."""
    table = []
    for s in recheck_candidates(results):
        ppls = [results.get(Config("sweep-recheck", fixed(s), text=t, protocol=pr).key) for t, pr in RECHECK_CONDITIONS]
        if any(p is None for p in ppls):
            table.append((s, [p["ppl"] if p else None for p in ppls], None))
            continue
        vals = [p["ppl"] for p in ppls]
        table.append((s, vals, math.exp(sum(math.log(v) for v in vals) / len(vals))))
    complete = [row for row in table if row[2] is not None]
    if not complete or len(complete) < len(table):
        return None, table
    best = min(complete, key=lambda row: row[2])
    return best[0], table


def table3_methods(best: tuple[float, float, float] | None) -> list[tuple[str, Method]]:
    rows = [("RTN", RTN),
            ("AWQ (TinyStories calib)", awq("tinystories")),
            ("AWQ (WikiText calib)", awq("wikitext")),
            ("AWQ+clip (TinyStories calib)", awq("tinystories", clip=True)),
            ("AWQ+clip (WikiText calib)", awq("wikitext", clip=True)),
            ("TTQ fixed, paper-like (p=2, a=0.5, l=0.1)", fixed(PAPER_LIKE))]
    if best is not None and best != PAPER_LIKE:
        p, a, l = best
        rows.append((f"TTQ fixed, sweep's choice (p={num(p)}, a={num(a)}, l={num(l)})", fixed(best)))
    rows += [("TTQ auto (p=1)", AUTO),
             ("TTQ auto (p=1), r=4", Method("ttq", p=1.0, rank=4)),
             ("TTQ auto (p=1), r=8", Method("ttq", p=1.0, rank=8))]
    return rows


TABLE3_BITS = (2, 3, 4, 5)


def table3_grid(best) -> list[Config]:
    out = []
    for text in TEXTS:
        for pr in PROTOCOLS:
            out.append(Config("table3", FP32, text=text, protocol=pr))
            for bits in TABLE3_BITS:
                for _, m in table3_methods(best):
                    out.append(Config("table3", m, text=text, protocol=pr, bits=bits))
    return out


RANKS = (0, 2, 4, 8, 16)


def rank_grid() -> list[Config]:
    return [Config("rank", Method("ttq", p=1.0, rank=r), bits=b) for b in (2, 3) for r in RANKS]


GROUPS = (8, 16, 32, 64, 128, 0)


def table2_methods(best) -> list[tuple[str, Method]]:
    rows = [("RTN", RTN), ("AWQ (WikiText calib)", awq("wikitext")),
            ("AWQ+clip (WikiText calib)", awq("wikitext", clip=True)),
            ("TTQ fixed, paper-like", fixed(PAPER_LIKE))]
    if best is not None and best != PAPER_LIKE:
        rows.append(("TTQ fixed, sweep's choice", fixed(best)))
    rows.append(("TTQ auto (p=1)", AUTO))
    return rows


def table2_grid(best) -> list[Config]:
    return [Config("table2", m, group=g) for _, m in table2_methods(best) for g in GROUPS]


CALIB_TOKENS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def table1_awq_rows() -> list[tuple[str, str, bool]]:
    return [("AWQ (WikiText calib)", "wikitext", False), ("AWQ (TinyStories calib)", "tinystories", False),
            ("AWQ+clip (WikiText calib)", "wikitext", True)]


def table1_ttq_rows(best) -> list[tuple[str, Method]]:
    rows = [("TTQ fixed, paper-like", fixed(PAPER_LIKE))]
    if best is not None and best != PAPER_LIKE:
        rows.append(("TTQ fixed, sweep's choice", fixed(best)))
    rows += [("TTQ auto (p=1)", AUTO), ("RTN", RTN)]
    return rows


def table1_grid(best) -> list[Config]:
    out = []
    for pr in PROTOCOLS:
        for _, calib, clip in table1_awq_rows():
            for n in CALIB_TOKENS:
                out.append(Config("table1", awq(calib, n, clip), protocol=pr))
        for _, m in table1_ttq_rows(best):
            out.append(Config("table1", m, protocol=pr))
    return out


def adaptive_methods() -> list[tuple[str, Method]]:
    rows = [("RTN", RTN), ("TTQ fixed, paper-like", fixed(PAPER_LIKE))]
    for name, g in ALPHA_GRIDS.items():
        rows.append((f"auto, grid {name}", Method("ttq", p=1.0, grid=g)))
    rows.append(("auto, default grid, AWQ normalisation", Method("ttq", p=1.0, awq_norm=True)))
    return rows


def adaptive_grid() -> list[Config]:
    return [Config("adaptive", m, text=t, bits=b, repeat=r)
            for t in TEXTS for b in (2, 3) for _, m in adaptive_methods() for r in range(TIMING_REPEATS)]


def clip_methods() -> list[tuple[str, Method]]:
    """The online clip search (spec "Online clip search") next to the baselines it must beat."""
    return [("RTN", RTN),
            ("AWQ+clip (TinyStories calib)", awq("tinystories", clip=True)),
            ("AWQ+clip (WikiText calib)", awq("wikitext", clip=True)),
            ("AWQ+clip, llm-awq (TinyStories calib)", llm_awq("tinystories")),
            ("AWQ+clip, llm-awq (WikiText calib)", llm_awq("wikitext")),
            ("TTQ auto (p=1)", AUTO),
            ("TTQ+clip diag", Method("ttq", p=1.0, ttq_clip="diag")),
            ("TTQ+clip block", Method("ttq", p=1.0, ttq_clip="block")),
            ("TTQ+clip block, rank 4", Method("ttq", p=1.0, ttq_clip="block", clip_rank=4))]


CLIP_BITS = (2, 3, 4)


def clip_grid() -> list[Config]:
    out = []
    for text in TEXTS:
        for pr in PROTOCOLS:
            out.append(Config("clip", FP32, text=text, protocol=pr))
            for bits in CLIP_BITS:
                for _, m in clip_methods():
                    out.append(Config("clip", m, text=text, protocol=pr, bits=bits))
    return out


FLOORS = (0.1, 0.5)


def floor_methods() -> list[tuple[str, Method]]:
    """TTQ auto and TTQ+clip block with the relative floor (channels the prompt did not use)."""
    rows = []
    for base_name, clip in (("TTQ auto (p=1)", None), ("TTQ+clip block", "block")):
        rows.append((base_name, Method("ttq", p=1.0, ttq_clip=clip)))
        for r in FLOORS:
            rows.append((f"{base_name}, relative floor {num(r)}", Method("ttq", p=1.0, ttq_clip=clip, relative_floor=r)))
    return rows


def floor_grid() -> list[Config]:
    return [Config("floor", m, text=t, protocol=pr, bits=b)
            for t in TEXTS for pr in PROTOCOLS for b in (2, 3) for _, m in floor_methods()]


# Static AWQ's search on SmolLM2 runs in double over every projection: with the default 2,000
# calibration tokens one AWQ+clip run took 615 s here (3 bits, g128), 18 of them 3 hours.
SMOLLM2_CALIB_TOKENS = 512


def smollm2_methods() -> list[tuple[str, Method]]:
    """The issue's SmolLM2 grid: RTN, static AWQ+clip (calibrated on the other domain, TinyStories,
    SMOLLM2_CALIB_TOKENS tokens), TTQ auto (the tools' default) and TTQ+clip block."""
    return [("RTN", RTN),
            ("AWQ+clip (TinyStories calib)", awq("tinystories", tokens=SMOLLM2_CALIB_TOKENS, clip=True)),
            ("TTQ auto (p=1)", AUTO),
            ("TTQ+clip block", Method("ttq", p=1.0, ttq_clip="block"))]


SMOLLM2_BITS = (2, 3, 4)
SMOLLM2_GROUPS = (128, 64, 32)


def smollm2_grid() -> list[Config]:
    """Cheapest cells first (group 128 plans fastest), so a partial run covers whole groups."""
    out = []
    for pr in PROTOCOLS:
        out.append(Config("smollm2", FP32, text="wikitext-smollm2", protocol=pr, model="smollm2"))
    for g in SMOLLM2_GROUPS:
        for bits in (3, 2, 4):
            for pr in PROTOCOLS:
                for _, m in smollm2_methods():
                    out.append(Config("smollm2", m, text="wikitext-smollm2", protocol=pr, bits=bits, group=g,
                                      model="smollm2"))
    return out


GEMMA3_BITS = (2, 3, 4, 5)
GEMMA3_GROUP = 128
GEMMA3_RANKS = (0, 16)


def gemma3_methods() -> list[tuple[str, Method]]:
    """The rows of the Table 3 analogue: RTN; static AWQ calibrated on each text, llm-awq's procedure
    with its clip (the paper's baseline) and this library's per-projection search (2,000 tokens);
    TTQ as the paper runs it (the fixed paper-like exponent, no clip, r = 0 and 16); the default TTQ."""
    rows = [("RTN", RTN)]
    for calib, name in (("wikitext", "WT2"), ("c4", "C4")):
        rows.append((f"AWQ llm-awq+clip ({name} calib)", llm_awq(calib)))
        rows.append((f"AWQ per-projection ({name} calib)", awq(calib)))
    for r in GEMMA3_RANKS:
        rows.append((f"TTQ paper-like (p=2, a=0.5, l=0.1), r={r}", fixed(PAPER_LIKE, rank=r)))
    rows.append(("TTQ default (auto, p=1)", AUTO))
    return rows


def gemma3_grid() -> list[Config]:
    """Cheapest first: FP32, then RTN and TTQ (no calibration), AWQ last; 4 bits before the others."""
    out = [Config("gemma3", FP32, text=f"gemma3-{t}", protocol="stream", model="gemma3") for t in GEMMA3_TEXTS]
    methods = gemma3_methods()
    order = [m for n, m in methods if m.kind != "awq"] + [m for n, m in methods if m.kind == "awq"]
    for m in order:
        for bits in (4, 3, 5, 2):
            for t in GEMMA3_TEXTS:
                out.append(Config("gemma3", m, text=f"gemma3-{t}", protocol="stream", bits=bits, group=GEMMA3_GROUP,
                                  model="gemma3"))
    return out


STAGES = ["sweep", "table3", "rank", "table2", "table1", "adaptive", "clip", "floor", "smollm2", "gemma3"]


def configs(stage: str, results: dict[str, dict]) -> list[Config]:
    """The configurations of one stage; later stages depend on the sweep's results."""
    best, _ = choose_fixed(results)
    if stage == "sweep":
        return sweep_grid()
    if stage == "sweep-recheck":
        return recheck_grid(results)
    if stage == "table3":
        return table3_grid(best)
    if stage == "rank":
        return rank_grid()
    if stage == "table2":
        return table2_grid(best)
    if stage == "table1":
        return table1_grid(best)
    if stage == "adaptive":
        return adaptive_grid()
    if stage == "clip":
        return clip_grid()
    if stage == "floor":
        return floor_grid()
    if stage == "smollm2":
        return smollm2_grid()
    if stage == "gemma3":
        return gemma3_grid()
    raise ValueError(stage)


# ---------------------------------------------------------------- running

_BARE = re.compile(r'(:\s*)(-?inf|nan)(\s*[,}])')


def parse_tool_json(text: str) -> dict:
    # ttq-ppl prints `"p": inf` for --p inf (printf %g), which is not JSON: quote it.
    return json.loads(_BARE.sub(lambda m: f'{m.group(1)}"{m.group(2)}"{m.group(3)}', text))


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_stage(stage: str, tool: str, path: str, results: dict[str, dict], dry: bool,
              provenance: tuple[str, str]) -> tuple[int, int]:
    """Run one stage; return (succeeded, failed)."""
    todo_all = configs(stage, results)
    if stage == "sweep":
        ok, failed = run_list(stage, todo_all, tool, path, results, dry, provenance)
        # The re-check depends on the sweep's ranking: build it now.
        ok2, failed2 = run_list("sweep-recheck", configs("sweep-recheck", results), tool, path, results, dry, provenance)
        best, _ = choose_fixed(results)
        if best:
            print(f"[sweep] chosen fixed setting: p={num(best[0])} alpha={num(best[1])} lambda={num(best[2])}")
        return ok + ok2, failed + failed2
    return run_list(stage, todo_all, tool, path, results, dry, provenance)


def append_record(path: str, line: str) -> None:
    """Append one JSON line to the results and make sure it reached the disk. On a write error
    (a full disk) the file is cut back to its previous length, so no partial line is kept, and
    the error is raised: a record that was not written must not count as a result."""
    with open(path, "a") as f:
        before = f.tell()
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            try:
                f.truncate(before)
            except OSError:
                pass
            raise


def parse_result(stdout: str) -> dict | None:
    """The tool's JSON object (its last line of stdout), or None when there is none."""
    lines = stdout.strip().splitlines()
    if not lines:
        return None
    try:
        rec = parse_tool_json(lines[-1])
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and "ppl" in rec else None


def run_list(stage, cfgs, tool, path, results, dry, provenance) -> tuple[int, int]:
    """Run the configurations of `cfgs` not yet in `results`; return (succeeded, failed)."""
    seen = set()
    todo = []
    for c in cfgs:
        if c.key in results or c.key in seen:
            continue
        seen.add(c.key)
        todo.append(c)
    print(f"[{stage}] {len(cfgs)} configurations, {len(cfgs) - len(todo)} already done or repeated, "
          f"{len(todo)} to run", flush=True)
    t0 = time.time()
    ok = 0
    for i, c in enumerate(todo, 1):
        cmd = [tool] + c.command_args() + ["--json"]
        if dry:
            print("  " + shlex.join(cmd))
            continue
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  FAILED ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr.strip()}", file=sys.stderr)
            continue
        rec = parse_result(proc.stdout)
        if rec is None:  # exit 0 without a result is a failure, never an empty record
            print(f"  FAILED (exit 0 but no JSON result on stdout): {shlex.join(cmd)}\n{proc.stderr.strip()}",
                  file=sys.stderr)
            continue
        rec.update({"experiment": c.experiment, "key": c.key, "repeat": c.repeat,
                    "command": shlex.join([os.path.relpath(tool, ROOT)] + c.args + ["--json"]), "eval_text": c.text, "tool_commit": provenance[0], "tool_sha256": provenance[1],
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        try:
            append_record(path, json.dumps(rec) + "\n")
        except OSError as e:
            print(f"run_experiments: cannot write the result to {path}: {e}", file=sys.stderr)
            raise SystemExit(1)
        results[c.key] = rec
        ok += 1
        elapsed = time.time() - t0
        eta = elapsed / i * (len(todo) - i)
        print(f"  [{stage} {i}/{len(todo)}] {rec['label']:<44} {c.bits}b g{c.group:<3} {c.text:<11} "
              f"{c.protocol:<6} ppl {rec['ppl']:>10.4f}  {rec['seconds']:6.1f} s  (eta {eta / 60:.1f} min)",
              flush=True)
    failed = 0 if dry else len(todo) - ok
    if failed:
        print(f"[{stage}] {failed} configurations failed (not recorded; retried on the next run)")
    return ok, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tool", nargs="?", default=DEFAULT_TOOL, help=f"ttq-ppl binary (default {DEFAULT_TOOL})")
    ap.add_argument("--only", default=",".join(STAGES), help="comma-separated stages, in order")
    ap.add_argument("--results", default=RESULTS, help=f"JSON-lines file (default {RESULTS})")
    ap.add_argument("--dry-run", action="store_true", help="print the commands that would run")
    args = ap.parse_args()

    tool = os.path.abspath(args.tool)
    if not os.access(tool, os.X_OK):
        print(f"run_experiments: no executable at {tool}; build it with\n"
              "  cmake -S . -B build-results -DCMAKE_BUILD_TYPE=Release -DTTQ_BUILD_BENCHMARKS=OFF\n"
              "  cmake --build build-results -j2 --target ttq_ppl", file=sys.stderr)
        return 2
    path = os.path.join(ROOT, args.results)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    results = load_results(path)
    commit = git_describe()
    with open(tool, "rb") as f:
        tool_sha = hashlib.sha256(f.read()).hexdigest()
    stages = [s for s in args.only.split(",") if s]
    for s in stages:
        if s not in STAGES:
            print(f"run_experiments: unknown stage '{s}' (known: {', '.join(STAGES)})", file=sys.stderr)
            return 2
    t0 = time.time()
    total = failed = 0
    for s in stages:
        ok, bad = run_stage(s, tool, path, results, args.dry_run, (commit, tool_sha))
        total += ok
        failed += bad
    print(f"done: {total} successful runs in {(time.time() - t0) / 60:.1f} min; results in {args.results}")
    if failed:
        # A run with failed configurations is not a success, whatever else it recorded.
        print(f"run_experiments: {failed} configurations failed; rerun to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
