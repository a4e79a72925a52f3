"""Tests of wcntk.report on synthetic sweeps whose metrics follow known power laws in width."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wcntk import report

WIDTHS = (8, 16, 32, 64, 128, 256, 512)
SEEDS = (0, 1, 2)
NOISE = 0.02  # multiplicative log-normal noise
# true width exponent per activation; None → the metric is exactly 0 in that setting
TRUTH = {
    "relu": {"lin/func_rmse_test": -0.5, "lin/func_mse_test": -1.0, "lin/taylor_rmse_test": -0.75,
             "lin/param_rel_change": -0.5, "lin/ntk_rel_change": -0.5, "lin/loss_gap_test": -0.3,
             "corr/C02": -1.0, "corr/C03": None, "corr/C11": -0.5, "corr/step_ratio_2": -1.0,
             "corr/step_ratio_3": -1.0},
    "tanh": {"lin/func_rmse_test": -1.0, "lin/func_mse_test": -2.0, "lin/taylor_rmse_test": -1.0,
             "lin/param_rel_change": -0.5, "lin/ntk_rel_change": -1.0, "lin/loss_gap_test": -0.7,
             "corr/C02": -1.0, "corr/C03": -1.0, "corr/C11": -0.5, "corr/step_ratio_2": -1.0,
             "corr/step_ratio_3": -1.0},
}
LOSSES = ("net/train_loss", "twin/train_loss", "net/test_loss", "twin/test_loss")


def config(width, seed, activation="relu"):
    return {"width": width, "depth": 1, "activation": activation, "parameterization": "ntk",
            "dataset": "mnist", "model": "mlp", "optimizer": "gd", "lr": 1.0, "effective_lr": 1.0,
            "lr_width_exponent": 0.0, "width_ref": 1024, "batch_size": None, "loss": "mse",
            "steps": 100, "seed": seed, "precision": "float32", "n_train": 256, "n_test": 256,
            "n_params": 795 * width + 10}


def write_job(path: Path, cfg, status="ok", initial=None, final=None, message=None, diverged_step=None,
              curves=None):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({
        "status": status, "message": message, "diverged_step": diverged_step, "config": cfg,
        "initial": initial or {}, "final": final or {}, "wall_time_s": 1.5}))
    if curves is not None:
        curves.to_csv(path / "metrics.csv", index=False)
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text("wandb:\n  group: synthetic-group\n  project: wcntk-test\n")


def loss_curves(width, seed):
    steps = np.arange(0, 101, 10)
    df = pd.DataFrame({"step": steps})
    for i, name in enumerate(LOSSES):
        df[name] = (1 + 0.1 * i) * np.exp(-steps / 40) + 0.01 * (1 + seed) / width
    df.loc[df["step"] % 20 != 0, ["net/test_loss", "twin/test_loss"]] = np.nan  # empty cells
    return df


def metric_values(activation, width, rng):
    vals = {}
    for name, slope in TRUTH[activation].items():
        vals[name] = 0.0 if slope is None else 3.0 * width ** slope * math.exp(NOISE * rng.standard_normal())
    return vals


def make_sweep(root: Path, widths=WIDTHS, activations=("relu", "tanh"), extra_jobs=True):
    rng = np.random.default_rng(1234)
    job = 0
    for act in activations:
        for w in widths:
            for s in SEEDS:
                vals = metric_values(act, w, rng)
                initial = {k: v for k, v in vals.items() if k.startswith("corr/")}
                final = {k: v for k, v in vals.items() if k.startswith("lin/")}
                write_job(root / str(job), config(w, s, act), initial=initial, final=final,
                          curves=loss_curves(w, s))
                job += 1
    if extra_jobs:
        write_job(root / "failed", config(1024, 0, "relu"), status="failed",
                  message="RuntimeError: CUDA out of memory")
        write_job(root / "diverged", config(512, 3, "tanh"), status="diverged", diverged_step=17,
                  message="non-finite loss at step 17", initial={"corr/C02": 0.1},
                  final={"lin/func_rmse_test": float("nan")}, curves=loss_curves(512, 3))
        (root / "broken").mkdir()
        (root / "broken" / "summary.json").write_text('{"status": "ok", "conf')  # killed mid-write
    return root


REPORT_METRICS = ("lin/func_rmse_test", "corr/C02", "corr/C03")  # few plots keep the tests fast


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = make_sweep(tmp_path_factory.mktemp("sweep"))
    return root, report.make_report(root, metrics=REPORT_METRICS)


def test_t_quantile_known_values():
    for df, t in [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (10, 2.2281389), (30, 2.0422725)]:
        assert report.t_quantile(0.975, df) == pytest.approx(t, rel=1e-7)
    assert report.t_quantile(0.025, 5) == pytest.approx(-report.t_quantile(0.975, 5))
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 19, 20, 101):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert report.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9)


def test_fit_power_law_noiseless():
    w = np.array([8, 16, 32, 64] * 2, float)
    fit = report.fit_power_law(w, 3.0 * w ** -0.75)
    assert fit["slope"] == pytest.approx(-0.75) and fit["intercept"] == pytest.approx(math.log(3.0))
    assert fit["r2"] == pytest.approx(1.0) and fit["ci_half"] < 1e-9 and fit["n_points"] == 8


def test_theory_slopes():
    assert report.theory_slope("final/lin/func_rmse_test") == (-1.0, -0.5)
    assert report.theory_slope("init/corr/C02_max") == (-1.0, -1.0)
    assert report.theory_slope("init/corr/step_ratio_3") == (-1.0, -1.0)
    assert report.theory_slope("final/lin/loss_gap_train") is None
    assert report.theory_slope("final/net/test_acc") is None


def test_collect_is_tidy(sweep):
    root, res = sweep
    runs = res["runs"]
    assert len(runs) == 2 * len(WIDTHS) * len(SEEDS) + 3
    assert list(runs["job_dir"][:3]) == ["0", "1", "2"]  # natural order
    for col in ("job_dir", "status", "message", "width", "seed", "activation", "n_params",
                "wall_time_s", "init/corr/C02", "final/lin/func_rmse_test"):
        assert col in runs
    assert report.setting_columns(runs) == ["activation"]
    assert list(runs["setting"].cat.categories) == ["activation=relu", "activation=tanh", "(unreadable)"]
    on_disk = pd.read_csv(res["files"]["runs_csv"])
    assert len(on_disk) == len(runs)
    assert set(on_disk["status"]) == {"ok", "failed", "diverged", "unreadable"}


def test_slopes_recover_truth(sweep):
    _, res = sweep
    slopes, per_width = report.fit_slopes(res["runs"])  # all default metrics
    slopes = slopes.set_index(["setting", "metric"])
    n_fitted = 0
    for act, truth in TRUTH.items():
        for name, slope in truth.items():
            if slope is None:
                continue
            r = slopes.loc[(f"activation={act}", report.metric_column(name))]
            assert r["result"] == "fit"
            assert r["n_points"] == len(WIDTHS) * len(SEEDS)  # diverged/failed jobs not fitted
            assert abs(r["slope"] - slope) <= r["ci_half"] < 0.03, (act, name)
            assert r["r2"] > 0.99
            n_fitted += 1
    assert n_fitted == 21
    # per-width mean ± s.e. over the 3 seeds
    assert set(per_width["n"]) == {len(SEEDS)}
    assert (per_width.loc[per_width["mean"] > 0, "se"] > 0).all()


def test_exact_zero_metric_not_fitted(sweep):
    _, res = sweep
    s = res["slopes"].set_index(["setting", "metric"])
    assert s.loc[("activation=relu", "init/corr/C03"), "result"] == "exactly 0"
    assert math.isnan(s.loc[("activation=relu", "init/corr/C03"), "slope"])
    assert s.loc[("activation=tanh", "init/corr/C03"), "result"] == "fit"
    assert "exactly 0" in res["files"]["slopes_md"].read_text()


def test_failures_listed(sweep):
    _, res = sweep
    fails = res["failures"]
    assert set(fails["status"]) == {"failed", "diverged", "unreadable"}
    assert "RuntimeError: CUDA out of memory" in set(fails["message"])
    assert fails.loc[fails["status"] == "unreadable", "message"].item().startswith("JSONDecodeError")
    assert fails.loc[fails["status"] == "diverged", "diverged_step"].item() == 17
    counts = res["counts"].set_index("setting")
    assert counts.loc["activation=relu", "failed"] == 1 and counts.loc["activation=tanh", "diverged"] == 1
    assert counts.loc["activation=relu", "total"] == len(WIDTHS) * len(SEEDS) + 1
    text = res["files"]["failures_md"].read_text()
    assert "CUDA out of memory" in text and "non-finite loss at step 17" in text
    assert "| activation=tanh | 512 | 3 | diverged | 17 |" in text


def test_files_written(sweep):
    root, res = sweep
    out = root / "report"
    assert res["out_dir"] == out
    for name in ("runs.csv", "per_width.csv", "slopes.csv", "slopes.md", "failures.csv", "failures.md",
                 "report.md"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "slopes.md").read_text()
    assert "slope ± 95% CI (t)" in md and "theory (ntk)" in md and "-1 … -0.5" in md
    assert len(pd.read_csv(out / "slopes.csv")) == 2 * len(REPORT_METRICS)
    for stem in ("width_all", "width_final_lin_func_rmse_test", "width_init_corr_C02", "loss_curves_w512"):
        for ext in ("png", "pdf"):
            assert (out / "plots" / f"{stem}.{ext}").stat().st_size > 1000, (stem, ext)
    assert "![width_all](plots/width_all.png)" in (out / "report.md").read_text()


def test_loss_curves_read_metrics_csv(sweep):
    root, res = sweep
    width, jobs = report.curve_jobs(res["runs"], root)
    assert width == 512 and list(jobs["seed"]) == [0, 0] and set(jobs["status"]) == {"ok"}
    fig = report.plot_loss_curves(res["runs"], root, width)
    expected = pd.read_csv(root / jobs["job_dir"].iloc[0] / "metrics.csv")
    train, test = fig.axes[0], fig.axes[1]
    net_train = train.lines[0]
    np.testing.assert_allclose(net_train.get_ydata(), expected["net/train_loss"])
    np.testing.assert_allclose(test.lines[1].get_xdata(), expected.dropna()["step"])  # empty cells skipped
    assert len(fig.axes) == 4  # 2 settings × (train, test)
    # ok jobs are preferred; a setting whose only job at that width diverged still gets curves
    runs = res["runs"].copy()
    runs.loc[(runs["width"] == 512) & (runs["activation"] == "tanh") & (runs["status"] == "ok"), "width"] = 511
    _, jobs_div = report.curve_jobs(runs, root, 512)
    assert list(jobs_div["status"]) == ["ok", "diverged"] and list(jobs_div["seed"]) == [0, 3]


def test_single_width_and_missing_metric_are_na(tmp_path):
    make_sweep(tmp_path, widths=(64,), activations=("relu",), extra_jobs=False)
    res = report.make_report(tmp_path, tmp_path / "out", metrics=["lin/func_rmse_test", "net/test_acc"],
                             formats=("png",))
    s = res["slopes"].set_index("metric")
    assert s.loc["final/lin/func_rmse_test", "result"] == "n/a"
    assert "fewer than 2 widths" in s.loc["final/lin/func_rmse_test", "note"]
    assert s.loc["final/net/test_acc", "result"] == "n/a" and s.loc["final/net/test_acc", "note"] == "not logged"
    assert list(s["setting"].unique()) == ["all"]
    assert (tmp_path / "out" / "plots" / "width_all.png").is_file()


def test_no_summaries(tmp_path):
    with pytest.raises(FileNotFoundError):
        report.collect(tmp_path)


def _env(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "WANDB_DIR": str(tmp_path / "wandb_env"), "WANDB_SILENT": "true",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return root, env


def test_cli(tmp_path):
    make_sweep(tmp_path / "sweep", widths=(8, 32, 128))
    root, env = _env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "wcntk.report", str(tmp_path / "sweep"), "--out",
                           str(tmp_path / "out"), "--width-metric", "lin/func_rmse_test", "corr/C02",
                           "--formats", "png"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "slope ± 95% CI (t)" in proc.stdout and "init/corr/C02" in proc.stdout
    assert "CUDA out of memory" in proc.stdout
    assert (tmp_path / "out" / "slopes.md").is_file() and (tmp_path / "out" / "plots" / "width_all.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "wcntk.report", str(tmp_path / "empty_missing")], cwd=root,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a directory" in bad.stderr


@pytest.mark.parametrize("mode", ["disabled", "offline"])
def test_wandb_modes(tmp_path, monkeypatch, mode):
    pytest.importorskip("wandb")
    root, env = _env(tmp_path)
    for k in ("WANDB_DIR", "WANDB_SILENT"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("WANDB_MODE", mode)
    make_sweep(tmp_path / "sweep", widths=(8, 32), extra_jobs=False)
    assert report.wandb_group(report.collect(tmp_path / "sweep"), tmp_path / "sweep") == "synthetic-group"
    report.make_report(tmp_path / "sweep", tmp_path / "out", metrics=["lin/func_rmse_test"],
                       formats=("png",), wandb=True, wandb_mode=mode)
    assert (tmp_path / "out" / "slopes.md").is_file()
    if mode == "offline":
        assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))


def test_wandb_failure_only_warns(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")

    def boom(*args, **kwargs):
        raise RuntimeError("no network")
    monkeypatch.setattr(wandb, "init", boom)
    make_sweep(tmp_path, widths=(8, 32), extra_jobs=False)
    with pytest.warns(UserWarning, match="wandb logging failed"):
        res = report.make_report(tmp_path, metrics=["lin/func_rmse_test"], formats=("png",), wandb=True)
    assert res["wandb_dir"] is None and (tmp_path / "report" / "slopes.md").is_file()
