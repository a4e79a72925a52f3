"""Wall time of `python run.py` (defaults) and where the time of one run goes.

1. `python run.py progress=false hydra.run.dir=<tmp>` as a subprocess (all other settings the
   defaults: mnist 256/256, width 1024, depth 1, relu, ntk, GD lr 1, 1000 steps, evaluation
   every 25 steps, correlations at 0 and 1000, W&B offline), once per thread setting
   (--threads default,1: torch's default, and OMP_NUM_THREADS=MKL_NUM_THREADS=1).
   Also the bare start-up costs: `python -c pass`, `import torch`, `import run` (torch, Hydra,
   wcntk; W&B is imported lazily by the run itself).
2. The same run in a fresh process (this script as a child, same thread setting), the way
   wcntk.run.job.run_job does it, timed phase by phase:
   config composition (Hydra compose API), data load, model build, Trainer set-up (model
   build + the two linearize traces), W&B init, the 1000 training steps, the evaluate() calls,
   the correlations() calls, logging (CSV + W&B log), W&B finish + summary.
   process start-up and exit = subprocess wall − in-process total.
3. --estimate-sweep: the default width-scaling sweep (widths 8…4096, seeds 0-2, 1000 steps)
   predicted from per-width phase costs measured here at 1 thread (what run.py gives each of
   the joblib launcher's 2 workers on 2 cores). joblib reuses its worker processes, so
       sweep ≈ (3·Σ_width job(width) + workers·cold) / workers,
       job(width) = Trainer set-up + 1000·step + 41·evaluate + 2·correlations + warm W&B init/finish,
       cold = `python run.py` wall at 1 thread − job(1024)   (interpreter, imports, first W&B
              init, MNIST parse: paid once per worker).
4. --sweep: the real thing, `python run.py +sweep=width_scaling hydra/launcher=joblib` into a
   fresh temporary sweep dir (skipped with a message if the sweep config does not exist).

5. --fixed-cost (issue 31): a tiny job's cost beyond the imports every job needs, in fresh
   interpreters, --rounds interleaved: `python -c "import torch, hydra, wandb"` against
   `python run.py width=8 steps=0` (W&B offline, and W&B disabled), and the first-use imports
   that make up the difference, each timed in a fresh process after `import torch, hydra, wandb`:
   torch._dynamo (torch.optim's optimizers and torch.func's vmap import it on first use),
   forward-mode AD's decompositions (the first jvp), W&B's launch-inputs module (every wandb.init
   imports it), and what the bundled-data cache saves (scikit-learn's and pandas' imports).

    python benchmarks/end_to_end.py [--threads default,1] [--estimate-sweep] [--sweep] [--fixed-cost]
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, env_info, print_env, print_table, write_results

import torch

SWEEP_WIDTHS = [2 ** k for k in range(3, 13)]


def thread_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("WANDB_SILENT", "true")
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def timed_subprocess(cmd: list[str], threads: int | None, timeout: float = 7200) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=thread_env(threads), capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "rc": proc.returncode}


def startup_costs(threads: int | None, repeats: int) -> dict[str, float]:
    py = sys.executable
    out = {}
    for name, code in (("python", "pass"), ("import_torch", "import torch"),
                       ("import_run", "import sys; sys.argv=['run.py']; import run")):
        walls = [timed_subprocess([py, "-c", code], threads)["wall_s"] for _ in range(repeats)]
        out[f"{name}_s"] = statistics.median(walls)
    return out


def compose_default(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import run  # noqa: F401  (registers the schema and the bookkeeping keys in Hydra's ConfigStore)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def in_process_breakdown(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """run_job, phase by phase, with the Trainer's loop written out so every call is timed."""
    T: dict[str, float] = {}
    clock = time.perf_counter
    t0 = clock()
    from wcntk.core.metric_registry import METRIC_NAMES
    from wcntk.core.models import build_model
    from wcntk.core.status import Status
    from wcntk.run.config import library_configs
    from wcntk.run.tracking import RunRecorder
    from wcntk.training.data import load_dataset
    from wcntk.training.trainer import PRECISIONS, Trainer, resolve_device
    T["imports_s"] = clock() - t0

    t = clock()
    cfg = compose_default(overrides)
    model_cfg, data_cfg, opt_cfg, train_cfg = library_configs(cfg)
    T["compose_s"] = clock() - t

    recorder = RunRecorder(run_dir, METRIC_NAMES, cfg)
    recorder.__enter__()
    t = clock()
    w = cfg["wandb"]
    recorder.start_wandb(w["mode"], project=w["project"], group=w["group"], tags=w["tags"],
                         name="bench-e2e", entity=w["entity"])
    T["wandb_init_s"] = clock() - t

    device, dtype = resolve_device(train_cfg.device), PRECISIONS[train_cfg.precision]
    t = clock()
    data = load_dataset(data_cfg, flatten=True, loss=train_cfg.loss, seed=train_cfg.seed, dtype=dtype,
                        device=device)
    T["data_load_s"] = clock() - t
    t = clock()
    build_model(model_cfg, data.input_shape, data.n_classes, seed=train_cfg.seed, dtype=dtype, device=device)
    T["model_build_s"] = clock() - t

    log_s = [0.0]

    def log(step, metrics):
        t = clock()
        recorder.log(step, metrics)
        log_s[0] += clock() - t

    t = clock()
    trainer = Trainer(model_cfg, data_cfg, opt_cfg, train_cfg, log=log, data=data)
    T["trainer_setup_s"] = clock() - t        # model build + linearize(train) + linearize(test)
    recorder.set_facts(trainer.facts())

    steps = train_cfg.steps
    n_step = n_eval = n_corr = 0
    step_s = eval_s = corr_s = sync_s = 0.0
    loop_start = clock()
    for s in range(steps + 1):
        if trainer.is_log_step(s):
            t = clock()
            row = trainer.evaluate()
            eval_s += clock() - t
            n_eval += 1
            if trainer.is_corr_step(s):
                t = clock()
                row.update(trainer.correlations())
                corr_s += clock() - t
                n_corr += 1
            t = clock()
            values = {k: float(v) for k, v in row.items()}
            sync_s += clock() - t
            trainer.log(s, values)
        if s < steps:
            t = clock()
            trainer.step()
            step_s += clock() - t
            n_step += 1
    loop_s = clock() - loop_start
    t = clock()
    recorder.set_result(Status.OK, None, None)
    recorder.__exit__(None, None, None)       # summary.json + wandb finish
    T["finish_s"] = clock() - t
    T.update(steps_s=step_s, n_steps=n_step, evaluate_s=eval_s, n_evaluate=n_eval,
             correlations_s=corr_s, n_correlations=n_corr, log_s=log_s[0], to_float_s=sync_s,
             loop_other_s=loop_s - step_s - eval_s - corr_s - log_s[0] - sync_s,
             step_ms=1e3 * step_s / max(n_step, 1), evaluate_ms=1e3 * eval_s / max(n_eval, 1),
             correlations_ms=1e3 * corr_s / max(n_corr, 1))
    T["in_process_total_s"] = sum(T[k] for k in ("imports_s", "compose_s", "wandb_init_s", "data_load_s",
                                                 "model_build_s", "trainer_setup_s", "finish_s")) + loop_s
    return T


