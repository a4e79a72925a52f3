"""Tests of wcntk.analysis.report on synthetic sweeps whose metrics follow known power laws in width."""
import json
import math
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from wcntk.analysis import powerlaw, report

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
HAVE_WANDB = find_spec("wandb") is not None
LOSSES = ("net/train_loss", "twin/train_loss", "net/test_loss", "twin/test_loss")


def config(width, seed, activation="relu", b_std=0.05, group="synthetic-group", threads=None):
    """A nested resolved config as summary.json records it (wcntk.run.record)."""
    return {"width": width, "depth": 1, "activation": activation, "parameterization": "ntk", "seed": seed,
            "steps": 100, "loss": "mse", "precision": "float32", "threads": threads, "progress": False,
            "model": {"kind": "mlp", "w_std": 1.0, "b_std": b_std},
            "dataset": {"name": "mnist", "n_train": 256, "n_test": 256, "data_dir": "~/.cache/wcntk"},
            "optimizer": {"name": "gd", "lr": 1.0, "lr_width_exponent": 0.0, "width_ref": 1024,
                          "batch_size": None},
            "wandb": {"mode": "offline", "project": "wcntk-test", "group": group, "tags": []}}


def write_job(path: Path, cfg, status="ok", initial=None, final=None, message=None, diverged_step=None,
              curves=None, provenance=None, resumed_from=()):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({
        "status": status, "message": message, "diverged_step": diverged_step, "last_step": 100,
        "resumed_from": list(resumed_from),
        "config": cfg, "facts": {"effective_lr": 1.0, "n_params": 795 * cfg["width"] + 10,
                                 "data_source": "synthetic", "device": "cpu"},
        "provenance": provenance or {"host": "elsewhere", "pid": 1},
        "initial": initial or {}, "final": final or {}, "wall_time_s": 1.5}))
    if curves is not None:
        curves.to_csv(path / "metrics.csv", index=False)


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
    return root, report.make_report(root, metrics=REPORT_METRICS, formats=("png",))  # pdf: test_cli


def test_fit_power_law_matches_scipy():
    rng = np.random.default_rng(0)
    w = np.repeat([8.0, 16, 32, 64], 3)
    v = 2.0 * w ** -0.6 * np.exp(0.1 * rng.standard_normal(len(w)))
    fit = powerlaw.fit_power_law(w, v)
    ref = stats.linregress(np.log(w), np.log(v))
    assert fit["slope"] == pytest.approx(ref.slope, rel=1e-12)
    assert fit["intercept"] == pytest.approx(ref.intercept, rel=1e-12)
    assert fit["stderr"] == pytest.approx(ref.stderr, rel=1e-10)
    assert fit["r2"] == pytest.approx(ref.rvalue ** 2, rel=1e-10)
    # 95 % Student-t CI with N − 2 = 10 degrees of freedom: t_{0.975, 10} = 2.2281389 (tables)
    assert fit["ci_half"] == pytest.approx(2.2281389 * ref.stderr, rel=1e-7)
    assert powerlaw.fit_power_law(w, v, confidence=0.99)["ci_half"] == pytest.approx(
        stats.t.ppf(0.995, 10) * ref.stderr, rel=1e-12)


def test_fit_power_law_noiseless():
    w = np.array([8, 16, 32, 64] * 2, float)
    fit = powerlaw.fit_power_law(w, 3.0 * w ** -0.75)
    assert fit["slope"] == pytest.approx(-0.75) and fit["intercept"] == pytest.approx(math.log(3.0))
    assert fit["r2"] == pytest.approx(1.0) and fit["ci_half"] < 1e-9 and fit["n_points"] == 8
    two = powerlaw.fit_power_law([8, 16], [1.0, 0.5])
    assert two["slope"] == pytest.approx(-1.0) and math.isnan(two["ci_half"])


def test_collect_is_tidy(sweep):
    root, res = sweep
    runs = res["runs"]
    assert len(runs) == 2 * len(WIDTHS) * len(SEEDS) + 3
    assert list(runs["job_dir"][:3]) == ["0", "1", "2"]  # natural order
    for col in ("job_dir", "status", "message", "width", "seed", "activation", "facts.n_params",
                "model.b_std", "optimizer.lr", "wall_time_s", "initial/corr/C02", "final/lin/func_rmse_test"):
        assert col in runs
    assert report.setting_columns(runs) == ["activation"]
    assert list(runs["setting"].cat.categories) == ["activation=relu", "activation=tanh", "(unreadable)"]
    on_disk = pd.read_csv(res["files"]["runs_csv"])
    assert len(on_disk) == len(runs)
    assert set(on_disk["status"]) == {"ok", "failed", "diverged", "unreadable"}


