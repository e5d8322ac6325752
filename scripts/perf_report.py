#!/usr/bin/env python3
"""Turns the JSON of ttq_bench_gemv, ttq_bench_quantize and ttq_bench_overhead into the tables
of docs/performance.md and a PNG plot, so the numbers in the docs are regenerated, never typed.

Only the part of docs/performance.md between the GENERATED markers is rewritten; the
hand-written methodology around it stays. Medians come from runs made with
--benchmark_repetitions=N --benchmark_report_aggregates_only=true (a file without aggregates
is read as single runs). Times are Google Benchmark's real_time (wall clock).

Usage:
  scripts/perf_report.py --data docs/data --doc docs/performance.md --plot docs/performance_gemv.png
The data directory holds gemv.json, quantize.json, overhead.json, overhead_default.json (the
overhead-default rows, when run on their own) and e2e.json (scripts/e2e_bench.py); any may be
missing.
The plot needs gnuplot (Debian: gnuplot-nox); without it the tables are still written.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

BEGIN = "<!-- BEGIN GENERATED: scripts/perf_report.py -->"
END = "<!-- END GENERATED -->"
ROOFLINE_GBS = 66.0  # 2-thread DRAM read bandwidth the issue states for this machine class
VARIANTS = (("ttq", "24-bit activations (default `Simd`)"), ("ttq-int16", "16-bit activations (`SimdInt16`)"),
            ("ttq-int8", "int8 activations (`SimdInt8`)"))

UNIT_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def load(path):
    """name -> {time_us, counters...} (medians when aggregates exist) and the run context."""
    if not os.path.exists(path):
        return {}, {}
    with open(path) as f:
        data = json.load(f)
    runs = {}
    singles = {}
    for b in data.get("benchmarks", []):
        scale = UNIT_TO_US[b.get("time_unit", "ns")]
        entry = {k: v for k, v in b.items() if isinstance(v, (int, float))}
        entry["time_us"] = b["real_time"] * scale
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                runs[b["run_name"]] = entry
        else:
            singles.setdefault(b.get("run_name", b["name"]), []).append(entry)
    for name, entries in singles.items():  # no aggregates: median of the single runs
        if name not in runs:
            entries.sort(key=lambda e: e["time_us"])
            runs[name] = entries[len(entries) // 2]
    return runs, data.get("context", {})


def fmt_time(us):
    if us is None:
        return "-"
    if us >= 1e4:
        return f"{us / 1e3:.1f} ms"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} us" if us >= 100 else f"{us:.1f} us"


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def get(runs, name, key="time_us"):
    r = runs.get(name)
    return None if r is None else r.get(key)


def context_line(label, ctx):
    if not ctx:
        return f"- {label}: no data"
    load_avg = ctx.get("load_avg")
    load_txt = ", ".join(f"{x:.2f}" for x in load_avg) if load_avg else "n/a"
    return (f"- {label}: {ctx.get('date', '?')}, {ctx.get('num_cpus', '?')} CPUs at "
            f"{ctx.get('mhz_per_cpu', '?')} MHz, load average at start {load_txt}, "
            f"Google Benchmark library build {ctx.get('library_build_type', '?')} (ttq code: Release, -O3)")


def targets_table(gemv, quant, over):
    rows = []
    def add(what, name, runs, key, target, better, shown, unit_fmt):
        value = get(runs, name, key)
        if value is None:
            rows.append((what, f"`{name}`", "-", shown, "not measured"))
            return
        ok = value <= target if better == "lower" else value >= target
        if ok:
            verdict = "met"
        else:
            miss = (value / target - 1.0) * 100 if better == "lower" else (1.0 - value / target) * 100
            verdict = f"missed by {miss:.0f}%"
        rows.append((what, f"`{name}`", unit_fmt(value), shown, verdict))

    us = lambda v: fmt_time(v)
    for variant, label in VARIANTS:
        for bits, target in ((4, 160.0), (3, 130.0), (2, 95.0)):
            add(f"{bits}-bit g128 GEMV 4096x4096, 2 threads, cold, {label}",
                f"gemv/{variant}/b{bits}/g128/4096x4096/T1/threads:2", gemv, "time_us", target, "lower",
                f"<= {target:.0f} us", us)
    add("Quantize 4096x4096 fp32 -> 4-bit g128, 1 thread", "quantize/fp32/b4/g128/4096x4096/threads:1", quant,
        "time_us", 3000.0, "lower", "<= 3 ms", us)
    add("  same, fraction of the read roofline", "quantize/fp32/b4/g128/4096x4096/threads:1", quant,
        "fraction_of_read", 0.60, "higher", ">= 0.60", lambda v: fmt(v))
    add("TTQ prefill / fp32 prefill, T = 512, 4096x4096, 2 threads", "overhead/4096x4096/T512/threads:2", over,
        "ratio", 1.05, "lower", "<= 1.05", lambda v: fmt(v, 3))
    out = ["| Target | Case | Median | Target | Verdict |", "|---|---|---:|---:|---|"]
    out += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(out)


def roofline_table(gemv):
    """Decode against the read roofline measured in the same run (same bytes, same threads)."""
    out = ["| Case | Median | Weight GB/s | Read GB/s (same run) | Fraction of read roofline | Time at the issue's 66 GB/s |",
           "|---|---:|---:|---:|---:|---:|"]
    for variant, _ in VARIANTS:
        for bits in (2, 3, 4, 8):
            for threads in (1, 2):
                name = f"gemv/{variant}/b{bits}/g128/4096x4096/T1/threads:{threads}"
                if name not in gemv:
                    continue
                gbs = get(gemv, name, "weight_GB_per_s")
                read = get(gemv, f"gemv/read/4096x4096/threads:{threads}", "weight_GB_per_s")
                bytes_ = gbs * 1e9 * get(gemv, name) * 1e-6
                out.append(f"| `{name}` | {fmt_time(get(gemv, name))} | {fmt(gbs, 1)} | {fmt(read, 1)} | "
                           f"{fmt(gbs / read if read else None)} | {fmt_time(bytes_ / (ROOFLINE_GBS * 1e9) * 1e6)} |")
    return "\n".join(out)


def hot_table(gemv, quant):
    """The same kernels on L3-resident data: what they compute per second without DRAM."""
    out = ["| Case | Hot median | Cold median (same case, DRAM) | Hot weight GB/s |", "|---|---:|---:|---:|"]
    for name in sorted(n for n in gemv if n.startswith("gemv-hot/")):
        cold = name.replace("gemv-hot/", "gemv/")
        out.append(f"| `{name}` | {fmt_time(get(gemv, name))} | {fmt_time(get(gemv, cold))} | "
                   f"{fmt(get(gemv, name, 'weight_GB_per_s'), 1)} |")
    for name in sorted(n for n in quant if n.startswith("quantize-hot/")):
        out.append(f"| `{name}` | {fmt_time(get(quant, name))} | - | {fmt(get(quant, name, 'source_GB_per_s'), 1)} (source) |")
    return "\n".join(out)


def gemv_tables(gemv):
    shapes = []
    for name in gemv:
        m = re.match(r"gemv/fp32/(\d+x\d+)/T(\d+)/threads:(\d+)$", name)
        if m and m.group(1) not in shapes:
            shapes.append(m.group(1))
    out = []
    for group in (128, 32):
        out.append(f"\n#### Decode, group {group}: median time, weight GB/s, speed-up over Eigen fp32\n")
        variants = [v for v, _ in VARIANTS if any(n.startswith(f"gemv/{v}/") for n in gemv)]
        out.append("| Shape | T | Threads | read roofline | fp32 | " + " | ".join(
            f"{v} b{b}" for v in variants for b in (2, 3, 4, 8)) + " |")
        out.append("|---|---:|---:|---:|---:|" + "---:|" * (4 * len(variants)))
        for shape in shapes:
            for t in (1, 4, 16):
                for threads in (1, 2):
                    fp32 = get(gemv, f"gemv/fp32/{shape}/T{t}/threads:{threads}")
                    if fp32 is None:
                        continue
                    cells = []
                    for v in variants:
                        for b in (2, 3, 4, 8):
                            name = f"gemv/{v}/b{b}/g{group}/{shape}/T{t}/threads:{threads}"
                            tm = get(gemv, name)
                            if tm is None:
                                cells.append("-")
                                continue
                            gbs = get(gemv, name, "weight_GB_per_s")
                            cells.append(f"{fmt_time(tm)}<br>{fmt(gbs, 1)} GB/s<br>x{fmt(fp32 / tm, 1)}")
                    fp32_gbs = get(gemv, f"gemv/fp32/{shape}/T{t}/threads:{threads}", "weight_GB_per_s")
                    read = get(gemv, f"gemv/read/{shape}/threads:{threads}", "weight_GB_per_s")
                    out.append(f"| {shape} | {t} | {threads} | {fmt(read, 1)} GB/s | {fmt_time(fp32)}<br>{fmt(fp32_gbs, 1)} GB/s | " +
                               " | ".join(cells) + " |")
    fp32act = [n for n in gemv if n.startswith("gemv/ttq-fp32/")]
    if fp32act:
        out.append("\n#### Decode with fp32 activations (`SimdFp32`, the portable kernel), 4096x4096, group 128\n")
        out.append("| Case | Median | Weight GB/s | Speed-up over fp32 |")
        out.append("|---|---:|---:|---:|")
        for n in sorted(fp32act):
            out.append(f"| `{n}` | {fmt_time(get(gemv, n))} | {fmt(get(gemv, n, 'weight_GB_per_s'), 1)} | "
                       f"{fmt(get(gemv, n, 'speedup_vs_fp32'), 2)} |")
    return "\n".join(out)


def quantize_table(quant):
    out = ["| Case | Median | Source GB/s | Fraction of read |", "|---|---:|---:|---:|"]
    for name in sorted((n for n in quant if not n.startswith("quantize-hot/")), key=lambda n: (n.split("/")[-2], n.split("/")[-1], n)):
        out.append(f"| `{name}` | {fmt_time(get(quant, name))} | {fmt(get(quant, name, 'source_GB_per_s'), 1)} | "
                   f"{fmt(get(quant, name, 'fraction_of_read'))} |")
    return "\n".join(out)


def overhead_table(over):
    out = ["| Shape | T | Threads | fp32 prefill | TTQ prefill | ratio | model (k = 10) | stats | quantize + repack | matmul | matmul / fp32 | (stats + quantize) / fp32 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    keys = []
    for name in over:
        m = re.match(r"overhead/(\d+x\d+)/T(\d+)/threads:(\d+)$", name)
        if m:
            keys.append((int(m.group(1).split("x")[0]), int(m.group(2)), int(m.group(3)), m.group(1)))
    for d_out, t, threads, shape in sorted(keys):
        name = f"overhead/{shape}/T{t}/threads:{threads}"
        fp32 = get(over, f"prefill-fp32/{shape}/T{t}/threads:{threads}")
        r = over[name]
        share = lambda key: (r[key] * 1e3 / fp32) if (fp32 and r.get(key) is not None) else None
        extra = (share("stats_ms") or 0.0) + (share("quantize_ms") or 0.0) if fp32 else None
        out.append(f"| {shape} | {t} | {threads} | {fmt_time(fp32)} | {fmt_time(r['time_us'])} | "
                   f"{fmt(r.get('ratio'), 3)} | {fmt(r.get('model'), 3)} | {fmt(r.get('stats_ms'), 2)} ms | "
                   f"{fmt(r.get('quantize_ms'), 2)} ms | {fmt(r.get('matmul_ms'), 2)} ms | {fmt(share('matmul_ms'), 3)} | "
                   f"{fmt(extra, 3)} |")
    return "\n".join(out)


def default_overhead_table(over):
    """The tools' default TTQ (adaptive exponent) against fp32 prefill, next to Eq. 3's model."""
    out = ["| Shape | T | Threads | fp32 prefill | default TTQ prefill | ratio | model (k = 10) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    keys = []
    for name in over:
        m = re.match(r"overhead-default/(\d+x\d+)/T(\d+)/threads:(\d+)$", name)
        if m:
            keys.append((int(m.group(1).split("x")[0]), int(m.group(2)), int(m.group(3)), m.group(1)))
    for d_out, t, threads, shape in sorted(keys):
        r = over[f"overhead-default/{shape}/T{t}/threads:{threads}"]
        fp32 = get(over, f"prefill-fp32/{shape}/T{t}/threads:{threads}")
        out.append(f"| {shape} | {t} | {threads} | {fmt_time(fp32)} | {fmt_time(r['time_us'])} | "
                   f"{fmt(r.get('ratio'), 3)} | {fmt(r.get('model'), 3)} |")
    return "\n".join(out) if keys else "(no overhead-default rows in this run)"


def e2e_tables(path):
    """docs/data/e2e.json (scripts/e2e_bench.py): the tools end to end, FP32 against default TTQ."""
    if not os.path.exists(path):
        return "(not measured: run scripts/e2e_bench.py)"
    with open(path) as f:
        e2e = json.load(f)
    out = [f"ISA {e2e['isa']}, {e2e['threads']} threads, {e2e['runs']} alternating runs per command, medians "
           f"(load average {e2e.get('load_average_at_start', 0):.2f} at the start).", ""]
    gen = e2e["cases"].get("generate")
    if gen:
        out += ["`ttq-generate`, 128 new tokens after a 27-token prompt (default TTQ at 4 bits):", "",
                "| run | backend | prefill tokens/s | decode tokens/s | total (tool) | wall (process) |",
                "|---|---|---:|---:|---:|---:|"]
        for m in ("fp32", "ttq"):
            r = gen[m]
            out.append(f"| {m.upper()} | {r.get('backend', '')} | {fmt(r.get('prefill_tokens_per_second'), 1)} | "
                       f"{fmt(r.get('decode_tokens_per_second'), 1)} | {fmt(r.get('total_seconds'), 2)} s | "
                       f"{fmt(r.get('wall_seconds'), 2)} s |")
        out += ["", f"TTQ / FP32 wall time, median of the pairs: **{gen['ratio_wall_median']:.3f}**", ""]
    ppl = e2e["cases"].get("ppl")
    if ppl:
        out += ["`ttq-ppl`, 2,048 WikiText-2 tokens, ctx 512 (default TTQ at 3 bits):", "",
                "| run | backend | tokens/s | perplexity | wall (process) |", "|---|---|---:|---:|---:|"]
        for m in ("fp32", "ttq"):
            r = ppl[m]
            out.append(f"| {m.upper()} | {r.get('backend', '')} | {fmt(r.get('tokens_per_second'), 1)} | "
                       f"{fmt(r.get('ppl'), 3)} | {fmt(r.get('wall_seconds'), 2)} s |")
        out += ["", f"TTQ / FP32 wall time, median of the pairs: **{ppl['ratio_wall_median']:.3f}**"]
    return "\n".join(out)


def plot(gemv, path):
    """Weight bandwidth of 4096x4096 decode (T = 1, group 128) against bits, with the roofline."""
    if not shutil.which("gnuplot"):
        print("perf_report: gnuplot not found, skipping the plot", file=sys.stderr)
        return False
    series = []
    for variant, _ in VARIANTS:
        for threads in (1, 2):
            pts = []
            for b in (2, 3, 4, 8):
                v = get(gemv, f"gemv/{variant}/b{b}/g128/4096x4096/T1/threads:{threads}", "weight_GB_per_s")
                if v is not None:
                    pts.append((b, v))
            if pts:
                series.append((f"{variant}, {threads} thread{'s' if threads > 1 else ''}", pts))
    fp32 = [get(gemv, f"gemv/fp32/4096x4096/T1/threads:{t}", "weight_GB_per_s") for t in (1, 2)]
    if not series:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (_, pts) in enumerate(series):
            fn = os.path.join(tmp, f"s{i}.dat")
            with open(fn, "w") as f:
                f.writelines(f"{b} {v}\n" for b, v in pts)
            files.append(fn)
        cairo = subprocess.run(["gnuplot", "-e", "set terminal pngcairo"], capture_output=True).returncode == 0
        lines = [
            "set terminal pngcairo size 1100,540" if cairo else "set terminal png size 1100,540",
            f"set output '{path}'",
            "set title 'Decode 4096x4096, T = 1, group 128, cold weights: weight bytes read per second'",
            "set xlabel 'bits per weight (codes)'", "set ylabel 'GB/s'", "set key left top", "set grid",
            "set xrange [1.5:8.5]", "set yrange [0:*]", "set xtics (2, 3, 4, 8)", "set key outside right top",
        ]
        plots = [f"'{fn}' using 1:2 with linespoints lw 2 title '{label}'" for fn, (label, _) in zip(files, series)]
        plots.append(f"{ROOFLINE_GBS} with lines dt 2 lw 2 title 'DRAM roofline, 2 threads ({ROOFLINE_GBS:.0f} GB/s)'")
        read2 = get(gemv, "gemv/read/4096x4096/threads:2", "weight_GB_per_s")
        if read2:
            plots.append(f"{read2} with lines dt 4 lw 2 title 'plain read, same run, 2 threads ({read2:.1f} GB/s)'")
        if fp32[1]:
            plots.append(f"{fp32[1]} with lines dt 3 title 'Eigen fp32, 2 threads ({fp32[1]:.1f} GB/s)'")
        lines.append("plot " + ", ".join(plots))
        script = os.path.join(tmp, "plot.gp")
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["gnuplot", script], check=True)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="docs/data")
    ap.add_argument("--doc", default="docs/performance.md")
    ap.add_argument("--plot", default="docs/performance_gemv.png")
    args = ap.parse_args()

    gemv, gctx = load(os.path.join(args.data, "gemv.json"))
    quant, qctx = load(os.path.join(args.data, "quantize.json"))
    over, octx = load(os.path.join(args.data, "overhead.json"))
    # The tools' default TTQ rows may come from a run of their own (another machine or day).
    over_default, odctx = load(os.path.join(args.data, "overhead_default.json"))
    if not over_default:
        over_default, odctx = over, octx
    plotted = plot(gemv, args.plot) if gemv else False

    parts = [BEGIN, "", "### Runs", "", context_line("gemv", gctx), context_line("quantize", qctx),
             context_line("overhead", octx), "", "### Targets (medians)", "", targets_table(gemv, quant, over), "",
             "### Decode against the read roofline of the same run", "",
             "The issue's targets assume 66 GB/s with two threads; the `gemv/read` rows measure what a plain "
             "read of the same bytes reached on this machine during the run.", "", roofline_table(gemv), "",
             "### Compute speed without DRAM (hot: one copy of the data, L3-resident)", "", hot_table(gemv, quant), ""]
    if plotted or os.path.exists(args.plot):  # without gnuplot, keep the plot already made
        parts += [f"![decode bandwidth]({os.path.relpath(args.plot, os.path.dirname(args.doc) or '.')})", ""]
    parts += ["### Decode (ttq_bench_gemv)", "", "Each cell: median time, weight bytes per second, speed-up over "
              "Eigen fp32 of the same shape, T and threads.", gemv_tables(gemv), "",
              "### Quantize (ttq_bench_quantize)", "", quantize_table(quant), "",
              "### TTQ prefill overhead (ttq_bench_overhead)", "", overhead_table(over), "",
              "### The tools' default TTQ prefill (adaptive exponent; ttq_bench_overhead `overhead-default`)", "",
              context_line("overhead-default", odctx), "", default_overhead_table(over_default), "",
              "### End to end: the tools on SmolLM2-135M (scripts/e2e_bench.py)", "",
              e2e_tables(os.path.join(args.data, "e2e.json")), "", END]
    generated = "\n".join(parts)

    text = open(args.doc).read() if os.path.exists(args.doc) else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + generated + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + generated + "\n"
    with open(args.doc, "w") as f:
        f.write(text)
    print(f"perf_report: wrote {args.doc}" + (f" and {args.plot}" if plotted else ""))


if __name__ == "__main__":
    main()
