"""ttq.OnlineAWQ against the numpy formulas (reference.py) and the scalar oracle: RTN is plain
QDQ, TTQ's forward is x @ effective_weight().T + bias with the spec's D, the adaptive exponent
picks the least error, static AWQ freezes; bad input raises; dtypes; zero copy; threads."""

import math
import sys
import threading
import time

import numpy as np
import pytest

import ttq
import reference as ref


def layer(d_out=48, d_in=128, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((d_out, d_in)) * 0.1).astype(np.float32)
    b = rng.standard_normal(d_out).astype(np.float32)
    return w, b


def activations(t=20, d_in=128, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, d_in)).astype(np.float32)
    x[:, 5] *= 30.0  # outlier channels, as in real activations
    x[:, 77] *= 12.0
    return x


def assert_forward_matches(y, x, w_eff, b):
    expected = x.astype(np.float64) @ w_eff.astype(np.float64).T + b
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_rtn_is_plain_qdq():
    w, b = layer()
    op = ttq.OnlineAWQ(w, b, bits=3, group=32, method="rtn")
    qdq = ref.qdq(w, 3, 32)
    np.testing.assert_array_equal(op.effective_weight(), qdq)
    np.testing.assert_array_equal(op.scales, np.ones(128, np.float32))
    x = activations()
    y = op.prefill(x)  # RTN does not adapt: the same weights after a prompt
    np.testing.assert_array_equal(op.effective_weight(), qdq)
    assert_forward_matches(y, x, qdq, b)
    assert op.chosen_alpha is None and op.frozen is None


@pytest.mark.parametrize("p,alpha,lam", [(math.inf, 0.5, 0.0), (2.0, 0.3, 0.1), (1.0, 1.0, 0.0)])
def test_ttq_fixed_alpha_scales_and_forward(p, alpha, lam):
    w, b = layer()
    x = activations()
    op = ttq.OnlineAWQ(w, b, bits=4, group=32, alpha=alpha, p=p, lambda_=lam)
    np.testing.assert_array_equal(op.scales, np.ones(128, np.float32))  # before any prompt: D = 1
    y = op.prefill(x)
    d = ref.ttq_scales(x, p, alpha, lam)
    np.testing.assert_allclose(op.scales, d, rtol=1e-6)
    d = op.scales  # (the float rounding of D is the library's; the formula below uses exactly it)
    np.testing.assert_array_equal(op.effective_weight(), ref.effective_weight(w, 4, 32, d))
    assert_forward_matches(y, x, op.effective_weight(), b)
    assert_forward_matches(op.forward(x[:3]), x[:3], op.effective_weight(), b)
    assert op.chosen_alpha == alpha and op.tokens == 20


def test_ttq_auto_picks_the_least_error_of_the_grid():
    w, b = layer()
    x = activations()
    grid = [0.0, 0.25, 0.5, 0.75]
    op = ttq.OnlineAWQ(w, b, bits=3, group=32, alpha_grid=grid)
    assert op.chosen_alpha is None
    y = op.prefill(x)
    errors = [ref.exponent_error(w, x, 1.0, a, 3, 32) for a in grid]
    np.testing.assert_allclose(op.candidate_errors, errors, rtol=1e-6)
    assert op.chosen_alpha == grid[int(np.argmin(errors))]
    np.testing.assert_array_equal(op.scales, ref.exponent_scales(x, 1.0, op.chosen_alpha))
    assert_forward_matches(y, x, op.effective_weight(), b)


def test_ttq_low_rank_residual():
    w, b = layer()
    x = activations()
    op = ttq.OnlineAWQ(w, b, bits=3, group=32, alpha=0.5, rank=4)
    op.calibrate(x)
    a, bb = op.factors
    assert a.shape == (4, 128) and bb.shape == (48, 4) and op.rank == 4
    w_eff = bb @ a + ref.effective_weight(w - bb @ a, 3, 32, op.scales)
    np.testing.assert_allclose(op.effective_weight(), w_eff, rtol=1e-5, atol=1e-6)
    assert_forward_matches(op.forward(x), x, op.effective_weight(), b)
    assert op.bits_per_weight == pytest.approx(3 + 40 / 32 + 32 * 4 * (48 + 128) / (48 * 128))