def test_slopes_recover_truth(sweep):
    _, res = sweep
    slopes, per_width, _ = report.fit_slopes(res["runs"])  # all default metrics
    slopes = slopes.set_index(["setting", "metric"])
    n_fitted = 0
    for act, truth in TRUTH.items():
        for name, slope in truth.items():
            if slope is None:
                continue
            r = slopes.loc[(f"activation={act}", report.metric_column(name))]
            assert r["result"] == "fit"
            assert r["n_points"] == len(WIDTHS) * len(SEEDS)  # diverged/failed jobs not fitted
            # 3 seeds, t on 2 dof, and the n^{-1/2} correction fitted too: wider than a pooled fit
            assert abs(r["slope"] - slope) <= r["ci_half"] < 0.1, (act, name)
            assert r["r2"] > 0.99
            n_fitted += 1
    assert n_fitted == 21
    # per-width mean ± s.e. over the 3 seeds
    assert set(per_width["n"]) == {len(SEEDS)}
    assert (per_width.loc[per_width["mean"] > 0, "se"] > 0).all()


def test_exact_zero_metric_not_fitted(sweep):
    _, res = sweep
    s = res["slopes"].set_index(["setting", "metric"])
    assert s.loc[("activation=relu", "initial/corr/C03"), "result"] == "exactly 0"
    assert math.isnan(s.loc[("activation=relu", "initial/corr/C03"), "slope"])
    assert s.loc[("activation=tanh", "initial/corr/C03"), "result"] == "fit"
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
    assert "| activation=tanh | 512 | 3 | diverged | 100 | 17 |" in text


def test_files_written(sweep):
    root, res = sweep
    out = root / "report"
    assert res["out_dir"] == out
    for name in ("runs.csv", "per_width.csv", "slopes.csv", "slopes.md", "failures.csv", "failures.md",
                 "report.md"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "slopes.md").read_text()
    assert "slope ± 95% CI (t)" in md and "| theory | verdict |" in md and "≤ -0.5 | consistent" in md
    text = (out / "report.md").read_text()
    assert "DESIGN" not in text and "docs/theory.md" in text and "## Deviation vs correlation" in text
    assert len(pd.read_csv(out / "slopes.csv")) == 2 * len(REPORT_METRICS)
    for stem in ("width_all", "width_final_lin_func_rmse_test", "width_initial_corr_C02", "loss_curves_w512"):
        assert (out / "plots" / f"{stem}.png").stat().st_size > 1000, stem
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
    moved = (runs["width"] == 512) & (runs["activation"] == "tanh") & (runs["status"] == "ok")
    runs.loc[moved, "width"] = 511
    _, jobs_div = report.curve_jobs(runs, root, 512)
    assert list(jobs_div["status"]) == ["ok", "diverged"] and list(jobs_div["seed"]) == [0, 3]


def test_single_width_and_missing_metric_are_na(tmp_path):
    make_sweep(tmp_path, widths=(64,), activations=("relu",), extra_jobs=False)
    res = report.make_report(tmp_path, tmp_path / "out", metrics=["lin/func_rmse_test"], formats=())
    s = res["slopes"].set_index("metric")
    assert s.loc["final/lin/func_rmse_test", "result"] == "n/a"
    assert "fewer than 2 widths" in s.loc["final/lin/func_rmse_test", "note"]
    # a default metric that no job logged is "not logged" (a metric asked for by name is an error)
    s = report.fit_slopes(res["runs"], ["net/test_acc"])[0].set_index("metric")
    assert s.loc["final/net/test_acc", "result"] == "n/a"
    assert s.loc["final/net/test_acc", "note"] == "not logged"
    assert list(s["setting"].unique()) == ["all"]
    figs = report.width_figures(res["runs"], res["slopes"], res["per_width"], res["local"],
                                ["lin/func_rmse_test"])
    assert figs["width_all"].axes[0].lines    # the one width is still drawn


def test_no_summaries(tmp_path):
    with pytest.raises(FileNotFoundError):
        report.collect(tmp_path)


