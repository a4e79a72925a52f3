"""Fixed cost per job and the default width-scaling sweep against its compute floor.

1. Cold start: `python run.py width=8 steps=0 wandb.mode=offline` as a subprocess (the whole
   cost of a tiny job in a fresh interpreter), and `python -c "import run"` (torch, Hydra, wcntk).
2. Warm worker: the same job through wcntk.run.job.run_job repeated in one process after a first
   (cold) one, as a joblib worker runs its second and later jobs; median of --repeats, with the
   phases of one warm job: config → library configs, W&B init + finish (offline), data load,
   Trainer set-up, run (evaluate + correlations at steps=0), the rest (CSV, summary).
3. Floor of the default sweep (widths 8…4096 × seeds 0-2, 1000 full-batch GD steps on 256 MNIST
   inputs, evaluation every 25 steps on 256 train + 256 test inputs, 2 joblib workers × 1 thread):
       floor = Σ_jobs FLOPs / (2 · FLOP/s of a 2048² torch.mm at 1 thread, two processes at once,
               as the sweep's two workers run; measured here, and with --sweep again after it:
               the floor takes the faster, as a shared host's speed drifts),
       FLOPs of a job = Θ₀ on the 256 training inputs (`_common.mlp_kernel_flops`: from width 128 on
                        twin_space=auto trains the twin in function space, wcntk.training.function_space)
                        + 1000 · (network step + Θ₀·vec(R), `net_step_flops`, `function_twin_step_flops`)
                        + 41 evaluations · (512 inputs · (network forward + 2 twin forwards)
                                            + θ_lin by one vjp on the training inputs, `twin_step_flops`)
   (widths ≤ 64, in parameter space: 1000 · `twin_step_flops` instead of Θ₀ and its products;
   correlations and set-up are not counted: the floor is the training arithmetic). The floor of
   the same sweep with the twin in parameter space (1000 · `twin_step_flops` instead of Θ₀ and
   its products) is printed beside it.
4. --sweep: runs `python run.py +sweep=width_scaling hydra/launcher=joblib` into a temporary dir and
   reports its wall time ÷ the floor, and the jobs' own wall times (summary.json's wall_time_s)
   summed over the 2 workers: sweep − that is start-up and scheduling, that ÷ floor the jobs.

    python benchmarks/sweep_floor.py [--repeats 5] [--sweep]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as bench  # first: sets OMP_WAIT_POLICY before torch is imported
import torch

from wcntk.core.implementations import mlp_function_space_misfit
from wcntk.core.layers import ModelConfig
from wcntk.run.capacity import builtin_sizes

WIDTHS = [2 ** k for k in range(3, 13)]
SEEDS, STEPS, N_TRAIN, N_EVAL, EVALS = 3, 1000, 256, 512, 41


def env() -> dict:
    e = dict(os.environ, WANDB_SILENT="true")
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(bench.ROOT), e.get("PYTHONPATH")) if p)
    return e


def wall(cmd: list[str], timeout: float = 7200) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=bench.ROOT, env=env(), check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - start


def compose(overrides: list[str]) -> dict:
    """The resolved config of `python run.py <overrides>` (run.py registers the schema)."""
    import importlib.util

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf
    spec = importlib.util.spec_from_file_location("wcntk_run", bench.ROOT / "run.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    with initialize_config_dir(config_dir=str(bench.ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_container(hydra_compose("config", overrides=overrides), resolve=True)


def warm_phases(cfg: dict, run_dir: Path) -> dict[str, float]:
    """One job the way run_job does it, phase by phase (in a process that already ran one)."""
    from wcntk.core.metric_registry import METRIC_NAMES
    from wcntk.run.config import library_configs
    from wcntk.run.tracking import RunRecorder
    from wcntk.training.data import load_dataset
    from wcntk.training.trainer import Trainer

    t, out = time.perf_counter(), {}

    def tick(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    model, data_cfg, opt, train = library_configs(cfg)
    tick("config")
    with RunRecorder(run_dir, METRIC_NAMES, cfg) as rec:
        w = cfg["wandb"]
        rec.start_wandb(w["mode"], project=w["project"], group=w["group"], tags=w["tags"], name="bench",
                        entity=w["entity"], init_timeout=w.get("init_timeout", 10.0))
        tick("W&B init")
        data = load_dataset(data_cfg, flatten=model.kind == "mlp", loss=train.loss, seed=train.seed)
        tick("data load")
        trainer = Trainer(model, data_cfg, opt, train, log=rec.log, data=data)
        tick("Trainer set-up")
        result = trainer.run()
        tick("run (evaluate + correlations)")
        rec.set_result(result.status, result.message, result.diverged_step)
    tick("W&B finish, summary")
    return out


MM_SCRIPT = ("import torch; torch.set_num_threads(1); import _common as b; "
             "print(b.matmul_gflops(repeats=9)['gflops'])")


def concurrent_mm_gflops(processes: int = 2) -> float:
    """Mean GFLOP/s of `processes` 1-thread 2048² torch.mm loops run at once (fresh processes)."""
    procs = [subprocess.Popen([sys.executable, "-c", MM_SCRIPT], cwd=Path(__file__).parent, env=env(),
                              stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return statistics.mean(float(p.communicate(timeout=600)[0].split()[-1]) for p in procs)


def twin_space(width: int) -> str:
    """Where twin_space=auto trains the twin of a default-sweep job (wcntk.core.implementations)."""
    n_params = builtin_sizes(ModelConfig(width=width), (784,), 10)[0]
    return "parameter" if mlp_function_space_misfit(n_params, N_TRAIN, 10) else "function"


def job_flops(width: int, space: str = "auto", steps: int = STEPS, evals: int = EVALS) -> float:
    """FLOPs of one default-sweep job at `width` (the docstring's item 3) with its twin in `space`."""
    space = twin_space(width) if space == "auto" else space
    dims = [(784, width), (width, 10)]
    mac = sum(i * o for i, o in dims)
    evaluations = evals * N_EVAL * 2.0 * mac * 3
    if space == "parameter":
        twin = bench.twin_step_flops(N_TRAIN, dims)
        return steps * (bench.net_step_flops(N_TRAIN, dims) + twin) + evaluations
    # function space: Θ₀ once, a matrix-vector product per step, θ_lin (one vjp: a twin step) per evaluation
    return (bench.mlp_kernel_flops(N_TRAIN, dims)
            + steps * (bench.net_step_flops(N_TRAIN, dims) + bench.function_twin_step_flops(N_TRAIN, dims))
            + evaluations + evals * bench.twin_step_flops(N_TRAIN, dims))


def sweep_floor_s(gflops: float, space: str = "auto") -> tuple[float, list[dict]]:
    rows, total = [], 0.0
    for width in WIDTHS:
        flops = job_flops(width, space)
        rows.append({"width": width, "twin_space": twin_space(width) if space == "auto" else space,
                     "job GFLOP": flops / 1e9, "job floor (s)": flops / gflops / 1e9,
                     "parameter-space job GFLOP": job_flops(width, "parameter") / 1e9})
        total += SEEDS * flops / gflops / 1e9
    return total / 2, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    meta = bench.env_info()
    bench.print_env(meta)
    tmp = Path(tempfile.mkdtemp(prefix="wcntk_sweep_floor_"))
    job = ["width=8", "steps=0", "wandb.mode=offline", "progress=false"]
    cold = {"python -c 'import run' (s)": wall([sys.executable, "-c", "import run"]),
            "python run.py width=8 steps=0 (s)": wall([sys.executable, "run.py", *job,
                                                        f"hydra.run.dir={tmp / 'cold'}"])}
    bench.print_table([cold], title="Cold start (fresh interpreter)")

    from wcntk.run.job import run_job
    cfg = compose(job)
    run_job(cfg, tmp / "first")                    # the worker's first (cold) job
    warm = []
    for i in range(args.repeats):
        start = time.perf_counter()
        run_job(cfg, tmp / f"warm{i}")
        warm.append(time.perf_counter() - start)
    phases = [warm_phases(cfg, tmp / f"phases{i}") for i in range(3)]
    phase_rows = [{"phase": k, "s": statistics.median(p[k] for p in phases)} for k in phases[0]]
    warm_row = {"warm run_job width=8 steps=0 (s, median)": statistics.median(warm),
                "min (s)": min(warm), "max (s)": max(warm)}
    bench.print_table([warm_row], title="Fixed cost per job in a warm worker (W&B offline)")
    bench.print_table(phase_rows, title="Phases of one warm job")

    mm_alone, mm = bench.matmul_gflops()["gflops"], concurrent_mm_gflops()
    summary = {"mm GFLOP/s (1 thread, alone)": mm_alone, "mm GFLOP/s (1 thread, 2 at once)": mm}
    if args.sweep:
        sweep_dir = tmp / "sweep"
        summary["sweep wall (s)"] = wall([sys.executable, "run.py", "+sweep=width_scaling",
                                          "hydra/launcher=joblib", f"hydra.sweep.dir={sweep_dir}",
                                          "progress=false"], timeout=4 * 3600)
        summary["mm GFLOP/s after (2 at once)"] = after = concurrent_mm_gflops()
        mm = max(mm, after)
        records = [json.loads(p.read_text()) for p in sweep_dir.rglob("summary.json")]
        summary["jobs ok"] = sum(r["status"] == "ok" for r in records)
        summary["jobs' wall ÷ 2 (s)"] = sum(r["wall_time_s"] for r in records) / 2
    floor, floor_rows = sweep_floor_s(mm)
    bench.print_table(floor_rows, title=f"Default sweep floor per job at {mm:.0f} GFLOP/s (1 thread)")
    summary["sweep floor (s)"] = floor
    summary["parameter-space twin's floor (s)"] = sweep_floor_s(mm, "parameter")[0]
    if args.sweep:
        summary["sweep ÷ floor"] = summary["sweep wall (s)"] / floor
        summary["jobs ÷ floor"] = summary["jobs' wall ÷ 2 (s)"] / floor
    meta["loadavg_1m_end"] = os.getloadavg()[0]
    bench.print_table([summary], title="Default width-scaling sweep vs its floor (2 workers × 1 thread)")
    bench.write_results("sweep_floor", [summary], meta,
                        {"cold": cold, "warm": warm_row, "warm_phases": phase_rows, "floor": floor_rows})


if __name__ == "__main__":
    main()
