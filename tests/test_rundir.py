"""Records that survive a shared lab: one writer per run dir (a lock), finished records never
overwritten (moved to superseded/), resume that notices a changed config, records a colleague
can read, malformed records skipped with one line, and what a sweep's closing table and exit
code say. In-process first (fast); the CLI cases, as a user meets them, are marked slow."""
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, start_run_py, tiny_config
from tests.test_lifecycle import write_job
from wcntk.run.job import FinishedRecord, prepare_run_dir, run_job
from wcntk.run.outcome import SweepSummary, sweep_exit_code
from wcntk.run.record import (
    Record,
    Status,
    UnreadableRecord,
    effective_status,
    load_record,
    read_record,
    write_json_atomic,
)
from wcntk.run.rundir import LOCK_FILE, RunningElsewhere, config_changes, lock_is_held, writer_lock
from wcntk.run.tracking import write_invalid_setting_record


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding run_dir's writer lock (as a running job does) until killed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(run_dir / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()} elsewhere-host'.encode())\n"
            "print('held', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ----------------------------------------------------------------------------- the lock

def test_a_held_run_dir_is_left_alone_and_its_lock_dies_with_the_process(tmp_path):
    job = tmp_path / "job"
    assert lock_is_held(job) is None                     # no lock file: no writer yet
    holder = hold_lock(job)
    try:
        assert lock_is_held(job) is True
        with pytest.raises(RunningElsewhere, match=f"pid {holder.pid} on elsewhere-host"):
            run_job(tiny_config(), job)
        assert sorted(p.name for p in job.iterdir()) == [LOCK_FILE]   # nothing written
    finally:
        holder.kill()                                     # SIGKILL: the kernel drops the lock
        holder.wait()
    assert lock_is_held(job) is False
    assert run_job(tiny_config(), job).status == Status.OK


def test_writer_lock_is_reentrant_within_a_process_and_names_its_holder(tmp_path):
    with writer_lock(tmp_path):
        with writer_lock(tmp_path):
            assert lock_is_held(tmp_path) is True
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        assert lock_is_held(tmp_path) is True
    assert lock_is_held(tmp_path) is False


def test_taking_the_lock_removes_the_temp_files_a_killed_atomic_write_left(tmp_path):
    """A double SIGTERM during summary.json's (or checkpoint.pt's) write leaves its temp file;
    the next writer of the dir removes it, and nothing else."""
    left = [tmp_path / ".summary.json.1a2b3c4d.tmp", tmp_path / ".checkpoint.pt.deadbeef.tmp"]
    kept = [tmp_path / ".other.json.1a2b3c4d.tmp", tmp_path / "summary.json"]
    for path in left + kept:
        path.write_text("{")
    with writer_lock(tmp_path):
        assert not any(path.exists() for path in left) and all(path.exists() for path in kept)


def test_a_running_record_is_stale_exactly_when_its_lock_is_free():
    running = Record(status=Status.RUNNING, provenance={"pid": os.getpid(), "host": "elsewhere"})
    assert effective_status(running, lock_held=True) == Status.RUNNING
    assert effective_status(running, lock_held=False) == Status.STALE      # wherever it ran
    assert effective_status(running) == Status.RUNNING                     # no lock file: pid check only
    assert effective_status(Record(status=Status.OK), lock_held=False) == Status.OK


# ----------------------------------------------------------------------------- finished records

def test_a_finished_record_is_never_overwritten_and_overwrite_moves_it_aside(tmp_path):
    first = run_job(tiny_config(), tmp_path)
    (tmp_path / "wandb_run_id").write_text("0123abcd\n")             # the first run's W&B id
    before = (tmp_path / "summary.json").read_bytes()
    with pytest.raises(FinishedRecord, match="already holds a finished run .status ok.; pass another "
                                             "run_dir, resume=True to keep an ok record, or overwrite=True"):
        run_job(tiny_config(width=16), tmp_path)
    assert (tmp_path / "summary.json").read_bytes() == before
    second = run_job(tiny_config(width=16), tmp_path, overwrite=True)
    (aside,) = (tmp_path / "superseded").iterdir()
    assert load_record(aside / "summary.json") == first
    assert (aside / "metrics.csv").is_file() and (aside / "wandb_run_id").read_text() == "0123abcd\n"
    assert not (tmp_path / "wandb_run_id").exists()       # the new run never reuses the old W&B id
    assert second.config["width"] == 16 and read_record(tmp_path) == second


