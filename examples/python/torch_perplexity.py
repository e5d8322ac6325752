#!/usr/bin/env python3
"""The bundled stories260K (tools/data) in a small PyTorch Llama, its linear layers swapped for
ttq.torch.TTQLinear, and its perplexity on the bundled TinyStories sample under ttq-ppl's
protocol (paper protocol: every document on its own with BOS, at most 512 tokens, each
projection calibrated on the document before scoring it). With --ttq-ppl it also runs the C++
tool and checks that both perplexities agree to --rtol: the binding is the same library.

    pip install . gguf torch
    python examples/python/torch_perplexity.py --ttq-ppl build/release/bin/ttq-ppl
"""
import argparse
import json
import math
import pathlib
import subprocess

import gguf
import numpy as np
import torch
from torch import nn

import ttq.torch

DATA = pathlib.Path(__file__).resolve().parents[2] / "tools" / "data"


def read_gguf(path):
    reader = gguf.GGUFReader(str(path))
    meta = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: torch.from_numpy(np.array(t.data, dtype=np.float32)) for t in reader.tensors}
    return meta, tensors


class Tokenizer:
    """llama2.c's BPE encode (the "llama" GGUF vocabulary): BOS, the dummy prefix, one unit per
    UTF-8 character (byte fallback to ids 3 + byte), then merge the best-scoring pair until none."""

    def __init__(self, meta):
        self.pieces = [p.replace("\u2581", " ").encode() for p in meta["tokenizer.ggml.tokens"]]
        self.scores = meta["tokenizer.ggml.scores"]
        self.bos = meta.get("tokenizer.ggml.bos_token_id", 1)
        self.index = {}
        for i, p in enumerate(self.pieces):
            self.index.setdefault(p, i)

    def encode(self, text: bytes):
        ids = [self.index[b" "]] if text else []
        i = 0
        while i < len(text):
            n = 1
            while n < 4 and i + n < len(text) and (text[i + n] & 0xC0) == 0x80:
                n += 1
            unit = text[i:i + n]
            ids += [self.index[unit]] if unit in self.index else [b + 3 for b in unit]
            i += n
        while True:
            best = max(((self.scores[k], j, k) for j in range(len(ids) - 1)
                        if (k := self.index.get(self.pieces[ids[j]] + self.pieces[ids[j + 1]])) is not None),
                       default=None, key=lambda c: (c[0], -c[1]))
            if best is None:
                return [self.bos] + ids
            ids[best[1]:best[1] + 2] = [best[2]]


