"""The run lifecycle in-process: signals end a run as `interrupted` with what was logged, a full
disk gives `failed` with only complete CSV rows, a stale `running` record is re-run on resume,
one W&B run per run dir, provenance, progress lines, closing lines and the sweep's end table."""
import csv
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests._wandb_files import exit_codes
from tests.conftest import tiny_config
from wcntk.analysis.wandb_records import config_values, history_rows, summary_values
from wcntk.core.metric_registry import METRIC_NAMES
from wcntk.run import provenance as prov
from wcntk.run.job import run_job
from wcntk.run.lifecycle import Interrupted, deferred_signals, interruptible
from wcntk.run.outcome import SweepSummary, closing_line
from wcntk.run.record import Record, Status, effective_status, flatten, load_record
from wcntk.run.tracking import CsvLog, RunRecorder, WandbLog
from wcntk.training.progress import LineProgress, progress_bar


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))




def signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Deliver `signum` to this process right after `step` has been logged."""
    log = RunRecorder.log

    def log_then_signal(self, t, metrics):
        log(self, t, metrics)
        if t == step:
            os.kill(os.getpid(), signum)
    monkeypatch.setattr(RunRecorder, "log", log_then_signal)


# ----------------------------------------------------------------------------- signals

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                          (signal.SIGUSR1, 128 + signal.SIGUSR1)])
def test_signal_ends_the_run_as_interrupted_with_what_was_logged(tmp_path, monkeypatch, signum, code):
    signal_at_step(monkeypatch, 6, signum)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    with pytest.raises(Interrupted) as caught:
        run_job(tiny_config(), tmp_path)
    assert caught.value.exit_code == code and caught.value.signum == signum
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert caught.value.record == load_record(tmp_path / "summary.json")
    assert summary["status"] == "interrupted" and summary["message"] == f"interrupted by {signum.name}"
    assert summary["last_step"] == 6
    rows = read_rows(tmp_path / "metrics.csv")
    assert [int(r[0]) for r in rows[1:]] == [0, 3, 6]
    assert summary["initial"]["corr/C02"] == pytest.approx(float(rows[1][rows[0].index("corr/C02")]))
    assert summary["final"]["net/train_loss"] == pytest.approx(float(rows[-1][1]))
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


def test_interruptible_only_in_the_main_thread_and_chains_the_previous_handler():
    seen = []
    sigint = signal.getsignal(signal.SIGINT)   # default_int_handler; SIG_IGN on an xdist worker
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(Interrupted):
            with interruptible():
                with interruptible():      # nested: no second installation
                    os.kill(os.getpid(), signal.SIGUSR2)
        assert seen == [signal.SIGUSR2]    # e.g. submitit's requeue handler still runs
        errors = []

        def in_thread():
            try:
                with interruptible():
                    pass
            except Exception as err:  # noqa: BLE001
                errors.append(err)
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        assert errors == []
        assert signal.getsignal(signal.SIGINT) is sigint   # restored, whatever it was
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_signals_within_deferred_signals_wait_for_the_block_to_end():
    done = []
    with pytest.raises(Interrupted):
        with interruptible():
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                done.append("row written")
            done.append("after the block")   # not reached: the signal is handled as the block ends
    assert done == ["row written"]


def test_interrupted_pickles_with_its_record():
    import pickle
    err = Interrupted(signal.SIGTERM)
    err.record = Record(status=Status.INTERRUPTED, config={"width": 8}, final={"corr/C02": 0.5})
    back = pickle.loads(pickle.dumps(err))   # crosses joblib's process boundary
    assert (back.signum, back.exit_code, back.record, str(back)) == \
        (signal.SIGTERM, 143, err.record, "interrupted by SIGTERM")


# ----------------------------------------------------------------------------- disk full

class FullDisk:
    """A raw file whose writes after `budget` bytes write half the data, then fail (ENOSPC)."""

    def __init__(self, fh, budget: int):
        self.fh, self.budget = fh, budget

    def write(self, data) -> int:
        if len(data) > self.budget:
            self.fh.write(bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def test_csv_log_never_keeps_a_half_row(tmp_path):
    log = CsvLog(tmp_path / "m.csv", ["a", "b"])
    log.log(0, {"a": 1.5, "b": 2.0})
    log.fh = FullDisk(log.fh, budget=0)
    with pytest.raises(OSError):
        log.log(1, {"a": 3.25})
    log.fh = log.fh.fh
    log.log(2, {"a": 4.0, "b": 5.0})       # the disk has room again: rows go on, complete
    log.close()
    assert read_rows(tmp_path / "m.csv") == [["step", "a", "b"], ["0", "1.5", "2.0"], ["2", "4.0", "5.0"]]


@pytest.mark.parametrize("room_for_a_temp_file", [True, False])
def test_disk_full_gives_failed_with_complete_rows(tmp_path, monkeypatch, room_for_a_temp_file):
    init, atomic = CsvLog.__init__, RunRecorder.write_summary

    def small_disk(self, path, names):
        init(self, path, names)
        self.fh = FullDisk(self.fh, budget=self.size * 3)   # room for about two rows

    def write_summary(self):
        if self.record.status == Status.FAILED and not room_for_a_temp_file:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        atomic(self)
    monkeypatch.setattr(CsvLog, "__init__", small_disk)
    monkeypatch.setattr(RunRecorder, "write_summary", write_summary)
    with pytest.raises(OSError) as caught:
        run_job(tiny_config(), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert caught.value.record == load_record(tmp_path / "summary.json")
    assert summary["status"] == "failed" and "No space left on device" in summary["message"]
    rows = read_rows(tmp_path / "metrics.csv")
    assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows)
    assert summary["last_step"] == int(rows[-1][0]) and summary["initial"]
    assert "OSError" in (tmp_path / "traceback.txt").read_text()


# ----------------------------------------------------------------------------- record and resume

def test_summary_holds_the_full_config_facts_and_provenance(tmp_path):
    cfg = tiny_config()
    record = run_job(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= {"status", "message", "diverged_step", "last_step", "config", "config_validated",
                            "facts", "provenance", "initial", "final", "wall_time_s"}
    assert summary == json.loads(json.dumps(record.to_dict()))      # what run_job returned
    assert record.config_validated is True
    assert record.status in Status.written() and record.last_step == 12
    assert record.config == cfg and dict(flatten(record.config))["dataset.n_train"] == 48
    facts = dict(record.facts)
    assert 0 < facts.pop("stable_lr") < 100
    assert len(facts.pop("theta0_sha256")) == 64     # tests/test_fingerprint.py
    assert facts.pop("theta0_frozen_sha256") == hashlib.sha256().hexdigest()   # nothing frozen
    assert facts == {"n_params": 64 * 8 + 8 + 8 * 10 + 10, "n_frozen_params": 0, "effective_lr": 0.5,
                     "data_source": "sklearn-digits", "device": "cpu", "init_scheme": "chunked-v2",
                     "twin_space": "parameter"}     # 12 steps: the kernel would not repay itself
    p = record.provenance
    assert set(p) == {"git_commit", "git_dirty", "wcntk", "torch", "cuda", "torch_threads", "python", "host",
                      "pid", "started_at", "launch"}
    assert p["pid"] == os.getpid() and p["started_at"].endswith("+00:00")
    assert p["torch_threads"] == torch.get_num_threads()


def test_a_killed_run_leaves_a_running_record_with_its_initial_values(tmp_path, monkeypatch):
    """What summary.json says while the run is at step 6 (what SIGKILL would leave)."""
    on_disk = {}
    log = RunRecorder.log

    def log_and_look(self, t, metrics):
        log(self, t, metrics)
        if t == 6:
            on_disk.update(json.loads((tmp_path / "summary.json").read_text()))
    monkeypatch.setattr(RunRecorder, "log", log_and_look)
    done = run_job(tiny_config(), tmp_path)
    assert on_disk["status"] == "running" and on_disk["last_step"] == 0
    assert on_disk["initial"] == done.initial and on_disk["facts"] == done.facts
    assert on_disk["provenance"]["pid"] == os.getpid() and on_disk["config"] == done.config


def test_wandb_finish_stores_the_status_word(tmp_path):
    """W&B stores a str subclass by its name: the run summary must get "interrupted", never
    "INTERRUPTED" (Status is a StrEnum)."""
    class Run:
        summary: dict = {}

        def finish(self, exit_code):
            self.exit_code = exit_code
    log = WandbLog("disabled", "p", None, [], None, {}, tmp_path)
    log.run = Run()
    log.finish(Record(status=Status.INTERRUPTED, last_step=6, final={"corr/C02": 0.5}), 143)
    assert type(log.run.summary["status"]) is str and log.run.summary["status"] == "interrupted"
    assert (log.run.summary["last_step"], log.run.summary["corr/C02"], log.run.exit_code) == (6, 0.5, 143)


def test_a_partial_config_is_recorded_with_every_key(tmp_path):
    cfg = tiny_config()
    partial = {k: v for k, v in cfg.items() if k not in ("loss", "threads", "corr_every")}
    partial["wandb"] = {"mode": "disabled"}
    record = run_job(partial, tmp_path)
    assert record.config == cfg        # the defaults filled in (W&B's defaults included)


def test_provenance_git_state(monkeypatch, tmp_path):
    commit, dirty = prov.git_state()
    if (Path(prov.__file__).resolve().parents[1] / ".git").exists():
        assert len(commit) == 40 and isinstance(dirty, bool)
    package = tmp_path / "site-packages" / "wcntk"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(prov, "_PACKAGE_DIR", package)      # wcntk outside any checkout of its own
    assert prov.git_state() == (None, None) and prov.checkout_root() is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert prov.checkout_root() is None                      # inside another repository, untracked
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert prov.checkout_root() == tmp_path                  # a checkout that tracks the package
    monkeypatch.setenv("PATH", str(tmp_path))                # no git at all
    assert prov.git_state() == (None, None) and prov.provenance()["git_commit"] is None


def test_resume_reruns_a_stale_running_job_and_skips_an_ok_one(tmp_path):
    first = run_job(tiny_config(), tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = replace(first, status=Status.RUNNING, provenance={**first.provenance, "pid": dead.pid})
    (tmp_path / "summary.json").write_text(json.dumps(stale.to_dict()))
    assert effective_status(stale) == Status.STALE
    again = run_job(tiny_config(), tmp_path, resume=True)
    assert again.status == Status.OK and again.provenance["started_at"] >= first.provenance["started_at"]
    assert again.final == first.final
    stamp = (tmp_path / "summary.json").stat().st_mtime_ns
    assert run_job(tiny_config(), tmp_path, resume=True) == again
    assert (tmp_path / "summary.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_wandb_gets_the_same_record_and_one_run_per_job_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_config(**{"wandb.mode": "offline"})
    signal_at_step(monkeypatch, 3, signal.SIGTERM)
    with pytest.raises(Interrupted):
        run_job(cfg, tmp_path)
    assert exit_codes(tmp_path) == [143]
    monkeypatch.undo()
    record = run_job(cfg, tmp_path, resume=True)            # the re-run of an interrupted job
    runs = list((tmp_path / "wandb").glob("*run-*"))
    assert len(runs) == 1 and runs[0].name.endswith((tmp_path / "wandb_run_id").read_text().strip())
    assert exit_codes(tmp_path) == [0]
    (run_file,) = runs[0].glob("run-*.wandb")
    config = {k: v for k, v in config_values(run_file).items() if k != "_wandb"}
    assert config == {**record.config, "facts": record.facts, "provenance": record.provenance}
    logged = summary_values(run_file)
    for key in METRIC_NAMES:
        assert logged[f"initial/{key}"] == pytest.approx(record.initial[key])
        assert logged[key] == pytest.approx(record.final[key])
    assert (logged["status"], logged["last_step"]) == ("ok", 12)
    # continued from the checkpoint at step 3: the one local run holds every row of metrics.csv
    assert record.resumed_from == [3]
    assert [row["step"] for row in history_rows(run_file)] == [int(r[0]) for r in read_rows(tmp_path /
                                                                                            "metrics.csv")[1:]]


# ----------------------------------------------------------------------------- what is printed

def test_progress_lines_every_tenth_without_carriage_returns(capsys):
    bar = LineProgress(1000, label="seed=0,width=8")
    for _ in range(1000):
        bar.update(1)
        bar.set_postfix(net="0.5", refresh=False)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 10 and "\r" not in err
    assert lines[0].startswith("wcntk: [seed=0,width=8] step 100/1000 (10 %")
    assert lines[-1].startswith("wcntk: [seed=0,width=8] step 1000/1000 (100 %")
    assert lines[-1].endswith("net 0.5")
    assert isinstance(progress_bar(10, True), LineProgress)  # pytest's stderr is not a terminal


def test_closing_lines():
    final = {"lin/func_rmse_test": 0.0012345, "corr/C02": None}
    ok = Record(status=Status.OK, final=final, last_step=10)
    assert closing_line(ok, "out/r") == "ok  lin/func_rmse_test 0.001234  corr/C02 n/a  out/r"
    cut = replace(ok, status=Status.INTERRUPTED, message="interrupted by SIGTERM", last_step=40)
    assert closing_line(cut) == ("interrupted by SIGTERM (last step 40)  lin/func_rmse_test 0.001234  "
                                 "corr/C02 n/a")
    assert closing_line(replace(cut, last_step=None)).startswith("interrupted by SIGTERM  lin/")
    failed = replace(ok, status=Status.FAILED, message="OSError: [Errno 28] No space left on device")
    assert closing_line(failed).startswith("failed: OSError: [Errno 28]")
    # corr/* values come from step 0, every corr_every steps and the last step: the line names which.
    measured = replace(cut, final={"corr/C02": 0.5}, config={"steps": 100, "corr_every": 15})
    assert closing_line(measured).endswith("corr/C02 0.5 (step 30)")
    assert closing_line(replace(measured, config={"steps": 100, "corr_every": None})).endswith("(step 0)")
    assert closing_line(replace(measured, status=Status.OK, last_step=100)).endswith("(step 100)")


def test_progress_lines_name_the_step_their_values_come_from(capsys):
    bar = LineProgress(50)
    bar.set_postfix(at_step=0, func_rmse="0")
    for t in range(1, 51):
        if t == 25:
            bar.set_postfix(at_step=25, func_rmse="0.136")
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("at step 0: func_rmse 0") and lines[4].endswith("at step 25: func_rmse 0.136")


def write_job(sweep: Path, name: str, status: str | None) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- {name}\n")
    if status is not None:
        final = {"lin/func_rmse_test": 0.5, "corr/C02": 0.25}
        (job / "summary.json").write_text(json.dumps({"status": status, "message": f"{status} because",
                                                      "last_step": 3, "final": final,
                                                      "config": {"width": 8, "seed": 0, "steps": 3}}))
    return job


def test_sweep_summary_lists_every_job_of_this_sweep(tmp_path, capsys):
    from omegaconf import OmegaConf
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    for name in ("a=1", "a=2", "old=1"):
        write_job(tmp_path, name, "ok")
    os.utime(tmp_path / "a=1" / "summary.json", ns=(1, 1))
    os.utime(tmp_path / "a=1" / ".hydra" / "overrides.yaml", ns=(1, 1))
    callback = SweepSummary()
    callback.on_multirun_start(config)
    write_job(tmp_path, "a=1", None)                     # launched again, skipped: summary untouched
    write_job(tmp_path, "a=2", "ok")                      # re-run
    write_job(tmp_path, "a=3", "diverged")
    write_job(tmp_path, "a=4", "failed")
    with pytest.raises(SystemExit) as exit_:
        callback.on_multirun_end(config)
    assert exit_.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wcntk: sweep {tmp_path}: 4 jobs: 1 skipped (already ok), 1 ok, 1 diverged, 1 failed"
    rows = {line.split()[1]: line.split()[0] for line in out[1:]}
    assert rows == {"a=1": "skipped", "a=2": "ok", "a=3": "diverged", "a=4": "failed"}  # not old=1
    write_job(tmp_path, "a=4", "ok")
    callback.on_multirun_start(config)
    write_job(tmp_path, "a=4", "ok")
    callback.on_multirun_end(config)                      # all ok: no exit
    assert "1 jobs: 1 ok" in capsys.readouterr().out
