"""The default width-scaling sweep on one GPU, all in, against its floor.

Runs `python run.py +sweep=width_scaling hydra/launcher=<launcher> hydra.launcher.n_jobs=k
device=<device>` into a temporary dir for each k of --n-jobs and reports its wall time (start-up,
θ₀, data, W&B offline, training, evaluations, correlations: everything) and

    floor = Σ_jobs FLOPs / FLOP/s of a float32 torch.mm on the device (TF32 off),

FLOPs of a job as in sweep_floor.py (network + twin steps and evaluation matmuls; every job
shares the one device, so the floor does not divide by k). On the GPU the floor is about a
second: the ratio says how far launches and fixed costs are from the arithmetic.

    python benchmarks/gpu_sweep.py                                   # cuda, launcher gpu, k = 4
    python benchmarks/gpu_sweep.py --n-jobs 1,2,4,8                   # which k fills the GPU
    python benchmarks/gpu_sweep.py --device cpu --widths 8,16 --seeds 0 --steps 20 --n-jobs 2   # smoke test
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as bench  # first: sets OMP_WAIT_POLICY before torch is imported
from sweep_floor import STEPS, WIDTHS, env, job_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--launcher", default="gpu", help="hydra/launcher choice (gpu, joblib, basic)")
    ap.add_argument("--n-jobs", default="4", help="comma list of hydra.launcher.n_jobs to time")
    ap.add_argument("--widths", default=None, help="comma list (default: the sweep's 8…4096)")
    ap.add_argument("--seeds", default=None, help="comma list (default: the sweep's 0,1,2)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", default=None, help="results name (default gpu_sweep_<device>)")
    args = ap.parse_args()
    device = bench.benchmark_device(args.device, "small --widths")
    meta = bench.env_info(device)
    bench.print_env(meta)
    mm = bench.matmul_gflops(8192 if device.type == "cuda" else 1024, device=device)["gflops"]
    widths = [int(w) for w in args.widths.split(",")] if args.widths else WIDTHS
    n_seeds = len(args.seeds.split(",")) if args.seeds else 3
    evals = math.ceil(args.steps / 25) + 1 if args.steps else 1
    flops = n_seeds * sum(job_flops(w, args.steps, evals) for w in widths)
    floor = flops / mm / 1e9
    grid = [f"width={args.widths}"] * bool(args.widths) + [f"seed={args.seeds}"] * bool(args.seeds)
    rows = []
    for k in (int(v) for v in args.n_jobs.split(",")):
        sweep_dir = Path(tempfile.mkdtemp(prefix="wcntk_gpu_sweep_")) / "sweep"
        launcher = [f"hydra/launcher={args.launcher}"]
        launcher += [f"hydra.launcher.n_jobs={k}"] if args.launcher != "basic" else []
        cmd = [sys.executable, "run.py", "+sweep=width_scaling", *launcher, *grid, f"steps={args.steps}",
               f"device={args.device}", f"hydra.sweep.dir={sweep_dir}", "progress=false"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=bench.ROOT, env=env(), capture_output=True, text=True,
                              timeout=4 * 3600)
        wall = time.perf_counter() - start
        ok = sum('"status": "ok"' in p.read_text() for p in sweep_dir.rglob("summary.json"))
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
        rows.append({"launcher": args.launcher, "n_jobs": k, "jobs": n_seeds * len(widths), "jobs ok": ok,
                     "wall (s)": wall, "floor (s)": floor, "wall ÷ floor": wall / floor})
    bench.print_table(rows, title=f"Width-scaling sweep on {device} ({args.steps} steps, {mm / 1e3:.1f} "
                                  f"TFLOP/s mm, TF32 off), all in")
    bench.write_results(args.out or f"gpu_sweep_{device.type}", rows, meta,
                        {"args": vars(args), "total GFLOP": flops / 1e9, "evals per job": evals})


if __name__ == "__main__":
    main()
