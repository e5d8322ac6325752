#!/usr/bin/env python3
"""Independent numpy (fp64) reimplementation of the pieces the C++ runner tests against: a
minimal GGUF F32 reader, llama2.c's BPE `encode` transcribed literally (rescan for the best pair
after every merge, byte-level code-point grouping, byte fallback), and llama2.c's forward pass.
It produced the fixed encodings and logits in tests/llama/tokenizer.cpp and model.cpp and
reproduces the anchor of shared/data/SOURCES.md (mean NLL 1.2229 over 14,721 predictions).
It shares no code with the C++ under test.

Usage: python3 reference_llama.py [tools/data]     (prints the fixtures; takes ~5 s)
"""
import os
import struct
import sys

import numpy as np

DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tools", "data")


def read_gguf(path):
    b = open(path, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def rs():
        nonlocal pos
        n = rd("Q")
        s = b[pos:pos + n]
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rv(t):
        if t in scalar:
            return rd(scalar[t])
        if t == 8:
            return rs()
        et = rd("I")
        n = rd("Q")
        return [rv(et) for _ in range(n)]

    assert b[:4] == b"GGUF"
    pos = 8
    nt, nk = rd("Q"), rd("Q")
    kv = {}
    for _ in range(nk):
        k = rs().decode()
        kv[k] = rv(rd("I"))
    infos = []
    for _ in range(nt):
        name = rs().decode()
        nd = rd("I")
        dims = [rd("Q") for _ in range(nd)]
        ty = rd("I")
        off = rd("Q")
        infos.append((name, dims, ty, off))
    align = kv.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    w = {}
    for name, dims, ty, off in infos:
        assert ty == 0, "reference reads F32 only"
        a = np.frombuffer(b, dtype="<f4", count=int(np.prod(dims)), offset=base + off)
        w[name] = a.astype(np.float64).reshape(list(reversed(dims)))
    return kv, w


class Tokenizer:
    """llama2.c run.c encode(), on bytes, with the vocabulary in llama2.c's form ('\u2581'
    stored as ' ', as its tokenizer export does)."""

    def __init__(self, kv):
        marker = "\u2581".encode()
        self.pieces = [p.replace(marker, b" ") for p in kv["tokenizer.ggml.tokens"]]  # bytes
        self.scores = kv["tokenizer.ggml.scores"]
        self.index = {}
        for i, p in enumerate(self.pieces):
            self.index.setdefault(p, i)

    def encode(self, text: bytes, bos=True):
        out = [1] if bos else []
        if not text:
            return out
        seq = [self.index[b" "]]  # the dummy prefix
        i = 0
        while i < len(text):
            n = 1  # a byte plus the continuation bytes after it, at most 4 in all
            while n < 4 and i + n < len(text) and (text[i + n] & 0xC0) == 0x80:
                n += 1
            unit = text[i:i + n]
            if unit in self.index:
                seq.append(self.index[unit])
            else:
                seq.extend(c + 3 for c in unit)  # llama2.c: byte tokens start at id 3
            i += n
        while True:
            best, best_i, best_id = -1e10, -1, -1
            for j in range(len(seq) - 1):
                m = self.pieces[seq[j]] + self.pieces[seq[j + 1]]
                k = self.index.get(m)
                if k is not None and self.scores[k] > best:
                    best, best_i, best_id = self.scores[k], j, k
            if best_i < 0:
                break
            seq[best_i:best_i + 2] = [best_id]
        return out + seq


class Model:
    def __init__(self, kv, w):
        self.w = w
        self.dim = kv["llama.embedding_length"]
        self.layers = kv["llama.block_count"]
        self.nh = kv["llama.attention.head_count"]
        self.nkv = kv["llama.attention.head_count_kv"]
        self.hs = self.dim // self.nh
        self.eps = kv["llama.attention.layer_norm_rms_epsilon"]

    def rms(self, x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * g

    def rope(self, x):  # x [T, heads, hs]; pairs (2i, 2i+1) as in llama2.c
        T = x.shape[0]
        i = np.arange(0, self.hs, 2)
        ang = np.arange(T)[:, None] * (1.0 / 10000.0 ** (i / self.hs))[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
        out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
        return out

    def logits(self, ids):
        W, T, hs = self.w, len(ids), self.hs
        x = W["token_embd.weight"][ids]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.layers):
            g = lambda n: W[f"blk.{l}.{n}.weight"]
            xb = self.rms(x, g("attn_norm"))
            q = self.rope((xb @ g("attn_q").T).reshape(T, self.nh, hs))
            k = self.rope((xb @ g("attn_k").T).reshape(T, self.nkv, hs))
            v = (xb @ g("attn_v").T).reshape(T, self.nkv, hs)
            out = np.empty((T, self.nh, hs))
            for h in range(self.nh):
                kh = h // (self.nh // self.nkv)
                a = q[:, h, :] @ k[:, kh, :].T / np.sqrt(hs) + mask
                a = np.exp(a - a.max(-1, keepdims=True))
                out[:, h, :] = (a / a.sum(-1, keepdims=True)) @ v[:, kh, :]
            x = x + out.reshape(T, self.dim) @ g("attn_output").T
            xb = self.rms(x, g("ffn_norm"))
            h1, h3 = xb @ g("ffn_gate").T, xb @ g("ffn_up").T
            x = x + ((h1 / (1 + np.exp(-h1))) * h3) @ g("ffn_down").T
        x = self.rms(x, W["output_norm.weight"])
        head = W.get("output.weight", W["token_embd.weight"])
        return x @ head.T


FIXTURE_TEXTS = [
    b"Once upon a time, there was a little girl.",
    b"",
    b" leading and  double  spaces ",
    b"Line one.\nLine two!\n",
    "Caf\u00e9 na\u00efve \u2014 \U0001F600".encode(),
    b'Tom said, "Wow!" and ran 123 miles.',
    b"\x01\x7f",
    b"\xff\x80abc",  # invalid UTF-8: grouped and byte-fallback as llama2.c does
    b"\x80abc",  # a leading continuation byte stays apart from the dummy prefix
    b"a \x80\x80b",  # continuation bytes after a space join the space's unit
]


def main():
    kv, w = read_gguf(os.path.join(DATA, "stories260K.gguf"))
    tok = Tokenizer(kv)
    print("// encodings (with BOS)")
    for t in FIXTURE_TEXTS:
        print(repr(t), tok.encode(t))

    model = Model(kv, w)
    ids = tok.encode(b"Once upon a time, there was a little girl.")
    lg = model.logits(ids)
    print("// logits of 'Once upon a time, there was a little girl.' (with BOS)")
    for t in (0, len(ids) - 1):
        print(f"row {t} first 8:", ", ".join(f"{v:.6f}" for v in lg[t, :8]))
        top = np.argsort(-lg[t])[:3]
        print(f"row {t} top 3:", [(int(i), round(float(lg[t, i]), 6)) for i in top])

    text = open(os.path.join(DATA, "tinystories-valid.head32k.txt"), "rb").read().decode()
    docs = [d.strip() for d in text.split("\n<|endoftext|>\n")]
    docs = [d for d in docs if d]
    total, count, first4 = 0.0, 0, None
    for i, d in enumerate(docs):
        ids = tok.encode(d.encode())[:512]
        lg = model.logits(ids)
        lp = lg - lg.max(-1, keepdims=True)
        lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
        total -= lp[np.arange(len(ids) - 1), ids[1:]].sum()
        count += len(ids) - 1
        if i == 3:
            first4 = (total / count, count)
    print(f"// {len(docs)} documents: mean NLL {total / count:.7f} over {count}; "
          f"first four {first4[0]:.7f} over {first4[1]}")


if __name__ == "__main__":
    main()
