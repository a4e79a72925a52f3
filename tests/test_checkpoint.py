"""Checkpoints (wcntk.run.checkpoint): the trainer's and the sampler's state round-trip, a run
stopped by a signal (or killed) continues from its checkpoint to the numbers of an uninterrupted
run, bad or foreign checkpoints are set aside, and the checkpoint goes once the run is ok."""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ENV, ROOT, run_py, start_run_py, tiny_config
from wcntk.run import checkpoint
from wcntk.run.checkpoint import read_checkpoint, read_header, write_checkpoint
from wcntk.run.config import run_config
from wcntk.run.job import FinishedRecord, run_job
from wcntk.run.lifecycle import Interrupted
from wcntk.run.record import Status
from wcntk.run.tracking import RunRecorder
from wcntk.training.sampler import MinibatchSampler
from wcntk.training.trainer import Trainer


def trainer_of(**changes) -> Trainer:
    model, data, opt, train = run_config(tiny_config(**changes)).library_configs()
    return Trainer(model, data, opt, train)


def test_sampler_state_round_trips_mid_epoch_and_across_buffer_refills():
    a = MinibatchSampler(n=10, batch_size=3, seed=7, device=torch.device("cpu"), block=4)
    for _ in range(6):  # mid-epoch (3 batches an epoch), second buffer
        a.advance()
        a.indices()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    b = MinibatchSampler(n=10, batch_size=3, seed=99, device=torch.device("cpu"), block=4)
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    for _ in range(20):
        a.advance()
        b.advance()
        assert torch.equal(a.indices(), b.indices())


@pytest.mark.slow
def test_trainer_state_round_trip_continues_bit_for_bit():
    """A run restored from a state saved at step 5 (minibatches, adam) logs the rows of one run."""
    changes = {"optimizer.name": "adam", "optimizer.lr": 0.01, "optimizer.batch_size": 16, "corr_every": 4}
    rows_a: list = []
    whole = trainer_of(**changes)
    whole.log = lambda t, m: rows_a.append((t, m))
    saved = {}

    def save_at_5(t):
        if t == 5:
            buf = io.BytesIO()
            torch.save(whole.state_dict(t), buf)
            saved["state"] = buf.getvalue()
    result_a = whole.run(boundary=save_at_5)

    rows_b: list = []
    resumed = trainer_of(**changes)
    resumed.log = lambda t, m: rows_b.append((t, m))
    resumed.load_state_dict(torch.load(io.BytesIO(saved["state"]), weights_only=True))
    result_b = resumed.run()
    assert [t for t, _ in rows_b] == [t for t, _ in rows_a if t > 5]
    assert rows_b == [(t, m) for t, m in rows_a if t > 5]
    assert result_b.initial == result_a.initial and result_b.final == result_a.final


# ----------------------------------------------------------------------------- in-process runs

def signal_at_step(monkeypatch, step: int, signum: int) -> None:
    """Deliver `signum` to this process while step `step` is logged (inside the step's work)."""
    log = RunRecorder.log

    def log_then_signal(self, t, metrics):
        if t == step:
            os.kill(os.getpid(), signum)
        log(self, t, metrics)
    monkeypatch.setattr(RunRecorder, "log", log_then_signal)


def numbers(run_dir: Path) -> tuple[bytes, dict]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return ((run_dir / "metrics.csv").read_bytes(),
            {k: summary[k] for k in ("status", "last_step", "initial", "final", "diverged_step")})


