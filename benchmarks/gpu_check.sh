#!/usr/bin/env bash
# One prepared GPU check: build the CUDA kernels, run the GPU tests, then the kernel and Table 4
# benchmarks at the headline setting. Every step gets what is left of one deadline
# (GPU_CHECK_BUDGET seconds, default 540), so the whole script fits one device call.
# GPU_CHECK_STEPS picks and orders the steps after the build (default "tests kernels table4";
# "kernels" is benchmarks/kernel_latency.py; "tune" adds the Triton tile sweep, benchmarks/tune_triton.py;
# "zoo" the Table 4 rows of the transformers, ZOO_MODELS, default timesformer swin3d_b mvit_v2_b; "quality" the
# toy recipes scored by the judges: robust toy variants trained on the GPU, the recipe screen and the time to
# quality with fast=True, see quality() below). GPU_CHECK_BUILD=0 skips the CUDA extension build (the Triton
# kernels and the eager paths need none).
# Everything lands in $OUT (default ./gpu-out): build.log (with the versions), tests.log,
# kernels.{log,json}, table4.{log,json,md}, tune.{log,json}. TABLE4_ROWS overrides the Table 4 rows.
#
# The GPU machine has torch, triton and timm but not pytorchvideo, av or fvcore: put their wheels
# in .whl/ first (on the CPU machine, in the repository root, venv active; 34 MB, git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl av yacs termcolor parameterized
#   pip wheel --no-deps -w .whl pytorchvideo==0.1.5 fvcore iopath        # sdists on PyPI
# and name .whl in the device run's carry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BUDGET=${GPU_CHECK_BUDGET:-540}
STEPS=${GPU_CHECK_STEPS:-tests kernels table4}
TABLE4_ROWS=${TABLE4_ROWS:-bare bare-fast official naive leaps-reference leaps-fused leaps-fused+bf16 leaps-fused+fp16 \
leaps-fused+cuda_graph leaps-fused+checkpoint leaps-fused+channels_last leaps-graph+bf16 leaps-graph+fp16 leaps-fast}

# seconds for the next step: at most $1, and never past the deadline (keeps 5 s for the copy-back)
slot() { local left=$((BUDGET - SECONDS - 5)); (( left < $1 )) && echo $((left > 1 ? left : 1)) || echo "$1"; }

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
# Run from the source tree without installing: kernels/ is the package leaps.kernels, and the
# benchmarks run as modules of the package benchmarks (python3 -m benchmarks.<name>).
[ -e leaps/kernels ] || ln -s ../kernels leaps/kernels
export PYTHONPATH=$PWD:${PYTHONPATH:-}

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; python3 -c "import sys, torch, triton; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"; } > "$OUT/build.log" 2>&1

# The CUDA extension, in place (strict: a build error is fatal and shows in build.log).
echo "== build (t=${SECONDS}s)"
[ "${GPU_CHECK_BUILD:-1}" = 0 ] && echo "skipped (GPU_CHECK_BUILD=0)" || \
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} LEAPS_BUILD_EXT=strict,cuda TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} \
    MAX_JOBS=${MAX_JOBS:-16} timeout "$(slot 150)" python3 setup.py build_ext --inplace >> "$OUT/build.log" 2>&1 \
    || echo "CUDA extension build failed: see build.log (the cuda backend is skipped)"
python3 -c "import torch, leaps; from leaps import _ext; print(torch.cuda.get_device_name(), 'ext', _ext.available(), 'cuda kernels', _ext.has_cuda())" 2>&1 | tee -a "$OUT/build.log"

tests() {
# GPU tests: fused backends on CUDA, CUDA graphs, fp16. No -x: every failure is worth seeing.
# The compiled CUDA kernels run last and apart: a fault there poisons the CUDA context of the
# process, and must not hide how the Triton kernels and the engine did.
echo "== tests (t=${SECONDS}s)"
PYTEST="python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short -rfE --durations=5"
timeout "$(slot 130)" $PYTEST -k "not cuda-cuda" tests/test_fused.py tests/test_engine.py tests/test_bench_kernels.py \
    tests/test_cli.py 2>&1 | tee "$OUT/tests.log"
timeout "$(slot 60)" $PYTEST tests/test_csrc.py "tests/test_fused.py" -k "cuda-cuda or csrc" 2>&1 | tee -a "$OUT/tests.log"
}

kernels() {
echo "== kernels (t=${SECONDS}s)"
timeout "$(slot 100)" python3 -m benchmarks.kernel_latency --batch 1 16 --iters 20 --warmup 5 --json "$OUT/kernels.json" 2>&1 \
    | tee "$OUT/kernels.log"
}

table4() {
echo "== table4 (t=${SECONDS}s)"
timeout "$(slot 400)" python3 -m benchmarks.table4 --models slow_r50 --geometries 8x224 --batch 1 16 --iters 10 --warmup 3 \
    --rows $TABLE4_ROWS --json "$OUT/table4.json" --markdown "$OUT/table4.md" 2>&1 | tee "$OUT/table4.log"
}

