"""What checkpoints cost a run (issue 22's target: write + fsync ≤ 2 % of a default run's time at the
default `checkpoint_every`; a resume adds one checkpoint load).

For each case (default: the default run of conf/config.yaml, mnist 256/256, width 1024, depth 1,
GD, 1000 steps; `--cases 4096x3:adam` adds others) in one process:

1. the run itself, `Trainer.run()` with its steps (`--steps`, default the config's), with the
   Checkpointer's boundary hook at the default `checkpoint_every` (what a recorded run does):
   its wall time, and how many checkpoints it wrote;
2. one checkpoint write (Trainer.state_dict + torch.save + SHA-256 + write + fsync + rename),
   median of `--repeats`, into a temporary dir on the file system of `--dir` (default: /tmp);
3. one checkpoint load (read + checksum + torch.load + Trainer.load_state_dict), median;
4. the hook's cost at a boundary when no checkpoint is due (per step).

Printed per case: the share of the run's time spent writing checkpoints at the default interval
(n written × write ÷ run), the steady-state bound write ÷ interval (what a run longer than the
interval pays: timed intervals also wait 49 × the last write, so ≤ 2 % by construction), and
write ÷ run (the cost of the one checkpoint a signal makes).

    python benchmarks/checkpoint.py [--steps N] [--cases default,4096x3:adam] [--repeats 5] [--dir DIR]
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import env_info, print_env, print_table, write_results

import torch  # noqa: F401

from wcntk.core.metric_registry import METRIC_NAMES
from wcntk.run.checkpoint import Checkpointer, checkpoint_interval, read_checkpoint, write_checkpoint
from wcntk.run.config import RunConfig, run_config
from wcntk.run.tracking import RunRecorder
from wcntk.training.trainer import Trainer


def case_config(case: str, steps: int | None) -> RunConfig:
    changes: dict = {"device": "cpu", "progress": False, "wandb": {"mode": "disabled"}}
    if case != "default":
        shape, _, opt = case.partition(":")
        width, _, depth = shape.partition("x")
        changes |= {"width": int(width), "depth": int(depth or 1)}
        if opt:
            changes["optimizer"] = {"name": opt, "lr": 0.001}
    if steps is not None:
        changes["steps"] = steps
    run = run_config(changes)
    run.validate()
    return run


def measure_case(case: str, steps: int | None, repeats: int, where: Path) -> dict:
    run = case_config(case, steps)
    record = run.recorded()
    model, data, opt, train = run.library_configs()
    run_dir = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=where))
    with RunRecorder(run_dir, METRIC_NAMES, record) as recorder:
        trainer = Trainer(model, data, opt, train, log=recorder.log, validated=True)
        saver = Checkpointer(run_dir, record, trainer, recorder, run.checkpoint_every)
        start = time.perf_counter()
        trainer.run(boundary=saver.boundary)
        run_s = time.perf_counter() - start
        recorder.set_result("ok", None, None)

        header = {"step": train.steps, "config": record, "recorder": recorder.recorder_state(),
                  "wandb_run_id": None}
        writes, loads = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            path = write_checkpoint(run_dir, header, trainer.state_dict(train.steps))
            writes.append(time.perf_counter() - t0)
            fresh = Trainer(model, data, opt, train, data=trainer.data, validated=True)
            t0 = time.perf_counter()
            fresh.load_state_dict(read_checkpoint(path).state)
            loads.append(time.perf_counter() - t0)
        size = path.stat().st_size

        saver.interval, saver.last_time = checkpoint_interval(run.checkpoint_every), time.monotonic()
        n = 100_000
        t0 = time.perf_counter()
        for t in range(1, n + 1):
            saver.boundary(t)
        hook_s = (time.perf_counter() - t0) / n
    for p in run_dir.iterdir():
        p.unlink()
    run_dir.rmdir()

    write_s, load_s = statistics.median(writes), statistics.median(loads)
    kind, every = checkpoint_interval(run.checkpoint_every)
    interval_s = every if kind == "seconds" else every * run_s / train.steps
    return {"case": case, "steps": train.steps, "n_params": trainer.n_params, "ckpt_MB": size / 1e6,
            "run_s": run_s, "written_in_run": saver.writes, "write_s": write_s, "load_s": load_s,
            "hook_us_per_step": hook_s * 1e6,
            "share_of_run_%": 100 * (saver.seconds + hook_s * train.steps) / run_s,
            "steady_bound_%": 100 * write_s / (interval_s + write_s),
            "one_signal_ckpt_%": 100 * write_s / run_s,
            "resume_load_%": 100 * load_s / run_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="default", help="default, and/or WIDTHxDEPTH[:optimizer]")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the config's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where checkpoints are written")
    args = parser.parse_args()
    info = env_info()
    print_env(info)
    print(f"checkpoint_every (default): {RunConfig.checkpoint_every}; checkpoints written under {args.dir}")
    rows = [measure_case(case, args.steps, args.repeats, Path(args.dir)) for case in args.cases.split(",")]
    print_table(rows, title="checkpoint cost")
    for row in rows:
        print(f"{row['case']}: checkpoint write + fsync = {row['share_of_run_%']:.3f} % of the run at "
              f"the default interval ({row['written_in_run']} written in {row['run_s']:.1f} s; "
              f"steady-state bound {row['steady_bound_%']:.3f} %; "
              f"one checkpoint = {row['one_signal_ckpt_%']:.2f} % of the run; "
              f"a resume's load = {row['resume_load_%']:.2f} %)")
    write_results("checkpoint", rows, info, {"args": vars(args)})


if __name__ == "__main__":
    main()
