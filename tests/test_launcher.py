"""wcntk's SLURM launcher without a cluster (wcntk.run.launcher; tests/test_slurm.py runs it on
one): which jobs it leaves out, how it reads squeue, when it stops waiting for a job, and the
closing table's rows from what it saw (wcntk.run.outcome.LAUNCH)."""
from __future__ import annotations

import os
import signal
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from tests.conftest import tiny_config
from wcntk.run import launcher as launcher_mod
from wcntk.run.config import run_config
from wcntk.run.launcher import SweepLauncher, already_ok, queue_states
from wcntk.run.lifecycle import Interrupted
from wcntk.run.outcome import LAUNCH, SweepSummary
from wcntk.run.record import Record, Status, write_summary


@pytest.fixture(autouse=True)
def fresh_launch():
    """LAUNCH is the process's: each test starts and ends with an empty one."""
    LAUNCH.reset()
    yield
    LAUNCH.reset()


def fake_squeue(tmp_path: Path, monkeypatch, script: str) -> None:
    """An `squeue` on PATH that runs `script` (sh)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "squeue"
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_queue_states_reads_squeue_and_tells_gone_from_no_answer(tmp_path, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, 'echo "7_0 RUNNING"; echo "7_1 PENDING"')
    assert queue_states(["7_0", "7_1", "7_2"]) == {"7_0": "RUNNING", "7_1": "PENDING"}   # 7_2: gone
    fake_squeue(tmp_path, monkeypatch, 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    assert queue_states(["7_2"]) == {}                                                   # all gone
    fake_squeue(tmp_path, monkeypatch, 'echo "Unable to contact slurm controller" >&2; exit 1')
    assert queue_states(["7_2"]) is None                                                 # no answer


def sweep_config(sweep: Path, **changes) -> object:
    return OmegaConf.create({**tiny_config(**changes), "hydra": {"sweep": {"dir": str(sweep)}}})


def write_record(job: Path, status: Status, **changes) -> None:
    record = Record.new(run_config(tiny_config(**changes)).recorded())
    record.status = status
    job.mkdir(parents=True, exist_ok=True)
    write_summary(job, record)


def test_only_an_ok_record_of_the_same_config_is_left_out(tmp_path):
    job = tmp_path / "seed=0"
    assert not already_ok(job, sweep_config(tmp_path))                     # no record
    write_record(job, Status.OK)
    assert already_ok(job, sweep_config(tmp_path))
    assert already_ok(job, sweep_config(tmp_path, progress=True))           # a bookkeeping key
    assert not already_ok(job, sweep_config(tmp_path, steps=13))            # the config changed
    write_record(job, Status.INTERRUPTED)
    assert not already_ok(job, sweep_config(tmp_path))
    write_record(job, Status.RUNNING)                                       # stale: runs again
    assert not already_ok(job, sweep_config(tmp_path))


class FakeJob:
    """A submitit job: its result file appears when `done` is set."""

    def __init__(self, folder: Path, job_id: str, result=None):
        self.job_id, self._result = job_id, result
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = SimpleNamespace(folder=folder, result_pickle=folder / "result.pkl")

    def finish(self) -> None:
        self.paths.result_pickle.write_bytes(b"x")

    def result(self):
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


def test_the_wait_ends_for_a_result_an_error_and_a_job_gone_from_the_queue(tmp_path, monkeypatch, capsys):
    """Three jobs: one finishes with a result, one's job raised (its trace printed once, its
    JobReturn made COMPLETED so that the sweep goes on to its table), one leaves the queue
    without a result (scancel): the wait ends once it has been seen gone GONE_AFTER_S apart."""
    monkeypatch.setattr(launcher_mod, "POLL_S", 0.01)
    monkeypatch.setattr(launcher_mod, "QUEUE_POLL_S", 0.01)
    monkeypatch.setattr(launcher_mod, "GONE_AFTER_S", 0.05)
    ok = JobReturn(status=JobStatus.COMPLETED, _return_value=None)
    raised = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("a bug in the job"))
    jobs = {tmp_path / "a": FakeJob(tmp_path / "s" / "1", "5_0", ok),
            tmp_path / "b": FakeJob(tmp_path / "s" / "2", "5_1", raised),
            tmp_path / "c": FakeJob(tmp_path / "s" / "3", "5_2")}
    jobs[tmp_path / "a"].finish()
    jobs[tmp_path / "b"].finish()
    looks = []

    def states(ids):
        looks.append(list(ids))
        return {"5_2": "RUNNING"} if len(looks) < 3 else {"5_2": "CANCELLED"} if len(looks) < 5 else {}
    monkeypatch.setattr(launcher_mod, "queue_states", states)
    LAUNCH.reset()
    returns = [JobReturn(status=JobStatus.COMPLETED) for _ in jobs]
    SweepLauncher()._wait({d: (i, job) for i, (d, job) in enumerate(jobs.items())}, returns)
    assert returns[0] is ok and returns[1] is raised and raised.status == JobStatus.COMPLETED
    assert raised.return_value is None                       # BasicSweeper reads it: no raise
    assert "RuntimeError: a bug in the job" in capsys.readouterr().err
    assert LAUNCH.ended[tmp_path / "b"] == "error: RuntimeError: a bug in the job"
    assert LAUNCH.ended[tmp_path / "c"].startswith(("SLURM: cancelled, job 5_2", "gone from the SLURM queue"))
    assert len(looks) >= 4                                   # not before it was seen gone twice


def summary_config(sweep: Path):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})


def test_the_table_has_a_row_for_every_job_of_the_launch(tmp_path, capsys):
    """Jobs the launcher left out (ok: skipped), one SLURM cancelled before it wrote a record,
    one interrupted that left the queue: every row, exit 1."""
    config = summary_config(tmp_path)
    write_record(tmp_path / "a=1", Status.OK)
    callback = SweepSummary()
    callback.on_multirun_start(config)
    LAUNCH.jobs.update({tmp_path / "a=1": None, tmp_path / "a=2": "9_0", tmp_path / "a=3": "9_1"})
    LAUNCH.ended[tmp_path / "a=2"] = "SLURM: cancelled, job 9_0"
    write_record(tmp_path / "a=3", Status.INTERRUPTED)
    LAUNCH.ended[tmp_path / "a=3"] = "gone from the SLURM queue, job 9_1"
    with pytest.raises(SystemExit) as exit_:
        callback.on_multirun_end(config)
    assert exit_.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wcntk: sweep {tmp_path}: 3 jobs: 1 skipped (already ok), 1 interrupted, 1 cancelled"
    rows = {line.split()[1]: line for line in out[1:4]}
    assert rows["a=1"].split()[0] == "skipped" and rows["a=2"].split()[0] == "cancelled"
    assert "ended before it wrote a record (SLURM: cancelled, job 9_0)" in rows["a=2"]
    assert rows["a=3"].split()[0] == "interrupted"
    assert rows["a=3"].endswith("(gone from the SLURM queue, job 9_1)")


def test_a_stopped_wait_prints_the_table_so_far_then_exits_with_the_signal(tmp_path, capsys):
    config = summary_config(tmp_path)
    callback = SweepSummary()
    callback.on_multirun_start(config)
    write_record(tmp_path / "a=1", Status.OK)
    (tmp_path / "a=1" / "summary.json").touch()
    LAUNCH.jobs.update({tmp_path / "a=1": "4_0", tmp_path / "a=2": "4_1"})   # a=2: still queued
    LAUNCH.stopped = Interrupted(signal.SIGINT)
    with pytest.raises(Interrupted) as stopped:
        callback.on_multirun_end(config)
    assert stopped.value.exit_code == 130
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line for line in out[1:3]}
    assert rows["a=2"].split()[0] == "running" and "still queued or running (SLURM job 4_1)" in rows["a=2"]
    assert rows["a=1"].split()[0] == "ok"
    assert out[-1].startswith("  stopped waiting (interrupted by SIGINT)")


def test_a_wandb_service_the_signal_ended_too_is_a_note_on_the_closing_line(tmp_path, capsys):
    """SLURM signals every process of a job, W&B's service too: the run's finish then fails; the
    run's one closing line says so (no line of its own, no traceback)."""
    from wcntk.run.job import signal_line
    from wcntk.run.tracking import RunRecorder

    class DeadService:
        def log(self, step, metrics):
            pass

        def finish(self, record, exit_code):
            raise ConnectionResetError("Connection lost")

    with pytest.raises(Interrupted) as stopped:
        with RunRecorder(tmp_path, ["a"], tiny_config()) as recorder:
            recorder.wandb_log = DeadService()
            recorder.log(0, {"a": 1.0})
            raise Interrupted(signal.SIGTERM)
    assert capsys.readouterr().err == ""
    line = signal_line(stopped.value, None, "requeued")
    assert line.startswith("interrupted by SIGTERM (last step 0)")
    assert line.endswith("; requeued; W&B run left unfinished (ConnectionResetError: Connection lost)")
