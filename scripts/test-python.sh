#!/usr/bin/env bash
# The Python package's build and tests (docs/python.md): `pip install .` into a virtual
# environment under build/, then pytest on python/tests. The README's test command
# (scripts/test.sh) runs it last.
#
#   scripts/test-python.sh            numpy only: the torch tests skip
#   TTQ_PYTHON_TORCH=1 scripts/test-python.sh
#                                     also installs torch and gguf from PyPI (the Linux x86-64
#                                     torch wheel pulls ~5 GB of CUDA libraries: minutes) and runs
#                                     the torch tests and the torch example against ttq-ppl
#                                     (build/release/bin/ttq-ppl, or $TTQ_PPL; skipped if absent)
#
# PYTHON (default python3) is the interpreter the environment is made from; it needs the venv
# module and Python's headers (Debian: python3-venv, python3-dev; installed here if missing).
# The environment (build/python-venv) and the CMake build (build/python/<wheel tag>) are kept,
# so a second run only rebuilds what changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
venv="$root/build/python-venv"
start=$(date +%s)

has_venv_and_headers() {
  "$python" - <<'EOF'
import os, sys, sysconfig
try:
    import ensurepip, venv  # noqa: F401
except ImportError:
    sys.exit(1)
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
EOF
}
if ! command -v "$python" >/dev/null || ! has_venv_and_headers; then
  "$root/scripts/install-deps.sh" python3 python3-venv python3-dev
fi
"$root/scripts/install-deps.sh"  # the C++ build's own dependencies (Eigen, xsimd, cmake, g++)

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
echo "== pip install . (CMAKE_BUILD_PARALLEL_LEVEL=$CMAKE_BUILD_PARALLEL_LEVEL) =="
"$venv/bin/python" -m pip install --quiet "$root"
extras=(pytest)
if [ "${TTQ_PYTHON_TORCH:-0}" = "1" ]; then extras+=(torch gguf); fi
"$venv/bin/python" -m pip install --quiet "${extras[@]}"
echo "== installed in $(( $(date +%s) - start )) s: ttq $("$venv/bin/python" -c 'import ttq; print(ttq.__version__, "isa", ttq.isa())') =="

# From the repository root, `import ttq` is the installed package (the sources are in python/ttq).
cd "$root"
"$venv/bin/python" -m pytest -q python/tests
echo "== Python tests finished in $(( $(date +%s) - start )) s =="