def _env(tmp_path):
    """A working directory outside the repository and no PYTHONPATH: the installed package serves."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(WANDB_DIR=str(tmp_path / "wandb_env"), WANDB_SILENT="true")
    return tmp_path, env


@pytest.mark.slow
def test_cli(tmp_path):
    make_sweep(tmp_path / "sweep", widths=(8, 32, 128))
    root, env = _env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "wcntk.analysis.report", str(tmp_path / "sweep"), "--out",
                           str(tmp_path / "out"), "--width-metric", "lin/func_rmse_test", "corr/C02"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "slope ± 95% CI (t)" in proc.stdout and "initial/corr/C02" in proc.stdout
    assert "CUDA out of memory" in proc.stdout
    assert (tmp_path / "out" / "slopes.md").is_file()
    for ext in ("png", "pdf"):  # the default formats
        assert (tmp_path / "out" / "plots" / f"width_all.{ext}").stat().st_size > 1000, ext
    bad = subprocess.run([sys.executable, "-m", "wcntk.analysis.report", str(tmp_path / "empty_missing")],
                         cwd=root,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a directory" in bad.stderr


@pytest.mark.slow
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


@pytest.mark.slow
def test_wandb_failure_only_warns(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")

    def boom(*args, **kwargs):
        raise RuntimeError("no network")
    monkeypatch.setattr(wandb, "init", boom)
    make_sweep(tmp_path, widths=(8, 32), extra_jobs=False)
    with pytest.warns(UserWarning, match="wandb logging failed"):
        res = report.make_report(tmp_path, metrics=["lin/func_rmse_test"], formats=("png",), wandb=True)
    assert res["wandb_dir"] is None and (tmp_path / "report" / "slopes.md").is_file()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_never_pools_settings_and_never_fits_unfinished_jobs(tmp_path):
    """issue 8 item 5: model.b_std=0.05,0.5 are two settings; stale/interrupted jobs are listed,
    not fitted; bookkeeping keys (wandb.group, threads) and facts that vary are not settings."""
    import socket
    job = 0
    for b_std, slope in ((0.05, -1.0), (0.5, -0.5)):
        for w in (16, 64, 256):
            for s in (0, 1):
                c02 = 2.0 * w ** slope * math.exp(0.02 * (-1) ** s)  # the seeds' noise cancels in the fit
                cfg = config(w, s, b_std=b_std, group=f"g{job % 2}", threads=job % 3 or None)
                write_job(tmp_path / str(job), cfg, initial={"corr/C02": c02},
                          final={"lin/func_rmse_test": c02 ** 0.5}, resumed_from=(20, 60)[:job % 3])
                job += 1
    write_job(tmp_path / "interrupted", config(1024, 0, b_std=0.5), status="interrupted",
              message="SIGTERM", initial={"corr/C02": 1e3}, final={"lin/func_rmse_test": 1e3},
              resumed_from=[40])
    write_job(tmp_path / "stale", config(1024, 1, b_std=0.05), status="running",
              provenance={"host": socket.gethostname(), "pid": _dead_pid()}, initial={"corr/C02": 1e3})
    res = report.make_report(tmp_path, tmp_path / "out", metrics=["corr/C02"], formats=())  # tables only
    runs = res["runs"]
    assert report.setting_columns(runs) == ["model.b_std"]
    assert list(runs["setting"].cat.categories) == ["b_std=0.05", "b_std=0.5"]
    slopes = res["slopes"].set_index("setting")
    assert slopes.loc["b_std=0.05", "slope"] == pytest.approx(-1.0, abs=1e-9)
    assert slopes.loc["b_std=0.5", "slope"] == pytest.approx(-0.5, abs=1e-9)
    assert (slopes["n_points"] == 6).all()  # the interrupted and stale jobs (width 1024) are not fitted
    assert slopes.loc["b_std=0.05", "verdict"] == "yes" and slopes.loc["b_std=0.5", "verdict"] == "no"
    fails = res["failures"].set_index("job_dir")
    assert fails.loc["interrupted", "status"] == "interrupted" and fails.loc["stale", "status"] == "stale"
    assert fails.loc["stale", "setting"] == "b_std=0.05"
    assert "process is gone" in fails.loc["stale", "message"]
    # resumes (requeued or re-run from a checkpoint): per job in runs.csv, per setting in the status table
    assert fails.loc["interrupted", "resumes"] == 1 and fails.loc["stale", "resumes"] == 0
    written = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("job_dir")
    assert [written.loc[str(j), "resumes"] for j in range(4)] == [0, 1, 2, 0]
    counts = res["counts"].set_index("setting")["resumes"]
    assert counts["b_std=0.05"] == 0 + 1 + 2 + 0 + 1 + 2 and counts["b_std=0.5"] == 0 + 1 + 2 + 0 + 1 + 2 + 1
    assert "resumes" in (tmp_path / "out" / "failures.md").read_text()
    # final deviation ∝ C02^0.5 in both settings
    dev = res["deviation"]
    fit = dev[(dev["correlation"] == "initial/corr/C02") & (dev["deviation"] == "final/lin/func_rmse_test")]
    assert fit["slope"].to_numpy() == pytest.approx([0.5, 0.5], abs=1e-9)


def test_setting_labels_short_unless_ambiguous():
    assert report.setting_labels(["model.b_std", "optimizer.lr_width_exponent", "activation"]) == {
        "model.b_std": "b_std", "optimizer.lr_width_exponent": "α", "activation": "activation"}
    assert report.setting_labels(["model.kind", "optimizer.momentum", "dataset.name", "optimizer.name"]) == {
        "model.kind": "kind", "optimizer.momentum": "momentum", "dataset.name": "dataset.name",
        "optimizer.name": "optimizer.name"}
    assert not report.is_setting_key("facts.effective_lr") and not report.is_setting_key("wandb.group")
    assert not report.is_setting_key("model.width") and report.is_setting_key("dataset.standardize")


def test_deviation_trajectories_one_line_per_width(sweep):
    root, res = sweep
    fig = report.plot_deviation_trajectories(res["runs"], root, ["net/train_loss", "twin/test_loss"])
    assert len(fig.axes) == 2 * 2  # 2 settings × 2 metrics
    assert [len(ax.lines) for ax in fig.axes] == [len(WIDTHS)] * 4
    first = pd.concat(pd.read_csv(root / str(j) / "metrics.csv") for j in range(3))  # relu, width 8, 3 seeds
    mean = first.groupby("step")["net/train_loss"].mean()
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), mean.to_numpy())
    assert (root / "report" / "plots" / "deviation_vs_correlation.png").stat().st_size > 1000


def test_theory_link_stays_inside_the_repository(tmp_path):
    repo = Path(report.__file__).resolve().parents[3]
    inside = report._theory_link(repo / "outputs" / "sweeps" / "x" / "report")
    assert inside == "[docs/theory.md](../../../../docs/theory.md)"
    assert (repo / "outputs" / "sweeps" / "x" / "report" / "../../../../docs/theory.md").resolve().is_file()
    assert report._theory_link(tmp_path / "report") == "docs/theory.md of the wcntk repository"


# ------------------------------------------------------------------ asymptotic regime (issue 14)

CROSSOVER = 64


def make_crossover_sweep(root: Path, widths=(8, 16, 32, 64, 128, 256, 512, 1024), rng=0):
    """func_rmse and param_rel_change flat below width 64, exactly ∝ n^-1/2 from 64 up; C02 ∝ n^-1 at
    every width; log-normal noise 0.03 across 3 seeds."""
    gen = np.random.default_rng(rng)
    job = 0
    for w in widths:
        for s in SEEDS:
            def noisy(x):
                return x * math.exp(0.03 * gen.standard_normal())
            tail = (max(w, CROSSOVER) / CROSSOVER) ** -0.5
            write_job(root / str(job), config(w, s), initial={"corr/C02": noisy(0.5 / w)},
                      final={"lin/func_rmse_test": noisy(0.2 * tail),
                             "lin/param_rel_change": noisy(0.05 * tail)})
            job += 1
    return root


CROSSOVER_METRICS = ("lin/func_rmse_test", "lin/param_rel_change", "corr/C02")


def test_crossover_sweep_is_judged_on_its_tail(tmp_path):
    res = report.make_report(make_crossover_sweep(tmp_path / "sweep"), tmp_path / "out",
                             metrics=CROSSOVER_METRICS, formats=())                # tables only
    s = res["slopes"].set_index("metric")
    for metric, verdict, wrong in (("final/lin/func_rmse_test", "consistent", "above bound"),
                                   ("final/lin/param_rel_change", "yes", "no")):
        r = s.loc[metric]
        assert (r["n_min"], r["n_min_rule"], r["n_widths_fit"]) == (CROSSOVER, "auto", 5), metric
        assert r["n_points"] == 5 * len(SEEDS) and r["n_points_all"] == 8 * len(SEEDS)
        assert abs(r["slope"] + 0.5) <= r["ci_half"] < 0.2, metric
        assert r["verdict"] == verdict
        # the all-widths fit pools the flat widths: shown, but it would have judged wrongly
        assert r["slope_all"] > -0.4 and r["result_all"] == "fit"
        e = report.expected(metric, report.setting_config(res["runs"], "all"))
        assert e.verdict("fit", r["slope_all"], r["ci_half_all"]) == wrong
    c02 = s.loc["initial/corr/C02"]
    assert c02["n_min"] == 8 and c02["verdict"] == "yes"   # a pure power law keeps every width
    md = res["files"]["slopes_md"].read_text()
    assert "| asymptotic slope ± 95% CI (t) | widths fitted |" in md and "all widths (not judged)" in md
    assert "≥ 64 (5 widths, auto)" in md
    # local slopes: 7 pairs per metric, ≈ 0 below the crossover, ≈ −1/2 above; * inside the fit
    local = res["local"][res["local"]["metric"] == "final/lin/func_rmse_test"]
    assert len(local) == 7 and list(local["in_fit"]) == [False] * 3 + [True] * 4
    assert np.abs(local["slope"].to_numpy()[:2]).max() < 0.1
    assert np.abs(local["slope"].to_numpy()[3:] + 0.5).max() < 0.1
    assert "64→128" in res["files"]["local_slopes_md"].read_text()
    assert "### Local slopes" in res["files"]["report_md"].read_text()
    in_fit = res["per_width"].query("metric == 'final/lin/func_rmse_test'")["in_fit"]
    assert list(in_fit) == [False] * 3 + [True] * 5
    # deviation vs correlation: n_min is the larger of the two (64), theory ≥ (−1/2)/(−1) = +1/2
    d = res["deviation"].set_index(["deviation", "correlation"]).loc[
        ("final/lin/func_rmse_test", "initial/corr/C02")]
    assert d["n_min"] == CROSSOVER and d["theory"] == "≥ +0.5" and d["theory_kind"] == "lower bound"
    assert abs(d["slope"] - 0.5) <= d["ci_half"] and d["verdict"] == "consistent" and d["slope_all"] < 0.4
    # the plots (drawn, not saved): local slopes, and the asymptotic fit drawn over 64 … 1024
    # only, widths below n_min faded
    figs = report.width_figures(res["runs"], res["slopes"], res["per_width"], res["local"],
                                ["lin/func_rmse_test"])
    assert figs["local_slopes_all"].axes[0].lines
    fig = figs["width_final_lin_func_rmse_test"]
    top = fig.axes[0]
    spans = [(min(ln.get_xdata()), max(ln.get_xdata())) for ln in top.lines if len(ln.get_xdata()) == 50]
    assert (CROSSOVER, 1024) in [(round(a), round(b)) for a, b in spans]
    assert {c.get_alpha() for c in top.collections if c.get_alpha() is not None} >= {report.FADED}
    # --min-width overrides the rule
    forced = report.make_report(tmp_path / "sweep", tmp_path / "out2", metrics=CROSSOVER_METRICS,
                                formats=(), min_width=8)["slopes"].set_index("metric")
    assert forced.loc["final/lin/func_rmse_test", "n_min_rule"] == "--min-width"
    # the n^{-1/2} correction cannot absorb a kink: forced across it, the fit misses −1/2
    assert forced.loc["final/lin/param_rel_change", "verdict"] == "no"


def test_too_few_widths_for_a_tail_are_not_judged(tmp_path):
    make_crossover_sweep(tmp_path, widths=(64, 256))
    res = report.make_report(tmp_path, tmp_path / "out", metrics=["lin/func_rmse_test"], formats=())
    r = res["slopes"].iloc[0]
    assert r["result"] == "n/a" and r["verdict"] == "" and "no asymptotic fit" in r["note"]
    assert r["result_all"] == "fit" and r["slope_all"] == pytest.approx(-0.5, abs=0.1)


def _short_sweep(root: Path, widths, seeds, rng=7) -> pd.DataFrame:
    """Records of a relu sweep: C02 = 3·n^-1·e^{2 n^-1/2}·noise (a finite-width correction like a real
    sweep's), func_rmse = n^-1/2·noise, 5 % log-normal noise; the runs table of the report."""
    gen = np.random.default_rng(rng)
    for w in widths:
        for s in seeds:
            noise = np.exp(0.05 * gen.standard_normal(2))
            write_job(root / f"w{w}_s{s}", config(w, s),
                      initial={"corr/C02": 3.0 / w * math.exp(2.0 * w ** -0.5) * noise[0]},
                      final={"lin/func_rmse_test": w ** -0.5 * noise[1]})
    return report.with_settings(report.collect(root))


SHORT_METRICS = ("corr/C02", "lin/func_rmse_test")


def test_three_widths_one_seed_get_the_plain_slope_without_interval_or_verdict(tmp_path):
    """Issue 21: widths 8, 16, 32 with one seed were fitted a + b ln n + c n^-1/2 through 3 points
    (R² 1.000, no interval, a slope far from −1 as the headline). Now: the plain power law, its slope
    without an interval, no verdict, and the note says why."""
    runs = _short_sweep(tmp_path, (8, 16, 32), (0,))
    slopes = report.fit_slopes(runs, SHORT_METRICS)[0].set_index("metric")
    for metric in ("initial/corr/C02", "final/lin/func_rmse_test"):
        r = slopes.loc[metric]
        assert (r["result"], r["fit_form"], r["n_widths_fit"], r["correction"]) == ("fit", "plain", 3, 0)
        assert math.isnan(r["ci_half"]) and r["verdict"] == "" and r["r2"] < 1 - 1e-6
        assert "plain power law" in r["note"] and "one seed" in r["note"]
        # the slope is the one seed's least-squares line through its 3 points
        f = powerlaw.fit_power_law(runs["width"], runs[metric])
        assert r["slope"] == pytest.approx(f["slope"])
    assert slopes.loc["initial/corr/C02", "theory"] == "-1"
    md = report.slopes_markdown(report.fit_slopes(runs, SHORT_METRICS)[0])
    assert "(no CI)" in md and "| yes |" not in md and "| no |" not in md


def test_three_widths_several_seeds_get_the_plain_per_seed_fit_with_an_interval(tmp_path):
    runs = _short_sweep(tmp_path, (8, 16, 32), (0, 1, 2))
    r = report.fit_slopes(runs, ["corr/C02"])[0].iloc[0]
    assert (r["fit_form"], r["n_widths_fit"], r["correction"]) == ("plain", 3, 0)
    per_seed = [powerlaw.fit_power_law(g["width"], g["initial/corr/C02"])["slope"]
                for _, g in runs[runs["status"] == "ok"].groupby("seed")]
    assert r["slope"] == pytest.approx(np.mean(per_seed))
    assert r["ci_half"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / math.sqrt(3))
    assert r["verdict"] in ("yes", "no", "inconclusive") and "plain power law" in r["note"]


def test_five_widths_several_seeds_keep_the_corrected_fit(tmp_path):
    runs = _short_sweep(tmp_path, (64, 128, 256, 512, 1024), (0, 1, 2))
    r = report.fit_slopes(runs, ["corr/C02"], min_width=64)[0].iloc[0]
    assert (r["fit_form"], r["n_widths_fit"]) == ("corrected", 5) and r["correction"] != 0
    direct = powerlaw.fit_power_law_by_seed(runs["width"], runs["initial/corr/C02"], runs["seed"])
    assert (r["slope"], r["ci_half"]) == pytest.approx((direct["slope"], direct["ci_half"]))
    assert math.isfinite(r["ci_half"]) and "plain power law" not in r["note"]
    # 4 widths: the plain fit again (the correction would leave one residual degree of freedom per seed)
    r4 = report.fit_slopes(runs, ["corr/C02"], min_width=128)[0].iloc[0]
    assert (r4["fit_form"], r4["n_widths_fit"], r4["correction"]) == ("plain", 4, 0)


# ------------------------------------------------------------------ bad input (issue 15, report side)

def _wandb_run_file(path: Path, exit_record: bool = True, cut: int = 0) -> None:
    """An offline W&B run file (wcntk.analysis.wandb_records layout): a run record, then an exit record;
    `cut` bytes removed from the end (a truncated file)."""
    import struct

    from wandb.proto import wandb_internal_pb2
    records = [wandb_internal_pb2.Record()]
    records[0].run.run_id = "abc123"
    if exit_record:
        records.append(wandb_internal_pb2.Record())
        records[1].exit.exit_code = 0
    data = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
    for r in records:
        payload = r.SerializeToString()
        data += struct.pack("<IHB", 0, len(payload), 1) + payload
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:len(data) - cut])