def test_prompt_lifecycle():
    w, b = layer()
    x1, x2 = activations(seed=1), activations(seed=2) * np.linspace(0.1, 3, 128, dtype=np.float32)
    op = ttq.OnlineAWQ(w, b, bits=4, group=32, alpha=0.5)
    op.prefill(x1)
    d1 = op.scales.copy()
    op.decode(x2[0])  # decode steps never recalibrate
    op.forward(x2)
    np.testing.assert_array_equal(op.scales, d1)
    op.begin_prompt()  # the quantization stays until the next calibrate
    np.testing.assert_array_equal(op.scales, d1)
    op.calibrate(x2)
    np.testing.assert_allclose(op.scales, ref.ttq_scales(x2, math.inf, 0.5), rtol=1e-6)
    op.observe(x1)  # accumulates without requantizing
    np.testing.assert_allclose(op.scales, ref.ttq_scales(x2, math.inf, 0.5), rtol=1e-6)
    op.requantize()
    np.testing.assert_allclose(op.scales, ref.ttq_scales(np.vstack([x2, x1]), math.inf, 0.5), rtol=1e-6)
    op.reset()
    np.testing.assert_array_equal(op.scales, np.ones(128, np.float32))


def test_static_awq_calibrates_once_and_freezes():
    w, b = layer()
    calib, prompt = activations(seed=3), activations(seed=4) * 5
    op = ttq.OnlineAWQ(w, b, bits=3, group=32, method="awq", awq_clip=True)
    assert op.frozen is False
    op.calibrate(calib)
    assert op.frozen is True and op.chosen_alpha is not None
    d, w_eff = op.scales.copy(), op.effective_weight()
    y = op.prefill(prompt)  # frozen: the prompt changes nothing
    np.testing.assert_array_equal(op.scales, d)
    np.testing.assert_array_equal(op.effective_weight(), w_eff)
    assert_forward_matches(y, prompt, w_eff, b)
    op.reset()
    assert op.frozen is False
    op.observe(calib[:10])
    op.observe(calib[10:])
    op.requantize()
    assert op.frozen is True
    np.testing.assert_allclose(op.scales, d, rtol=1e-5)  # the same tokens in two batches: the same fit


@pytest.mark.parametrize("fmt,bits", [("offset", 3), ("symmetric", 4), ("nf4", 4)])
def test_formats(fmt, bits):
    w, b = layer()
    op = ttq.OnlineAWQ(w, b, bits=bits, group=0, format=fmt, method="rtn")
    np.testing.assert_array_equal(op.effective_weight(), ref.qdq(w, bits, 0, fmt))
    assert op.format == fmt and op.group == 128 and op.quantized.format == fmt


def test_dispatched_operator_matches_the_scalar_oracle():
    w, b = layer(d_out=96, d_in=256, seed=5)
    x = activations(t=9, d_in=256)
    best = ttq.isa()
    try:
        ttq.set_isa("scalar")
        oracle = ttq.OnlineAWQ(w, b, bits=3, group=64)
        y_oracle = oracle.prefill(x)
    finally:
        ttq.set_isa(best)
    op = ttq.OnlineAWQ(w, b, bits=3, group=64)
    y = op.prefill(x)
    assert op.chosen_alpha == oracle.chosen_alpha
    np.testing.assert_array_equal(op.quantized.codes, oracle.quantized.codes)
    np.testing.assert_allclose(y, y_oracle, rtol=1e-4, atol=1e-4 * np.abs(y_oracle).max())


def test_shapes_of_inputs_and_outputs():
    w, b = layer()
    op = ttq.OnlineAWQ(w, b, bits=4, group=32)
    x = activations(t=6)
    y = op.prefill(x)
    assert y.shape == (6, 48) and y.dtype == np.float32
    y1 = op.decode(x[2])  # a 1-D input is one token
    assert y1.shape == (48,)
    np.testing.assert_allclose(y1, y[2], rtol=1e-5, atol=1e-5)  # (a single token takes the decode kernel)
    y3 = op.forward(x.reshape(2, 3, 128))
    assert y3.shape == (2, 3, 48)
    np.testing.assert_array_equal(y3.reshape(6, 48), y)
    np.testing.assert_array_equal(op(x), y)
    assert op.d_in == 128 and op.d_out == 48 and op.bits == 4 and op.method == "ttq"
    assert "OnlineAWQ" in repr(op) and "QuantizedMatrix" in repr(op.quantized)


def test_dtypes():
    w, b = layer()
    x = activations(t=5)
    op = ttq.OnlineAWQ(w, b, bits=4, group=32, method="rtn")
    y = op.forward(x)
    h = x.astype(np.float16)
    np.testing.assert_array_equal(op.forward(h), op.forward(h.astype(np.float32)))  # fp16 widened exactly
    np.testing.assert_array_equal(op.forward(x.astype(np.float64)), y)
    np.testing.assert_array_equal(op.forward(np.asfortranarray(x)), y)
    wide = ttq.OnlineAWQ(w.astype(np.float16), b, bits=4, group=32, method="rtn")
    np.testing.assert_array_equal(wide.effective_weight(), ref.qdq(w.astype(np.float16).astype(np.float32), 4, 32))
    with pytest.raises(TypeError, match="argument 'x'"):
        op.forward(x.astype(np.int64))


