"""ttq.quantize and QuantizedMatrix against the independent numpy formulas (reference.py) and the
C++ oracle (the scalar reference kernels of the dispatch library, ttq.set_isa("scalar"))."""

import numpy as np
import pytest

import ttq
import reference as ref


def weights(rows=24, cols=80, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[3] = np.abs(w[3])  # a one-signed row (the AWQ format clips it)
    w[5, :16] = 0.0  # a constant group
    return w


@pytest.mark.parametrize("fmt,bits", [("awq", 2), ("awq", 3), ("awq", 4), ("awq", 8), ("offset", 3), ("symmetric", 4), ("nf4", 4)])
@pytest.mark.parametrize("group", [16, 32, 0, 24])  # 24: a ragged last group of 8 in rows of 80
def test_codes_scales_zeros_match_the_numpy_formula(fmt, bits, group):
    w = weights()
    q = ttq.quantize(w, bits=bits, group=group, format=fmt)
    codes, scales, zeros, deq = ref.quantize(w, bits, group, fmt)
    assert q.codes.dtype == np.uint8 and q.codes.shape == w.shape
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_array_equal(q.scales, scales)
    np.testing.assert_array_equal(q.zeros, zeros)
    np.testing.assert_array_equal(q.dequantize(), deq)
    groups = 1 if group == 0 else -(-80 // group)
    assert q.scales.shape == q.zeros.shape == (24, groups)
    assert q.groups == groups and q.group == (80 if group == 0 else group)
    assert q.bits == bits and q.format == fmt and q.shape == (24, 80)
    assert q.codes.max() < 2**bits


def test_round_trip_error_is_at_most_half_a_step():
    w = weights()
    w[3] = -w[3]  # every group straddles zero except the constant one: no clipping in the AWQ format
    w[3, ::2] *= -1
    q = ttq.quantize(w, bits=4, group=16)
    err = np.abs(q.dequantize() - w)
    step = np.repeat(q.scales, 16, axis=1)
    assert np.all(err <= 0.5 * step * (1 + 1e-5))
    assert np.all(np.abs(ttq.quantize(w, bits=8, group=16).dequantize() - w) < np.abs(err).max())


def test_scales_and_clip():
    w = weights()
    d = np.linspace(0.5, 2.0, 80).astype(np.float32)
    q = ttq.quantize(w, bits=3, group=16, scales=d, clip=0.9)
    codes, scales, zeros, deq = ref.quantize(w, 3, 16, "awq", scales=d, clip=0.9)
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_array_equal(q.dequantize(), deq)  # decodes w * D
    np.testing.assert_array_equal(ttq.quantize_dequantize(w, bits=3, group=16, scales=d, clip=0.9), deq / d[None, :])
    np.testing.assert_array_equal(ttq.quantize_dequantize(w, bits=3, group=16), ref.qdq(w, 3, 16))


@pytest.mark.parametrize("fmt,zero_bits", [("awq", 8), ("offset", 32), ("symmetric", 0)])
def test_bits_per_weight(fmt, zero_bits):
    w = weights(cols=64)
    assert ttq.quantize(w, bits=3, group=32, format=fmt).bits_per_weight == pytest.approx(3 + (32 + zero_bits) / 32)


def test_dispatched_isa_equals_the_scalar_oracle():
    w = weights(rows=64, cols=256, seed=3)
    d = np.exp(np.random.default_rng(4).standard_normal(256) * 0.3).astype(np.float32)
    best = ttq.isa()
    try:
        ttq.set_isa("scalar")
        oracle = ttq.quantize(w, bits=3, group=64, scales=d)
    finally:
        ttq.set_isa(best)
    fast = ttq.quantize(w, bits=3, group=64, scales=d)
    np.testing.assert_array_equal(fast.codes, oracle.codes)
    np.testing.assert_array_equal(fast.scales, oracle.scales)
    np.testing.assert_array_equal(fast.zeros, oracle.zeros)


def test_isa_queries():
    names = ttq.compiled_isas()
    assert names[0] == "scalar"
    assert ttq.best_isa() in names and ttq.isa() in names
    assert ttq.cpu_supports("scalar")
    with pytest.raises(ttq.RangeError):
        ttq.set_isa("mmx")


def test_input_dtypes():
    w = weights()
    expected = ttq.quantize(w, bits=4, group=16)
    np.testing.assert_array_equal(ttq.quantize(w.astype(np.float64), bits=4, group=16).codes, expected.codes)
    h = w.astype(np.float16)
    np.testing.assert_array_equal(ttq.quantize(h, bits=4, group=16).codes, ref.quantize(h.astype(np.float32), 4, 16)[0])
    np.testing.assert_array_equal(ttq.quantize(np.asfortranarray(w), bits=4, group=16).codes, expected.codes)
    np.testing.assert_array_equal(ttq.quantize(w.tolist(), bits=4, group=16).codes, expected.codes)
    with pytest.raises(TypeError):
        ttq.quantize(w.astype(np.int32), bits=4, group=16)
    with pytest.raises(TypeError):
        ttq.quantize("weights", bits=4, group=16)


def test_bad_arguments_raise_with_the_library_message():
    w = weights()
    with pytest.raises(ttq.RangeError, match="argument 'bits'"):
        ttq.quantize(w, bits=9, group=16)
    with pytest.raises(ValueError, match="argument 'bits'"):
        ttq.quantize(w, bits=3, group=16, format="nf4")
    with pytest.raises(ttq.RangeError, match="argument 'group'"):
        ttq.quantize(w, bits=4, group=81)
    with pytest.raises(ttq.RangeError, match="argument 'format'"):
        ttq.quantize(w, bits=4, group=16, format="int4")
    with pytest.raises(ttq.RangeError, match="argument 'clip'"):
        ttq.quantize(w, bits=4, group=16, clip=0.0)
    with pytest.raises(ttq.ShapeError, match="argument 'w'"):
        ttq.quantize(w[0], bits=4, group=16)
    with pytest.raises(ttq.ShapeError, match="argument 'scales'"):
        ttq.quantize(w, bits=4, group=16, scales=np.ones(79, np.float32))
    with pytest.raises(ttq.RangeError, match="argument 'scales'"):
        ttq.quantize(w, bits=4, group=16, scales=np.zeros(80, np.float32))
    bad = w.copy()
    bad[2, 7] = np.nan
    with pytest.raises(ttq.NonFiniteError, match=r"argument 'w'.*\(2, 7\)") as info:
        ttq.quantize(bad, bits=4, group=16)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    assert issubclass(ttq.ShapeError, ValueError) and issubclass(ttq.RangeError, ValueError)
