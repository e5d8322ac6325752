#!/usr/bin/env python3
"""Reference fixtures for ttq's round-to-nearest groupwise quantize/dequantize (QDQ).

Spec: ttq-math.md, section "Round-to-nearest groupwise quantize/dequantize (QDQ)".

This is an implementation independent of the C++ library, written in numpy float32. The `awq`
format mirrors llm-awq's `pseudo_quantize_tensor` (zero_point=True) in fp32, op for op:

    max_val = w.amax(); min_val = w.amin(); max_int = 2**b - 1; min_int = 0
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    zeros  = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    w      = (torch.clamp(torch.round(w / scales) + zeros, min_int, max_int) - zeros) * scales

Every intermediate is float32 (np.float32 scalars / arrays; 1e-5 is np.float32(1e-5); rounding is
np.rint = round-half-to-even = torch.round). Every case is also recomputed with a second model that
works in exact rationals and rounds each operation to float32 by hand (`SoftF32`), so an accidental
float64 promotion in the numpy code would be caught.

Formats (b = bits, qmax = 2^b - 1, h = 2^(b-1) - 1, c = clip ratio, default 1):
  awq     mx, mn = c*max(w), c*min(w); s = max(mx - mn, 1e-5) / qmax;
          z = clamp(-rint(mn / s), 0, qmax); q = clamp(rint(w / s) + z, 0, qmax);
          w^ = (q - z) * s.                                   scale = s, zero = z
  offset  s as awq; m = mn; q = clamp(rint((w - m) / s), 0, qmax); w^ = q * s + m
          (two roundings: no fused multiply-add).             scale = s, zero = m
  sym     a = c*max|w|; s = max(a, 1e-5) / h; q = clamp(rint(w / s), -h-1, h);
          w^ = float(q) * s; the code written is q + h + 1.  scale = s, zero = 0
  nf4     (b = 4) a = max(c*max|w|, 1e-5); x = w / a; code = index of the nearest of the 16
          NormalFloat4 values (bitsandbytes), ties to the lower index; w^ = NF4[code] * a.
                                                              scale = a, zero = 0

Codes are integers: w^ is computed from the integer code, so w^ is never -0.0 (a float pipeline
that keeps rint's -0.0, e.g. sym `rint(-0.3) * s`, would produce -0.0 there; compare zeros by
value if the library does that). The `zero` field is written with -0.0 normalised to +0.0.

Output: quant_fixtures.txt next to this script (or --out). Record format:
    case <name> format <awq|offset|sym|nf4> bits <b> clip <c> n <n>
    w <n floats>
    q <n ints>
    scale <float>
    zero <float>
    deq <n floats>
Floats are repr(float(np.float32 value)): they parse back (strtof, or strtod then a cast to float)
to the identical float32.

Usage: python3 make_quant_fixtures.py [--out PATH]      (writes, then self-checks the written file)
       python3 make_quant_fixtures.py --check [PATH]    (only self-checks an existing file)
"""

import argparse
import os
import sys
from fractions import Fraction

import numpy as np

SEED = 20250611
F32 = np.float32
EPS = F32(1e-5)

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230790615082, 0.33791524171829224,
    0.44070982985305786, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)

FORMATS = ("awq", "offset", "sym", "nf4")


def _f32(x):
    """Assert-and-return helper: x must already be float32 (scalar or array)."""
    assert np.asarray(x).dtype == np.float32, (type(x), np.asarray(x).dtype)
    return x


# --------------------------------------------------------------------------------------------
# Reference implementation (numpy float32), with a few "wrong" variants used only as diagnostics
# to report how discriminating the fixtures are.
#   ref   : the contract
#   recip : w * (1/s) instead of w / s
#   f64   : every intermediate in float64, outputs cast to float32 at the end
#   away  : round half away from zero (std::round) instead of half-to-even
#   fma   : offset's w^ = fma(q, s, m) (one rounding)
# --------------------------------------------------------------------------------------------

def _rint_away(x):
    return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


