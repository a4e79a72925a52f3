"""End-to-end runs: run.py as a subprocess (files, W&B records, exit codes, signals, what it
prints) and the trainer in-process (optimizers, models, determinism, twin vs kernel dynamics)."""
import csv
import json
import math
import os
import signal
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests._refs import gd_mse_kernel_dynamics
from tests._wandb_files import exit_codes
from tests.conftest import CONF, ENV, ROOT, run_py, start_run_py, tiny_config
from wcntk.analysis.wandb_records import config_values, history_rows, summary_values
from wcntk.core.layers import ModelConfig
from wcntk.core.losses import mse
from wcntk.core.metric_registry import METRIC_NAMES
from wcntk.core.ntk import empirical_ntk
from wcntk.run.job import run_job
from wcntk.run.record import Status, flatten
from wcntk.training.data import DataConfig
from wcntk.training.sampler import MinibatchSampler
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer

TINY = ["debug=default", "dataset=digits"]  # width 16, 20 steps logged every 5, 64/32 examples, 8 probes


def run_cli(tmp_path: Path, *overrides: str, name: str = "run", env=None):
    run_dir = tmp_path / name
    return run_py(f"hydra.run.dir={run_dir}", *overrides, env=env), run_dir


def read_csv(path: Path):
    with open(path) as fh:
        return list(csv.DictReader(fh))




@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    proc, run_dir = run_cli(tmp_path_factory.mktemp("e2e"), *TINY, "wandb.mode=offline")
    assert proc.returncode == 0, proc.stderr
    return proc, run_dir