def child_breakdown(threads: int | None, overrides: list[str], run_dir: Path) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--child-dir", str(run_dir),
           "--child-overrides", json.dumps(["progress=false", *overrides])]
    proc = subprocess.run(cmd, cwd=ROOT, env=thread_env(threads), capture_output=True, text=True,
                          timeout=7200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BREAKDOWN ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"breakdown child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("BREAKDOWN "):])


def warm_wandb_cost(tmp: Path) -> float:
    """Seconds of one offline W&B init + finish once wandb is imported (a reused joblib worker)."""
    from wcntk.run.record import Record
    from wcntk.run.tracking import WandbLog
    costs = []
    for i in range(2):
        (tmp / f"warm{i}").mkdir()
        t = time.perf_counter()
        w = WandbLog(mode="offline", project="wcntk", group=None, tags=[], name=f"bench-warm-{i}",
                     config={}, run_dir=tmp / f"warm{i}")
        w.finish(Record(status="ok"), exit_code=0)
        costs.append(time.perf_counter() - t)
    return costs[-1]


def phase_costs(width: int, steps: int = 20) -> dict[str, float]:
    """Per-width costs of one default run's phases (current thread setting)."""
    from wcntk.core.layers import ModelConfig
    from wcntk.training.data import DataConfig
    from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer
    t = time.perf_counter()
    tr = Trainer(ModelConfig(width=width), DataConfig(), OptimizerConfig(),
                 TrainConfig(steps=1000, device="cpu", progress=False))
    setup = time.perf_counter() - t
    tr.step()
    t = time.perf_counter()
    for _ in range(steps):
        tr.step()
    step = (time.perf_counter() - t) / steps
    tr.evaluate()
    t = time.perf_counter()
    for _ in range(3):
        tr.evaluate()
    ev = (time.perf_counter() - t) / 3
    t = time.perf_counter()
    tr.correlations()
    corr = time.perf_counter() - t
    n_eval = sum(tr.is_log_step(s) for s in range(1001))
    n_corr = sum(tr.is_corr_step(s) for s in range(1001))
    return {"width": width, "setup_s": setup, "step_ms": step * 1e3, "evaluate_ms": ev * 1e3,
            "correlations_s": corr, "n_evaluate": n_eval, "n_correlations": n_corr,
            "predicted_run_s": setup + 1000 * step + n_eval * ev + n_corr * corr}


FIRST_USE = {  # what a tiny job imports beyond `import torch, hydra, wandb`, and who asks for it
    "torch._dynamo": "torch.optim (Optimizer.add_param_group) and torch.func.vmap, on first use",
    "torch._decomp.decompositions_for_jvp": "the first forward-mode jvp (make_dual)",
    "wandb.sdk.launch.inputs.internal": "every wandb.init (Run._detect_and_apply_job_inputs)",
    "sklearn.datasets": "digits without the bundled-data cache (load_digits)",
    "pandas": "bundled MNIST without the cache (read_csv)",
}


def fixed_cost(rounds: int, tmp: Path) -> None:
    """--fixed-cost: see the module docstring, item 5."""
    job = [sys.executable, "run.py", "width=8", "steps=0", "progress=false"]
    cases = {"imports": [sys.executable, "-c", "import torch, hydra, wandb"],
             "job_offline": [*job, "wandb.mode=offline"], "job_disabled": [*job, "wandb.mode=disabled"]}
    walls: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(rounds):
        for name, cmd in cases.items():
            extra = [f"hydra.run.dir={tmp / f'{name}{i}'}"] if name != "imports" else []
            walls[name].append(timed_subprocess([*cmd, *extra], 1)["wall_s"])
    med = {name: statistics.median(w) for name, w in walls.items()}
    print_table([{"command": name, "median_s": med[name], "min_s": min(walls[name]),
                  "beyond_imports_s": med[name] - med["imports"]} for name in cases],
                title=f"A tiny job (width=8 steps=0, 1 thread) vs the imports, {rounds} rounds interleaved")
    rows = []
    for module, why in FIRST_USE.items():
        code = (f"import time, torch, hydra, wandb; t = time.perf_counter(); import {module}; "
                f"print(time.perf_counter() - t)")
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=thread_env(1), capture_output=True,
                              text=True, timeout=600)
        rows.append({"module": module, "first_import_s": float(proc.stdout.split()[-1]), "imported by": why})
    print_table(rows, title="First-use imports after `import torch, hydra, wandb` (fresh process each)")
    write_results("end_to_end_fixed_cost", [*({"command": k, "median_s": v} for k, v in med.items()), *rows],
                  env_info(), {"rounds": rounds, "walls_s": walls})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="default,1", help="comma list: 'default' and/or integers")
    ap.add_argument("--steps", type=int, default=None, help="override steps (default: the run default)")
    ap.add_argument("--startup-repeats", type=int, default=3)
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    ap.add_argument("--estimate-sweep", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="run the real default width-scaling sweep")
    ap.add_argument("--sweep-threads", type=int, default=None,
                    help="OMP/MKL threads per sweep job (default: unset, joblib/torch decide)")
    ap.add_argument("--fixed-cost", action="store_true", help="only item 5 of the docstring")
    ap.add_argument("--rounds", type=int, default=3, help="--fixed-cost: interleaved rounds")
    ap.add_argument("--out", default="end_to_end")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-overrides", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        T = in_process_breakdown(json.loads(args.child_overrides), Path(args.child_dir))
        print("BREAKDOWN " + json.dumps(T), flush=True)
        return
    if args.fixed_cost:
        tmp = Path(tempfile.mkdtemp(prefix="wcntk_fixed_"))
        try:
            fixed_cost(args.rounds, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    thread_settings = [None if t == "default" else int(t) for t in args.threads.split(",")]
    default_threads = torch.get_num_threads()
    info = env_info()
    print_env(info)
    extra_overrides = [f"steps={args.steps}"] if args.steps is not None else []

    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="wcntk_e2e_"))
    try:
        for threads in thread_settings:
            label = threads or default_threads
            row: dict = {"threads": label}
            row.update(startup_costs(threads, args.startup_repeats))
            run_dir = tmp / f"run_t{label}"
            cmd = [sys.executable, "run.py", "progress=false", f"hydra.run.dir={run_dir}", *extra_overrides]
            r = timed_subprocess(cmd, threads)
            row["run_py_wall_s"], row["rc"] = r["wall_s"], r["rc"]
            print(f"[{label} thread(s)] python run.py: {r['wall_s']:.1f} s (rc {r['rc']})", flush=True)
            if args.breakdown:            # in a fresh process, so first-call costs are paid as in run.py
                T = child_breakdown(threads, extra_overrides, tmp / f"inproc_t{label}")
                row.update(T)
                row["startup_exit_s"] = row["run_py_wall_s"] - T["in_process_total_s"]
            rows.append(row)

        print_table(rows, ["threads", "run_py_wall_s", "python_s", "import_torch_s", "import_run_s"],
                    title="python run.py (defaults, progress=false) and bare start-up, wall seconds")
        if args.breakdown:
            phases = ["startup_exit_s", "imports_s", "compose_s", "wandb_init_s", "data_load_s",
                      "model_build_s",
                      "trainer_setup_s", "steps_s", "evaluate_s", "correlations_s", "log_s", "to_float_s",
                      "loop_other_s", "finish_s"]
            table = []
            for p in phases:
                entry = {"phase": p.removesuffix("_s")}
                for r in rows:
                    entry[f"{r['threads']}t_s"] = r[p]
                    entry[f"{r['threads']}t_%"] = 100 * r[p] / r["run_py_wall_s"]
                table.append(entry)
            table.append({"phase": "TOTAL (run.py wall)",
                          **{f"{r['threads']}t_s": r["run_py_wall_s"] for r in rows}})
            print_table(table, title="Where one default run's time goes (in-process phases; start-up/exit = "
                                     "subprocess wall − in-process total)")
            print_table([{"threads": r["threads"], "n_steps": r["n_steps"], "step_ms": r["step_ms"],
                          "n_evaluate": r["n_evaluate"], "evaluate_ms": r["evaluate_ms"],
                          "n_correlations": r["n_correlations"], "correlations_ms": r["correlations_ms"]}
                         for r in rows], title="Per call")

        est_rows: list[dict] = []
        if args.estimate_sweep:
            # joblib (loky) reuses its 2 worker processes for all 30 jobs, 1 thread each: the cold
            # costs (interpreter, imports, first W&B init, MNIST parse) are paid once per worker, every
            # job pays its warm costs. cold = run.py wall at 1 thread − the warm default (1024) job.
            torch.set_num_threads(1)
            wandb_warm = warm_wandb_cost(tmp)
            phase_costs(SWEEP_WIDTHS[0], steps=1)     # warm-up: the MNIST parse is a per-worker cost
            for width in SWEEP_WIDTHS:
                est = phase_costs(width)
                est["wandb_warm_s"] = wandb_warm
                est["predicted_run_s"] += wandb_warm
                est_rows.append(est)
                print(f"width {width}: predicted warm job {est['predicted_run_s']:.1f} s", flush=True)
            torch.set_num_threads(default_threads)
            run1 = next((r["run_py_wall_s"] for r in rows if r["threads"] == 1), None)
            if args.steps is not None:      # run.py ran a shorter run: its wall says nothing of cold costs
                run1 = None
            warm1024 = next(r["predicted_run_s"] for r in est_rows if r["width"] == 1024)
            cold = max(0.0, run1 - warm1024) if run1 is not None else 7.0
            workers = 2
            total = 3 * sum(r["predicted_run_s"] for r in est_rows)
            predicted = (total + workers * cold) / workers
            print_table(est_rows,
                        title="Default width-scaling sweep: predicted warm job time per width at 1 thread")
            print(f"predicted sweep: {total/60:.1f} min of warm job time + {cold:.1f} s cold start "
                  f"per worker; "
                  f"with {workers} joblib workers ≈ {predicted/60:.1f} min (target ≤ 15 min; assumes "
                  f"{workers} otherwise idle cores)")
            info.update(sweep_estimate_min=predicted / 60, sweep_cold_per_worker_s=cold,
                        sweep_warm_job_total_s=total)

        sweep_row = None
        if args.sweep:
            if not (ROOT / "conf" / "sweep" / "width_scaling.yaml").exists():
                print("--sweep: conf/sweep/width_scaling.yaml not found; skipping the sweep")
            else:
                sweep_dir = tmp / "sweep"
                cmd = [sys.executable, "run.py", "+sweep=width_scaling", "hydra/launcher=joblib",
                       f"hydra.sweep.dir={sweep_dir}", "progress=false", *extra_overrides]
                print("running:", " ".join(cmd), flush=True)
                r = timed_subprocess(cmd, args.sweep_threads, timeout=4 * 3600)
                n_ok = sum(1 for p in sweep_dir.rglob("summary.json") if '"status": "ok"' in p.read_text())
                sweep_row = {"sweep_wall_s": r["wall_s"], "sweep_wall_min": r["wall_s"] / 60, "rc": r["rc"],
                             "jobs_ok": n_ok,
                             "threads_per_job": args.sweep_threads or "run.py default (cores // n_jobs)"}
                print_table([sweep_row], title="Default width-scaling sweep, joblib launcher")
                print(f"target sweep <= 15 min: {r['wall_s']/60:.1f} min -> "
                      f"{'MET' if r['wall_s'] <= 900 else 'MISSED'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(args.out, rows, info, {"sweep_estimate": est_rows, "sweep": sweep_row, "args": vars(args)})


if __name__ == "__main__":
    main()
