#!/usr/bin/env python3
"""Offline reference for the byte-level BPE tokenizer of tools/llama (tests/llama/smollm2.cpp):
reads the vocabulary and merges out of the SmolLM2 GGUF with a minimal metadata reader, builds
the same tokenizer with Hugging Face `tokenizers` (BPE model, pre-tokenizer
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)],
which is SmolLM2's and what llama.cpp's "smollm" pre-type implements), and prints the fixed
encodings, pre-tokenizer splits (SmolLM2's and GPT-2's) and WikiText-2 fingerprint that the C++ tests compare against.
It shares no code with the C++ under test; the library never depends on `tokenizers`.

Usage: pip install tokenizers
       python3 tests/llama/reference_smollm2.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default path: $TTQ_MODEL_CACHE or ${XDG_CACHE_HOME:-~/.cache}/ttq/models, as
scripts/fetch-smollm2.sh stores it).
"""
import os
import struct
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
WIKITEXT = os.path.join(HERE, "..", "..", "tools", "data", "wikitext-2-raw.test.txt")


def default_model_path():
    cache = os.environ.get("TTQ_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ttq", "models")
    return os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")


def read_metadata(path):
    with open(path, "rb") as f:
        b = f.read(16 << 20)  # the metadata sits in the first few MB
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def rs():
        nonlocal pos
        n = rd("Q")
        s = b[pos:pos + n].decode("utf-8")
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
    rd("Q")
    nk = rd("Q")
    kv = {}
    for _ in range(nk):
        k = rs()
        kv[k] = rv(rd("I"))
    return kv


def build_tokenizer(kv):
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "smollm"
    tokens = kv["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in kv["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


# Texts of the fixed encodings, as C++ string literals would spell them.
FIXTURES = [
    "Hello world",
    "",
    " 2019 was  a year\n\n  ok",
    "don't 'S 'sun ''s we'll I'd they're",
    "Caf\u00e9 na\u00efve \u2014 \u201cquotes\u201d \u6226\u5834\u306e\u30f4\u30a1\u30eb\u30ad\u30e5\u30ea\u30a23",
    "a\tb\r\n  \n x",
    " = Valkyria Chronicles III = \n",
    "The 1,234.5 km\u00b2 area (\u00bd of it) cost $7\u00a0million\u2026",
    "x\x04y",
]


def cxx_literal(s):
    out = []
    for byte in s.encode("utf-8"):
        c = chr(byte)
        if c in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[c])
        elif c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif 0x20 <= byte < 0x7F:
            out.append(c)
        else:
            out.append("\\x%02X" % byte)
    # Hex escapes swallow following hex digits: split the literal after each one.
    text = ""
    for i, piece in enumerate(out):
        text += piece
        if piece.startswith("\\x") and i + 1 < len(out) and out[i + 1][0] in "0123456789abcdefABCDEF":
            text += '" "'
    return '"' + text + '"'


def fnv1a(ids):
    h = 2166136261
    for v in ids:
        for k in range(4):
            h ^= (v >> (8 * k)) & 0xFF
            h = (h * 16777619) & 0xFFFFFFFF
    return h


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else default_model_path()
    kv = read_metadata(path)
    tok = build_tokenizer(kv)
    print("// encodings")
    for s in FIXTURES:
        ids = tok.encode(s).ids
        print("{%s, {%s}}," % (cxx_literal(s), ", ".join(map(str, ids))))
    print("// pre-tokenizer words")
    for s in FIXTURES:
        words = [s[a:b] for _, (a, b) in tok.pre_tokenizer.pre_tokenize_str(s)]
        print("{%s, {%s}}," % (cxx_literal(s), ", ".join(cxx_literal(w) for w in words)))
    print("// pre-tokenizer words, GPT-2's regex alone (ByteLevel without Digits)")
    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for s in FIXTURES:
        words = [s[a:b] for _, (a, b) in gpt2.pre_tokenize_str(s)]
        print("{%s, {%s}}," % (cxx_literal(s), ", ".join(cxx_literal(w) for w in words)))
    text = open(WIKITEXT, "rb").read().decode("utf-8")
    ids = tok.encode(text).ids
    print("// wikitext-2-raw.test.txt: %d tokens, fnv1a %u, first 24 %s" % (len(ids), fnv1a(ids), ids[:24]))
    assert tok.decode(ids) == text


if __name__ == "__main__":
    main()