def test_resume_skips_only_the_same_config_and_keeps_a_changed_ones_record(tmp_path, capsys):
    first = run_job(tiny_config(), tmp_path)
    stamp = (tmp_path / "summary.json").stat().st_mtime_ns
    # Bookkeeping keys (W&B, progress, threads, …) never change the numbers: still skipped.
    same = run_job(tiny_config(**{"progress": True, "threads": 1}), tmp_path, resume=True)
    assert same == first and (tmp_path / "summary.json").stat().st_mtime_ns == stamp
    again = run_job(tiny_config(**{"model.b_std": 0.5}), tmp_path, resume=True)
    assert again.config["model"]["b_std"] == 0.5 and again.final != first.final
    (aside,) = (tmp_path / "superseded").iterdir()
    assert json.loads((aside / "summary.json").read_text())["config"]["model"]["b_std"] == 0.05
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("wcntk: config changed: model.b_std 0.05 -> 0.5; the previous record was moved to")
    assert config_changes(first.config, again.config) == {"model.b_std": (0.05, 0.5)}
    older = {k: v for k, v in first.config.items() if k != "loss"}  # a record made before `loss` existed
    assert config_changes(older, again.config) == {"model.b_std": (0.05, 0.5)}


@pytest.mark.parametrize("content", ["[]", '{"status": "ok", "config": {"width": "wide", "seed": 0}}',
                                     "{not json", '{"status": "ok"}'])
def test_resume_moves_a_malformed_summary_aside_with_one_line(tmp_path, capsys, content):
    (tmp_path / "summary.json").write_text(content)
    assert read_record(tmp_path) is None
    with writer_lock(tmp_path):
        assert prepare_run_dir(tmp_path, tiny_config(), resume=True) is None
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"wcntk: {tmp_path / 'summary.json'} is not a readable record: moved to")
    (aside,) = (tmp_path / "superseded").iterdir()
    assert (aside / "summary.json").read_text() == content and not (tmp_path / "summary.json").exists()


# ----------------------------------------------------------------------------- readable records

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_summary_json_has_the_mode_of_any_other_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "summary.json", {"status": "ok"})
        (tmp_path / "other").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "other").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_validation_record_holds_the_raw_config(tmp_path):
    raw = {**tiny_config(**{"optimizer.momentum": -5}), "width": 64}
    written = write_invalid_setting_record(tmp_path, raw, "invalid setting: momentum must be in [0, 1)")
    record = read_record(tmp_path)
    assert record == written
    assert record.status == Status.FAILED and record.config_validated is False
    assert record.config == raw and (record.config["width"], record.config["seed"]) == (64, 0)
    assert record.provenance["pid"] == os.getpid()


# ----------------------------------------------------------------------------- the sweep's table

def sweep_config(sweep: Path, launch: str):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)},
                                       "job": {"env_set": {"WCNTK_LAUNCH_ID": launch}}}})


def record(job: Path, status: str, launch: str | None, **extra) -> None:
    final = {"lin/func_rmse_test": 0.5, "corr/C02": 0.25}
    (job / "summary.json").write_text(json.dumps({
        "status": status, "message": extra.get("message"), "last_step": 3, "final": final,
        "config": {"width": 8, "seed": 0, "steps": 3, "model": {"b_std": extra.get("b_std", 0.05)}},
        "provenance": {"launch": launch, "pid": 4242, "host": "node7", "git_commit": extra.get("commit")}}))