def quantize(fmt, bits, clip, w, variant="ref"):
    """Quantize one group. Returns dict(q=int64 codes, scale=f32, zero=f32, deq=f32 array,
    arg=the float array that was rounded (or nf4's x), zarg=awq's mn/s)."""
    w = np.asarray(w, dtype=np.float32)
    dt = np.float64 if variant == "f64" else np.float32
    T = dt
    wv = w.astype(dt)
    c = T(F32(clip))
    eps = T(EPS)
    rint = _rint_away if variant == "away" else np.rint

    def div(a, b):
        return a * (T(1) / b) if variant == "recip" else a / b

    out = {}
    if fmt in ("awq", "offset"):
        qmax = T(2 ** bits - 1)
        mx = c * wv.max()
        mn = c * wv.min()
        s = np.maximum(mx - mn, eps) / qmax
        if fmt == "awq":
            zarg = div(mn, s)
            z = np.clip(-rint(zarg), T(0), qmax)
            arg = div(wv, s)
            qf = np.clip(rint(arg) + z, T(0), qmax)
            deq = (qf - z) * s
            out.update(q=qf.astype(np.int64), zero=z, zarg=zarg)
        else:
            m = mn
            arg = div(wv - m, s)
            qf = np.clip(rint(arg), T(0), qmax)
            qi = qf.astype(np.int64)
            if variant == "fma":
                deq = np.array([SoftF32.to_f32(Fraction(int(k)) * Fraction(float(s)) +
                                               Fraction(float(m))) for k in qi], dtype=np.float32)
            else:
                deq = qi.astype(dt) * s + m
            out.update(q=qi, zero=m)
        out.update(scale=s, arg=arg, deq=deq)
    elif fmt == "sym":
        h = 2 ** (bits - 1) - 1
        a = c * np.abs(wv).max()
        s = np.maximum(a, eps) / T(h)
        arg = div(wv, s)
        qf = np.clip(rint(arg), T(-h - 1), T(h))
        qi = qf.astype(np.int64)
        deq = qi.astype(dt) * s
        out.update(q=qi + h + 1, scale=s, zero=T(0), arg=arg, deq=deq)
    elif fmt == "nf4":
        assert bits == 4
        tab = NF4.astype(dt)
        a = np.maximum(c * np.abs(wv).max(), eps)
        x = div(wv, a)
        d = np.abs(x[:, None] - tab[None, :])
        code = np.argmin(d, axis=1)          # first minimum = lower index on ties
        deq = tab[code] * a
        out.update(q=code.astype(np.int64), scale=a, zero=T(0), arg=x, deq=deq, dist=d)
    else:
        raise ValueError(fmt)

    if variant == "ref":
        for k in ("scale", "zero", "arg", "deq"):
            _f32(out[k])
    out["scale"] = F32(out["scale"])
    out["zero"] = F32(out["zero"]) + F32(0.0)       # -0.0 -> +0.0
    out["deq"] = np.asarray(out["deq"]).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Second model: exact rationals, each operation rounded to float32 (round-half-even) by hand.
# --------------------------------------------------------------------------------------------

class SoftF32:
    @staticmethod
    def to_f32(x):
        """Round a Fraction to the nearest float32 (ties to even); returns a Fraction."""
        x = Fraction(x)
        if x == 0:
            return Fraction(0)
        sign = -1 if x < 0 else 1
        a = abs(x)
        e = a.numerator.bit_length() - a.denominator.bit_length()
        while Fraction(2) ** e > a:
            e -= 1
        while Fraction(2) ** (e + 1) <= a:
            e += 1
        e = max(e, -126)                      # subnormals
        ulp = Fraction(2) ** (e - 23)
        r = round(a / ulp) * ulp              # Fraction.__round__ is half-to-even
        assert r < Fraction(2) ** 128
        return sign * r

    @staticmethod
    def quantize(fmt, bits, clip, w):
        r = SoftF32.to_f32
        W = [Fraction(float(v)) for v in np.asarray(w, dtype=np.float32)]
        c = Fraction(float(F32(clip)))
        eps = Fraction(float(EPS))
        if fmt in ("awq", "offset"):
            qmax = 2 ** bits - 1
            mx, mn = r(c * max(W)), r(c * min(W))
            s = r(max(r(mx - mn), eps) / qmax)
            if fmt == "awq":
                z = min(max(-round(r(mn / s)), 0), qmax)
                q = [min(max(round(r(v / s)) + z, 0), qmax) for v in W]
                deq = [r((k - z) * s) for k in q]
                return q, s, Fraction(z), deq
            m = mn
            q = [min(max(round(r(r(v - m) / s)), 0), qmax) for v in W]
            deq = [r(r(k * s) + m) for k in q]
            return q, s, m, deq
        if fmt == "sym":
            h = 2 ** (bits - 1) - 1
            a = r(c * max(abs(v) for v in W))
            s = r(max(a, eps) / h)
            q = [min(max(round(r(v / s)), -h - 1), h) for v in W]
            deq = [r(k * s) for k in q]
            return [k + h + 1 for k in q], s, Fraction(0), deq
        if fmt == "nf4":
            tab = [Fraction(float(t)) for t in NF4]
            a = max(r(c * max(abs(v) for v in W)), eps)
            q, deq = [], []
            for v in W:
                x = r(v / a)
                dist = [abs(x - t) for t in tab]      # exact distances
                k = dist.index(min(dist))              # lower index on ties
                q.append(k)
                deq.append(r(tab[k] * a))
            return q, a, Fraction(0), deq
        raise ValueError(fmt)


