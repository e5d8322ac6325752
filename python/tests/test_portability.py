"""The installed module runs on older x86-64 CPUs under qemu-user: on an x86-64-v2 CPU (Nehalem:
no AVX) it loads and picks the scalar kernels; on a CPU without AVX2 (SandyBridge) it picks them
too, and on a Haswell CPU (AVX2, no AVX-512) the AVX2 ones, and both compute what this machine
computes. numpy 2.4's x86-64 wheels themselves stop with SIGILL on Nehalem, so the computing runs
start at SandyBridge and the Nehalem run does not touch numpy. Skipped off x86-64 or without
qemu-x86_64-static (Debian: qemu-user-static), and for a CPU that numpy does not run on."""

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

import ttq

QEMU = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")

SCRIPT = """
import json, numpy as np, ttq
rng = np.random.default_rng(0)
w = rng.standard_normal((64, 128)).astype(np.float32)
x = rng.standard_normal((5, 128)).astype(np.float32)
op = ttq.OnlineAWQ(w, bits=3, group=32)
y = op.prefill(x)
print(json.dumps({"isa": ttq.isa(), "codes": op.quantized.codes.tolist(), "y": y.tolist()}))
"""


def run(cpu=None):
    command = [sys.executable, "-c", SCRIPT]
    if cpu:
        if subprocess.run([QEMU, "-cpu", cpu, sys.executable, "-c", "import numpy"], capture_output=True, timeout=300).returncode:
            pytest.skip(f"numpy {np.__version__} does not run on a {cpu} CPU")
        command = [QEMU, "-cpu", cpu] + command
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or QEMU is None, reason="needs x86-64 and qemu-x86_64")
@pytest.mark.parametrize("cpu,isa", [("SandyBridge", "scalar"), ("Haswell", "avx2")])
def test_runs_on_an_older_cpu(cpu, isa):
    if isa not in ttq.compiled_isas():
        pytest.skip(f"{isa} not compiled in")
    here, there = run(), run(cpu)
    assert there["isa"] == isa
    assert there["codes"] == here["codes"]
    np.testing.assert_allclose(there["y"], here["y"], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or QEMU is None, reason="needs x86-64 and qemu-x86_64")
def test_loads_on_an_x86_64_v2_cpu():
    # No numpy here (see above): the module's one translation unit has baseline flags, so an AVX
    # instruction leaking into it, or into the ISA choice, would end this run with SIGILL.
    out = subprocess.run([QEMU, "-cpu", "Nehalem", sys.executable, "-c", "import ttq; print(ttq.isa())"], check=True,
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "scalar"