@pytest.mark.slow   # draws the report's figures from damaged metrics.csv files (6 s)
def test_malformed_and_damaged_records(tmp_path):
    make_sweep(tmp_path, widths=(8, 16, 32), activations=("relu",), extra_jobs=False)
    for name, text in (("list", "[]"), ("width", json.dumps({"status": "ok", "config": {"width": "wide"}})),
                       ("section", json.dumps({"status": "ok", "final": [1, 2]})),
                       ("bare", json.dumps({"status": "ok"}))):                # a status without its config
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
    csv = (tmp_path / "0" / "metrics.csv").read_text()
    (tmp_path / "0" / "metrics.csv").write_text(csv[:-7])                 # last line cut off
    (tmp_path / "1" / "metrics.csv").write_text(csv.replace("\n", "\0", 1))  # NUL bytes
    (tmp_path / "6" / "metrics.csv").write_text("")     # zero bytes (the widest width's first seed)
    run_file = "wandb/offline-run-20260101_000000-abc123/run-abc123.wandb"
    if HAVE_WANDB:
        _wandb_run_file(tmp_path / "2" / run_file, cut=3)                   # torn exit record
        _wandb_run_file(tmp_path / "3" / run_file)                          # whole
    aside = tmp_path / "0" / "superseded" / "20260101T000000Z"        # a record resume moved aside
    aside.mkdir(parents=True)
    (aside / "summary.json").write_text((tmp_path / "0" / "summary.json").read_text())
    res = report.make_report(tmp_path, tmp_path / "out", metrics=["lin/func_rmse_test"], formats=("png",))
    assert not any("superseded" in j for j in res["runs"]["job_dir"])
    fails = res["failures"].set_index("job_dir")
    assert fails.loc["list", "message"] == "not a record (a JSON list, not an object)"
    assert fails.loc["width", "message"] == "not a record (a non-integer width or seed in its config)"
    assert fails.loc["section", "message"] == "not a record (final is not an object)"
    assert fails.loc["bare", "message"] == "not a record (no config)"
    assert set(fails["status"]) == {"unreadable"}
    problems = res["problems"].set_index("job_dir")["record_problems"].to_dict()
    assert problems["0"] == "metrics.csv truncated (last line incomplete)"
    assert problems["1"] == "metrics.csv holds NUL bytes"
    assert problems["6"] == "metrics.csv empty (no header)"
    if HAVE_WANDB:
        assert problems["2"] == "run-abc123.wandb truncated (no exit record)" and "3" not in problems
    text = res["files"]["failures_md"].read_text()
    assert "Damaged records" in text and "metrics.csv truncated" in text
    assert res["slopes"].iloc[0]["n_points_all"] == 9   # the damaged jobs' summaries still count
    # the plots read what is whole of a damaged metrics.csv
    assert (tmp_path / "out" / "plots" / "deviation_vs_step.png").is_file()
    assert (tmp_path / "out" / "plots" / "loss_curves_w32.png").is_file()    # from seed 1: seed 0's is empty
    assert (tmp_path / "out" / "report.md").is_file()


