"""End-to-end runs: run.py as a subprocess (files, W&B records, exit codes) and the
trainer in-process (optimizers, models, determinism, twin vs kernel dynamics)."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wcntk.data import DataConfig
from wcntk.job import run_job
from wcntk.losses import mse
from wcntk.models import ModelConfig
from wcntk.ntk import empirical_ntk, gd_mse_kernel_dynamics
from wcntk.trainer import METRIC_NAMES, MinibatchSampler, OptimizerConfig, TrainConfig, Trainer
from wcntk.wandb_records import history_rows, read_records, summary_values

ROOT = Path(__file__).resolve().parents[1]
TINY = ["dataset=digits", "width=16", "steps=20", "log_every=5", "dataset.n_train=64",
        "dataset.n_test=32", "probes=8", "progress=false"]


def run_cli(tmp_path: Path, *overrides: str, name: str = "run"):
    run_dir = tmp_path / name
    proc = subprocess.run([sys.executable, "run.py", f"hydra.run.dir={run_dir}", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "WANDB_SILENT": "true"})
    return proc, run_dir


def read_csv(path: Path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    proc, run_dir = run_cli(tmp_path_factory.mktemp("e2e"), *TINY, "wandb.mode=offline")
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_cli_run_writes_config_csv_and_summary(offline_run):
    assert (offline_run / ".hydra" / "config.yaml").is_file()
    rows = read_csv(offline_run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [0, 5, 10, 15, 20]
    assert list(rows[0]) == ["step", *METRIC_NAMES]
    assert rows[1]["corr/C02"] == "" and rows[0]["corr/C02"] != "" and rows[-1]["corr/C02"] != ""
    summary = json.loads((offline_run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["message"] is None
    cfg = summary["config"]
    assert (cfg["width"], cfg["dataset"], cfg["optimizer"], cfg["seed"]) == (16, "digits", "gd", 0)
    assert cfg["n_params"] == 64 * 16 + 16 + 16 * 10 + 10 and cfg["data_source"] == "sklearn-digits"
    assert summary["wall_time_s"] > 0
    assert set(summary["final"]) == set(METRIC_NAMES) == set(summary["initial"])
    for key in METRIC_NAMES:
        assert summary["final"][key] == pytest.approx(float(rows[-1][key]), rel=1e-6)
        assert summary["initial"][key] == pytest.approx(float(rows[0][key]), rel=1e-6)
    assert summary["initial"]["lin/func_rmse_train"] == 0.0
    assert summary["final"]["lin/func_rmse_train"] > 0
    assert summary["final"]["net/train_loss"] < summary["initial"]["net/train_loss"]


def test_cli_run_wandb_records_hold_the_same_metrics(offline_run):
    (run_file,) = offline_run.glob("wandb/offline-run-*/run-*.wandb")
    history = history_rows(run_file)
    csv_rows = read_csv(offline_run / "metrics.csv")
    assert [row["step"] for row in history] == [int(r["step"]) for r in csv_rows]
    for logged, row in zip(history, csv_rows):
        for key in METRIC_NAMES:
            if row[key] != "":
                assert logged[key] == pytest.approx(float(row[key]), rel=1e-6), key
    summary = summary_values(run_file)
    assert summary["status"] == "ok"
    assert summary["lin/func_rmse_test"] == pytest.approx(float(csv_rows[-1]["lin/func_rmse_test"]), rel=1e-6)
    (run_record,) = [r.run for r in read_records(run_file) if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["width"] == 16 and config["dataset"]["name"] == "digits"
    exits = [r.exit for r in read_records(run_file) if r.WhichOneof("record_type") == "exit"]
    assert exits and exits[-1].exit_code == 0


def test_cli_divergence_stops_cleanly(tmp_path):
    proc, run_dir = run_cli(tmp_path, *TINY, "optimizer.lr=1e8", "wandb.mode=offline")
    assert proc.returncode != 0
    assert "diverged at step" in proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] is not None
    assert summary["final"]["net/train_loss"] is None          # NaN/inf stored as null
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    exits = [r.exit for r in read_records(run_file) if r.WhichOneof("record_type") == "exit"]
    assert exits[-1].exit_code != 0


def test_cli_bad_override_is_one_line_and_no_work(tmp_path):
    proc, run_dir = run_cli(tmp_path, *TINY, "width=0")
    assert proc.returncode != 0
    assert proc.stderr.strip() == "wcntk: error: width must be a positive integer, got 0"
    assert not (run_dir / "metrics.csv").exists() and not (run_dir / "summary.json").exists()


def test_cli_missing_dataset_files_fail_clearly_and_are_recorded(tmp_path):
    proc, run_dir = run_cli(tmp_path, "dataset=fashion_mnist", f"dataset.data_dir={tmp_path / 'data'}",
                            "dataset.download=false", "steps=1", "wandb.mode=disabled", "progress=false")
    assert proc.returncode != 0
    assert proc.stderr.startswith("wcntk: error:") and "FashionMNIST" in proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "FashionMNIST" in summary["message"]


def tiny_trainer(**changes):
    model = ModelConfig(width=changes.pop("width", 16), depth=changes.pop("depth", 1),
                        activation=changes.pop("activation", "tanh"), kind=changes.pop("kind", "mlp"),
                        parameterization=changes.pop("parameterization", "ntk"))
    data = DataConfig(name=changes.pop("dataset", "synthetic"), n_train=32, n_test=16, input_dim=6,
                      n_classes=3, standardize=False) if changes.get("dataset", "synthetic") == "synthetic" \
        else DataConfig(name=changes.pop("dataset"), n_train=32, n_test=16)
    opt = OptimizerConfig(name=changes.pop("optimizer", "gd"), lr=changes.pop("lr", 0.5),
                          batch_size=changes.pop("batch_size", None))
    train = TrainConfig(progress=False, probes=4, device="cpu", **{"steps": 10, "log_every": 5, **changes})
    return Trainer(model, data, opt, train)


@pytest.mark.parametrize("changes", [
    dict(optimizer="sgd", batch_size=8),
    dict(optimizer="momentum", lr=0.1),
    dict(optimizer="adam", lr=1e-3, loss="xent"),
    dict(kind="cnn", dataset="digits", width=4, steps=3),
    dict(parameterization="mean_field", lr=0.01),
    dict(parameterization="standard", depth=2, activation="erf"),
    dict(precision="float64", loss="xent"),
    dict(steps=0),
])
def test_every_setting_trains_and_reports_all_metrics(changes):
    result = tiny_trainer(**changes).run()
    assert result.status == "ok"
    assert set(result.final) == set(METRIC_NAMES)
    assert all(math.isfinite(v) for v in result.final.values())
    if changes.get("steps") == 0:
        assert result.final == result.initial and result.final["lin/func_rmse_test"] == 0.0


def test_same_seed_same_numbers_different_seed_different(tmp_path):
    def summary(seed, name):
        cfg = {"dataset": dict(name="digits", n_train=48, n_test=16, classes=None, source="auto",
                               data_dir="~/.cache/wcntk", download=True, grayscale=False, standardize=True,
                               input_dim=32, n_classes=10, teacher_width=64),
               "optimizer": dict(name="sgd", lr=0.5, batch_size=16, lr_width_exponent=0.0, width_ref=1024,
                                 momentum=0.9, betas=[0.9, 0.999]),
               "model": dict(kind="mlp", w_std=1.0, b_std=0.05),
               "wandb": dict(mode="disabled", project="wcntk", entity=None, group=None, tags=[], name=None),
               "width": 16, "depth": 2, "activation": "erf", "parameterization": "ntk", "seed": seed,
               "steps": 12, "loss": "mse", "precision": "float32", "device": "cpu", "log_every": 4,
               "corr_every": None, "probes": 4, "progress": False}
        return run_job(cfg, tmp_path / name)
    a, b, c = summary(0, "a"), summary(0, "b"), summary(1, "c")
    assert a["status"] == "ok" and a["final"] == b["final"] and a["initial"] == b["initial"]
    assert a["final"] != c["final"]


def test_trained_twin_follows_the_closed_form_kernel_dynamics():
    trainer = tiny_trainer(precision="float64", steps=15, lr=0.7, depth=2)
    trainer.run()
    d = trainer.data
    f, p0 = trainer.f, trainer.params0
    f_train, f_test = gd_mse_kernel_dynamics(
        empirical_ntk(f, p0, d.x_train), f(p0, d.x_train).detach(), d.y_train, 0.7, 15,
        empirical_ntk(f, p0, d.x_test, d.x_train), f(p0, d.x_test).detach())
    with torch.no_grad():
        assert torch.allclose(trainer.twin_train(trainer.twin_params), f_train, atol=1e-10)
        assert torch.allclose(trainer.twin(trainer.twin_params, d.x_test), f_test, atol=1e-10)
        # and the network itself has moved away from it, but not far (width 16)
        gap = (trainer.model(d.x_train) - f_train).abs().max()
        assert 0 < gap < 0.5 * f_train.abs().max()
    assert mse(f_train, d.y_train) < mse(f(p0, d.x_train), d.y_train)


def test_minibatches_are_seeded_epochs():
    def batches(seed):
        sampler = MinibatchSampler(10, 4, seed, torch.device("cpu"))
        return [sampler.next().tolist() for _ in range(5)]
    a, b = batches(3), batches(3)
    assert a == b and a != batches(4)
    assert len(set(a[0] + a[1])) == 8          # an epoch draws without replacement (drop_last)
    assert MinibatchSampler(10, None, 0, torch.device("cpu")).next() is None
