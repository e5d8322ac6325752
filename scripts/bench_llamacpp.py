#!/usr/bin/env python3
"""ttq-generate against llama.cpp on the same GGUF, end to end (issue 28), for docs/performance.md.

A user compares ttq with llama.cpp by running both on one model file. This script does that in
alternated rounds (every variant once per round, the order rotated each round, so that a machine
whose speed drifts affects all alike) and writes the medians and the median of the round-by-round
ratios as JSON, plus the markdown section "Against llama.cpp, end to end" of docs/performance.md.

Variants, each on a short (8-token) and a long (~512-token) prompt, greedy, 128 new tokens:
  ttq fp32      ttq-generate --method fp32 --no-fp32       (the file dequantized to fp32)
  ttq TTQ 4     ttq-generate --bits 4 --no-fp32            (the default TTQ: adaptive exponent, g32;
                                                            its per-prompt plan counts as prefill)
  llama Q4_0    llama-completion on the GGUF requantized to Q4_0 by the given llama-quantize
  llama F32     llama-completion on the GGUF requantized to F32
Figures: decode tokens/s (ttq's decode_tokens_per_second; llama.cpp's "eval time" line), prefill
tokens/s (ttq's prefill_tokens_per_second, the plan included; llama.cpp's "prompt eval time"),
and the peak resident set of the process (wait4's ru_maxrss). llama.cpp runs with its defaults
otherwise (a user's first try): its context is the model's trained length unless --ctx is given,
and its KV cache, allocated in full at start, is part of its RSS; the script records its size and
its other buffers from its log (-lv 4). On a loaded machine pass --omp-wait-policy passive: with
OpenMP's default spinning barriers llama.cpp's decode collapses (100x measured at load 15 on 2 CPUs)
when its threads are descheduled, which says nothing about either engine.

llama.cpp is not built here: pass the bin folder of a llama.cpp build made by whoever runs this
(it needs llama-completion, llama-quantize, llama-tokenize). The prompts come from the bundled
texts, cut at a word boundary to the closest token count <= the target by llama-tokenize; both
engines get the same text and the script checks that they report the same prompt length.

Usage:
  scripts/bench_llamacpp.py --llamacpp-bin /path/to/llama.cpp/build/bin --model SmolLM2.gguf
      [--bin build/release/bin] [--rounds 3] [--threads 2] [--tokens 128] [--ctx N]
      [--omp-wait-policy default|passive|active] [--work DIR] [--out docs/data/llamacpp.json]
      [--doc docs/performance.md]
  scripts/bench_llamacpp.py --render docs/data/llamacpp.json --doc docs/performance.md
--doc rewrites only the part of the file between this script's GENERATED markers (appended at the
end, under its heading, when they are absent); without --doc the section goes to stdout.
The model: scripts/fetch-smollm2.sh prints its path.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

BEGIN = "<!-- BEGIN GENERATED: scripts/bench_llamacpp.py -->"
END = "<!-- END GENERATED: scripts/bench_llamacpp.py -->"
HEADING = "## Against llama.cpp, end to end"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHORT_TEXT = ("Once upon a time, in a small village at the edge of a great forest, there lived a curious little robot "
              "who loved to explore the woods every morning.")
VARIANTS = ("ttq-ttq4", "ttq-fp32", "llama-q4_0", "llama-f32")
LABELS = {"ttq-ttq4": "ttq-generate, default TTQ 4 bits", "ttq-fp32": "ttq-generate, fp32",
          "llama-q4_0": "llama.cpp Q4_0", "llama-f32": "llama.cpp F32"}
PERF_LINE = re.compile(r"(prompt eval|eval) time =\s*([\d.]+) ms /\s*(\d+) (?:tokens|runs)")
KV_LINE = re.compile(r"KV buffer size =\s*([\d.]+) MiB")
BUFFER_LINE = re.compile(r"(CPU\w*) (model|compute) buffer size =\s*([\d.]+) MiB")


def run_measured(cmd, env=None):
    """Runs cmd; returns (stdout, stderr, wall seconds, peak RSS in bytes of that process alone)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{stderr[-3000:]}")
    return stdout, stderr, wall, usage.ru_maxrss * 1024  # Linux: ru_maxrss in KiB