@pytest.mark.slow
def test_cli_run_writes_config_csv_and_summary(offline_run):
    _, offline_run = offline_run
    assert (offline_run / ".hydra" / "config.yaml").is_file()
    rows = read_csv(offline_run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [0, 5, 10, 15, 20]
    assert list(rows[0]) == ["step", *METRIC_NAMES]
    assert rows[1]["corr/C02"] == "" and rows[0]["corr/C02"] != "" and rows[-1]["corr/C02"] != ""
    summary = json.loads((offline_run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["message"] is None and summary["last_step"] == 20
    # The full resolved config, nested exactly as .hydra/config.yaml (every key, not a selection).
    assert summary["config"] == yaml.safe_load((offline_run / ".hydra" / "config.yaml").read_text())
    cfg = dict(flatten(summary["config"]))
    assert (cfg["width"], cfg["dataset.name"], cfg["optimizer.name"], cfg["seed"]) == (16, "digits", "gd", 0)
    assert cfg["model.b_std"] == 0.05 and cfg["dataset.standardize"] is True
    facts = summary["facts"]
    assert facts["n_params"] == 64 * 16 + 16 + 16 * 10 + 10 and facts["data_source"] == "sklearn-digits"
    assert facts["effective_lr"] == cfg["optimizer.lr"] and facts["device"] == "cpu"
    prov = summary["provenance"]
    assert prov["torch"] == torch.__version__ and prov["pid"] > 0 and prov["started_at"].endswith("+00:00")
    if (ROOT / ".git").exists():
        assert len(prov["git_commit"]) == 40 and isinstance(prov["git_dirty"], bool)
    assert summary["wall_time_s"] > 0
    assert set(summary["final"]) == set(METRIC_NAMES) == set(summary["initial"])
    for key in METRIC_NAMES:
        assert summary["final"][key] == pytest.approx(float(rows[-1][key]), rel=1e-6)
        assert summary["initial"][key] == pytest.approx(float(rows[0][key]), rel=1e-6)
    assert summary["initial"]["lin/func_rmse_train"] == 0.0
    assert summary["final"]["lin/func_rmse_train"] > 0
    assert summary["final"]["net/train_loss"] < summary["initial"]["net/train_loss"]


@pytest.mark.slow
def test_cli_run_ends_with_one_closing_line(offline_run):
    """progress=false still prints the closing line: status, the headline metrics, the run dir."""
    proc, run_dir = offline_run
    final = json.loads((run_dir / "summary.json").read_text())["final"]
    assert proc.stdout.splitlines()[-1] == (f"wcntk: ok  lin/func_rmse_test {final['lin/func_rmse_test']:.4g}"
                                            f"  corr/C02 {final['corr/C02']:.4g} (step 20)  {run_dir}")
    assert proc.stderr == ""


@pytest.mark.slow
def test_cli_run_wandb_records_hold_the_same_metrics_and_config(offline_run):
    _, offline_run = offline_run
    assert exit_codes(offline_run) == [0]      # (waits until W&B has written the whole file)
    (run_file,) = offline_run.glob("wandb/offline-run-*/run-*.wandb")
    history = history_rows(run_file)
    csv_rows = read_csv(offline_run / "metrics.csv")
    assert [row["step"] for row in history] == [int(r["step"]) for r in csv_rows]
    for logged, row in zip(history, csv_rows, strict=True):
        for key in METRIC_NAMES:
            if row[key] != "":
                assert logged[key] == pytest.approx(float(row[key]), rel=1e-6), key
    record = json.loads((offline_run / "summary.json").read_text())
    summary = summary_values(run_file)
    assert summary["status"] == "ok" and summary["last_step"] == 20
    assert summary["lin/func_rmse_test"] == pytest.approx(float(csv_rows[-1]["lin/func_rmse_test"]), rel=1e-6)
    assert summary["initial/corr/C02"] == pytest.approx(float(csv_rows[0]["corr/C02"]), rel=1e-6)
    config = {k: v for k, v in config_values(run_file).items() if k != "_wandb"}
    assert config == {**record["config"], "facts": record["facts"], "provenance": record["provenance"]}


@pytest.mark.slow
def test_cli_divergence_stops_cleanly(tmp_path):
    proc, run_dir = run_cli(tmp_path, *TINY, "optimizer.lr=1e8", "wandb.mode=offline")
    assert proc.returncode == 1
    warning, line = proc.stderr.splitlines()     # the lr sanity line, then the closing line
    assert warning.startswith("wcntk: warning: effective lr 1e+08 is above 2/λ_max")
    assert line.startswith("wcntk: diverged at step") and line.endswith(str(run_dir))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] == summary["last_step"] is not None
    assert summary["final"]["net/train_loss"] is None          # NaN/inf stored as null
    assert exit_codes(run_dir)[-1] != 0


@pytest.mark.slow
def test_cli_bad_override_is_one_line_and_no_work(tmp_path):
    proc, run_dir = run_cli(tmp_path, *TINY, "width=0")
    assert proc.returncode != 0
    assert proc.stderr.strip() == "wcntk: error: width must be a positive integer, got 0"
    assert not (run_dir / "metrics.csv").exists() and not (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_cli_missing_dataset_files_fail_clearly_and_are_recorded(tmp_path):
    proc, run_dir = run_cli(tmp_path, "dataset=fashion_mnist", f"dataset.data_dir={tmp_path / 'data'}",
                            "dataset.download=false", "steps=1", "wandb.mode=disabled", "progress=false")
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("wcntk: failed: DatasetUnavailable:") and "FashionMNIST" in line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "FashionMNIST" in summary["message"]
    assert summary["last_step"] is None and summary["initial"] == {}


def start_long_run(tmp_path: Path):
    """run.py in its own process group (as a shell runs it), stopped once 2 rows were logged."""
    run_dir = tmp_path / "run"
    proc = start_run_py(f"hydra.run.dir={run_dir}", *TINY, "steps=100000", "wandb.mode=offline",
                        start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "metrics.csv").is_file() and len(read_csv(run_dir / "metrics.csv")) >= 2:
            return proc, run_dir
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the run did not log two rows: {proc.communicate()[1][-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_signal_ends_the_run_as_interrupted(tmp_path, signum, code):
    """`kill` (SIGTERM: also SLURM at a time limit) and Ctrl-C (SIGINT to the whole process group,
    W&B's service included): within seconds, status interrupted, one line, the W&B run closed."""
    proc, run_dir = start_long_run(tmp_path)
    os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 30
    assert proc.returncode == code
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["message"] == f"interrupted by {signum.name}"
    rows = read_csv(run_dir / "metrics.csv")
    assert summary["last_step"] == int(rows[-1]["step"]) >= 5
    assert summary["initial"]["corr/C02"] == pytest.approx(float(rows[0]["corr/C02"]), rel=1e-6)
    assert summary["final"]["net/train_loss"] == pytest.approx(float(rows[-1]["net/train_loss"]), rel=1e-6)
    assert summary["checkpoint_step"] >= summary["last_step"]  # the next step boundary after the signal
    assert err.splitlines() == [f"wcntk: interrupted by {signum.name} (last step {summary['last_step']}, "
                                f"checkpoint at step {summary['checkpoint_step']})  "
                                f"lin/func_rmse_test {summary['final']['lin/func_rmse_test']:.4g}  "
                                f"corr/C02 {summary['final']['corr/C02']:.4g} (step 0)  {run_dir}"]
    assert "Traceback" not in out + err
    assert exit_codes(run_dir) == [code]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_signal_while_starting_is_one_line_and_leaves_nothing(tmp_path, signum, code):
    """A signal while Python still imports torch and Hydra (seconds; sent once torch's library is
    mapped into the process, which run.py's imports start with): one line, 128 + signal, no
    traceback, no run dir. The child starts with the signal's default disposition, as a command
    typed at a terminal does: a test suite started in the background (`… &` in a script) ignores
    SIGINT, which run.py then leaves ignored, as it should for a background job."""
    proc = start_run_py(*TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and "libtorch" not in maps.read_text() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.splitlines() == [f"wcntk: interrupted by {signum.name} while starting: nothing was run"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_a_signal_after_the_closing_line_leaves_the_record_and_the_exit_code(tmp_path, monkeypatch, capsys):
    """SIGTERM after the run's closing `ok` line (Hydra's or W&B's teardown still running): one
    line saying so, exit 0 as the record says, not 143."""
    from wcntk.__main__ import cli
    from wcntk.run import entry
    from wcntk.run.lifecycle import Interrupted
    run_single = entry.run_single

    def then_signalled(cfg, run_dir):
        run_single(cfg, run_dir)
        raise Interrupted(signal.SIGTERM)
    monkeypatch.setattr(entry, "run_single", then_signalled)
    monkeypatch.chdir(tmp_path)
    with mock.patch.dict(os.environ), pytest.raises(SystemExit) as stop:
        cli([*TINY, "wandb.mode=disabled", "progress=false", f"hydra.run.dir={tmp_path / 'run'}"])
    assert stop.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("wcntk: ok ") and err == "wcntk: SIGTERM after the run ended: its record stands\n"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_cli_progress_to_a_file_has_no_carriage_returns(tmp_path):
    """`python run.py ... 2>log`: a line per ~10 % instead of a redrawn bar."""
    proc, run_dir = run_cli(tmp_path, *TINY, "progress=true", "wandb.mode=disabled")
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert 5 <= len(lines) <= 10 and all(line.startswith("wcntk: step ") for line in lines)


@pytest.mark.slow
def test_cli_online_wandb_unreachable_falls_back_offline_within_the_timeout(tmp_path):
    env = {**ENV, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40}
    env.pop("WANDB_MODE", None)
    proc, run_dir = run_cli(tmp_path, *TINY, "wandb.mode=online", "wandb.init_timeout=2", env=env)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    (offline,) = run_dir.glob("wandb/offline-run-*")
    assert line.startswith("wcntk: W&B online init failed (")
    assert line.endswith(f"the run goes on offline in {offline}; upload it later with: wandb sync {offline}")
    assert [p.name for p in run_dir.glob("wandb/*run-*")] == [offline.name]
    # The whole run, W&B's online attempt included, takes the 2 s timeout plus a few seconds of
    # work: the online init gives up at init_timeout, it does not wait for W&B's own minute.
    assert json.loads((run_dir / "summary.json").read_text())["wall_time_s"] < 2 + 25
    assert exit_codes(run_dir) == [0]


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
    dict(parameterization="standard", depth=2, activation="erf", lr=0.1),  # its twin diverges at 0.5
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
    def record(seed, name):
        cfg = tiny_config(width=16, depth=2, activation="erf", seed=seed, log_every=4,
                          **{"optimizer.name": "sgd", "optimizer.batch_size": 16})
        return run_job(cfg, tmp_path / name)
    a, b, c = record(0, "a"), record(0, "b"), record(1, "c")
    assert a.status == Status.OK and a.final == b.final and a.initial == b.initial
    assert a.final != c.final


@pytest.mark.parametrize("space", ["function", "parameter"])
def test_trained_twin_follows_the_closed_form_kernel_dynamics(space):
    trainer = tiny_trainer(precision="float64", steps=15, lr=0.7, depth=2, twin_space=space)
    trainer.run()
    assert trainer.twin_space == space
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


def _draw(sampler, steps):
    out = []
    for _ in range(steps):
        sampler.advance()
        out.append(sampler.indices().tolist())
    return out


def test_minibatches_are_seeded_epochs():
    def batches(seed):
        return _draw(MinibatchSampler(10, 4, seed, torch.device("cpu")), 5)
    a, b = batches(3), batches(3)
    assert a == b and a != batches(4)
    assert len(set(a[0] + a[1])) == 8          # an epoch draws without replacement (drop_last)
    full = MinibatchSampler(10, None, 0, torch.device("cpu"))
    full.advance()
    assert full.indices() is None


def test_minibatch_order_is_the_documented_one_across_device_buffer_refills():
    """Epoch e = the e-th randperm of Generator().manual_seed(seed), cut into n // b batches;
    a device buffer of 3 rows is refilled 4 times in 13 steps and rewind() starts over."""
    gen, ref = torch.Generator().manual_seed(7), []
    while len(ref) < 13:
        perm = torch.randperm(10, generator=gen).tolist()
        ref += [perm[0:4], perm[4:8]]
    sampler = MinibatchSampler(10, 4, 7, torch.device("cpu"), block=3)
    assert _draw(sampler, 13) == ref[:13]
    sampler.rewind()
    assert _draw(sampler, 2) == ref[:2] and sampler.cursor.device.type == "cpu"


GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "debug_default_metrics.csv"


@pytest.mark.slow
def test_debug_run_writes_the_golden_metrics(tmp_path):
    """`python run.py debug=default wandb.mode=disabled`, in-process: the same metrics.csv as the
    committed one (its columns, steps and values, to float32 round-off across machines)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["debug=default", "wandb.mode=disabled"])
    record = run_job(OmegaConf.to_container(cfg, resolve=True), tmp_path)
    assert record.status == Status.OK
    golden, got = read_csv(GOLDEN), read_csv(tmp_path / "metrics.csv")
    assert [list(row) for row in got] == [list(row) for row in golden]
    for want, row in zip(golden, got, strict=True):
        for key, value in want.items():
            assert (value == row[key] == "") or math.isclose(float(row[key]), float(value), rel_tol=1e-4,
                                                             abs_tol=1e-6), (want["step"], key)