def test_sweep_table_reports_elsewhere_changed_configs_and_other_commits(tmp_path, capsys, monkeypatch):
    import wcntk.run.outcome as outcome
    monkeypatch.setattr(outcome, "git_state", lambda: ("c" * 40, False))
    config = sweep_config(tmp_path, "mine")
    for name in ("busy", "changed", "old_code"):
        write_job(tmp_path, name, None)
        record(tmp_path / name, "ok", "earlier", commit="a" * 40)
    callback = SweepSummary()
    callback.on_multirun_start(config)
    time.sleep(0.01)
    holder = hold_lock(tmp_path / "busy")                 # another launch is running this job
    try:
        write_job(tmp_path, "busy", None)
        record(tmp_path / "busy", "running", "theirs")
        write_job(tmp_path, "changed", None)               # re-run here after a config change
        aside = tmp_path / "changed" / "superseded" / "t0"
        aside.mkdir(parents=True)
        os.replace(tmp_path / "changed" / "summary.json", aside / "summary.json")
        record(tmp_path / "changed", "ok", "mine", b_std=0.5)
        write_job(tmp_path, "old_code", None)              # skipped, made by another commit
        with pytest.raises(SystemExit) as exit_:
            callback.on_multirun_end(config)
    finally:
        holder.kill()
        holder.wait()
    assert exit_.value.code == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wcntk: sweep {tmp_path}: 3 jobs: 1 skipped (already ok), 1 ok, 1 running elsewhere"
    rows = {line.split()[1]: line for line in out[1:4]}
    assert rows["busy"].split()[0] == "elsewhere" and "running elsewhere (pid 4242 on node7)" in rows["busy"]
    assert rows["changed"].split()[0] == "ok" and rows["old_code"].split()[0] == "skipped"
    assert out[4] == ("  1 jobs re-ran because their config changed (model.b_std); their previous records "
                      "are in <job dir>/superseded/")
    assert out[5].startswith("  warning: 1 skipped jobs were recorded by another git commit than " + "c" * 12)


def test_a_job_another_sweep_left_interrupted_is_interrupted_not_elsewhere(tmp_path, capsys):
    """Sweep B found the job's dir held by sweep A, which was then stopped by SIGTERM: B's table
    lists the job as interrupted (A's record, lock free), and B exits 1, not 3."""
    config = sweep_config(tmp_path, "mine")
    write_job(tmp_path, "a_job", None)
    callback = SweepSummary()
    callback.on_multirun_start(config)
    time.sleep(0.01)
    write_job(tmp_path, "a_job", None)                        # launched by B, left alone (held by A)
    record(tmp_path / "a_job", "interrupted", "theirs", message="interrupted by SIGTERM")
    (tmp_path / "a_job" / LOCK_FILE).write_text("4242 node7\n")   # A's lock, released when A ended
    with pytest.raises(SystemExit) as exit_:
        callback.on_multirun_end(config)
    assert exit_.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wcntk: sweep {tmp_path}: 1 jobs: 1 interrupted"
    assert out[1].split()[:2] == ["interrupted", "a_job"]
    assert "interrupted by SIGTERM (last step 3)" in out[1] and "(run by pid 4242 on node7)" in out[1]


def test_sweep_exit_codes():
    assert sweep_exit_code(Counter(ok=2, skipped=3)) == 0 and sweep_exit_code(Counter(skipped=1)) == 0
    assert sweep_exit_code(Counter(diverged=2)) == 1                  # every job diverged
    assert sweep_exit_code(Counter(ok=1, failed=1, elsewhere=1)) == 1
    assert sweep_exit_code(Counter(ok=1, elsewhere=1)) == 3


# ----------------------------------------------------------------------------- the CLI, as a user meets it

TINY = ["debug=default", "dataset=synthetic", "progress=false"]


def cli(*args: str, umask: int = 0o022, **popen) -> subprocess.Popen:
    return start_run_py(*args, preexec_fn=lambda: os.umask(umask), **popen)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def table(out: str, sweep: Path) -> dict[str, str]:
    """Job dir -> status, from a sweep's closing table."""
    lines = out[out.index(f"wcntk: sweep {sweep}:"):].splitlines()[1:]
    return {line.split()[1]: line.split()[0] for line in lines if not line.startswith("  warning")
            and " jobs re-ran " not in line}


@pytest.mark.slow
def test_cli_finished_run_dir_is_refused_and_overwrite_keeps_it_aside(tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = finish(cli(*TINY, "wandb.mode=offline", f"hydra.run.dir={run_dir}"))
    assert code == 0, err
    # A colleague can read every file (umask 022): summary.json too.
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in files)
    before = {p: p.stat().st_mtime_ns for p in files}
    old_id = (run_dir / "wandb_run_id").read_text()
    code, out, err = finish(cli(*TINY, "width=32", f"hydra.run.dir={run_dir}"))
    assert code == 1 and out == ""
    assert err.splitlines() == [f"wcntk: error: {run_dir} already holds a finished run (status ok); choose "
                                f"another hydra.run.dir, or add overwrite=true to move its record to "
                                f"{run_dir}/superseded/"]
    assert {p: p.stat().st_mtime_ns for p in files} == before            # untouched, .hydra/ included
    code, _, err = finish(cli(*TINY, "width=32", "overwrite=true", "wandb.mode=offline",
                              f"hydra.run.dir={run_dir}"))
    assert code == 0, err
    (aside,) = (run_dir / "superseded").iterdir()
    assert json.loads((aside / "summary.json").read_text())["config"]["width"] == 16
    assert (aside / "wandb_run_id").read_text() == old_id and list(aside.glob("wandb/offline-run-*"))
    assert (run_dir / "wandb_run_id").read_text() != old_id               # a W&B run of its own
    assert read_record(run_dir).config["width"] == 32


