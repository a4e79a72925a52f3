#!/usr/bin/env bash
# Everything owed on one GPU, in one go (issue 17's table), each step under its own time limit:
#   1. correctness: θ₀ bit-identical to the CPU's, CUDA vs CPU float64, graph vs eager, TF32 off;
#   2. step, evaluate() and build_model per width (depth 1: 64, 1024, 4096, 16384; 4096 × 3),
#      graph-replayed, with a profile of one step at 1024;
#   3. benchmarks/gpu.py all in (16384 × 3, 1000 steps) and the CNN case;
#   4. the default width sweep on the GPU launcher for k = 1, 4, 8 jobs, against its floor;
#   5. build_model 16384 × 3 against the old sequential draw.
# Results: stdout and benchmarks/results/*.json (copy $RESULTS elsewhere to keep them).
#
#   bash benchmarks/device_check.sh              # on the GPU machine (about 8 minutes)
#   bash benchmarks/device_check.sh gpu 1        # steps 1-2 only; `gpu 2`: steps 3-5 (two calls
#                                                # under a 10-minute limit per command)
#   bash benchmarks/device_check.sh --tiny       # the script's own test on the CPU (about 2 minutes)
set -u
cd "$(dirname "$0")/.."
PART=${2:-all}
if [ "${1:-}" = "--tiny" ]; then
  DEV=cpu; CASES="64x1 128x1"; PROFILE="--width 64 --depth 1 --steps 10"; ALLIN="--width 64 --steps 20"
  CNN="--model cnn --width 8 --depth 1 --steps 5"; SWEEP="--widths 8,16 --seeds 0 --steps 20 --n-jobs 1,2"
  INIT="--cases 1024x1"; STEPS=20
else
  DEV=cuda; CASES="64x1 1024x1 4096x1 16384x1 4096x3"; PROFILE="--width 1024 --depth 1 --steps 100"
  ALLIN=""; CNN="--model cnn --width 256 --depth 3 --steps 200"; SWEEP="--n-jobs 1,4,8"
  INIT="--cases 4096x3,16384x3"; STEPS=200
fi
status=0
step() {  # step <seconds> <command...>: run it, note a failure or a timeout, go on
  local limit=$1; shift
  echo "=== $* (limit ${limit}s)"
  timeout "$limit" "$@" || { echo "=== FAILED ($?): $*"; status=1; }
}
if [ "$PART" != 2 ]; then
  step 120 python benchmarks/device_correctness.py --device "$DEV"
  for c in $CASES; do
    step 90 python benchmarks/gpu.py --device "$DEV" --width "${c%x*}" --depth "${c#*x}" --steps "$STEPS" \
      --out "gpu_${DEV}_${c}"
  done
  step 60 python benchmarks/gpu.py --device "$DEV" $PROFILE --profile --out "gpu_${DEV}_profile"
fi
if [ "$PART" != 1 ]; then
  step 120 python benchmarks/gpu.py --device "$DEV" $ALLIN --out "gpu_${DEV}_allin"
  step 60 python benchmarks/gpu.py --device "$DEV" $CNN --out "gpu_${DEV}_cnn"
  step 240 python benchmarks/gpu_sweep.py --device "$DEV" $SWEEP
  step 90 python benchmarks/init.py --device "$DEV" $INIT --repeats 2
fi
echo "=== device_check: $([ $status = 0 ] && echo all steps ran || echo some steps failed)"
exit $status