def test_cli_bad_arguments_are_one_line_and_leave_nothing(tmp_path, capsys):
    make_sweep(tmp_path / "sweep", widths=(8, 32), activations=("relu",), extra_jobs=False)
    out, errors = tmp_path / "out", []
    for argv, expected in (
            (["--metrics", "lin/func_rmse_tset"], "not logged by any job: lin/func_rmse_tset; logged: "),
            (["--curve-width", "999"], "--curve-width 999 is not a width of this sweep; widths: 8, 32")):
        with pytest.raises(SystemExit) as e:
            report.main([str(tmp_path / "sweep"), "--out", str(out), *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and expected in err and "Traceback" not in err
        assert not out.exists()
        errors.append(err)
    assert "final/lin/func_rmse_test, final/lin/func_mse_test" in errors[0]   # the valid names
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        report.main([str(empty)])
    assert e.value.code == 2 and "no summary.json" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_failed_records_do_not_make_settings(tmp_path):
    """A failed-validation record carries its raw config (config_validated false) and a failed run
    may differ in any key: neither makes a config key look as if it varied; both keep width and seed."""
    make_sweep(tmp_path, widths=(8, 16, 32), activations=("relu",), extra_jobs=False)
    raw = config(64, 7)
    raw["optimizer"]["momentum"] = -5
    del raw["dataset"]
    (tmp_path / "invalid").mkdir()
    (tmp_path / "invalid" / "summary.json").write_text(json.dumps({
        "status": "failed", "message": "optimizer.momentum=-5: must be in [0, 1)", "config": raw,
        "config_validated": False}))
    write_job(tmp_path / "oom", config(4096, 1, b_std=0.5), status="failed", message="out of memory")
    res = report.make_report(tmp_path, tmp_path / "out", metrics=["lin/func_rmse_test"], formats=())
    runs = res["runs"]
    assert report.setting_columns(runs) == [] and list(runs["setting"].cat.categories) == ["all"]
    fails = res["failures"].set_index("job_dir")
    assert (fails.loc["invalid", "width"], fails.loc["invalid", "seed"]) == (64, 7)
    assert fails.loc["oom", "width"] == 4096 and set(fails["setting"]) == {"all"}
    assert not runs.set_index("job_dir").loc["invalid", "config_validated"]


# A real default-like sweep (python run.py -m +sweep=width_scaling: relu, depth 1, MNIST, 1000 steps,
# seeds 0-2, widths 8 … 4096), its summary.json files only: tests/fixtures/README.md says how it was made.
FIXTURE = Path(__file__).parent / "fixtures" / "width_scaling"


def test_default_sweep_fixture_is_judged_on_its_asymptotic_regime():
    runs = report.with_settings(report.collect(FIXTURE))
    assert len(runs) == 30 and set(runs["status"]) == {"ok"}
    metrics = ("lin/func_rmse_test", "lin/func_mse_test", "lin/param_rel_change", "corr/C02", "corr/C11",
               "corr/step_ratio_2")
    slopes, _, local = report.fit_slopes(runs, metrics)
    s = slopes.set_index("metric")
    config = report.setting_config(runs, "all")
    for metric, verdict, all_widths_verdict in (("final/lin/func_rmse_test", "consistent", "above bound"),
                                                ("final/lin/func_mse_test", "consistent", "above bound")):
        r = s.loc[metric]
        assert r["verdict"] == verdict, (metric, r["slope"], r["ci_half"], r["n_min"])
        assert r["n_min"] == 128 and r["n_min_rule"] == "auto" and r["n_widths_fit"] == 6
        # the all-widths fit is still there, and on its own it would have contradicted the theory
        assert r["result_all"] == "fit" and r["n_points_all"] == 30
        judged_on_all = report.expected(metric, config).verdict("fit", r["slope_all"], r["ci_half_all"])
        assert judged_on_all == all_widths_verdict
    assert (s.loc["initial/corr/C02", "verdict"], s.loc["initial/corr/C11", "verdict"]) == ("yes", "yes")
    # param_rel_change approaches −1/2 from above (local slopes −0.37 at 64→128, −0.47 … −0.52 beyond):
    # a plain power law from n_min = 64 gives −0.469 and (pooling 3 seeds × 7 widths as independent)
    # ± 0.011, "no". The judged fit carries the n^{-1/2} finite-width correction and takes its
    # interval across seeds (docs/theory.md §8): −0.506 ± 0.013 covers −1/2
    r = s.loc["final/lin/param_rel_change"]
    assert (r["n_min"], r["verdict"]) == (64, "yes") and abs(r["slope"] + 0.5) < 0.02, r["ci_half"]
    assert report.expected("final/lin/param_rel_change", config).verdict("fit", r["slope_all"],
                                                                           r["ci_half_all"]) == "no"
    # step_ratio_2 (every width passes the lack-of-fit test): −1.039 ± 0.129, the prediction −1
    # (the pooled plain fit said −0.917 ± 0.069, "no")
    r = s.loc["initial/corr/step_ratio_2"]
    assert (r["n_min"], r["verdict"]) == (8, "yes"), (r["slope"], r["ci_half"])
    # a forced short tail: 3 widths cannot carry the correction (3 parameters through 3 points per
    # seed gave −0.34 ± 0.86 with c = 14), so it is the plain per-seed power law (−0.496 ± 0.037), and
    # the note says so; the tails above (≥ 6 widths) keep the correction
    widest = report.fit_slopes(runs, ["lin/param_rel_change"], min_width=1024)[0].iloc[0]
    assert widest["n_min_rule"] == "--min-width" and widest["n_widths_fit"] == 3
    assert widest["fit_form"] == "plain" and widest["correction"] == 0 and "plain power law" in widest["note"]
    assert abs(widest["slope"] + 0.5) < widest["ci_half"] < 0.1
    assert set(s.loc[s["result"] == "fit", "fit_form"]) == {"corrected"}
    md = report.slopes_markdown(slopes)
    assert "all widths (not judged)" in md and f"{s.loc['final/lin/func_rmse_test', 'slope_all']:+.3f}" in md
    # the flat small widths show in the local slopes: 8→16 is far from −1/2
    first = local[local["metric"] == "final/lin/func_rmse_test"].iloc[0]
    assert (first["width_lo"], first["width_hi"]) == (8, 16) and first["slope"] > -0.2 and not first["in_fit"]
    dev = report.fit_deviation_vs_correlation(runs).set_index(["deviation", "correlation"])
    for corr, theory in (("initial/corr/C02", "≥ +0.5"), ("initial/corr/C11", "≥ +1")):
        r = dev.loc[("final/lin/func_rmse_test", corr)]
        assert (r["theory"], r["verdict"]) == (theory, "consistent") and r["n_min"] > 8