@pytest.mark.slow
def test_cli_two_sweeps_on_one_dir_run_each_job_once(tmp_path):
    """The same sweep started twice (two terminals, or an array job and a local re-run): each job
    runs in one of them; the other leaves it alone and says so."""
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "log_every=100", "steps=400,200", "wandb.mode=offline", f"hydra.sweep.dir={sweep}"]
    named = "dataset=synthetic,debug=default,log_every=100,steps="   # job dirs: the overrides, sorted
    long_job, short_job = named + "400", named + "200"
    first = cli(*args)
    deadline = time.monotonic() + 240
    while (record := read_record(sweep / long_job)) is None or record.last_step is None:   # step 0 logged
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    first.send_signal(signal.SIGSTOP)       # the first sweep is mid-job for as long as the second runs
    try:
        code2, out2, err2 = finish(cli(*args))
    finally:
        first.send_signal(signal.SIGCONT)
    code1, out1, err1 = finish(first)
    assert "Traceback" not in err1 + err2
    assert table(out2, sweep) == {long_job: "elsewhere", short_job: "ok"} and code2 == 3
    assert f"[{long_job}] running elsewhere: {sweep / long_job} is being written by pid {first.pid}" in err2
    assert table(out1, sweep) == {long_job: "ok", short_job: "skipped"} and code1 == 0
    launches = set()
    for job, steps in ((long_job, 400), (short_job, 200)):
        record = read_record(sweep / job)
        assert record.status == Status.OK and record.last_step == steps
        launches.add(record.provenance["launch"])
        data = (sweep / job / "metrics.csv").read_bytes()
        assert b"\0" not in data and len(data.splitlines()) == 1 + steps // 100 + 1
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1
    assert len(launches) == 2                               # each job was run by one of the two


@pytest.mark.slow
def test_cli_all_diverged_sweep_fails_and_a_failed_validation_keeps_its_config(tmp_path):
    sweep = tmp_path / "sweep"
    common = ["-m", *TINY, "wandb.mode=disabled", f"hydra.sweep.dir={sweep}"]
    code, out, err = finish(cli(*common, "width=8,16", "optimizer.lr=1e9"))
    assert code == 1 and f"wcntk: sweep {sweep}: 2 jobs: 2 diverged" in out, err
    code, out, err = finish(cli(*common, "optimizer=momentum", "optimizer.momentum=0.5,-5"))
    assert code == 1 and f"wcntk: sweep {sweep}: 2 jobs: 1 ok, 1 failed" in out, err
    failed = read_record(sweep / "dataset=synthetic,debug=default,optimizer.momentum=-5,optimizer=momentum")
    assert failed.status == Status.FAILED and failed.message.startswith("invalid setting:")
    assert failed.config_validated is False and failed.config["optimizer"]["momentum"] == -5
    assert (failed.config["width"], failed.config["seed"]) == (16, 0)
    # The report sees the failed job as the setting it was asked to run, not a new setting.
    from wcntk.analysis.report import collect, setting_columns
    runs = collect(sweep)
    assert len(runs) == 4
    assert "optimizer.momentum" in setting_columns(runs)
    assert set(setting_columns(runs)) <= {"optimizer.lr", "optimizer.momentum", "optimizer.name"}


