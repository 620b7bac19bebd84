#!/usr/bin/env bash
# One prepared GPU check (about 8 minutes on an H100): build the CUDA kernels, run the GPU tests,
# then the kernel and Table 4 benchmarks at the headline setting. Everything lands in $OUT
# (default ./gpu-out): build.log, tests.log, kernels.{log,json}, table4.{log,json,md}.
#
# The GPU machine has torch, triton and timm but not pytorchvideo, av or fvcore: put their wheels
# in .whl/ first (on the CPU machine, in the repository root, venv active; 34 MB, git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl av yacs portalocker termcolor tabulate parameterized
#   pip wheel --no-deps -w .whl pytorchvideo==0.1.5 fvcore iopath        # sdists on PyPI
# and name .whl in the device run's carry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi

# The CUDA extension, in place (strict: a build error is fatal and shows in build.log).
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} LEAPS_BUILD_EXT=strict,cuda TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} \
    MAX_JOBS=${MAX_JOBS:-16} python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
    || echo "CUDA extension build failed: see build.log (the cuda backend is skipped)"
export PYTHONPATH=$PWD:${PYTHONPATH:-}
python3 -c "import torch, leaps; from leaps import _ext; print(torch.__version__, torch.cuda.get_device_name(), 'ext', _ext.available(), 'cuda kernels', _ext.has_cuda())"

# GPU tests first (fused backends on CUDA, CUDA graphs, fp16), then the whole suite's fused parts.
timeout 240 python3 -m pytest -q -x -m gpu -p no:cacheprovider tests/test_fused.py tests/test_engine.py \
    tests/test_csrc.py tests/test_bench_kernels.py 2>&1 | tee "$OUT/tests.log"

timeout 120 python3 benchmarks/kernels.py --batch 1 16 --iters 20 --warmup 5 --json "$OUT/kernels.json" 2>&1 | tee "$OUT/kernels.log"

timeout 300 python3 benchmarks/table4.py --models slow_r50 --geometries 8x224 --batch 1 16 --iters 10 --warmup 3 \
    --rows bare official naive leaps-reference leaps-fused leaps-fused+bf16 leaps-fused+cuda_graph \
           leaps-fused+checkpoint leaps-fused+channels_last leaps-fast \
    --json "$OUT/table4.json" --markdown "$OUT/table4.md" 2>&1 | tee "$OUT/table4.log"