# momentum in function space here (the CLI tests below: adam, in parameter space)
CHANGES = {"optimizer.name": "momentum", "optimizer.batch_size": 16, "corr_every": 6,
           "twin_space": "function"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[bytes, dict]:
    run_dir = tmp_path_factory.mktemp("whole")
    run_job(tiny_config(**CHANGES), run_dir)
    return numbers(run_dir)


@pytest.mark.slow
def test_a_signalled_run_checkpoints_and_continues_to_the_same_numbers(tmp_path, monkeypatch, uninterrupted,
                                                                        capsys):
    with monkeypatch.context() as m:
        signal_at_step(m, 6, signal.SIGTERM)
        with pytest.raises(Interrupted):
            run_job(tiny_config(**CHANGES), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["checkpoint_step"] == 6
    assert read_header(tmp_path / "checkpoint.pt")["step"] == 6
    capsys.readouterr()
    run_job(tiny_config(**CHANGES), tmp_path, resume=True)
    assert capsys.readouterr().err.splitlines() == ["wcntk: resumed from step 6"]
    assert numbers(tmp_path) == uninterrupted
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from"] == [6] and summary["checkpoint_step"] is None
    assert not (tmp_path / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------- run.py, killed

CLI = ["debug=default", "dataset=digits", "steps=40", "optimizer=adam", "optimizer.lr=0.01",
       "optimizer.batch_size=16", "corr_every=10"]


def signalled_run(run_dir: Path, signum: int, at: int, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tests" / "_signal_run.py"), str(signum), str(at),
                           f"hydra.run.dir={run_dir}", *CLI, *overrides], env=ENV, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory) -> tuple[bytes, dict]:
    run_dir = tmp_path_factory.mktemp("cli") / "whole"
    proc = run_py(f"hydra.run.dir={run_dir}", *CLI)
    assert proc.returncode == 0, proc.stderr
    return numbers(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("signum, at, resumed", [(signal.SIGTERM, 23, 23), (signal.SIGINT, 23, 23),
                                                 (signal.SIGKILL, 27, 20)])
def test_a_killed_run_py_continues_from_its_checkpoint_to_the_same_numbers(tmp_path, cli_reference, signum,
                                                                           at, resumed):
    """A signal inside step 23 (between the network's update and the twin's) checkpoints after that
    step; kill -9 inside step 27 leaves the periodic checkpoint of step 20 (rows 25 dropped)."""
    run_dir = tmp_path / "run"
    first = signalled_run(run_dir, signum, at, "checkpoint_every=10")
    assert first.returncode == (-9 if signum == signal.SIGKILL else 128 + signum), first.stderr
    if signum != signal.SIGKILL:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["checkpoint_step"] == resumed
        assert first.stderr.splitlines()[-1].startswith(
            f"wcntk: interrupted by {signum.name} (last step 20, checkpoint at step {resumed})")
    assert read_header(run_dir / "checkpoint.pt")["step"] == resumed
    second = run_py(f"hydra.run.dir={run_dir}", *CLI, "checkpoint_every=10")
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines() == [f"wcntk: resumed from step {resumed}"]
    assert numbers(run_dir) == cli_reference
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from"] == [resumed]
    assert not (run_dir / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------- bad checkpoints

@pytest.fixture
def interrupted(tmp_path, monkeypatch) -> Path:
    """A run dir whose run SIGTERM stopped at step 6, with its checkpoint."""
    with monkeypatch.context() as m:
        signal_at_step(m, 6, signal.SIGTERM)
        with pytest.raises(Interrupted):
            run_job(tiny_config(**CHANGES), tmp_path)
    return tmp_path


def rerun_from_zero(run_dir: Path, capsys, uninterrupted) -> str:
    capsys.readouterr()
    record = run_job(tiny_config(**CHANGES), run_dir, resume=True)
    (line,) = capsys.readouterr().err.splitlines()
    assert record.resumed_from == [] and numbers(run_dir) == uninterrupted
    (moved,) = (run_dir / "superseded").glob("*/checkpoint.pt")
    assert not (run_dir / "checkpoint.pt").exists()
    return line.replace(str(moved.parent), "<dir>")


@pytest.mark.slow
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_from_zero(interrupted, capsys, uninterrupted):
    path = interrupted / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert rerun_from_zero(interrupted, capsys, uninterrupted) == (
        "wcntk: checkpoint.pt fails its checksum (truncated or damaged): moved to <dir>; "
        "the run starts from step 0")


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_set_aside_and_the_run_starts_from_zero(interrupted, capsys,
                                                                                   uninterrupted):
    ckpt = read_checkpoint(interrupted / "checkpoint.pt")
    ckpt.header["config"]["optimizer"]["lr"] = 0.25
    write_checkpoint(interrupted, ckpt.header, ckpt.state)   # a sound checkpoint, of another config
    assert rerun_from_zero(interrupted, capsys, uninterrupted) == (
        "wcntk: checkpoint.pt is of another config (optimizer.lr 0.25 -> 0.5): moved to <dir>; "
        "the run starts from step 0")


@pytest.mark.slow
@pytest.mark.parametrize("key", ["initial", "step", "csv_bytes"])
def test_a_changed_header_digit_is_refused_like_a_damaged_payload(interrupted, capsys, uninterrupted, key):
    """The checksum covers the header: one digit of recorder.initial (what summary.json's initial
    values would say), of the step or of metrics.csv's size changed by hand is a damaged checkpoint."""
    path = interrupted / "checkpoint.pt"
    first, header, payload = path.read_bytes().split(b"\n", 2)
    text = header.decode()
    at = {"initial": text.index('"net/test_loss": ') + len('"net/test_loss": '),
          "step": text.index('"step": ') + len('"step": '),
          "csv_bytes": text.index('"csv_bytes": ') + len('"csv_bytes": ')}[key]
    digit = text[at]
    assert digit.isdigit()
    changed = text[:at] + str((int(digit) + 1) % 10) + text[at + 1:]
    path.write_bytes(first + b"\n" + changed.encode() + b"\n" + payload)
    assert rerun_from_zero(interrupted, capsys, uninterrupted) == (
        "wcntk: checkpoint.pt fails its checksum (truncated or damaged): moved to <dir>; "
        "the run starts from step 0")


@pytest.mark.slow
def test_a_changed_experiment_moves_the_checkpoint_aside_with_its_record(interrupted, capsys):
    capsys.readouterr()
    record = run_job(tiny_config(**{**CHANGES, "optimizer.lr": 0.25}), interrupted, resume=True)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("wcntk: config changed: optimizer.lr 0.5 -> 0.25; the previous record was moved")
    (moved,) = (interrupted / "superseded").glob("*/checkpoint.pt")
    assert (moved.parent / "summary.json").is_file() and record.resumed_from == []


@pytest.mark.slow
def test_keep_checkpoint_keeps_it_after_ok_and_overwrite_starts_over(interrupted, capsys, uninterrupted):
    cfg = tiny_config(**CHANGES, keep_checkpoint=True)
    with pytest.raises(FinishedRecord):  # a single run continues an interrupted dir of its own config only
        run_job(tiny_config(**{**CHANGES, "optimizer.lr": 0.25}), interrupted)
    record = run_job(cfg, interrupted)
    assert record.status == Status.OK and record.resumed_from == [6]
    assert read_header(interrupted / "checkpoint.pt")["step"] == 6 and record.checkpoint_step == 6
    with pytest.raises(FinishedRecord):
        run_job(cfg, interrupted)
    capsys.readouterr()
    record = run_job(cfg, interrupted, overwrite=True)  # the record and its checkpoint move aside
    assert record.resumed_from == [] and numbers(interrupted) == uninterrupted
    assert capsys.readouterr().err.startswith("wcntk: overwrite=true; the previous record was moved")


# ----------------------------------------------------------------------------- sweeps

@pytest.mark.slow
def test_a_sweep_continues_only_its_interrupted_job_from_its_checkpoint(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["+sweep=width_scaling", "debug=default", "dataset=synthetic", "width=8,16", "seed=0",
            f"hydra.sweep.dir={sweep_dir}"]
    # SIGTERM inside the 30th step of the sweep: the second job's 10th (the basic launcher runs them in turn)
    first = subprocess.run([sys.executable, str(ROOT / "tests" / "_signal_run.py"), "15", "30", *args],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 143, first.stderr
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}
    assert sorted(s["status"] for s in records.values()) == ["interrupted", "ok"]
    (job,) = [name for name, s in records.items() if s["status"] == "interrupted"]
    (done,) = set(records) - {job}
    stamp = (sweep_dir / done / "summary.json").stat().st_mtime_ns

    second = run_py(*args)
    assert second.returncode == 0, second.stderr
    assert f"wcntk: [{job}] resumed from step 10" in second.stderr.splitlines()
    table = second.stdout[second.stdout.index("wcntk: sweep "):].splitlines()
    assert table[0].endswith("2 jobs: 1 skipped (already ok), 1 ok")
    rows = {line.split()[1]: line for line in table[1:3]}
    assert rows[done].split()[0] == "skipped" and rows[job].endswith("resumed 1× (from step 10)")
    assert table[3] == ("  1 jobs continued from checkpoints (1 resumes: requeued by SLURM, or re-run "
                        "after an interruption)")
    assert (sweep_dir / done / "summary.json").stat().st_mtime_ns == stamp
    resumed = json.loads((sweep_dir / job / "summary.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep's (ENV: OMP_NUM_THREADS=1): the same sums in the same order
    try:
        run_job(resumed["config"], tmp_path / "whole")
    finally:
        torch.set_num_threads(threads)
    assert numbers(sweep_dir / job) == numbers(tmp_path / "whole")


@pytest.mark.slow
def test_slurm_warning_signal_checkpoints_before_submitit_requeues(tmp_path, monkeypatch, uninterrupted):
    """SIGUSR2 with submitit's handler in place (here a stand-in: it checks what it would requeue
    and exits as submitit does): the checkpoint and the `interrupted` record exist before it runs;
    the requeued job (the same job function again) continues from the checkpoint."""
    seen = []

    def submitit_requeue(signum, frame):
        summary = json.loads((tmp_path / "summary.json").read_text())
        seen.append((summary["status"], read_header(tmp_path / "checkpoint.pt")["step"]))
        raise SystemExit(-1)
    previous = signal.signal(signal.SIGUSR2, submitit_requeue)
    try:
        with monkeypatch.context() as m:
            signal_at_step(m, 9, signal.SIGUSR2)
            with pytest.raises(SystemExit):
                run_job(tiny_config(**CHANGES), tmp_path, resume=True)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [("interrupted", 9)]
    record = run_job(tiny_config(**CHANGES), tmp_path, resume=True)
    assert record.resumed_from == [9] and numbers(tmp_path) == uninterrupted


# ----------------------------------------------------------------------------- odd moments

@pytest.mark.slow
def test_a_run_interrupted_before_step_0_is_re_run_from_step_0(tmp_path, monkeypatch, capsys, uninterrupted):
    """SIGTERM while the run starts (before its first row): `interrupted`, no checkpoint; running
    the same config again runs it from step 0, as any interrupted run continues."""
    with monkeypatch.context() as m:
        set_facts = RunRecorder.set_facts

        def facts_then_signal(self, facts):
            set_facts(self, facts)
            os.kill(os.getpid(), signal.SIGTERM)
        m.setattr(RunRecorder, "set_facts", facts_then_signal)
        with pytest.raises(Interrupted):
            run_job(tiny_config(**CHANGES), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["last_step"] is None
    assert not (tmp_path / "checkpoint.pt").exists()
    capsys.readouterr()
    record = run_job(tiny_config(**CHANGES), tmp_path)   # no FinishedRecord
    assert record.status == Status.OK and record.resumed_from == []
    assert capsys.readouterr().err == "" and numbers(tmp_path) == uninterrupted
    assert not (tmp_path / "superseded").exists()


# run.py, with SIGTERM sent to itself right after the run recorded its facts (before step 0)
SIGTERM_AT_START = """
import os, runpy, signal, sys
from wcntk.run.tracking import RunRecorder
set_facts = RunRecorder.set_facts
def facts_then_signal(self, facts):
    set_facts(self, facts)
    os.kill(os.getpid(), signal.SIGTERM)
RunRecorder.set_facts = facts_then_signal
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_run_py_interrupted_before_step_0_runs_again_from_step_0(tmp_path, cli_reference):
    run_dir = tmp_path / "run"
    first = subprocess.run([sys.executable, "-c", SIGTERM_AT_START, str(ROOT / "run.py"),
                            f"hydra.run.dir={run_dir}", *CLI], cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 143, first.stderr
    assert first.stderr.startswith("wcntk: interrupted by SIGTERM  "), first.stderr
    assert json.loads((run_dir / "summary.json").read_text())["last_step"] is None
    second = run_py(f"hydra.run.dir={run_dir}", *CLI)
    assert second.returncode == 0 and second.stderr == "", second.stderr
    assert numbers(run_dir) == cli_reference


@pytest.mark.slow
def test_an_interrupted_run_without_its_checkpoint_starts_over_keeping_its_rows_aside(interrupted, capsys,
                                                                                      uninterrupted):
    (interrupted / "checkpoint.pt").unlink()
    capsys.readouterr()
    record = run_job(tiny_config(**CHANGES), interrupted)
    (line,) = capsys.readouterr().err.splitlines()
    (moved,) = (interrupted / "superseded").glob("*/metrics.csv")
    assert line == (f"wcntk: the interrupted run has no checkpoint.pt to continue from (last step 6): its "
                    f"record was moved to {moved.parent}; the run starts from step 0")
    assert record.status == Status.OK and numbers(interrupted) == uninterrupted


@pytest.mark.slow
def test_a_resume_with_another_thread_count_says_so_and_records_it(interrupted, capsys, uninterrupted):
    threads = torch.get_num_threads()
    assert read_header(interrupted / "checkpoint.pt")["torch_threads"] == threads
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["provenance"]["torch_threads"] == threads
    other = 2 if threads == 1 else 1
    capsys.readouterr()
    torch.set_num_threads(other)
    try:
        record = run_job(tiny_config(**CHANGES), interrupted)
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().err.splitlines() == [
        f"wcntk: torch threads: {threads} when checkpoint.pt was written, {other} now: numbers may differ "
        f"from an uninterrupted run at round-off (set threads={threads} to continue as it ran)",
        "wcntk: resumed from step 6"]
    assert record.status == Status.OK and record.provenance["torch_threads"] == other


@pytest.mark.slow
def test_a_full_disk_says_so_once_and_once_when_a_checkpoint_is_written_again(tmp_path, monkeypatch, capsys):
    """checkpoint_every=1 with no room at steps 2-8: two lines, not one per interval."""
    real = checkpoint.write_checkpoint

    def write(run_dir, header, state):
        if 2 <= header["step"] <= 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(run_dir, header, state)
    monkeypatch.setattr(checkpoint, "write_checkpoint", write)
    record = run_job(tiny_config(checkpoint_every=1, keep_checkpoint=True), tmp_path)
    assert record.status == Status.OK and record.checkpoint_step == 11
    assert capsys.readouterr().err.splitlines() == [
        "wcntk: could not write the checkpoint at step 2 (OSError: [Errno 28] No space left on device); "
        "retrying at each interval, said again once one is written",
        "wcntk: checkpoint written again at step 9"]


# ----------------------------------------------------------------------------- a signal inside a measurement

@pytest.mark.slow
def test_a_stopped_measurement_checkpoints_its_step_and_is_measured_again_on_resume():
    """stop() turns True inside step 6's measurement (its first pass through the network): the
    boundary gets step 6 with the row still to log; a trainer restored from that state logs the
    rows of an uninterrupted run from step 6 on."""
    changes = {"optimizer.name": "adam", "optimizer.lr": 0.01, "optimizer.batch_size": 16, "corr_every": 6}
    rows_a: list = []
    whole = trainer_of(**changes)
    whole.log = lambda t, m: rows_a.append((t, m))
    whole.run()

    rows_b: list = []
    first = trainer_of(**changes)
    first.log = lambda t, m: rows_b.append((t, m))
    saved = {}

    class Stopped(Exception):
        pass

    def boundary(t):
        if first.row_pending:
            buf = io.BytesIO()
            torch.save(first.state_dict(t), buf)
            saved["state"], saved["step"] = buf.getvalue(), t
            raise Stopped

    with pytest.raises(Stopped):
        first.run(boundary=boundary, stop=lambda: first.steps_taken == 6)
    assert saved["step"] == 6 and [t for t, _ in rows_b] == [0, 3]
    assert not any(h for m in first.model.modules() for h in m._forward_pre_hooks.values())

    rows_c: list = []
    resumed = trainer_of(**changes)
    resumed.log = lambda t, m: rows_c.append((t, m))
    resumed.load_state_dict(torch.load(io.BytesIO(saved["state"]), weights_only=True))
    result = resumed.run()
    assert rows_b + rows_c == rows_a
    assert result.initial == rows_a[0][1] and result.final == rows_a[-1][1]


SLEEPY = ["debug=default", "model=custom", "model.target=tests.repro_nets.sleepy", "steps=6", "log_every=1",
          "corr_every=3", "probes=4", "optimizer.lr=0.5"]


@pytest.mark.slow
def test_sigterm_inside_a_slow_measurement_ends_the_run_within_seconds_and_it_continues_to_the_same_numbers(
        tmp_path):
    """A network whose every forward sleeps 2 s once rows 0, 1, 2 are logged (step 3's
    measurement then takes over 20 s): SIGTERM during its third slow call ends run.py within 10 s
    with `interrupted` and a checkpoint of step 3 (its row not logged); re-running measures row 3
    again and ends with the numbers of an uninterrupted run."""
    from tests.repro_nets import SLOW_AFTER_ENV, SLOW_ENV
    flag = tmp_path / "slow"     # never created: the run turns slow by its own metrics.csv
    env = {**ENV, SLOW_ENV: str(flag)}
    whole = run_py(f"hydra.run.dir={tmp_path / 'whole'}", *SLEEPY, env=env)
    assert whole.returncode == 0, whole.stderr

    run_dir = tmp_path / "run"
    proc = start_run_py(f"hydra.run.dir={run_dir}", *SLEEPY,
                        env={**env, SLOW_AFTER_ENV: str(run_dir / "metrics.csv")})
    calls = Path(str(flag) + ".calls")
    deadline = time.monotonic() + 120
    while not calls.is_file() or len(calls.read_text().splitlines()) < 3:   # inside the measurement
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err
    assert took < 10, f"{took:.1f} s from SIGTERM to exit"
    assert len(calls.read_text().splitlines()) <= 4  # at most the call under way when it came, and one more
    assert "Traceback" not in err and err.splitlines()[-1].startswith(
        "wcntk: interrupted by SIGTERM (last step 2, checkpoint at step 3)")
    assert read_header(run_dir / "checkpoint.pt")["step"] == 3 and csv_steps(run_dir) == [0, 1, 2]

    again = run_py(f"hydra.run.dir={run_dir}", *SLEEPY, env=env)   # fast again
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines() == ["wcntk: resumed from step 3"]
    assert numbers(run_dir) == numbers(tmp_path / "whole")


def csv_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]
