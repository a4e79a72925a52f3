"""Shared by the tests: the repository's paths, the one runner of `python run.py` in a
subprocess, the tiny config of a run that takes a second, and a built network as the
functional pair the measurements take. Hydra's ConfigStore gets the
schema here (run.py registers it for real runs), so tests can compose conf/ themselves.

Under pytest-xdist (`-n auto` in pyproject.toml's addopts) each worker takes its share of the cores
for torch, the tests sharing a fixture wider than one test run on one worker (the fixture is built
once), and the work goes out slow-marked units first (pytest_collection_modifyitems)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.models import build_model
from wcntk.run.cli_checks import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
RUN_PY = ROOT / "run.py"
# A subprocess's environment: no W&B chatter, one OpenMP thread (two shared cores run the suite).
ENV = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}

register_configs()

# Where the environment sets PYTHONDONTWRITEBYTECODE (this project's machines do), pytest would
# rewrite the asserts of every test module again in every worker on every run: 4 s of each
# worker's start. The rewritten modules are cached in tests/__pycache__ (git-ignored) instead.
sys.dont_write_bytecode = False

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:  # two workers on two cores: one thread each, not two apiece
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (addopts): xdist's worker per core for a run over directories (the suite, the
    quick loop); none where the command line names test files or tests, whose few tests would
    wait for the workers' start-up (each imports torch and Hydra). `-n 2` asks for them anyway."""
    here = config.invocation_params.dir
    if all((here / arg.split("::")[0]).is_dir() for arg in config.args):
        return None  # xdist's default: PYTEST_XDIST_AUTO_NUM_WORKERS, else the CPU count
    return 0


def _shared_fixture(item: pytest.Item) -> bool:
    """Whether `item` uses a module-, class- or session-scoped fixture of the tests' own (the
    built-in ones, tmp_path_factory's session scope among them, have no baseid)."""
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(d.scope != "function" and d.baseid
                                    for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (--dist loadgroup --no-loadscope-reorder): a module's tests that share a fixture
    form one unit (xdist_group, one worker); units go out heaviest first (a slow test weighs 20, a
    quick one 1), so neither core idles at the end behind a long test started last."""
    if WORKERS <= 1:
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        if _shared_fixture(item):
            group = item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))
            units.setdefault(group, []).append(item)
        else:
            units[item.nodeid] = [item]
    weight = {key: sum(20 if it.get_closest_marker("slow") else 1 for it in unit)
              for key, unit in units.items()}
    items[:] = [it for key in sorted(units, key=lambda k: -weight[k]) for it in units[key]]


def run_py(*args: str, cwd: str | Path = ROOT, env: dict[str, str] | None = None, timeout: float = 300,
           **popen: Any) -> subprocess.CompletedProcess:
    """`python run.py *args` in `cwd`, its output captured as text; `env` replaces ENV."""
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=ENV if env is None else env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def start_run_py(*args: str, cwd: str | Path = ROOT, env: dict[str, str] | None = None,
                 **popen: Any) -> subprocess.Popen:
    """`python run.py *args` started in the background (stdout and stderr piped, as text)."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, str(RUN_PY), *args], cwd=cwd, env=ENV if env is None else env,
                            text=True, **popen)


def tiny_config(**changes: Any) -> dict[str, Any]:
    """A complete run config (every schema key) for a 12-step MLP on 48 digits, on the CPU
    without W&B; `changes` set dotted keys (`tiny_config(**{"optimizer.lr": 0.1})`)."""
    cfg = {"dataset": dict(name="digits", n_train=48, n_test=16, classes=None, source="auto",
                           data_dir="~/.cache/wcntk", download=True, grayscale=False, standardize=True,
                           input_dim=32, n_classes=10, teacher_width=64),
           "optimizer": dict(name="gd", lr=0.5, batch_size=None, lr_width_exponent=0.0, width_ref=1024,
                             momentum=0.9, betas=[0.9, 0.999]),
           "model": dict(kind="mlp", w_std=1.0, b_std=0.05, heads=2, patch_size=None,
                         attention_logits="inv_d", target=None, kwargs={}),
           "wandb": dict(mode="disabled", project="wcntk", entity=None, group=None, tags=[], name=None,
                         init_timeout=10.0),
           "width": 8, "depth": 1, "activation": "tanh", "parameterization": "ntk", "seed": 0,
           "steps": 12, "loss": "mse", "precision": "float32", "device": "cpu", "log_every": 3,
           "corr_every": None, "probes": 4, "progress": False, "cuda_graphs": "auto", "threads": None,
           "diverge_factor": 1e6, "twin_space": "auto", "overwrite": False, "checkpoint_every": "10min",
           "keep_checkpoint": False}
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def built(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int, seed: int = 1,
          dtype: torch.dtype = torch.float64) -> tuple[torch.nn.Module, Any, dict[str, torch.Tensor]]:
    """(model, f, θ₀) of `cfg`: the network, f(params, x), and its initial parameters."""
    model = build_model(cfg, input_shape, out_features, seed=seed, dtype=dtype)
    return model, functional(model), params_of(model)