# --------------------------------------------------------------------------------------------
# Tie statistics
# --------------------------------------------------------------------------------------------

def _clampq(fmt, bits, v, z=0):
    if fmt == "awq":
        return min(max(v + z, 0), 2 ** bits - 1)
    if fmt == "offset":
        return min(max(v, 0), 2 ** bits - 1)
    h = 2 ** (bits - 1) - 1
    return min(max(v, -h - 1), h)


def tie_stats(fmt, bits, w, res):
    """Counts elements whose rounding argument is exactly k + 1/2 in float32 and where the
    direction of rounding changes the code ('effective' ties). Also counts how many of those are
    ties in exact arithmetic too ('rational') rather than only after float32 rounding of the
    quotient. For awq, also whether mn/s is an effective tie (the zero point)."""
    st = dict(eff=0, rational=0, ztie=0, raw=0)
    if fmt == "nf4":
        d = res["dist"]
        for i in range(d.shape[0]):
            srt = np.sort(d[i])
            if srt[0] == srt[1]:
                st["raw"] += 1
                st["eff"] += 1
                x = Fraction(float(res["arg"][i]))
                idx = np.nonzero(d[i] == srt[0])[0]
                t0, t1 = (Fraction(float(NF4[j])) for j in idx[:2])
                if abs(x - t0) == abs(x - t1):
                    st["rational"] += 1
        return st
    arg = res["arg"]
    z = int(res["zero"]) if fmt == "awq" else 0
    s = Fraction(float(res["scale"]))
    m = Fraction(float(res["zero"])) if fmt == "offset" else Fraction(0)
    for i, t in enumerate(arg):
        if t - np.floor(t) == F32(0.5):
            st["raw"] += 1
            lo = int(np.floor(t))
            if _clampq(fmt, bits, lo, z) != _clampq(fmt, bits, lo + 1, z):
                st["eff"] += 1
                exact = (Fraction(float(w[i])) - m) / s
                if exact == Fraction(2 * lo + 1, 2):
                    st["rational"] += 1
    if fmt == "awq":
        t = res["zarg"]
        if t - np.floor(t) == F32(0.5):
            lo = int(np.floor(t))
            qmax = 2 ** bits - 1
            if min(max(-lo, 0), qmax) != min(max(-(lo + 1), 0), qmax):
                st["ztie"] = 1
    return st


# --------------------------------------------------------------------------------------------
# Case generation
# --------------------------------------------------------------------------------------------

MAGS = [F32(1e-3), F32(1e-2), F32(1e-1), F32(1.0), F32(10.0), F32(100.0)]


def f32arr(x):
    return np.asarray(x, dtype=np.float32)


def nextafter_n(x, n):
    x = F32(x)
    d = F32(np.inf) if n > 0 else F32(-np.inf)
    for _ in range(abs(n)):
        x = np.nextafter(x, d)
    return x


