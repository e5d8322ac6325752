"""Independent numpy formulas of ttq's numerics (shared/spec/ttq-math.md, docs/numerics.md),
written from the spec, sharing no code with the library: groupwise round-to-nearest in the four
formats (fp32 operations in the spec's order, round half to even), TTQ's activation statistic
and scales, and the adaptive exponent's error."""

import numpy as np

F32 = np.float32
RANGE_FLOOR = F32(1e-5)
NF4_LEVELS = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                       0.24611230790615082, 0.33791524171829224, 0.44070982985305786, 0.5626170039176941,
                       0.7229568362236023, 1.0], dtype=F32)


def _groups(cols, group):
    group = cols if group == 0 else group
    return [(b, min(b + group, cols)) for b in range(0, cols, group)]


def quantize(w, bits, group, fmt="awq", scales=None, clip=1.0):
    """(codes [rows, cols] int64, scales [rows, groups], zeros [rows, groups], deq [rows, cols]) of w * D."""
    w = np.asarray(w, dtype=F32)
    if scales is not None:
        w = w * np.asarray(scales, dtype=F32)[None, :]
    rows, cols = w.shape
    spans = _groups(cols, group)
    codes = np.zeros((rows, cols), dtype=np.int64)
    deq = np.zeros((rows, cols), dtype=F32)
    s_out = np.zeros((rows, len(spans)), dtype=F32)
    z_out = np.zeros((rows, len(spans)), dtype=F32)
    qmax = F32(2**bits - 1)
    for g, (b, e) in enumerate(spans):
        v = w[:, b:e]
        mn = F32(clip) * v.min(axis=1)
        mx = F32(clip) * v.max(axis=1)
        if fmt == "awq":
            s = np.maximum(mx - mn, RANGE_FLOOR) / qmax
            z = np.clip(-np.round(mn / s), F32(0), qmax)
            q = np.clip(np.round(v / s[:, None]) + z[:, None], F32(0), qmax)
            d = (q - z[:, None]) * s[:, None]
        elif fmt == "offset":
            s = np.maximum(mx - mn, RANGE_FLOOR) / qmax
            z = mn
            q = np.clip(np.round((v - z[:, None]) / s[:, None]), F32(0), qmax)
            d = q * s[:, None] + z[:, None]
        elif fmt == "symmetric":
            half = F32(2 ** (bits - 1))
            s = np.maximum(np.maximum(np.abs(mn), np.abs(mx)), RANGE_FLOOR) / F32(half - 1)
            z = np.zeros_like(s)
            q = np.clip(np.round(v / s[:, None]), -half, half - F32(1)) + half
            d = (q - half) * s[:, None]
        elif fmt == "nf4":
            s = np.maximum(np.maximum(np.abs(mn), np.abs(mx)), RANGE_FLOOR)
            z = np.zeros_like(s)
            x = v / s[:, None]
            dist = np.abs(x[..., None] - NF4_LEVELS[None, None, :])
            q = np.argmin(dist, axis=-1).astype(F32)  # argmin keeps the first (lower) index on ties
            d = NF4_LEVELS[q.astype(np.int64)] * s[:, None]
        else:
            raise ValueError(fmt)
        codes[:, b:e] = q.astype(np.int64)
        deq[:, b:e] = d
        s_out[:, g] = s
        z_out[:, g] = z
    return codes, s_out, z_out, deq


def qdq(w, bits, group, fmt="awq", scales=None, clip=1.0):
    """Q(w D) / D in float32 (plain QDQ without D)."""
    deq = quantize(w, bits, group, fmt, scales, clip)[3]
    return deq if scales is None else deq / np.asarray(scales, dtype=F32)[None, :]


def effective_weight(w, bits, group, scales, fmt="awq"):
    """An operator's W^ = deq(Q(W D)) diag(1/D), with 1/D rounded to float32 first (as it applies it)."""
    inverse = F32(1) / np.asarray(scales, dtype=F32)
    return quantize(w, bits, group, fmt, scales)[3] * inverse[None, :]


def channel_norms(x, p):
    """s_j = ((1/T) sum_t |x_tj|^p)^(1/p), max_t |x_tj| for p = inf (float64)."""
    a = np.abs(np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1]))
    if np.isinf(p):
        return a.max(axis=0)
    return (np.mean(a**p, axis=0)) ** (1.0 / p)


def ttq_scales(x, p, alpha, lam=0.0):
    """D of a fixed exponent: c = s^2 / mean(s^2), D = ((1 - lambda) c + lambda)^alpha, floored at 1e-6 max D."""
    s = channel_norms(x, p)
    mean = np.mean(s * s)
    c = s * s / mean if mean > 0 else np.ones_like(s)
    d = ((1.0 - lam) * c + lam) ** alpha
    d = np.maximum(d, 1e-6 * d.max())
    return d.astype(F32)


def exponent_scales(x, p, a, floor=1e-4):
    """The adaptive exponent's candidate D_a = max(s^a, floor) (no normalisation)."""
    return np.maximum(channel_norms(x, p) ** a, floor).astype(F32)


def exponent_error(w, x, p, a, bits, group, fmt="awq"):
    """E_a = sum_j c_j sum_i (W_ij - Q(W D_a)_ij / D_a,j)^2 with c_j = mean_t x_tj^2."""
    d = exponent_scales(x, p, a)
    c = np.mean(np.asarray(x, dtype=np.float64).reshape(-1, np.shape(w)[1]) ** 2, axis=0)
    diff = np.asarray(w, dtype=np.float64) - quantize(w, bits, group, fmt, d)[3].astype(np.float64) / d.astype(np.float64)[None, :]
    return float(np.sum(c[None, :] * diff * diff))
