"""The end-to-end check that the binding is the same library: examples/python/torch_perplexity.py
(stories260K read with the gguf package into a PyTorch Llama, linear layers swapped for
TTQLinear) gives ttq-ppl's perplexity on the bundled TinyStories sample for fp32, RTN and TTQ at
3 bits, to 1e-3 relative. ttq-ppl's numbers come from running the C++ tool: $TTQ_PPL, else
build/release/bin/ttq-ppl; that comparison is skipped when neither exists (and everything here
without torch or gguf)."""

import importlib.util
import math
import os
import pathlib

import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ttq_ppl_binary():
    for c in (os.environ.get("TTQ_PPL"), ROOT / "build" / "release" / "bin" / "ttq-ppl"):
        if c and pathlib.Path(c).is_file() and os.access(c, os.X_OK):
            return pathlib.Path(c)
    return None


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("torch_perplexity", ROOT / "examples" / "python" / "torch_perplexity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torch_results(example):
    """(perplexity, predictions) of the torch model per method, each computed once."""
    cache = {}

    def get(method):
        if method not in cache:
            cache[method] = example.run(method, bits=3, group=32)
        return cache[method]

    return get


@pytest.mark.parametrize("method", ["fp32", "rtn", "ttq"])
def test_perplexity_equals_ttq_ppl(example, torch_results, method):
    binary = ttq_ppl_binary()
    if binary is None:
        pytest.skip("ttq-ppl not built (set TTQ_PPL or build build/release/bin/ttq-ppl)")
    ppl, count = torch_results(method)
    expected, expected_count = example.ttq_ppl(binary, method, bits=3, group=32)
    assert count == expected_count
    assert ppl == pytest.approx(expected, rel=1e-3)


def test_the_torch_model_scores_the_text(torch_results):
    """Without the C++ tool: the fp32 anchor of shared/data/SOURCES.md (mean NLL 1.2229 over
    14,721 predictions), and 3-bit RTN measurably worse than fp32, TTQ better than RTN."""
    fp32, count = torch_results("fp32")
    assert count == 14721 and math.log(fp32) == pytest.approx(1.2229, abs=1e-4)
    rtn, ttq_ppl = torch_results("rtn")[0], torch_results("ttq")[0]
    assert rtn > fp32 * 1.2
    assert fp32 < ttq_ppl < rtn