def _fmt_tag(x):
    return ("%g" % float(x)).replace("+", "")


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.cases = []        # (name, fmt, bits, clip, w, note)

    def add(self, name, fmt, bits, w, clip=1.0, note="", assert_ties=None):
        w = f32arr(w).copy()
        assert w.ndim == 1 and w.size >= 1
        self.cases.append(dict(name=name, fmt=fmt, bits=bits, clip=F32(clip), w=w, note=note,
                               assert_ties=assert_ties))

    def normal(self, n, mag):
        return self.rng.standard_normal(n).astype(np.float32) * F32(mag)

    def uniform(self, n, lo, hi):
        return self.rng.uniform(lo, hi, n).astype(np.float32)

    def perm(self, w):
        return f32arr(w)[self.rng.permutation(len(w))]

    # ---- exact dyadic ties ------------------------------------------------------------------
    def subsample(self, vals, keep, n=32):
        """Keep the elements `keep` (the ones that fix the range) plus random others, n total."""
        vals = list(vals)
        rest = [v for v in vals if v not in keep]
        if len(keep) + len(rest) > n:
            idx = self.rng.choice(len(rest), n - len(keep), replace=False)
            rest = [rest[i] for i in sorted(idx)]
        return self.perm(f32arr(list(keep) + rest))

    def tie_awq(self, bits, s_exp, a):
        """mn = -(a + 1/2) s, mx = mn + qmax s, every element (j + 1/2) s: every w/s is an exact
        half-integer and so is mn/s (zero-point tie)."""
        qmax = 2 ** bits - 1
        s = F32(2.0 ** s_exp)
        halves = [Fraction(2 * j + 1, 2) for j in range(-a - 1, qmax - a)]
        vals = [F32(float(t * Fraction(float(s)))) for t in halves]
        for t, v in zip(halves, vals):
            assert Fraction(float(v)) == t * Fraction(float(s))
        mn, mx = vals[0], vals[-1]
        assert Fraction(float(mx)) - Fraction(float(mn)) == qmax * Fraction(float(s))
        return self.subsample(vals, [mn, mx]), s

    def tie_awq_zero_min(self, bits, s_exp):
        """mn = 0, mx = qmax s, interior elements (k + 1/2) s."""
        qmax = 2 ** bits - 1
        s = F32(2.0 ** s_exp)
        vals = [F32(0.0), F32(qmax) * s] + [F32(k + 0.5) * s for k in range(qmax)]
        return self.subsample(vals, vals[:2]), s

    def tie_offset(self, bits, s_exp, m):
        qmax = 2 ** bits - 1
        s = F32(2.0 ** s_exp)
        m = F32(m)
        S, M = Fraction(float(s)), Fraction(float(m))
        vals = [m, F32(float(M + qmax * S))] + [F32(float(M + Fraction(2 * k + 1, 2) * S))
                                                 for k in range(qmax)]
        for v in vals:                                  # all exactly representable
            assert Fraction(float(v)) in [M + Fraction(j, 2) * S for j in range(2 * qmax + 1)]
        return self.subsample(vals, vals[:2]), s

    def tie_sym(self, bits, s_exp):
        h = 2 ** (bits - 1) - 1
        s = F32(2.0 ** s_exp)
        S = Fraction(float(s))
        ends = [F32(float(h * S)), F32(float(-h * S))]
        vals = ends + [F32(float(Fraction(2 * k + 1, 2) * S)) for k in range(-h, h)]
        for v in vals[2:]:
            assert (Fraction(float(v)) / S).denominator == 2
        return self.subsample(vals, ends), s

    # ---- ties that exist only after float32 rounding of the quotient -------------------------
    def rq_ties(self, fmt, bits, n=32, want=16):
        """Random group; then interior elements are replaced by float32 values w for which the
        float32 quotient (w/s, or (w-m)/s) is exactly k + 1/2 (while w/s itself is not, in exact
        arithmetic, whenever such a w exists nearby). The group's max/min (hence s, z, m) are
        unchanged. Non-dyadic s, so such cases separate float32 division from float64 division
        or multiplication by a reciprocal."""
        for _attempt in range(100):
            w = self.normal(n, 1.0)
            res = quantize(fmt, bits, 1.0, w)
            s = res["scale"]
            if fmt == "sym":
                lim = np.abs(w).max()
                keep = {int(np.argmax(np.abs(w)))}
            else:
                keep = {int(np.argmax(w)), int(np.argmin(w))}
            if (Fraction(float(s)).denominator & (Fraction(float(s)).denominator - 1)) == 0 and \
                    Fraction(float(s)).numerator.bit_length() < 12:
                continue                                  # s too "round", try again
            m = res["zero"] if fmt == "offset" else F32(0)
            z = int(res["zero"]) if fmt == "awq" else 0
            lo_t = float((w.min() - m) / s)
            hi_t = float((w.max() - m) / s)
            targets = [k + 0.5 for k in range(int(np.ceil(lo_t)), int(np.floor(hi_t)))]
            if fmt == "awq":
                targets = [t for t in targets if _clampq(fmt, bits, int(np.floor(t)), z) !=
                           _clampq(fmt, bits, int(np.floor(t)) + 1, z)]
            if fmt == "sym":
                h = 2 ** (bits - 1) - 1
                targets = [t for t in targets if -h - 1 < t < h]
            self.rng.shuffle(targets)
            slots = [i for i in range(n) if i not in keep]
            self.rng.shuffle(slots)
            placed = 0
            for t in targets:
                if placed >= want or not slots:
                    break
                base = F32(float(Fraction(t) * Fraction(float(s)) + Fraction(float(m))))
                best = None
                for d in range(-4, 5):
                    cnd = nextafter_n(base, d)
                    if fmt == "sym":
                        if not (-lim < cnd < lim):
                            continue
                    elif not (w.min() < cnd < w.max()):
                        continue
                    q = (cnd - m) / s if fmt == "offset" else cnd / s
                    if q != F32(t):
                        continue
                    exact = (Fraction(float(cnd)) - Fraction(float(m))) / Fraction(float(s))
                    if exact != Fraction(t):
                        best = cnd
                        break
                    best = best if best is not None else cnd
                if best is not None:
                    w[slots.pop()] = best
                    placed += 1
            if placed >= max(3, min(want // 2, len(targets) - 2)):
                res2 = quantize(fmt, bits, 1.0, w)
                assert res2["scale"] == s and res2["zero"] == res["zero"]
                return w
        raise RuntimeError("could not build rounded-quotient ties")

    # ---- nf4 ---------------------------------------------------------------------------------
    @staticmethod
    def nf4_midpoints():
        mids = []
        for i in range(15):
            mid = (Fraction(float(NF4[i])) + Fraction(float(NF4[i + 1]))) / 2
            mids.append((i, mid, Fraction(float(F32(float(mid)))) == mid))
        return mids

    def nf4_tie_values(self):
        return [F32(float(mid)) for i, mid, exact in self.nf4_midpoints() if exact]

    def nf4_near_mid_values(self):
        """For every pair, the float32 just below and just above the exact midpoint, where the
        nearest value is the same in exact arithmetic and with float32 distances."""
        vals = []
        for i, mid, exact in self.nf4_midpoints():
            f = F32(float(mid))
            below = f if Fraction(float(f)) < mid else np.nextafter(f, F32(-2))
            above = f if Fraction(float(f)) > mid else np.nextafter(f, F32(2))
            for v in (below, above):
                if nf4_ambiguous(v) is None:
                    vals.append(v)
        return vals


def nf4_codes(x):
    """(float32-distance code, exact-distance code) for a float32 x."""
    d = np.abs(F32(x) - NF4)
    kf = int(np.argmin(d))
    X = Fraction(float(x))
    de = [abs(X - Fraction(float(t))) for t in NF4]
    ke = de.index(min(de))
    return kf, ke


def nf4_ambiguous(x):
    kf, ke = nf4_codes(x)
    return None if kf == ke else (kf, ke)


def nf4_scan(radius=16):
    """x values within `radius` ulps of each NF4 midpoint where float32 distances and exact
    distances choose different codes."""
    amb = []
    for i, mid, exact in Gen.nf4_midpoints():
        f = F32(float(mid))
        for d in range(-radius, radius + 1):
            x = nextafter_n(f, d)
            r = nf4_ambiguous(x)
            if r is not None:
                amb.append((i, float(x), r))
    return amb


def build_cases(seed=SEED):
    g = Gen(seed)
    for fmt in ("awq", "offset", "sym"):
        for bi, bits in enumerate(range(2, 9)):
            tag = f"{fmt}_b{bits}"
            m32, m7 = MAGS[bi % 6], MAGS[(bi + 3) % 6]
            g.add(f"{tag}_normal32_{_fmt_tag(m32)}", fmt, bits, g.normal(32, m32))
            g.add(f"{tag}_normal7_{_fmt_tag(m7)}", fmt, bits, g.normal(7, m7))
            if bits % 2 == 0:
                g.add(f"{tag}_pos32", fmt, bits, g.uniform(32, 0.5, 1.0))
                g.add(f"{tag}_neg7", fmt, bits, g.uniform(7, -1.0, -0.5))
            else:
                g.add(f"{tag}_pos7", fmt, bits, g.uniform(7, 0.5, 1.0))
                g.add(f"{tag}_neg32", fmt, bits, g.uniform(32, -1.0, -0.5))
            s_exp = [-2, -6, 3, -10, 0, -4, 1][bi]
            if fmt == "awq":
                qmax = 2 ** bits - 1
                w, s = g.tie_awq(bits, s_exp, max(1, qmax // 3))
                g.add(f"{tag}_tie_zmid", fmt, bits, w, note="dyadic ties, mn/s = -(a+1/2)",
                      assert_ties=(s, True))
                if bits in (2, 4, 8):
                    w, s = g.tie_awq_zero_min(bits, s_exp - 1)
                    g.add(f"{tag}_tie_zmin0", fmt, bits, w, note="dyadic ties, mn = 0",
                          assert_ties=(s, False))
            elif fmt == "offset":
                m = [-1.25, 3.0, -0.5, 0.75, -7.0, 0.0, 2.5][bi]
                w, s = g.tie_offset(bits, s_exp, m)
                g.add(f"{tag}_tie", fmt, bits, w, note=f"dyadic ties, m = {m}",
                      assert_ties=(s, False))
            else:
                w, s = g.tie_sym(bits, s_exp)
                g.add(f"{tag}_tie", fmt, bits, w, note="dyadic ties", assert_ties=(s, False))
        # constant groups
        g.add(f"{fmt}_b4_const0", fmt, 4, np.zeros(8, np.float32))
        for bits in (2, 4, 8):
            g.add(f"{fmt}_b{bits}_const0.37", fmt, bits, np.full(8, F32(0.37)))
        g.add(f"{fmt}_b4_const-0.37", fmt, 4, np.full(5, F32(-0.37)))
        # tiny range (mx - mn < 1e-5)
        g.add(f"{fmt}_b4_tiny_at0", fmt, 4, g.uniform(16, -4e-6, 4.5e-6))
        w = F32(0.5) + (g.rng.integers(0, 100, 16) * 2.0 ** -24).astype(np.float32)
        w[0], w[1] = F32(0.5), F32(0.5 + 99 * 2.0 ** -24)
        assert w.max() - w.min() < EPS
        g.add(f"{fmt}_b3_tiny_at0.5", fmt, 3, w)
        # clip ratios
        g.add(f"{fmt}_b4_clip0.9", fmt, 4, g.normal(32, 1.0), clip=0.9)
        g.add(f"{fmt}_b3_clip0.75", fmt, 3, g.normal(32, 0.1), clip=0.75)
        # ties created by float32 rounding of the quotient (non-dyadic s)
        for bits in (3, 6):
            g.add(f"{fmt}_b{bits}_rqtie", fmt, bits, g.rq_ties(fmt, bits),
                  note="float32-quotient ties, non-dyadic s")
        # signed zeros in the input
        w = g.normal(7, 1.0)
        w[2], w[5] = F32(-0.0), F32(0.0)
        g.add(f"{fmt}_b4_signed_zeros", fmt, 4, w)

    # nf4
    fmt, bits = "nf4", 4
    for mag in (MAGS[0], MAGS[3], MAGS[5]):
        g.add(f"nf4_normal32_{_fmt_tag(mag)}", fmt, bits, g.normal(32, mag))
    for mag in (MAGS[1], MAGS[4]):
        g.add(f"nf4_normal7_{_fmt_tag(mag)}", fmt, bits, g.normal(7, mag))
    g.add("nf4_pos32", fmt, bits, g.uniform(32, 0.5, 1.0))
    g.add("nf4_neg32", fmt, bits, g.uniform(32, -1.0, -0.5))
    g.add("nf4_const0", fmt, bits, np.zeros(8, np.float32))
    g.add("nf4_const0.37", fmt, bits, np.full(8, F32(0.37)))
    g.add("nf4_const-0.37", fmt, bits, np.full(5, F32(-0.37)))
    g.add("nf4_tiny_at0", fmt, bits, g.uniform(16, -4e-6, 4.5e-6))
    w = F32(0.5) + (g.rng.integers(0, 100, 16) * 2.0 ** -24).astype(np.float32)
    g.add("nf4_tiny_at0.5", fmt, bits, w)
    g.add("nf4_clip0.9", fmt, bits, g.normal(32, 1.0), clip=0.9)
    g.add("nf4_clip0.75", fmt, bits, g.normal(32, 0.1), clip=0.75)
    ties = g.nf4_tie_values()
    g.add("nf4_tie_absmax1", fmt, bits, g.perm(ties + [F32(1.0), F32(-1.0)]),
          note="x exactly on representable midpoints")
    g.add("nf4_tie_absmax0.25", fmt, bits,
          g.perm([t * F32(0.25) for t in ties] + [F32(-0.25)]),
          note="x exactly on representable midpoints, absmax 0.25")
    near = g.nf4_near_mid_values()
    g.add("nf4_near_mid", fmt, bits, g.perm(near + [F32(-1.0)]),
          note="one float32 either side of each midpoint")
    # rounded-quotient ties: absmax 0.37, w chosen so that float32(w / 0.37) is a midpoint
    a = F32(0.37)
    rq = []
    for t in ties:
        base = F32(float(Fraction(float(t)) * Fraction(float(a))))
        for d in range(-4, 5):
            cnd = nextafter_n(base, d)
            if cnd / a == t and abs(cnd) < a:
                rq.append(cnd)
                break
    g.add("nf4_rqtie_absmax0.37", fmt, bits, g.perm(rq + [a]),
          note="float32(w/absmax) exactly on midpoints")
    w = g.normal(7, 1.0)
    w[2], w[5] = F32(-0.0), F32(0.0)
    g.add("nf4_signed_zeros", fmt, bits, w)

    names = [c["name"] for c in g.cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return g.cases


# --------------------------------------------------------------------------------------------
# Output, parsing, checking
# --------------------------------------------------------------------------------------------

def fstr(x):
    return repr(float(F32(x)))


def bits_of(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def compute(case):
    res = quantize(case["fmt"], case["bits"], case["clip"], case["w"])
    # exact-rational cross-check
    q, s, z, deq = SoftF32.quantize(case["fmt"], case["bits"], case["clip"], case["w"])
    assert list(res["q"]) == q, (case["name"], list(res["q"]), q)
    assert Fraction(float(res["scale"])) == s, case["name"]
    assert Fraction(float(res["zero"])) == z, case["name"]
    assert [Fraction(float(v)) for v in res["deq"]] == deq, case["name"]
    # invariants
    assert not np.any((res["deq"] == 0) & np.signbit(res["deq"])), "deq has -0.0"
    assert not (res["zero"] == 0 and np.signbit(res["zero"])), "zero is -0.0"
    hi = 15 if case["fmt"] == "nf4" else 2 ** case["bits"] - 1
    assert res["q"].min() >= 0 and res["q"].max() <= hi
    return res


def render(cases, results, stats_lines):
    out = []
    out.append("# ttq quantizer reference fixtures (round-to-nearest groupwise QDQ)")
    out.append("# generator: tests/reference/make_quant_fixtures.py (numpy float32, independent of "
               "the C++ code)")
    out.append(f"# seed: {SEED}   numpy: {np.__version__}   cases: {len(cases)}")
    out.append("# formats: awq (llm-awq pseudo_quantize_tensor, fp32), offset (float min offset), "
               "sym (code = q + 2^(b-1)), nf4 (bitsandbytes NF4, ties to lower index)")
    out.append("# record: case <name> format <f> bits <b> clip <c> n <n> / w / q / scale / zero / "
               "deq")
    out.append("# floats: repr of the float32 value; parse to float32 (strtof, or strtod + cast).")
    out.append("# deq never holds -0.0 (codes are integers); zero has -0.0 normalised to +0.0.")
    out.extend("# " + l for l in stats_lines)
    for c, r in zip(cases, results):
        out.append("")
        if c["note"]:
            out.append(f"# {c['note']}")
        out.append(f"case {c['name']} format {c['fmt']} bits {c['bits']} clip {fstr(c['clip'])} "
                   f"n {len(c['w'])}")
        out.append("w " + " ".join(fstr(v) for v in c["w"]))
        out.append("q " + " ".join(str(int(k)) for k in r["q"]))
        out.append("scale " + fstr(r["scale"]))
        out.append("zero " + fstr(r["zero"]))
        out.append("deq " + " ".join(fstr(v) for v in r["deq"]))
    return "\n".join(out) + "\n"


def parse(text):
    recs, cur = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if tok[0] == "case":
            kv = dict(zip(tok[2::2], tok[3::2]))
            cur = dict(name=tok[1], fmt=kv["format"], bits=int(kv["bits"]),
                       clip=F32(float(kv["clip"])), n=int(kv["n"]))
            recs.append(cur)
        elif tok[0] in ("w", "deq"):
            cur[tok[0]] = np.array([float(t) for t in tok[1:]], dtype=np.float32)
            assert len(cur[tok[0]]) == cur["n"]
        elif tok[0] == "q":
            cur["q"] = np.array([int(t) for t in tok[1:]], dtype=np.int64)
            assert len(cur["q"]) == cur["n"]
        elif tok[0] in ("scale", "zero"):
            assert len(tok) == 2
            cur[tok[0]] = F32(float(tok[1]))
        else:
            raise ValueError("bad line: " + line)
    return recs


def check_file(path, cases=None, results=None):
    with open(path) as f:
        recs = parse(f.read())
    for i, r in enumerate(recs):
        res = quantize(r["fmt"], r["bits"], r["clip"], r["w"])
        assert np.array_equal(res["q"], r["q"]), r["name"]
        assert bits_of(res["scale"]) == bits_of(r["scale"]), r["name"]
        assert bits_of(res["zero"]) == bits_of(r["zero"]), r["name"]
        assert np.array_equal(bits_of(res["deq"]), bits_of(r["deq"])), r["name"]
        if cases is not None:
            c, e = cases[i], results[i]
            assert c["name"] == r["name"] and c["fmt"] == r["fmt"] and c["bits"] == r["bits"]
            assert bits_of(c["clip"]) == bits_of(r["clip"])
            assert np.array_equal(bits_of(c["w"]), bits_of(r["w"])), r["name"]
            assert np.array_equal(e["q"], r["q"])
            assert bits_of(e["scale"]) == bits_of(r["scale"])
            assert bits_of(e["zero"]) == bits_of(r["zero"])
            assert np.array_equal(bits_of(e["deq"]), bits_of(r["deq"]))
    return recs


def same(a, b):
    return (np.array_equal(a["q"], b["q"]) and bits_of(a["scale"]) == bits_of(b["scale"]) and
            np.array_equal(bits_of(a["deq"]), bits_of(b["deq"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "quant_fixtures.txt"))
    ap.add_argument("--check", nargs="?", const="", default=None,
                    help="only parse and verify an existing file")
    args = ap.parse_args()
    if args.check is not None:
        path = args.check or args.out
        recs = check_file(path)
        print(f"{path}: {len(recs)} cases reproduce bit for bit")
        return 0

    np.seterr(all="raise")
    cases = build_cases()
    results = [compute(c) for c in cases]

    # statistics
    per_fmt, tie_cases, tie_elems, rat_elems, ztie_cases = {}, {}, {}, {}, {}
    clampz, clamp_top, sym_negzero = 0, 0, 0
    for c, r in zip(cases, results):
        f = c["fmt"]
        per_fmt[f] = per_fmt.get(f, 0) + 1
        st = tie_stats(f, c["bits"], c["w"], r)
        if st["eff"] or st["ztie"]:
            tie_cases[f] = tie_cases.get(f, 0) + 1
        tie_elems[f] = tie_elems.get(f, 0) + st["eff"]
        rat_elems[f] = rat_elems.get(f, 0) + st["rational"]
        ztie_cases[f] = ztie_cases.get(f, 0) + st["ztie"]
        if c["assert_ties"] is not None:
            s, want_z = c["assert_ties"]
            assert r["scale"] == s, (c["name"], r["scale"], s)
            assert st["eff"] >= 1 and st["rational"] == st["eff"], (c["name"], st)
            if want_z:
                assert st["ztie"] == 1, c["name"]
        if c["note"].startswith("float32-quotient"):
            assert st["eff"] >= 3 and st["rational"] < st["eff"], (c["name"], st)
        if c["name"].startswith("nf4_tie") or c["name"].startswith("nf4_rqtie"):
            assert st["eff"] >= 1, (c["name"], st)
        if f == "nf4":   # float32 distances and exact distances must agree on every element
            for x in r["arg"]:
                assert nf4_ambiguous(x) is None, (c["name"], x)
        if f == "awq":
            qmax = 2 ** c["bits"] - 1
            zraw = -np.rint(r["zarg"])
            if zraw < 0 or zraw > qmax:
                clampz += 1
            if c["clip"] == F32(1) and np.any(np.rint(r["arg"]) + r["zero"] > qmax):
                clamp_top += 1
        if f == "sym":
            raw = np.rint(r["arg"])
            sym_negzero += int(np.sum((raw == 0) & np.signbit(raw)))

    diag = {}
    for variant in ("recip", "f64", "away", "fma"):
        for c, r in zip(cases, results):
            if variant == "fma" and c["fmt"] != "offset":
                continue
            alt = quantize(c["fmt"], c["bits"], c["clip"], c["w"], variant=variant)
            if not same(alt, r):
                diag[variant] = diag.get(variant, 0) + 1

    amb = nf4_scan()
    mids = Gen.nf4_midpoints()
    stats = [f"cases per format: " + ", ".join(f"{f} {per_fmt.get(f, 0)}" for f in FORMATS),
             "cases with an effective rounding tie (rounding direction changes a code): " +
             ", ".join(f"{f} {tie_cases.get(f, 0)}" for f in FORMATS),
             "effective tie elements (of which exact in rationals): " +
             ", ".join(f"{f} {tie_elems.get(f, 0)} ({rat_elems.get(f, 0)})" for f in FORMATS),
             f"awq cases with an effective zero-point tie (mn/s = k+1/2): {ztie_cases.get('awq', 0)}",
             f"awq cases where the zero-point clamp is active: {clampz}; unclipped awq cases "
             f"where q is clamped at qmax: {clamp_top}",
             f"sym elements where rint gives -0.0 (float pipeline would decode -0.0): "
             f"{sym_negzero}",
             "NF4 midpoints exactly representable in float32: " +
             " ".join(str(i) for i, _, e in mids if e) + " (pair i, i+1)",
             f"NF4 float32 x within 16 ulps of a midpoint where float32-distance and exact nearest "
             f"differ: {len(amb)} (none used in fixtures)",
             "cases a variant implementation would fail: " +
             ", ".join(f"{k} {diag.get(k, 0)}" for k in ("recip", "f64", "away", "fma")) +
             "  (recip = w*(1/s); f64 = double arithmetic; away = round half away from zero; "
             "fma = offset w^ fused)"]

    text = render(cases, results, stats)
    with open(args.out, "w") as f:
        f.write(text)
    check_file(args.out, cases, results)
    print(f"wrote {args.out}: {len(cases)} cases; self-check passed (bit for bit)")
    for l in stats:
        print("  " + l)
    if amb:
        print("  NF4 ambiguous x (pair, x, (float32 code, exact code)):")
        for a in amb:
            print("    ", a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