class Llama(nn.Module):
    """RMSNorm, RoPE on adjacent pairs, grouped-query causal attention, SwiGLU; fp32."""

    def __init__(self, meta, w):
        super().__init__()
        self.dim, self.heads = meta["llama.embedding_length"], meta["llama.attention.head_count"]
        self.kv_heads = meta.get("llama.attention.head_count_kv", self.heads)
        self.head_dim, self.eps = self.dim // self.heads, meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)
        base = meta.get("llama.rope.freq_base", 10000.0)
        self.embed, self.norms = w["token_embd.weight"], {k: v for k, v in w.items() if "norm" in k}
        linear = lambda name: self._linear(w[name])  # noqa: E731
        self.blocks = nn.ModuleList(nn.ModuleDict({k: linear(f"blk.{i}.{k}.weight") for k in (
            "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")})
            for i in range(meta["llama.block_count"]))
        self.output = self._linear(w.get("output.weight", self.embed))
        angle = np.arange(meta["llama.context_length"])[:, None] * base ** (-2.0 * np.arange(self.head_dim // 2) / self.head_dim)
        self.cos, self.sin = torch.from_numpy(np.cos(angle).astype(np.float32)), torch.from_numpy(np.sin(angle).astype(np.float32))

    @staticmethod
    def _linear(weight):
        m = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        m.weight.data.copy_(weight)
        return m

    def rms(self, x, g):
        ms = (x.double() ** 2).mean(-1, keepdim=True)
        return x * (1.0 / torch.sqrt(ms + self.eps)).float() * g

    def rope(self, x):  # x [T, heads, head_dim]
        c, s = self.cos[: x.shape[0], None, :], self.sin[: x.shape[0], None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)

    def forward(self, ids):
        t = len(ids)
        x = self.embed[ids]
        mask = torch.full((t, t), -math.inf).triu(1)
        for i, b in enumerate(self.blocks):
            h = self.rms(x, self.norms[f"blk.{i}.attn_norm.weight"])
            q = self.rope(b["attn_q"](h).view(t, self.heads, self.head_dim))
            k = self.rope(b["attn_k"](h).view(t, self.kv_heads, self.head_dim))
            v = b["attn_v"](h).view(t, self.kv_heads, self.head_dim)
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(self.head_dim) + mask
            x = x + b["attn_output"](torch.einsum("hts,shd->thd", scores.softmax(-1), v).reshape(t, self.dim))
            h = self.rms(x, self.norms[f"blk.{i}.ffn_norm.weight"])
            x = x + b["ffn_down"](nn.functional.silu(b["ffn_gate"](h)) * b["ffn_up"](h))
        return self.output(self.rms(x, self.norms["output_norm.weight"]))


def documents(text, separator="<|endoftext|>"):
    docs, current = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == separator:
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return [d.strip(" \t\n\r\v\f") for d in docs if d.strip(" \t\n\r\v\f")]


@torch.no_grad()
def perplexity(model, windows):
    nll, count = 0.0, 0
    for ids in windows:
        ttq.torch.begin_prompt(model)  # a new prompt: each TTQLinear calibrates on its first forward
        logp = torch.log_softmax(model(torch.tensor(ids)).double(), dim=-1)
        nll -= logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
        count += len(ids) - 1
    return math.exp(nll / count), count


def run(method, bits=3, group=32, ctx=512, model_path=DATA / "stories260K.gguf", text_path=DATA / "tinystories-valid.head32k.txt"):
    """Perplexity of the model with its projections quantized by `method` (fp32, rtn or ttq)."""
    torch.set_num_threads(1)  # a 64-wide model: torch's intra-op threads only add overhead (and contend with ttq's)
    meta, weights = read_gguf(model_path)
    tokenizer, model = Tokenizer(meta), Llama(meta, weights)
    if method != "fp32":  # the 7 projections of every block; the output head stays fp32 (as ttq-ppl)
        ttq.torch.replace_linear(model, bits=bits, group=group, method=method, skip=["output"])
    docs = documents(pathlib.Path(text_path).read_text(encoding="utf-8"))
    windows = [ids[:ctx] for ids in (tokenizer.encode(d.encode()) for d in docs)]
    return perplexity(model, [w for w in windows if len(w) >= 4])


def ttq_ppl(binary, method, bits=3, group=32):
    flags = [] if method == "fp32" else ["--bits", str(bits), "--group", str(group)]
    out = subprocess.run([str(binary), "--method", method, *flags, "--json"], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    return math.exp(result["nll"]), result["tokens"]  # (its mean NLL has more digits than its rounded ppl)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="fp32,rtn,ttq")
    parser.add_argument("--bits", type=int, default=3)
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--ttq-ppl", help="the ttq-ppl binary: compare with its perplexities")
    parser.add_argument("--rtol", type=float, default=1e-3)
    args = parser.parse_args()
    failed = False
    for method in args.methods.split(","):
        ppl, count = run(method, args.bits, args.group)
        label = "fp32" if method == "fp32" else f"{method} {args.bits}-bit g{args.group}"
        line = f"{label:>14}: perplexity {ppl:.4f} over {count} predictions (torch + ttq)"
        if args.ttq_ppl:
            ref, ref_count = ttq_ppl(args.ttq_ppl, method, args.bits, args.group)
            rel = abs(ppl - ref) / ref
            ok = rel <= args.rtol and count == ref_count
            failed |= not ok
            line += f"; ttq-ppl {ref:.4f} over {ref_count}: relative difference {rel:.1e} {'ok' if ok else 'MISMATCH'}"
        print(line, flush=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