@pytest.mark.slow
def test_cli_a_changed_group_default_reruns_the_job_and_keeps_the_old_record(tmp_path):
    sweep, conf = tmp_path / "sweep", tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, symlinks=False)
    args = ["-m", *TINY, "wandb.mode=disabled", "width=8,16", f"hydra.sweep.dir={sweep}"]
    code, out, err = finish(cli(*args))
    assert code == 0, err
    (conf / "model" / "mlp.yaml").write_text("kind: mlp\nb_std: 0.5\n")    # a colleague edits a default
    code, out, err = finish(cli(*args, "--config-path", str(conf)))
    assert code == 0, err
    assert set(table(out, sweep).values()) == {"ok"}
    assert ("  2 jobs re-ran because their config changed (model.b_std); their previous records are in "
            "<job dir>/superseded/") in out.splitlines()
    for job in ("dataset=synthetic,debug=default,width=8", "dataset=synthetic,debug=default,width=16"):
        (aside,) = (sweep / job / "superseded").iterdir()
        assert json.loads((aside / "summary.json").read_text())["config"]["model"]["b_std"] == 0.05
        assert (aside / "metrics.csv").is_file()
        assert read_record(sweep / job).config["model"]["b_std"] == 0.5
    code, out, err = finish(cli(*args, "--config-path", str(conf)))          # now up to date: skipped
    assert code == 0 and set(table(out, sweep).values()) == {"skipped"}, err