def token_count(llama_bin, model, text):
    """Prompt tokens as llama.cpp counts them (the model's BOS policy included)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        out = subprocess.run([os.path.join(llama_bin, "llama-tokenize"), "-m", model, "-f", path, "--ids", "--no-escape",
                              "--log-disable"], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    return len(json.loads([line for line in out.splitlines() if line.startswith("[")][-1]))


def cut_prompt(llama_bin, model, text, target):
    """The longest prefix of text ending at a word boundary with at most target tokens."""
    ends = [m.start() for m in re.finditer(r"\s", text)] + [len(text)]
    lo, hi = 0, len(ends) - 1  # invariant: ends[lo] fits (or lo == 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if token_count(llama_bin, model, text[:ends[mid]].rstrip()) <= target:
            lo = mid
        else:
            hi = mid - 1
    prompt = text[:ends[lo]].rstrip()
    return prompt, token_count(llama_bin, model, prompt)


def long_source():
    """The bundled WikiText-2 test text from its first article's body on (after the heading line)."""
    path = os.path.join(REPO, "tools", "data", "wikitext-2-raw.test.txt")
    with open(path, encoding="utf-8") as f:
        text = f.read(40000)
    body = text[text.index("Robert Boulter is"):] if "Robert Boulter is" in text else text.lstrip()
    return " ".join(body.split())  # one line: the same bytes for both engines whatever their newline handling


