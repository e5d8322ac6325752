"""torch tensors in and out of ttq, and ttq.torch.TTQLinear (skipped without torch)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import ttq  # noqa: E402
import ttq.torch  # noqa: E402
import reference as ref  # noqa: E402


def linear(d_in=128, d_out=48, seed=0):
    torch.manual_seed(seed)
    m = nn.Linear(d_in, d_out)
    m.weight.data *= 3.0
    return m


def prompt(t=12, d_in=128, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, d_in, generator=g)
    x[:, 9] *= 25.0
    return x


def test_torch_in_torch_out():
    lin = linear()
    op = ttq.OnlineAWQ(lin.weight, lin.bias, bits=4, group=32, alpha=0.5)
    x = prompt()
    y = op.prefill(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (12, 48)
    assert isinstance(op.scales, torch.Tensor) and isinstance(op.effective_weight(), torch.Tensor)
    assert isinstance(op.quantized.codes, torch.Tensor) and op.quantized.codes.dtype == torch.uint8
    expected = x.double() @ op.effective_weight().double().T + lin.bias.detach().double()
    torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    np.testing.assert_allclose(op.scales.numpy(), ref.ttq_scales(x.numpy(), np.inf, 0.5), rtol=1e-6)
    # numpy in, numpy out, from the same operator
    assert isinstance(op.forward(x.numpy()), np.ndarray)


def test_quantize_torch_and_bf16():
    w = linear().weight.detach()
    q = ttq.quantize(w, bits=4, group=32)
    assert isinstance(q.dequantize(), torch.Tensor)
    np.testing.assert_array_equal(q.codes.numpy(), ref.quantize(w.numpy(), 4, 32)[0])
    wb = w.to(torch.bfloat16)
    qb = ttq.quantize(wb, bits=4, group=32)
    np.testing.assert_array_equal(qb.codes.numpy(), ref.quantize(wb.float().numpy(), 4, 32)[0])
    wh = w.to(torch.float16)
    np.testing.assert_array_equal(ttq.quantize(wh, bits=4, group=32).codes.numpy(), ref.quantize(wh.float().numpy(), 4, 32)[0])


def test_dtypes_of_inputs():
    lin = linear()
    op = ttq.OnlineAWQ(lin.weight, lin.bias, bits=4, group=32, method="rtn")
    x = prompt()
    for dtype in (torch.bfloat16, torch.float16):
        xd = x.to(dtype)
        torch.testing.assert_close(op.forward(xd), op.forward(xd.float()), rtol=0, atol=0)
    with pytest.raises(TypeError):
        op.forward(x.to(torch.int32))
    xg = x.clone().requires_grad_(True)  # a tensor that requires grad is read, not differentiated
    torch.testing.assert_close(op.forward(xg), op.forward(x), rtol=0, atol=0)


def test_zero_copy_of_contiguous_fp32_tensor():
    x = prompt()
    address, copied = ttq._ttq._input_address(x)
    assert address == x.data_ptr() and not copied
    rows = x[3:7]
    assert ttq._ttq._input_address(rows) == (rows.data_ptr(), False)
    assert ttq._ttq._input_address(x.T.contiguous().T)[1]  # column-major: a copy
    assert ttq._ttq._input_address(x.to(torch.bfloat16))[1]


def test_ttqlinear_calibrates_on_the_prompt_and_serves_decode_steps():
    lin = linear()
    layer = ttq.torch.TTQLinear.from_linear(lin, bits=3, group=32, alpha=0.5)
    assert isinstance(layer.op, ttq.OnlineAWQ) and layer.op.tokens == 0
    x = prompt().unsqueeze(0)  # [batch, T, d_in]
    y = layer(x)
    assert y.shape == (1, 12, 48) and layer.op.tokens == 12
    d = layer.op.scales.clone()
    np.testing.assert_allclose(d.numpy(), ref.ttq_scales(x.numpy(), np.inf, 0.5), rtol=1e-6)
    expected = x.double() @ layer.op.effective_weight().double().T + lin.bias.detach().double()
    torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    step = prompt(t=1, seed=5).unsqueeze(0) * 40
    layer(step)  # a decode step: no recalibration
    torch.testing.assert_close(layer.op.scales, d, rtol=0, atol=0)
    ttq.torch.begin_prompt(nn.Sequential(layer))
    other = prompt(seed=9) * torch.linspace(0.1, 5, 128)
    layer(other)
    np.testing.assert_allclose(layer.op.scales.numpy(), ref.ttq_scales(other.numpy(), np.inf, 0.5), rtol=1e-6)
    layer.begin_prompt()
    layer.calibrate(x)  # an explicit calibration: the next forward does not calibrate again
    torch.testing.assert_close(layer.op.scales, d, rtol=1e-6, atol=0)
    layer(other)
    torch.testing.assert_close(layer.op.scales, d, rtol=1e-6, atol=0)


def test_ttqlinear_dtype_and_rtn():
    lin = linear()
    layer = ttq.torch.TTQLinear.from_linear(lin, bits=4, group=32, method="rtn")
    x = prompt().to(torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    qdq = torch.from_numpy(ref.qdq(lin.weight.detach().numpy(), 4, 32))
    expected = nn.functional.linear(x.float(), qdq, lin.bias.detach())
    torch.testing.assert_close(y.float(), expected.to(torch.bfloat16).float(), rtol=1e-2, atol=1e-2)
    assert "TTQLinear" in repr(layer) and "method='rtn'" in repr(layer)


def test_replace_linear_in_place():
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Sequential(nn.Linear(96, 64)), nn.Linear(64, 10))
    model.lm_head = nn.Linear(10, 10)
    replaced = ttq.torch.replace_linear(model, bits=4, group=32, skip=["3", "lm_head"])
    assert replaced is model
    assert isinstance(model[0], ttq.torch.TTQLinear) and isinstance(model[2][0], ttq.torch.TTQLinear)
    assert isinstance(model[3], nn.Linear) and isinstance(model.lm_head, nn.Linear)  # skipped
    assert len(list(ttq.torch.ttq_modules(model))) == 2
    with torch.no_grad():
        assert model(torch.randn(5, 64)).shape == (5, 10)


def test_static_awq_through_the_module():
    lin = linear()
    layer = ttq.torch.TTQLinear.from_linear(lin, bits=3, group=32, method="awq")
    model = nn.Sequential(layer)
    with pytest.raises(ttq.StateError):
        model(prompt())
    calib = prompt(seed=4)
    with ttq.torch.awq_calibration(model):
        y = model(calib)  # recorded, computed in fp32
    torch.testing.assert_close(y, lin(calib).detach(), rtol=1e-5, atol=1e-5)
    assert layer.op.frozen
    op = ttq.OnlineAWQ(lin.weight, lin.bias, bits=3, group=32, method="awq")
    op.calibrate(calib)
    torch.testing.assert_close(layer.op.scales, op.scales, rtol=0, atol=0)
    torch.testing.assert_close(model(prompt()), op.forward(prompt()), rtol=0, atol=0)
