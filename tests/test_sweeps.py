"""Sweep files (sweeps/), launchers (joblib, submitit_local, the SLURM config), resume and
robustness of multirun sweeps, and the report on a real tiny sweep.

The first half composes configs in-process (fast); the second half runs `python run.py
+sweep=width_scaling …` as subprocesses on a tiny synthetic task (a few seconds of work, most
of the wall time is interpreter and torch start-up).
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from tests.conftest import CONF, ENV, ROOT, run_py
from wcntk.run.config import library_configs
from wcntk.run.record import Record, Status, effective_status
from wcntk.training.config import effective_lr

SWEEPS = ROOT / "sweeps"
POW2 = [2 ** k for k in range(3, 13)]  # 8 … 4096


# ----------------------------------------------------------------------------- compose helpers

Job = tuple[list[str], dict[str, object], str]  # (overrides, swept values by key, job dir name)


@functools.cache
def _expand(sweep: str, overrides: tuple[str, ...], sweep_overrides: tuple[str, ...]):
    base = [f"+sweep={sweep}", *overrides]
    parser = OverridesParser.create()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=base, return_hydra_config=True)
        params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
        parsed_all = parser.parse_overrides([*params, *base, *sweep_overrides])
        batches = BasicSweeper.split_arguments(parsed_all, None)
        naming = cfg.hydra.job.config.override_dirname
        jobs: list[Job] = []
        for job_overrides in (o for batch in batches for o in batch):
            parsed = parser.parse_overrides(job_overrides)
            name = get_overrides_dirname(parsed, list(naming.exclude_keys), naming.item_sep, naming.kv_sep)
            jobs.append((job_overrides, {o.key_or_group: o.value() for o in parsed}, name))
        # Composing is slow (~0.1 s): compose the first and the last job in full, and check that
        # Hydra gives them the values and the dir names derived above.
        composed = []
        for job_overrides, values, name in (jobs[0], jobs[-1]):
            job = compose("config", overrides=job_overrides, return_hydra_config=True)
            assert job.hydra.job.override_dirname == name
            choices = job.hydra.runtime.choices  # config groups (sweep, dataset, …): the option chosen
            assert all((choices[k] if k in choices else OmegaConf.select(job, k)) == v
                       for k, v in values.items())
            composed.append(job)
    return cfg, jobs, composed


def expand(sweep: str, overrides: Sequence[str] = (), sweep_overrides: Sequence[str] = ()):
    """(composed config, jobs, [first job's config, last job's config]) for
    `python run.py +sweep=<sweep> *overrides *sweep_overrides`.

    jobs: one (overrides, values, job dir name) per grid point, expanded exactly as Hydra's
    basic sweeper does (the sweep file's hydra.sweeper.params, then the command line, the
    command line winning for the same key)."""
    return _expand(sweep, tuple(overrides), tuple(sweep_overrides))


def grid(jobs: list[Job], *keys: str) -> list[tuple]:
    return sorted(tuple(values[k] for k in keys) for _, values, _ in jobs)


def task_dict(job) -> dict:
    """The resolved task config (without the hydra node), as run.py hands it to run_job."""
    return OmegaConf.to_container(OmegaConf.masked_copy(job, [k for k in job if k != "hydra"]), resolve=True)


def product(*lists) -> list[tuple]:
    out: list[tuple] = [()]
    for values in lists:
        out = [t + (v,) for t in out for v in values]
    return sorted(out)


# ----------------------------------------------------------------------------- sweep files

@pytest.mark.parametrize("sweep", ["width_scaling", "lr_scaling", "parameterization", "activations"])
def test_every_sweep_is_a_stable_multirun_named_after_itself(sweep):
    cfg, jobs, composed = expand(sweep)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    assert cfg.hydra.sweep.dir == f"outputs/sweeps/{sweep}"  # no timestamp: re-running resumes
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.override_dirname}"
    assert cfg.wandb.group == sweep
    names = [name for *_, name in jobs]
    assert len(set(names)) == len(names)  # one dir per grid point
    for overrides, _, name in jobs:
        # The job dir is exactly the grid point: no "sweep=", no bookkeeping keys, no "/".
        assert name == ",".join(sorted(o for o in overrides if not o.startswith("+sweep=")))
        assert "/" not in name
    for job in composed:  # and the jobs are valid runs
        library_configs(task_dict(job))


def test_width_scaling_grid():
    cfg, jobs, composed = expand("width_scaling")
    assert grid(jobs, "width", "seed") == product(POW2, [0, 1, 2])
    assert all(set(values) == {"sweep", "width", "seed"} for _, values, _ in jobs)
    for job in composed:  # the default experiment otherwise
        assert (job.depth, job.activation, job.parameterization, job.dataset.name, job.optimizer.name,
                job.steps) == (1, "relu", "ntk", "mnist", "gd", 1000)


def test_width_scaling_takes_command_line_overrides():
    cfg, jobs, composed = expand("width_scaling", ["dataset=fashion_mnist", "depth=3", "activation=erf"],
                                 ["width=64,256,1024"])
    assert grid(jobs, "width", "seed") == product([64, 256, 1024], [0, 1, 2])  # seeds kept
    for _, values, name in jobs:
        assert (values["dataset"], values["depth"], values["activation"]) == ("fashion_mnist", 3, "erf")
        assert name.startswith("activation=erf,dataset=fashion_mnist,depth=3,seed=")
    for job in composed:
        assert (job.dataset.name, job.depth, job.activation) == ("fashion_mnist", 3, "erf")


def test_lr_scaling_grid_is_the_papers_appendix_experiment():
    cfg, jobs, composed = expand("lr_scaling")
    alphas = [0, -0.25, -0.5, -0.75, -1]
    widths = sorted({v["width"] for _, v, _ in jobs})
    seeds = sorted({v["seed"] for _, v, _ in jobs})
    assert max(widths) / min(widths) >= 16 and len(seeds) >= 3
    assert grid(jobs, "optimizer.lr_width_exponent", "width", "seed") == product(alphas, widths, seeds)
    assert (cfg.depth, cfg.optimizer.lr, cfg.optimizer.width_ref) == (2, 0.1, min(widths))
    for job in composed:  # η = 0.1 · (width / width_ref)^α, as the trainer computes it
        model, _, opt, _ = library_configs(task_dict(job))
        alpha = job.optimizer.lr_width_exponent
        assert effective_lr(opt, model) == pytest.approx(0.1 * (job.width / min(widths)) ** alpha)
    assert {job.optimizer.lr_width_exponent for job in composed} == {0, -1}


@pytest.mark.parametrize("sweep, key, values", [
    ("parameterization", "parameterization", ["ntk", "standard", "mean_field"]),
    ("activations", "activation", ["relu", "erf", "tanh", "gelu", "sigmoid"]),
])
def test_setting_sweeps_cross_every_value_with_widths_and_seeds(sweep, key, values):
    cfg, jobs, _ = expand(sweep)
    widths = sorted({v["width"] for _, v, _ in jobs})
    assert len(widths) >= 4 and max(widths) / min(widths) >= 64
    assert grid(jobs, key, "width", "seed") == product(sorted(values), widths, [0, 1, 2])


def test_job_dir_names_ignore_bookkeeping_overrides():
    """Changing where W&B logs, the progress bar or the data folder must not re-run a sweep."""
    volatile = ["wandb.mode=disabled", "progress=false", "threads=1", "device=cpu", "wandb.group=g",
                "wandb.project=p", "wandb.name=n", "dataset.data_dir=/tmp/data", "dataset.download=false"]
    _, plain, _ = expand("width_scaling", sweep_overrides=["width=8", "seed=0"])
    _, noisy, _ = expand("width_scaling", volatile, ["width=8", "seed=0"])
    assert [n for *_, n in plain] == [n for *_, n in noisy] == ["seed=0,width=8"]
    _, changed, _ = expand("width_scaling", ["steps=20"], ["width=8", "seed=0"])
    assert [n for *_, n in changed] == ["seed=0,steps=20,width=8"]  # a real setting is kept


@pytest.mark.slow   # imports W&B's launch package (5 s)
def test_wandb_sweep_spec_drives_run_py_with_hydra_arguments(monkeypatch):
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args
    spec = yaml.safe_load((SWEEPS / "wandb" / "width_scaling.yaml").read_text())
    assert spec["method"] == "grid" and spec["program"] == "run.py"
    assert spec["parameters"]["width"]["values"] == POW2
    assert spec["parameters"]["seed"]["values"] == [0, 1, 2]
    assert "${args_no_hyphens}" in spec["command"]
    # Build the command line the way `wandb agent` does for one grid point ...
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    args = create_sweep_command_args({"args": {"width": {"value": 64}, "seed": {"value": 2}}})
    macros = {"env": ["/usr/bin/env"], "program": [spec["program"]], **args}
    argv: list[str] = []
    for chunk in map(str, create_sweep_command(list(spec["command"]))):
        argv += macros[chunk[2:-1]] if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    assert argv[:3] == ["/usr/bin/env", "python", "run.py"]
    # ... and check Hydra accepts it as one run.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=argv[3:], return_hydra_config=True)
    assert (cfg.width, cfg.seed, cfg.wandb.mode) == (64, 2, "online")
    assert cfg.hydra.run.dir == "outputs/wandb_sweeps/abc123/w64_s2"


# ----------------------------------------------------------------------------- launcher configs

def launcher_config(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=width_scaling", "hydra.sweep.dir=/scratch/sw", *overrides],
                      return_hydra_config=True)
        return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_joblib_launcher_n_jobs_is_configurable():
    launcher = launcher_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=3")
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 3


def test_gpu_launcher_preset_is_joblib_with_k_jobs():
    launcher = launcher_config("hydra/launcher=gpu")
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 4
    assert launcher_config("hydra/launcher=gpu", "hydra.launcher.n_jobs=8")["n_jobs"] == 8


def test_slurm_launcher_config_makes_a_sensible_sbatch_script(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    launcher = launcher_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                               "hydra.launcher.cpus_per_task=8")
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["submitit_folder"] == "/scratch/sw/.submitit/%j"
    # Mirror SlurmLauncher.launch (executor + parameters) with a stand-in srun on PATH: submitit
    # validates every parameter name and writes the sbatch script SLURM would receive.
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    params = {k: v for k, v in launcher.items() if k != "_target_"}
    executor = submitit.AutoExecutor(folder=str(tmp_path / "submitit"), cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    make = getattr(executor._executor, "_make_submission_file_text", None)
    if make is None:
        pytest.skip("this submitit version has no _make_submission_file_text")
    script = make("python -u -m submitit.core._submit x", "uid")
    for line in ["#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=120", "#SBATCH --mem=16GB", "export OMP_NUM_THREADS=8"]:
        assert line in script


# ----------------------------------------------------------------------------- real sweeps

# progress and wandb.mode repeat the preset on purpose: bookkeeping keys on the command line must
# stay out of the job dir names that joblib and submitit workers compute (assert_tiny_grid_ok).
TINY = ["debug=default", "dataset=synthetic", "log_every=10", "progress=false", "wandb.mode=disabled"]
GRID = ["width=8,16,32", "seed=0,1"]


def run_sweep(sweep_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python run.py +sweep=width_scaling <tiny> *overrides` from a foreign working directory."""
    env = {**ENV, "HYDRA_FULL_ERROR": "1"}
    env.pop("PYTHONPATH", None)  # launcher subprocesses import the installed wcntk (-e . in requirements)
    proc = run_py("+sweep=width_scaling", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}",
                  cwd=sweep_dir.parent, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.relative_to(sweep_dir).as_posix(): json.loads(p.read_text())
            for p in sweep_dir.rglob("summary.json")}