def test_zero_copy_of_contiguous_fp32_input():
    x = activations(t=8)
    address, copied = ttq._ttq._input_address(x)
    assert address == x.ctypes.data and not copied
    view = x[2:6, :]  # rows of a larger array: a row stride, still no copy
    address, copied = ttq._ttq._input_address(view)
    assert address == view.ctypes.data and not copied
    big = np.zeros((8, 200), np.float32)
    cols = big[:, 10:138]  # a column block: row stride 200 > 128 columns
    address, copied = ttq._ttq._input_address(cols)
    assert address == cols.ctypes.data and not copied
    assert ttq._ttq._input_address(np.asfortranarray(x))[1]  # column-major: one copy
    assert ttq._ttq._input_address(x.astype(np.float16))[1]  # fp16: widened copy
    # The strided view gives the same result as its contiguous copy.
    w, b = layer()
    op = ttq.OnlineAWQ(w, b, bits=4, group=32, method="rtn")
    np.testing.assert_array_equal(op.forward(cols), op.forward(np.ascontiguousarray(cols)))


def test_bad_input_raises():
    w, b = layer()
    op = ttq.OnlineAWQ(w, b, bits=4, group=32)
    with pytest.raises(ttq.ShapeError, match=r"argument 'x': expected shape \[T, 128\], got \[4, 127\]"):
        op.calibrate(np.ones((4, 127), np.float32))
    with pytest.raises(ValueError, match="argument 'x'"):
        op.forward(np.ones((4, 100), np.float32))
    with pytest.raises(ttq.ShapeError):
        op.forward(np.ones((0, 128), np.float32))
    x = activations(t=4)
    x[1, 3] = np.inf
    with pytest.raises(ttq.NonFiniteError, match="argument 'x'") as info:
        op.prefill(x)
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    with pytest.raises(FloatingPointError):
        op.forward(np.full((1, 128), 1e38, np.float32))  # finite input, the output overflows float
    with pytest.raises(ttq.ShapeError, match="argument 'bias'"):
        ttq.OnlineAWQ(w, b[:-1])
    with pytest.raises(ttq.ShapeError, match="argument 'w'"):
        ttq.OnlineAWQ(w[None])
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ttq.NonFiniteError, match="argument 'weight'"):
        ttq.OnlineAWQ(bad)
    with pytest.raises(ttq.RangeError, match="argument 'group'"):
        ttq.OnlineAWQ(w, group=256)
    with pytest.raises(ttq.RangeError, match="argument 'bits'"):
        ttq.OnlineAWQ(w, bits=1, group=32)
    with pytest.raises(ttq.RangeError, match="argument 'method'"):
        ttq.OnlineAWQ(w, group=32, method="gptq")
    with pytest.raises(ttq.RangeError, match="argument 'alpha'"):
        ttq.OnlineAWQ(w, group=32, alpha="fixed")
    with pytest.raises(ttq.RangeError, match="argument 'alpha'"):
        ttq.OnlineAWQ(w, group=32, alpha=-1.0)
    with pytest.raises(ttq.RangeError, match="argument 'p'"):
        ttq.OnlineAWQ(w, group=32, alpha=0.5, p=0.5)
    with pytest.raises(ttq.RangeError, match="argument 'lambda_'"):
        ttq.OnlineAWQ(w, group=32, lambda_=0.1)  # alpha="auto": lambda does not apply
    with pytest.raises(ttq.RangeError, match="argument 'rank'"):
        ttq.OnlineAWQ(w, group=32, method="rtn", rank=2)
    with pytest.raises(ttq.RangeError, match="argument 'rank'"):
        ttq.OnlineAWQ(w, group=32, rank=49)
    with pytest.raises(ttq.RangeError, match="argument 'awq_clip'"):
        ttq.OnlineAWQ(w, group=32, awq_clip=True)
    with pytest.raises(TypeError):
        ttq.OnlineAWQ(w, group=32, lambda_="x")


def run_concurrently(long_call, short_call):
    """Runs long_call() in one thread and short_call() in a loop in another until the first ends;
    returns (the long call's window, the short calls' completion times). The interpreter's
    forced GIL switches are turned off (switch interval 100 s), so the second thread can run
    while the first is inside its call only if that call releases the GIL."""
    window, stamps = {}, []
    started = threading.Event()

    def first():
        started.set()
        window["start"] = time.perf_counter()
        long_call()
        window["end"] = time.perf_counter()

    def second():
        started.wait()
        deadline = time.perf_counter() + 30.0
        while "end" not in window and time.perf_counter() < deadline:
            short_call()
            stamps.append(time.perf_counter())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return window, stamps