@pytest.mark.slow
def test_cli_bad_sizes_and_dirs_are_one_line_before_any_work(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    error = "wcntk: error: "
    cases = [
        ([*TINY, "width=100000000", f"hydra.run.dir={tmp_path / 'huge'}"],
         error + "width=100000000 needs about ", tmp_path / "huge"),
        ([*TINY, "width=99999999999999999999", f"hydra.run.dir={tmp_path / 'overflow'}"],
         error + "width=99999999999999999999 is too large: integers must be below 2^63",
         tmp_path / "overflow"),
        ([*TINY, f"hydra.run.dir={blocked / 'run'}"],
         error + f"hydra.run.dir={blocked / 'run'} cannot be written: {blocked} is not a directory", None),
        (["-m", *TINY, "width=8,16", f"hydra.sweep.dir={blocked / 'sweep'}"],
         error + f"hydra.sweep.dir={blocked / 'sweep'} cannot be written: {blocked} is not a directory",
         None),
        # /proc: its permission bits say root may write; making a directory there fails all the same
        ([*TINY, "hydra.run.dir=/proc/x"],
         error + "hydra.run.dir=/proc/x cannot be written: /proc is not a directory", Path("/proc/x")),
        (["-m", *TINY, "width=8,16", "hydra.sweep.dir=/proc/x"],
         error + "hydra.sweep.dir=/proc/x cannot be written: /proc is not a directory", Path("/proc/x")),
    ]
    procs = [(cli(*args), line, left) for args, line, left in cases]
    for proc, line, left in procs:
        code, out, err = finish(proc)
        assert code == 1 and out == "" and len(err.splitlines()) == 1 and err.startswith(line), err
        assert left is None or not left.exists()
    assert "fits (estimate: wcntk.run.capacity)" in finish(cli(*cases[0][0]))[2]


@pytest.mark.slow
def test_cli_resume_over_malformed_records_ends_with_its_table(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "wandb.mode=disabled", "width=8,16", f"hydra.sweep.dir={sweep}"]
    assert finish(cli(*args))[0] == 0
    jobs = {"dataset=synthetic,debug=default,width=8": "[]",
            "dataset=synthetic,debug=default,width=16": '{"status": "ok", "config": {"width": "wide"}}'}
    for job, text in jobs.items():
        (sweep / job / "summary.json").write_text(text)
    code, out, err = finish(cli(*args))
    assert code == 0 and "Traceback" not in err
    assert table(out, sweep) == {job: "ok" for job in jobs}
    for job, text in jobs.items():
        assert f"[{job}] {sweep / job / 'summary.json'} is not a readable record: moved to" in err
        (aside,) = (sweep / job / "superseded").iterdir()
        assert (aside / "summary.json").read_text() == text


@pytest.mark.slow
def test_cli_rerun_after_kill_9_of_a_joblib_launcher_leaves_its_orphans_alone(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "wandb.mode=disabled", "log_every=100", "steps=1000000", "width=8,16",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    jobs = [sweep / f"dataset=synthetic,debug=default,log_every=100,steps=1000000,width={w}" for w in (8, 16)]
    # Output to a file: the orphans keep the launcher's stdout and stderr open.
    with open(tmp_path / "launcher.log", "w") as log:
        launcher = cli(*args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not all((record := read_record(job)) is not None and record.last_step is not None for job in jobs):
        if time.monotonic() > deadline or launcher.poll() is not None:
            launcher.kill()
            pytest.fail((tmp_path / "launcher.log").read_text()[-3000:])
        time.sleep(0.2)
    launcher.kill()                                  # kill -9: its loky workers go on with their jobs
    launcher.wait()
    workers = [int((job / LOCK_FILE).read_text().split()[0]) for job in jobs]
    try:
        code, out, err = finish(cli(*args))
        assert code == 3 and table(out, sweep) == {job.name: "elsewhere" for job in jobs}, err
        for job, pid in zip(jobs, workers, strict=True):
            assert lock_is_held(job) and read_record(job).provenance["pid"] == pid
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)


def test_records_of_the_previous_version_read_as_records():
    """tests/fixtures/width_scaling holds summary.json files written before the Record type
    (no config_validated key): each reads, with its values, through the one reader."""
    paths = sorted((ROOT / "tests" / "fixtures" / "width_scaling").glob("*/summary.json"))
    assert len(paths) == 30
    for path in paths:
        raw = json.loads(path.read_text())
        record = load_record(path)
        assert record.status == raw["status"] == Status.OK and record.config_validated is True
        assert (record.config, record.initial, record.final) == (raw["config"], raw["initial"], raw["final"])
        assert read_record(path.parent) == record
        assert json.loads(json.dumps(record.to_dict()))["status"] == "ok"   # stored as a plain string


def test_a_record_without_the_newer_keys_reads_with_their_defaults(tmp_path):
    """A summary.json of an older version (before config_validated, checkpoint_step,
    resumed_from, facts) reads; the keys it lacks, or holds as null, take their defaults."""
    old = {"status": "interrupted", "message": "interrupted by SIGTERM", "diverged_step": None,
           "last_step": 40, "config": {"width": 8, "seed": 0, "steps": 100}, "provenance": None,
           "initial": {"corr/C02": 0.5}, "final": {"corr/C02": 0.25}, "wall_time_s": 1.5,
           "a_key_no_version_knows": 1}
    (tmp_path / "summary.json").write_text(json.dumps(old))
    record = read_record(tmp_path)
    assert record == Record(status=Status.INTERRUPTED, message="interrupted by SIGTERM", last_step=40,
                            config=old["config"], initial=old["initial"], final=old["final"],
                            wall_time_s=1.5)
    assert (record.config_validated, record.checkpoint_step, record.resumed_from, record.facts,
            record.provenance) == (True, None, [], {}, {})
    assert effective_status(record, lock_held=None) == Status.INTERRUPTED


def test_a_misspelt_field_or_status_is_an_error_not_a_silent_mismatch():
    record = Record(status="ok")                   # a plain word is taken as its Status
    assert record.status is Status.OK
    with pytest.raises(AttributeError):
        record.stauts = Status.FAILED               # slotted: no new attributes
    with pytest.raises(AttributeError):
        record.stauts                               # noqa: B018
    with pytest.raises(TypeError):
        Record(stauts=Status.OK)
    with pytest.raises(AttributeError):
        Status.OKK                                  # noqa: B018
    with pytest.raises(ValueError):
        Record(status="okk")
    record.status = "failed"                        # assigned: converted too
    assert record.status is Status.FAILED
    with pytest.raises(ValueError):
        record.status = "okk"
    import wcntk
    assert wcntk.Status is Status and wcntk.Record is Record    # one enum, wherever imported from


def test_an_unreadable_record_says_why(tmp_path):
    for text, why in [("{", "JSONDecodeError"), ("[]", "a JSON list"),
                      ('{"status": "done"}', "status 'done'"),
                      ('{"status": "ok", "final": 3}', "final is not an object"),
                      ('{"status": "ok"}', "no config"), ('{"status": "ok", "config": {}}', "no config"),
                      ('{"status": "ok", "config": {"width": "8", "seed": 0}}', "non-integer width")]:
        (tmp_path / "summary.json").write_text(text)
        with pytest.raises(UnreadableRecord, match=why):
            load_record(tmp_path / "summary.json")
        assert read_record(tmp_path) is None
    assert Status.written() == ("running", "ok", "diverged", "failed", "interrupted")   # what may be written