def assert_tiny_grid_ok(sweep_dir: Path) -> dict[str, dict]:
    found = summaries(sweep_dir)
    assert sorted((s["config"]["width"], s["config"]["seed"]) for s in found.values()) == \
        product([8, 16, 32], [0, 1])
    assert {name: s["status"] for name, s in found.items()} == {name: "ok" for name in found}
    for name in found:
        assert "/" not in name and "wandb" not in name and "progress" not in name
        assert (sweep_dir / name / "metrics.csv").is_file()
        assert (sweep_dir / name / ".hydra" / "config.yaml").is_file()
    return found


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("joblib") / "width_scaling"
    run_sweep(sweep_dir, *GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    return sweep_dir


@pytest.mark.slow
def test_joblib_sweep_runs_every_job(joblib_sweep):
    assert_tiny_grid_ok(joblib_sweep)


@pytest.mark.slow
def test_submitit_local_sweep_runs_every_job(tmp_path):
    sweep_dir = tmp_path / "width_scaling"
    run_sweep(sweep_dir, *GRID, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    assert_tiny_grid_ok(sweep_dir)
    assert (sweep_dir / ".submitit").is_dir()


@pytest.mark.slow
def test_rerun_resumes_only_missing_and_interrupted_jobs(joblib_sweep):
    before = summaries(joblib_sweep)
    names = sorted(before)
    missing, interrupted, kept = names[0], names[-1], names[1:-1]
    stamps = {n: [(joblib_sweep / n / f).stat().st_mtime_ns for f in ("summary.json", "metrics.csv")]
              for n in names}
    (joblib_sweep / missing / "summary.json").unlink()
    # A job killed mid-run (SIGKILL) leaves the `running` summary the recorder writes at its start,
    # naming a process that is gone.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = {**before[interrupted], "status": "running",
              "provenance": {**before[interrupted]["provenance"], "pid": gone.pid}}
    assert effective_status(Record.from_dict(killed)) == Status.STALE
    path = joblib_sweep / interrupted / "summary.json"
    path.write_text(json.dumps(killed))
    stamps[interrupted][0] = path.stat().st_mtime_ns

    proc = run_sweep(joblib_sweep, *GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")

    # The sweep ends with one line per job: what it skipped and what it ran.
    head = f"wcntk: sweep {joblib_sweep}: 6 jobs: 4 skipped (already ok), 2 ok"
    table = proc.stdout[proc.stdout.index(head):]
    rows = {line.split()[1]: line.split()[0] for line in table.splitlines()[1:7]}
    assert rows == {n: "ok" if n in (missing, interrupted) else "skipped" for n in names}
    after = assert_tiny_grid_ok(joblib_sweep)
    for n in kept:
        files = ("summary.json", "metrics.csv")
        assert [(joblib_sweep / n / f).stat().st_mtime_ns for f in files] == stamps[n]
    for n in (missing, interrupted):
        assert all((joblib_sweep / n / f).stat().st_mtime_ns > t
                   for f, t in zip(("summary.json", "metrics.csv"), stamps[n], strict=True))
        # Same seed, same numbers: a resumed sweep ends with the table of an uninterrupted one.
        assert after[n]["final"] == pytest.approx(before[n]["final"], rel=1e-5, abs=1e-12, nan_ok=True)


@pytest.mark.slow
def test_diverged_and_crashed_jobs_do_not_stop_the_others(tmp_path):
    sweep_dir = tmp_path / "robust"
    # lr=1e9 diverges; cifar10 with no files and download=false crashes (DatasetUnavailable).
    proc = run_sweep(sweep_dir, "width=8,16", "seed=0", "optimizer.lr=1.0,1e9", "dataset=synthetic,cifar10",
                     "dataset.download=false", f"dataset.data_dir={tmp_path / 'no_data'}", check=False)
    found = summaries(sweep_dir)
    status = sorted((s["config"]["dataset"]["name"], s["config"]["optimizer"]["lr"], s["config"]["width"],
                     s["status"]) for s in found.values())
    assert status == sorted([("synthetic", 1.0, 8, "ok"), ("synthetic", 1.0, 16, "ok"),
                             ("synthetic", 1e9, 8, "diverged"), ("synthetic", 1e9, 16, "diverged"),
                             ("cifar10", 1.0, 8, "failed"), ("cifar10", 1.0, 16, "failed"),
                             ("cifar10", 1e9, 8, "failed"), ("cifar10", 1e9, 16, "failed")])
    # Every job ran and said how it ended (naming itself); the sweep's closing table lists all
    # eight, and the crashed ones make it exit 1.
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if "DatasetUnavailable" in line]
    assert len(failed) == 4
    assert all(line.startswith("wcntk: [") and "dataset=cifar10" in line for line in failed)
    assert f"wcntk: sweep {sweep_dir}: 8 jobs: 2 ok, 2 diverged, 4 failed" in proc.stdout
    # Divergence alone is a result, not an error: the report lists it.
    from wcntk.analysis.report import collect, failures, with_settings
    fails = failures(with_settings(collect(sweep_dir)))
    assert sorted(fails["status"]) == ["diverged"] * 2 + ["failed"] * 4


@pytest.mark.slow
def test_report_on_the_tiny_sweep(joblib_sweep):
    proc = subprocess.run([sys.executable, "-m", "wcntk.analysis.report", str(joblib_sweep)], cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = joblib_sweep / "report"
    for name in ("runs.csv", "slopes.md", "per_width.csv", "failures.md", "report.md"):
        assert (out / name).is_file(), name
    import pandas as pd
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and set(runs["status"]) == {"ok"}
    assert "func_mse" in (out / "slopes.md").read_text()
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert any(p.endswith(".png") for p in plots) and any(p.endswith(".pdf") for p in plots)
    assert any(p.startswith("loss_curves") for p in plots)