def test_two_python_threads_run_operators_at_once():
    """While one thread is inside a long calibration, another completes operator calls: the GIL
    is released inside the kernels; both get the single-threaded results."""
    rng = np.random.default_rng(7)
    w_big = (rng.standard_normal((2048, 2048)) * 0.05).astype(np.float32)
    x_big = rng.standard_normal((64, 2048)).astype(np.float32)
    big = ttq.OnlineAWQ(w_big, bits=3, group=64, error_rows=0)  # alpha="auto" on every row: 10 quantizations
    w, b = layer()
    small = ttq.OnlineAWQ(w, b, bits=4, group=32, method="rtn")
    x = activations(t=2)
    expected = small.forward(x)
    expected_big = ttq.OnlineAWQ(w_big, bits=3, group=64, error_rows=0).prefill(x_big)
    results, mismatches = {}, []

    def long_call():
        results["big"] = big.prefill(x_big)

    def short_call():
        if not np.array_equal(small.forward(x), expected):
            mismatches.append(1)

    window, stamps = run_concurrently(long_call, short_call)
    inside = [s for s in stamps if window["start"] < s < window["end"]]
    assert len(inside) >= 2, (len(stamps), window["end"] - window["start"])
    assert not mismatches
    np.testing.assert_array_equal(results["big"], expected_big)


def test_the_thread_check_detects_a_held_gil():
    """The check above fails for a call that keeps the GIL (pure Python work of similar length)."""
    w, b = layer()
    small = ttq.OnlineAWQ(w, b, bits=4, group=32, method="rtn")
    x = activations(t=2)

    def python_work():
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass

    window, stamps = run_concurrently(python_work, lambda: small.forward(x))
    assert not [s for s in stamps if window["start"] < s < window["end"]]


def test_one_operator_shared_by_two_threads_stays_consistent():
    w, b = layer()
    op = ttq.OnlineAWQ(w, b, bits=4, group=32, alpha=0.5)
    xs = [activations(t=8, seed=s) for s in range(2)]
    errors = []

    def worker(x):
        try:
            for _ in range(50):
                y = op.prefill(x)
                assert y.shape == (8, 48) and np.all(np.isfinite(y))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_adaptive_exponent_options():
    w, b = layer()
    x = activations()
    op = ttq.OnlineAWQ(w, b, bits=3, group=32, alpha_grid=[0.5], floor=2.0)
    op.calibrate(x)
    np.testing.assert_array_equal(op.scales, ref.exponent_scales(x, 1.0, 0.5, floor=2.0))
    assert op.scales.min() >= 2.0 and op.chosen_alpha == 0.5
    with pytest.raises(ttq.RangeError, match="argument 'floor'"):
        ttq.OnlineAWQ(w, b, group=32, method="rtn", floor=2.0)


def test_online_clip_search():
    # Issue 11's clip search through the same object: on the prompt, block beats no clip at 2 bits,
    # and the choice is the C++ oracle's (the scalar backend, selected at run time).
    w, b = layer()
    x = activations(t=48)
    y = x.astype(np.float64) @ w.astype(np.float64).T
    errors = {}
    for clip in ("none", "diag", "block"):
        op = ttq.OnlineAWQ(w, b, bits=2, group=32, clip=clip)
        op.calibrate(x)
        errors[clip] = float((((x.astype(np.float64) @ op.effective_weight().astype(np.float64).T) - y) ** 2).sum())
    assert errors["block"] < errors["none"]
    fast = ttq.OnlineAWQ(w, b, bits=2, group=32, clip="block", clip_rank=4)
    fast.calibrate(x)
    best = ttq.isa()
    try:
        ttq.set_isa("scalar")
        oracle = ttq.OnlineAWQ(w, b, bits=2, group=32, clip="block", clip_rank=4)
        oracle.calibrate(x)
    finally:
        ttq.set_isa(best)
    np.testing.assert_array_equal(fast.quantized.codes, oracle.quantized.codes)
    with pytest.raises(ttq.RangeError, match="argument 'clip'"):
        ttq.OnlineAWQ(w, b, group=32, clip="full")
    with pytest.raises(ttq.RangeError, match="argument 'clip'"):
        ttq.OnlineAWQ(w, b, group=32, alpha=0.5, clip="block")
    with pytest.raises(ttq.RangeError, match="argument 'clip_rank'"):
        ttq.OnlineAWQ(w, b, group=32, clip="diag", clip_rank=2)