def requantize(llama_bin, model, work, qtype):
    """model requantized to qtype by llama-quantize (cached in work, keyed by the source's size and mtime)."""
    st = os.stat(model)
    key = hashlib.sha256(f"{os.path.abspath(model)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    out = os.path.join(work, f"{os.path.splitext(os.path.basename(model))[0]}.{key}.{qtype}.gguf")
    if not os.path.exists(out):
        print(f"llama-quantize --allow-requantize -> {qtype}", file=sys.stderr, flush=True)
        subprocess.run([os.path.join(llama_bin, "llama-quantize"), "--allow-requantize", model, out + ".partial", qtype],
                       check=True, capture_output=True)
        os.replace(out + ".partial", out)
    return out


def ttq_command(args, variant, prompt):
    cmd = [os.path.join(args.bin, "ttq-generate"), "--model", args.model, "--prompt", prompt, "-n", str(args.tokens),
           "--no-fp32", "--json", "--threads", str(args.threads)]
    return cmd + (["--method", "fp32"] if variant == "ttq-fp32" else ["--bits", "4"])


def llama_command(args, gguf, prompt_file):
    cmd = [os.path.join(args.llamacpp_bin, "llama-completion"), "-m", gguf, "-f", prompt_file, "-n", str(args.tokens),
           "-t", str(args.threads), "-tb", str(args.threads), "--temp", "0", "--ignore-eos", "-no-cnv", "--no-escape",
           "--no-display-prompt", "--simple-io", "-s", "1", "-lv", "4"]  # -lv 4: its buffer sizes in the log
    return cmd + (["-c", str(args.ctx)] if args.ctx else [])


def display(cmd, args, prompt=None, prompt_file=None):
    """cmd as a shell line with the run's paths as variables and the prompt read from its file."""
    words = ['"$(cat ' + prompt_file + ')"' if prompt is not None and a == prompt else shlex.quote(a) for a in cmd]
    line = " ".join(words)
    for path, name in ((args.work, "$WORK"), (args.llamacpp_bin, "$LLAMA_BIN"), (args.model, "$MODEL"), (args.bin, "$TTQ_BIN")):
        line = line.replace(os.path.abspath(path), name).replace(path, name)
    return line


def run_ttq(cmd):
    stdout, _, wall, rss = run_measured(cmd)
    row = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")][-1]
    return {"decode_tps": row["decode_tokens_per_second"], "prefill_tps": row["prefill_tokens_per_second"],
            "prompt_tokens": row["prompt_tokens"], "decoded": row["tokens"], "rss_bytes": rss, "wall_s": wall,
            "backend": row.get("backend", "")}


def run_llama(cmd, env=None):
    _, stderr, wall, rss = run_measured(cmd, env)
    figures = {}
    for kind, ms, count in PERF_LINE.findall(stderr):
        figures[kind] = (float(ms), int(count))
    if "eval" not in figures or "prompt eval" not in figures:
        raise RuntimeError(f"{shlex.join(cmd)}: no perf lines in its output:\n{stderr[-3000:]}")
    (p_ms, p_n), (d_ms, d_n) = figures["prompt eval"], figures["eval"]
    kv = KV_LINE.findall(stderr)
    return {"decode_tps": d_n / (d_ms / 1e3) if d_ms > 0 else 0.0, "prefill_tps": p_n / (p_ms / 1e3) if p_ms > 0 else 0.0,
            "prompt_tokens": p_n, "decoded": d_n, "rss_bytes": rss, "wall_s": wall,
            "kv_cache_mib": sum(float(x) for x in kv),
            "buffers_mib": {f"{name} {kind}": float(mib) for name, kind, mib in BUFFER_LINE.findall(stderr)}}


def isa():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx512f+vnni" if {"avx512f", "avx512_vnni"} <= flags else ("avx2" if "avx2" in flags else "baseline")
    except OSError:
        pass
    return platform.machine()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def llama_version(llama_bin):
    out = subprocess.run([os.path.join(llama_bin, "llama-completion"), "--version"], capture_output=True, text=True)
    return " ".join((out.stdout + out.stderr).split())


def git_commit():
    out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip()


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure(args):
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    args.work = args.work or os.path.join(cache, "ttq", "llamacpp-bench")
    os.makedirs(args.work, exist_ok=True)
    ggufs = {"llama-q4_0": requantize(args.llamacpp_bin, args.model, args.work, "Q4_0"),
             "llama-f32": requantize(args.llamacpp_bin, args.model, args.work, "F32")}
    prompts = {}
    for name, source, target in (("short", SHORT_TEXT, args.short_tokens), ("long", long_source(), args.long_tokens)):
        text, count = cut_prompt(args.llamacpp_bin, args.model, source, target)
        path = os.path.join(args.work, f"prompt-{name}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)  # no trailing newline: llama.cpp's -f would drop one, ttq's --prompt would keep it
        prompts[name] = {"text": text, "file": path, "tokens": count}
        print(f"prompt {name}: {count} tokens", file=sys.stderr, flush=True)

    commands = {}
    for p in prompts:
        for v in VARIANTS:
            commands[(v, p)] = (ttq_command(args, v, prompts[p]["text"]) if v.startswith("ttq")
                                else llama_command(args, ggufs[v], prompts[p]["file"]))
    runs = {key: [] for key in commands}
    llama_env = dict(os.environ)
    if args.omp_wait_policy != "default":
        llama_env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    load_start = os.getloadavg()
    if load_start[0] > (os.cpu_count() or 1):
        print(f"warning: load average {load_start[0]:.1f} on {os.cpu_count()} CPUs: the figures will not be final"
              + ("" if args.omp_wait_policy == "passive" else "; llama.cpp's OpenMP barriers spin and its decode collapses "
                 "under such load (--omp-wait-policy passive avoids that)"), file=sys.stderr, flush=True)
    order = [(v, p) for p in prompts for v in VARIANTS]
    for r in range(args.rounds):
        shift = r % len(order)  # rotate so no variant always runs first (or right after another)
        for v, p in order[shift:] + order[:shift]:
            row = run_ttq(commands[(v, p)]) if v.startswith("ttq") else run_llama(commands[(v, p)], llama_env)
            row["load_average"] = os.getloadavg()[0]
            runs[(v, p)].append(row)
            print(f"round {r + 1} {v} {p}: decode {row['decode_tps']:.1f} tok/s, prefill {row['prefill_tps']:.1f} tok/s, "
                  f"RSS {row['rss_bytes'] / 2**20:.0f} MiB, load {row['load_average']:.1f}", file=sys.stderr, flush=True)

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "isa": os.environ.get("TTQ_ISA") or isa(), "cpu": cpu_model(), "cpus": os.cpu_count(),
              "threads": args.threads, "rounds": args.rounds, "new_tokens": args.tokens,
              "model": os.path.basename(args.model), "model_bytes": os.path.getsize(args.model),
              "llama_cpp": llama_version(args.llamacpp_bin), "llama_ctx": args.ctx or "model default",
              "omp_wait_policy": args.omp_wait_policy,
              "ttq_commit": git_commit(), "load_average_start": load_start[0], "load_average_end": os.getloadavg()[0],
              "prompts": {p: {"tokens": d["tokens"], "chars": len(d["text"])} for p, d in prompts.items()},
              "commands": {f"{v}/{p}": ("" if v.startswith("ttq") or args.omp_wait_policy == "default" else
                                        f"OMP_WAIT_POLICY={args.omp_wait_policy.upper()} ")
                           + display(c, args, prompts[p]["text"], prompts[p]["file"]) for (v, p), c in commands.items()},
              "medians": {}, "ratios": {}, "runs": {f"{v}/{p}": rows for (v, p), rows in runs.items()}}
    for (v, p), rows in runs.items():
        m = {k: statistics.median(r[k] for r in rows) for k in ("decode_tps", "prefill_tps", "rss_bytes", "wall_s")}
        m["prompt_tokens"] = rows[0]["prompt_tokens"]
        m["decoded"] = min(r["decoded"] for r in rows)
        if "kv_cache_mib" in rows[0]:
            m["kv_cache_mib"] = rows[0]["kv_cache_mib"]
            m["buffers_mib"] = rows[0]["buffers_mib"]
        if "backend" in rows[0]:
            m["backend"] = rows[0]["backend"]
        result["medians"].setdefault(v, {})[p] = m
    # Ratios: median over rounds of the round's ratio (both runs of a round close in time).
    def ratio(num, den, p, key):
        return median_or_none([a[key] / b[key] if b[key] else None for a, b in zip(runs[(num, p)], runs[(den, p)])])
    for num, den in (("ttq-ttq4", "llama-q4_0"), ("ttq-fp32", "llama-f32"), ("ttq-ttq4", "ttq-fp32")):
        result["ratios"][f"{num}/{den}"] = {
            "decode_short": ratio(num, den, "short", "decode_tps"), "decode_long": ratio(num, den, "long", "decode_tps"),
            "prefill_long": ratio(num, den, "long", "prefill_tps"), "rss_long": ratio(num, den, "long", "rss_bytes")}
    mismatched = {p: {v: result["medians"][v][p]["prompt_tokens"] for v in VARIANTS} for p in prompts
                  if len({result["medians"][v][p]["prompt_tokens"] for v in VARIANTS}) > 1}
    if mismatched:
        print(f"warning: the engines count different prompt lengths: {mismatched}", file=sys.stderr)
        result["prompt_token_mismatch"] = mismatched
    return result


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(result):
    """The generated section (between the markers) from the JSON the measurement wrote."""
    med, rat = result["medians"], result["ratios"]
    short, long_ = result["prompts"]["short"]["tokens"], result["prompts"]["long"]["tokens"]
    lines = [
        f"{result['model']}, {result['threads']} threads, {result['new_tokens']} new tokens, greedy; "
        f"{result['rounds']} alternated rounds, medians. {result['date']}, {result['cpu']} ({result['cpus']} CPUs, "
        f"ISA {result['isa']}), load average {result['load_average_start']:.2f} at the start and "
        f"{result['load_average_end']:.2f} at the end. ttq {result['ttq_commit']}; llama.cpp: {result['llama_cpp']}; "
        f"llama.cpp context: {result['llama_ctx']}; llama.cpp's OMP_WAIT_POLICY: {result.get('omp_wait_policy', 'default')}.",
        "",
        f"| medians | decode, {short}-token prompt | decode, {long_}-token prompt | prefill, {long_} tokens | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        s, l = med[v]["short"], med[v]["long"]
        note = " (plan included)" if v == "ttq-ttq4" else ""
        kv = f" (KV cache {l['kv_cache_mib']:.0f} MiB)" if l.get("kv_cache_mib") else ""
        lines.append(f"| {LABELS[v]} | {fmt(s['decode_tps'])} tok/s | {fmt(l['decode_tps'])} | "
                     f"{fmt(l['prefill_tps'], 0)}{note} | {l['rss_bytes'] / 1e9:.2f} GB{kv} |")
    for v in ("llama-q4_0", "llama-f32"):
        b = med[v]["long"].get("buffers_mib")
        if b:
            parts = ", ".join(f"{k} {x:.0f} MiB" for k, x in b.items())
            lines.append(f"\n{LABELS[v]}'s buffers (its log): {parts}, KV cache {med[v]['long']['kv_cache_mib']:.0f} MiB.")
    lines += ["", "Ratios (median over rounds of each round's ratio; targets of issue 28 in brackets):", "",
              "| ratio | decode, short | decode, long | prefill, long | peak RSS, long |", "|---|---:|---:|---:|---:|"]
    targets = {"ttq-ttq4/llama-q4_0": ("[>= 1]", "[>= 1]", "[>= 0.7]", "[<= 2]")}
    for name, r in rat.items():
        t = targets.get(name, ("", "", "", ""))
        a, b = name.split("/")
        cells = [f"{fmt(r[k], 2)} {tt}".strip() for k, tt in zip(("decode_short", "decode_long", "prefill_long", "rss_long"), t)]
        lines.append(f"| {LABELS[a]} / {LABELS[b]} | " + " | ".join(cells) + " |")
    if result.get("prompt_token_mismatch"):
        lines += ["", f"Warning: the engines counted different prompt lengths: {result['prompt_token_mismatch']}."]
    return "\n".join(lines)


def section(result):
    loaded = result["load_average_start"] > result["cpus"] or result["load_average_end"] > result["cpus"]
    lines = [
        HEADING,
        "",
        "Generated by `scripts/bench_llamacpp.py` (do not edit by hand). Both engines run the same GGUF, the same prompt",
        "text and greedy decoding, in alternated rounds on one machine. llama.cpp is built outside the repository by",
        "whoever runs the script (nothing of it is committed) and runs as a user's first try: `llama-completion` with",
        "its defaults, on the file requantized by its own `llama-quantize --allow-requantize` (its KV cache for the whole",
        "context is allocated at start and is part of its RSS). ttq's prefill of the TTQ run includes its per-prompt",
        "plan. Decode is the new tokens after the first (llama.cpp's `eval time`, ttq's decode steps); peak RSS is the",
        "process's maximum resident set (`wait4`).",
        "",
    ]
    if loaded:
        lines += [f"**The machine was loaded during this run** (load average above its {result['cpus']} CPUs): the figures "
                  "are not final (rerun on a quiet machine before quoting them); with OpenMP's default spinning barriers "
                  "llama.cpp's decode collapses when its threads are descheduled (`--omp-wait-policy passive`).", ""]
    lines += [markdown(result), "", "Regenerate (llama.cpp built by you; `$LLAMA_BIN` is its `build/bin`):", "", "```sh",
              "MODEL=$(scripts/fetch-smollm2.sh)",
              "cmake --build build/release -j2 --target ttq_generate",
              "scripts/bench_llamacpp.py --llamacpp-bin $LLAMA_BIN --model $MODEL --rounds 3 --threads 2 \\",
              "    --out docs/data/llamacpp.json --doc docs/performance.md",
              "scripts/bench_llamacpp.py --render docs/data/llamacpp.json --doc docs/performance.md  # from the JSON only",
              "```", "",
              "The commands it ran (`$WORK`: its cache of requantized files and prompts; `$TTQ_BIN`: build/release/bin):",
              "", "```sh"]
    lines += [cmd for name, cmd in result["commands"].items()]
    return "\n".join(lines + ["```"])


def write_doc(doc, result):
    body = f"{BEGIN}\n{section(result)}\n{END}"
    text = open(doc, encoding="utf-8").read() if os.path.exists(doc) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + body + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    with open(doc, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llamacpp-bin", help="bin folder of a llama.cpp build (llama-completion, llama-quantize, llama-tokenize)")
    ap.add_argument("--model", help="the GGUF both engines run (requantized for llama.cpp)")
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "release", "bin"), help="ttq's tools")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per run")
    ap.add_argument("--short-tokens", type=int, default=8)
    ap.add_argument("--long-tokens", type=int, default=512)
    ap.add_argument("--ctx", type=int, default=0, help="llama.cpp's context (default: its own, the model's trained length)")
    ap.add_argument("--omp-wait-policy", choices=("default", "passive", "active"), default="default",
                    help="OMP_WAIT_POLICY for llama.cpp (default: the environment's; passive on a loaded machine, where "
                         "spinning OpenMP barriers make its decode collapse)")
    ap.add_argument("--work", help="cache of the requantized files and prompts (default ~/.cache/ttq/llamacpp-bench)")
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "data", "llamacpp.json"))
    ap.add_argument("--doc", help="rewrite the generated section of this markdown file (default: print it)")
    ap.add_argument("--render", metavar="JSON", help="only render the section from an earlier run's JSON")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            result = json.load(f)
    else:
        if not args.llamacpp_bin or not args.model:
            ap.error("--llamacpp-bin and --model are required (or --render JSON)")
        for tool in ("llama-completion", "llama-quantize", "llama-tokenize"):
            if not os.access(os.path.join(args.llamacpp_bin, tool), os.X_OK):
                ap.error(f"--llamacpp-bin: {tool} not found in {args.llamacpp_bin} (build it there first)")
        if not os.access(os.path.join(args.bin, "ttq-generate"), os.X_OK):
            ap.error(f"--bin: ttq-generate not found in {args.bin} (cmake --build build/release --target ttq_generate)")
        result = measure(args)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result["ratios"]), file=sys.stderr)
    if args.doc:
        write_doc(args.doc, result)
    else:
        print(section(result))


if __name__ == "__main__":
    main()
