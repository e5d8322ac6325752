#!/usr/bin/env python3
"""Independent numpy (fp64) reference of the Gemma 3 block for the runner's tests: the forward
pass written from the architecture's description (Gemma 3 technical report; Hugging Face's
Gemma3 modelling code read for the conventions), sharing no code with the C++ under test.

It builds a tiny Gemma-3-shaped model whose weights come from a generator both sides implement
(FNV-1a of the tensor name seeds a 64-bit LCG; each value is a 24-bit uniform, exact in float32),
so the C++ test (tests/llama/gemma3.cpp) writes the same weights into a GGUF with gguf_builder.hpp
and compares its logits and sub-layer outputs with the numbers this script prints:

  - dim 24, 2 query heads of 16 (q is 32 wide, wider than the model), 1 KV head, FFN 40, vocab 48,
    3 layers with sliding_window_pattern 3 (layers 0 and 1 local, layer 2 global), window 4,
    RoPE base 1e6 global and 10,000 local, rms eps 1e-6;
  - embeddings scaled by sqrt(dim) (in float32, as llama.cpp); QK-norm (RMSNorm per head) before
    NEOX RoPE (pairs i, i + 8); attention scale 1/sqrt(16); causal mask, and on local layers only
    keys p - 3..p; post-attention and post-FFN RMSNorms before each residual add (weights stored
    with the +1 applied, so plain RMSNorms); GELU (tanh approximation) gated FFN; the output head
    tied to the token embedding.

Usage: python3 reference_gemma3.py      (prints the C++ fixture lines)
"""
import numpy as np

MASK = (1 << 64) - 1
DIM, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB, LAYERS = 24, 2, 1, 16, 40, 48, 3
WINDOW, PATTERN, EPS = 4, 3, 1e-6
BASE_GLOBAL, BASE_LOCAL = 1e6, 1e4
TOKENS = [2, 5, 17, 33, 8, 41, 12, 3, 29, 44, 7, 19]


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def generate(name, n, scale, offset=0.0):
    """n float32 values offset + u * scale, u uniform in [-0.5, 0.5) on a 2^-24 grid."""
    state = fnv1a(name)
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK
        u = np.float32((state >> 40) / float(1 << 24) - 0.5)
        out[i] = np.float32(offset) + np.float32(u * np.float32(scale))
    return out


def weights():
    w = {"token_embd.weight": generate("token_embd.weight", VOCAB * DIM, 1.0).reshape(VOCAB, DIM),
         "output_norm.weight": generate("output_norm.weight", DIM, 0.25, 1.0)}
    for l in range(LAYERS):
        for norm, n in [("attn_norm", DIM), ("attn_q_norm", HEAD_DIM), ("attn_k_norm", HEAD_DIM),
                        ("post_attention_norm", DIM), ("ffn_norm", DIM), ("post_ffw_norm", DIM)]:
            name = f"blk.{l}.{norm}.weight"
            w[name] = generate(name, n, 0.25, 1.0)
        for proj, rows, cols in [("attn_q", HEADS * HEAD_DIM, DIM), ("attn_k", KV_HEADS * HEAD_DIM, DIM),
                                 ("attn_v", KV_HEADS * HEAD_DIM, DIM), ("attn_output", DIM, HEADS * HEAD_DIM),
                                 ("ffn_gate", FFN, DIM), ("ffn_up", FFN, DIM), ("ffn_down", DIM, FFN)]:
            name = f"blk.{l}.{proj}.weight"
            w[name] = generate(name, rows * cols, 0.5).reshape(rows, cols)
    return {k: v.astype(np.float64) for k, v in w.items()}


def rms_norm(x, weight):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * weight


def rope_neox(x, base):
    """x [tokens, heads, head_dim], positions 0..tokens-1; pairs (i, i + head_dim / 2)."""
    half = HEAD_DIM // 2
    pos = np.arange(x.shape[0])[:, None]
    theta = pos * base ** (-2.0 * np.arange(half) / HEAD_DIM)
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


def is_local(layer):
    return layer % PATTERN < PATTERN - 1


def attention(w, layer, h):
    n = h.shape[0]
    p = f"blk.{layer}."
    q = (h @ w[p + "attn_q.weight"].T).reshape(n, HEADS, HEAD_DIM)
    k = (h @ w[p + "attn_k.weight"].T).reshape(n, KV_HEADS, HEAD_DIM)
    v = (h @ w[p + "attn_v.weight"].T).reshape(n, KV_HEADS, HEAD_DIM)
    q = rms_norm(q, w[p + "attn_q_norm.weight"])
    k = rms_norm(k, w[p + "attn_k_norm.weight"])
    base = BASE_LOCAL if is_local(layer) else BASE_GLOBAL
    q, k = rope_neox(q, base), rope_neox(k, base)
    t, s = np.arange(n)[:, None], np.arange(n)[None, :]
    visible = (s <= t) & ((t - s < WINDOW) if is_local(layer) else True)
    out = np.empty((n, HEADS, HEAD_DIM))
    for hd in range(HEADS):
        kv = hd // (HEADS // KV_HEADS)
        scores = q[:, hd, :] @ k[:, kv, :].T / np.sqrt(HEAD_DIM)
        scores = np.where(visible, scores, -np.inf)
        prob = np.exp(scores - scores.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        out[:, hd, :] = prob @ v[:, kv, :]
    return out.reshape(n, HEADS * HEAD_DIM) @ w[p + "attn_output.weight"].T


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def ffn(w, layer, h):
    p = f"blk.{layer}."
    return (gelu_tanh(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T


def forward(w, tokens):
    x = w["token_embd.weight"][tokens] * float(np.sqrt(np.float32(DIM)))
    for l in range(LAYERS):
        p = f"blk.{l}."
        x = x + rms_norm(attention(w, l, rms_norm(x, w[p + "attn_norm.weight"])), w[p + "post_attention_norm.weight"])
        x = x + rms_norm(ffn(w, l, rms_norm(x, w[p + "ffn_norm.weight"])), w[p + "post_ffw_norm.weight"])
    return rms_norm(x, w["output_norm.weight"]) @ w["token_embd.weight"].T


def fmt(values):
    return "{" + ", ".join(f"{v:.7g}f" for v in values) + "}"


def main():
    w = weights()
    logits = forward(w, TOKENS)
    print(f"// logits of tokens {TOKENS}")
    print(f"row0 = {fmt(logits[0])};")
    print(f"row11 = {fmt(logits[11])};")
    lp = logits - logits.max(axis=1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
    nll = -sum(lp[t, TOKENS[t + 1]] for t in range(len(TOKENS) - 1))
    print(f"// summed NLL of the next tokens: {nll:.9g}")
    x = generate("sublayer_input", len(TOKENS) * DIM, 2.0).reshape(len(TOKENS), DIM).astype(np.float64)
    for l in (0, 2):
        print(f"attention{l}_last = {fmt(attention(w, l, x)[-1])};")
    print(f"ffn1_last = {fmt(ffn(w, 1, x)[-1])};")


if __name__ == "__main__":
    main()