zoo() {
# The transformers leaps builds itself and Video Swin-B: Table 4's bare, bare-fast and fast rows at B = 1 and 16
# on their native inputs (random weights: latency does not depend on them), verifier x3d_s.
echo "== zoo (t=${SECONDS}s)"
timeout "$(slot 400)" python3 -m benchmarks.table4 --models ${ZOO_MODELS:-timesformer swin3d_b mvit_v2_b} --geometries 8x224 \
    --batch 1 16 --iters 5 --warmup 2 --rows bare bare-fast leaps-fast --json "$OUT/zoo.json" \
    --markdown "$OUT/zoo.md" 2>&1 | tee "$OUT/zoo.log"
}

quality() {
# Toy recipes scored by the independent judges (benchmarks/recipes.py), three groups of processes
# sharing the GPU (tiny networks: one process leaves it mostly idle):
# 1. robust variants of the toy networks (python -m leaps.toy.train --device cuda, one process each);
# 2. at the same time, the time to quality of the paper's recipe and of the demo's preset with fast=True,
#    one process per seed (QUALITY_TTQ_STEPS, QUALITY_SEEDS);
# 3. once the variants exist, the recipe screen (QUALITY_RECIPES, 200 steps, eager), one process per seed.
# Everything lands in $OUT/quality: *.json rows (written after every run), logs, variants/*.pt.
echo "== quality (t=${SECONDS}s)"
local Q="$OUT/quality" end=$((SECONDS + $(slot ${QUALITY_BUDGET:-420})))
mkdir -p "$Q/variants"
left() { local l=$((end - SECONDS)); echo $((l > 1 ? l : 1)); }
local seeds=${QUALITY_SEEDS:-0 1 2 3 4}
local train="python3 -m leaps.toy.train --device ${QUALITY_DEVICE:-cuda} --out $Q/variants --test-clips 500 \
    --train-clips ${QUALITY_TRAIN_CLIPS:-8000}"
local pids=()
while read -r net eps steps epochs warmup suffix; do     # PGD steps (1: FGSM), warm-up epochs of the radius
    [ -z "$net" ] && continue
    timeout "$(left)" $train --nets "$net" --adv-eps "$eps" --adv-steps "$steps" --epochs "$epochs" \
        --adv-warmup "$warmup" --name-suffix "$suffix" > "$Q/train_${net}${suffix}.log" 2>&1 &
    pids+=($!)
done <<< "${QUALITY_VARIANTS:-r3d 0.0627451 3 5 1 _e16
r3d 0.1254902 3 6 2 _e32
x3d 0.0313725 1 4 0.5 _e8
x3d 0.0627451 3 5 1 _e16
r2plus1d 0.0313725 1 4 0.5 _e8
r2plus1d 0.0627451 3 5 1 _e16}"
local bench="python3 -m benchmarks.recipes --device ${QUALITY_DEVICE:-cuda} --judges toy_judge_2d toy_judge_attn"
[ -n "${QUALITY_TTQ_STEPS-x}" ] && for seed in $seeds; do    # QUALITY_TTQ_STEPS="" skips the time to quality
    timeout "$(left)" $bench --fast --recipes paper demo --steps ${QUALITY_TTQ_STEPS:-50 100 200 400 800 2000} \
        --seeds "$seed" --json "$Q/ttq_seed$seed.json" > "$Q/ttq_seed$seed.log" 2>&1 &
done
wait "${pids[@]}"
tail -n 3 "$Q"/train_*.log
local variants=()
for f in "$Q"/variants/toy_*_robust_*.pt; do
    [ -e "$f" ] || continue
    local stem=${f##*/toy_}; stem=${stem%.pt}                     # r3d_robust_e16
    local net=${stem%%_robust_*}
    variants+=(--variant "${net}_${stem##*_robust_}=toy_${net}:$f")  # r3d_e16=toy_r3d:...
done
echo "variants: ${variants[*]}"
local recipes=${QUALITY_RECIPES:-'demo|model=r3d_e16|model=r3d_e32|model=x3d_e16|extra_models=["x3d_e8","r2plus1d_e8"]|model=r3d_e16;extra_models=["x3d_e16","r2plus1d_e16"]|model=r3d_e32;extra_models=["x3d_e16","r2plus1d_e16"]|extra_models=["r3d_e16"]'}
local list=(); IFS='|' read -r -a list <<< "$recipes"
for seed in $seeds; do
    timeout "$(left)" $bench "${variants[@]}" --recipes "${list[@]}" --steps ${QUALITY_STEPS:-200} --seeds "$seed" \
        --json "$Q/screen_seed$seed.json" > "$Q/screen_seed$seed.log" 2>&1 &
done
wait
tail -n 12 "$Q"/screen_seed*.log "$Q"/ttq_seed*.log
tar -czf "$OUT/quality.tgz" -C "$OUT" quality && rm -rf "$Q"   # one file: a device call returns at most 8
}

tune() {
echo "== tune (t=${SECONDS}s)"
timeout "$(slot 300)" python3 -m benchmarks.tune_triton --batch 1 16 --json "$OUT/tune.json" 2>&1 | tee "$OUT/tune.log"
}

for step in $STEPS; do "$step"; done
echo "== done (t=${SECONDS}s)"
