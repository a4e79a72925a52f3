"""The SLURM launcher (conf/hydra/launcher/slurm.yaml: wcntk.run.launcher) against a real one-node
cluster, the one `.ci/slurm_up.sh` starts (Debian's slurm-wlm and munge; `.ci/run` starts it
before pytest).

Where no cluster answers, these tests skip and say why; in CI (`CI` or `WCNTK_SLURM` set) they
start it with .ci/slurm_up.sh and fail if it cannot start. Each sweep runs from a directory
outside the checkout, without PYTHONPATH, and every job's record must name this checkout's commit:
the jobs import the wcntk of the run.py that launched them.

The test cluster keeps no accounting (no slurmdbd, so `sacct` fails): the launcher needs none, it
watches `squeue` and submitit's result files, so a cancelled job ends its wait here as it would
on a cluster with accounting. The interruptions are sent when a job has logged step 200, not
timed: a job's start-up takes 10-30 s on a loaded machine.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ENV, ROOT, run_py, start_run_py
from wcntk.run.provenance import git_state

REQUIRED = bool(os.environ.get("CI") or os.environ.get("WCNTK_SLURM"))
SLURM_UP = ROOT / ".ci" / "slurm_up.sh"
PARTITION = "debug"
# A CPU job of one core and 1 GB on the test cluster's partition.
LAUNCHER = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
            "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
TINY = ["dataset=digits", "progress=false", "wandb.mode=disabled"]
# The jobs find this checkout's wcntk through run.py (PYTHONPATH), not through the test's environment.
JOB_ENV = {k: v for k, v in {**ENV, "HYDRA_FULL_ERROR": "1"}.items() if k != "PYTHONPATH"}

pytestmark = pytest.mark.slow


def cluster_problem() -> str | None:
    """Why no SLURM cluster takes jobs in PARTITION here; None when one does."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "SLURM is not installed (no sbatch/sinfo)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-N", "-o", "%T"], capture_output=True,
                              text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if proc.returncode != 0:
        return f"no SLURM cluster answers (sinfo: {proc.stderr.strip()[:200]})"
    states = proc.stdout.split()
    if not any(s.rstrip("*~#!%$@^-") in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"partition {PARTITION} has no node up (states: {' '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    why = cluster_problem()
    if why is None:
        return
    if not REQUIRED:
        pytest.skip(f"{why}; `bash .ci/slurm_up.sh` (as root) starts a one-node cluster "
                    f"(in CI, with CI or WCNTK_SLURM set, these tests fail instead)")
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=900)
        said = f"exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    except (OSError, subprocess.TimeoutExpired) as err:
        said = f"could not run: {err}"
    why = cluster_problem()
    if why is not None:
        pytest.fail(f"the SLURM test cluster cannot start ({why}); .ci/slurm_up.sh, after "
                    f"{time.monotonic() - start:.0f} s, {said}")


def slurm_sweep(sweep: Path, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python run.py -m <tiny digits> <SLURM launcher> *overrides` from outside the checkout."""
    return run_py("-m", *TINY, *LAUNCHER, *overrides, f"hydra.sweep.dir={sweep}", cwd=sweep.parent,
                  env=JOB_ENV, timeout=timeout)


def closing_table(out: str, sweep: Path) -> list[str]:
    return out[out.index(f"wcntk: sweep {sweep}:"):].splitlines()


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def assert_this_checkout(record: dict) -> None:
    commit = git_state()[0]
    if commit is not None:   # a git checkout: the job ran its code, not another checkout's
        assert record["provenance"]["git_commit"] == commit


def submitit_jobs(sweep: Path) -> list[str]:
    """SLURM job ids of the sweep's jobs (`<array id>_<index>`, or `<id>` for a sweep of one job),
    from submitit's pickles."""
    pickles = (sweep / ".submitit").glob("*/*_submitted.pkl")
    return sorted(p.name.removesuffix("_submitted.pkl") for p in pickles)


def last_row(job: Path) -> int:
    """A step metrics.csv has logged (its last row but one: the last may be half written); -1 for none.
    (summary.json is written only at the start and the end.)"""
    try:
        rows = (job / "metrics.csv").read_text().splitlines()[1:-1]
    except OSError:
        return -1
    return int(rows[-1].split(",")[0]) if rows else -1


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            subprocess.run(["squeue"], check=False)
            pytest.fail(f"{what}: not within {timeout:.0f} s" if proc is None or proc.poll() is None
                        else f"{what}: the launcher ended first (exit {proc.returncode})")
        time.sleep(0.5)


def start_sweep(sweep: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    """slurm_sweep started in the background; its stdout and stderr go to the returned file."""
    sweep.parent.mkdir(parents=True, exist_ok=True)
    log = sweep.parent / "launcher.log"
    with open(log, "w") as out:
        proc = start_run_py("-m", *TINY, *LAUNCHER, *overrides, f"hydra.sweep.dir={sweep}", cwd=sweep.parent,
                            env=JOB_ENV, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def stop(launcher: subprocess.Popen) -> None:
    if launcher.poll() is None:
        launcher.kill()
        launcher.wait(30)


def task_of(sweep: Path, job: Path) -> str:
    """The SLURM job id of the task that runs job dir `job` (from submitit's pickle of its overrides)."""
    for pkl in (sweep / ".submitit").glob("*/*_submitted.pkl"):
        with open(pkl, "rb") as fh:
            overrides = pickle.load(fh).args[0]
        if set(job.name.split(",")) <= set(overrides):
            return pkl.name.removesuffix("_submitted.pkl")
    raise AssertionError(f"no submitted task runs {job.name}")


def submitit_log(sweep: Path, task: str) -> str:
    """What the task wrote (submitit's stdout and stderr files), all its attempts."""
    return "".join(p.read_text() for p in sorted((sweep / ".submitit" / task).glob("*_log.*")))


def status_of(job: Path) -> str | None:
    try:
        return json.loads((job / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_job_out_of_requeues_leaves_every_row_and_a_rerun_submits_only_it(slurm, tmp_path):
    """A 2-job array; the long job gets SIGUSR2 (what SLURM sends before a time limit) with
    max_num_timeout=0: it checkpoints, submitit does not requeue it, its log has one line and no
    traceback, and the launcher ends with both rows (exit 1), no traceback. The same command
    again submits only that job (one task), which continues from its checkpoint to ok."""
    sweep = tmp_path / "sweep"
    args = ["width=16", "seed=0", "steps=30,4000", "log_every=100",
            "hydra.launcher.max_num_timeout=0", "hydra.launcher.timeout_min=10"]  # any SIGUSR2: a timeout
    short, long = (sweep / f"dataset=digits,log_every=100,seed=0,steps={n},width=16" for n in (30, 4000))
    launcher, log = start_sweep(sweep, *args)
    try:
        wait_for(lambda: last_row(long) >= 200, 240, "the long job's step 200", launcher)
        subprocess.run(["scancel", "--signal=USR2", task_of(sweep, long)], check=True, timeout=30)
        launcher.wait(120)
    finally:
        stop(launcher)
    out = log.read_text()
    assert launcher.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    table = closing_table(out, sweep)
    assert table[0] == f"wcntk: sweep {sweep}: 2 jobs: 1 ok, 1 interrupted"
    record = json.loads((long / "summary.json").read_text())
    assert record["status"] == "interrupted" and record["message"] == "interrupted by SIGUSR2"
    assert 200 <= record["checkpoint_step"] < 4000 and (long / "checkpoint.pt").is_file()
    assert table[1].split()[:2] == ["ok", short.name] and table[2].split()[:2] == ["interrupted", long.name]
    assert f"checkpoint at step {record['checkpoint_step']}" in table[2]
    job_log = submitit_log(sweep, task_of(sweep, long))
    assert "Traceback" not in job_log and job_log.count("wcntk: ") == 1, job_log
    assert "interrupted by SIGUSR2" in job_log and "not requeued: timed-out too many times" in job_log
    assert "exit code 140" in job_log                 # 128 + SIGUSR2 (srun's line)
    for found in records(sweep).values():
        assert_this_checkout(found)
    first = submitit_jobs(sweep)
    assert len(first) == 2 and len({i.split("_")[0] for i in first}) == 1   # one array job, two tasks

    proc = slurm_sweep(sweep, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wcntk: submitting 1 of 2 jobs to SLURM (1 already ok: skipped)" in proc.stderr
    (again,) = set(submitit_jobs(sweep)) - set(first)                    # one task submitted
    table = closing_table(proc.stdout, sweep)
    assert table[0] == f"wcntk: sweep {sweep}: 2 jobs: 1 skipped (already ok), 1 ok"
    done = json.loads((long / "summary.json").read_text())
    assert done["status"] == "ok" and done["last_step"] == 4000
    assert done["resumed_from"] == [record["checkpoint_step"]]
    assert f"resumed 1× (from step {record['checkpoint_step']})" in table[2]
    assert f"resumed from step {record['checkpoint_step']}" in submitit_log(sweep, again)


def test_a_requeued_job_continues_quietly_and_scancel_ends_the_wait(slurm, tmp_path):
    """A 2-job array with W&B offline: `scontrol requeue` of one (what preemption does) sends
    SIGTERM, it checkpoints, SLURM starts it again and it continues to ok, its log holding one
    line per interruption and no traceback; `scancel` of the other then ends the launcher's wait
    within a minute, with its row (interrupted, its checkpoint step) and no traceback."""
    sweep = tmp_path / "sweep"
    args = ["width=16", "seed=0", "steps=3000,500000", "log_every=100", "wandb.mode=offline"]
    requeued, cancelled = (sweep / f"dataset=digits,log_every=100,seed=0,steps={n},width=16"
                           for n in (3000, 500000))
    launcher, log = start_sweep(sweep, *args)
    try:
        wait_for(lambda: last_row(requeued) >= 200, 240, "the first job's step 200", launcher)
        subprocess.run(["scontrol", "requeue", task_of(sweep, requeued)], check=True, timeout=30)
        wait_for(lambda: status_of(requeued) == "ok", 300, "the requeued job's end", launcher)
        assert last_row(cancelled) >= 200
        subprocess.run(["scancel", task_of(sweep, cancelled)], check=True, timeout=30)
        start = time.monotonic()
        launcher.wait(90)
        waited = time.monotonic() - start
    finally:
        stop(launcher)
    out = log.read_text()
    assert waited < 60, f"the launcher ended {waited:.0f} s after scancel"
    assert launcher.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    table = closing_table(out, sweep)
    print("\n".join(table))
    assert table[0] == f"wcntk: sweep {sweep}: 2 jobs: 1 ok, 1 interrupted"
    ok = json.loads((requeued / "summary.json").read_text())
    assert len(ok["resumed_from"]) == 1 and ok["resumed_from"][0] >= 200
    stopped = json.loads((cancelled / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["message"] == "interrupted by SIGTERM"
    rows = {row.split()[1]: row for row in table[1:3]}
    assert rows[requeued.name].startswith("  ok") and f"resumed 1× (from step {ok['resumed_from'][0]})" \
        in rows[requeued.name]
    assert rows[cancelled.name].split()[0] == "interrupted"
    assert f"checkpoint at step {stopped['checkpoint_step']}" in rows[cancelled.name]
    for job, lines in ((requeued, 3), (cancelled, 1)):   # interrupted, resumed from, ok / interrupted
        job_log = submitit_log(sweep, task_of(sweep, job))
        assert "Traceback" not in job_log and job_log.count("wcntk: ") == lines, job_log
        assert "exit code 143" in job_log              # 128 + SIGTERM (srun's line)


def steps_for(seconds: float, run_dir: Path) -> int:
    """Steps of the requeue test's job (width 16 on digits) that take about `seconds` of training
    on this machine now (a shared or a fast machine differs 3x), from the wall_time_s of a 1500-
    and a 4500-step run: their difference leaves out the start-up (data, step 0's correlations),
    which made one run's rate 2-4x too slow and the job fit in one allocation."""
    walls = []
    for steps in (1500, 4500):
        out = run_dir / str(steps)
        proc = run_py(*TINY, "width=16", "seed=0", f"steps={steps}", "log_every=100", f"hydra.run.dir={out}",
                      cwd=run_dir.parent, env=JOB_ENV)
        assert proc.returncode == 0, proc.stderr[-3000:]
        walls.append(json.loads((out / "summary.json").read_text())["wall_time_s"])
    rate = 3000 / max(walls[1] - walls[0], 1e-3)
    return int(min(max(rate * seconds, 4000), 200000)) // 100 * 100


def test_a_job_past_its_time_limit_is_requeued_and_ends_with_the_numbers_of_a_local_run(slurm, tmp_path):
    """A 1-minute limit and SIGUSR2 5 s before it (SLURM checks limits every 30 s: it comes 5-35 s
    early, so an allocation trains for 15-45 s after ~10 s of start-up), a job of about 80 s of
    training: each signal checkpoints and requeues it (submitit, max_num_timeout), each start
    continues from there (1-5 requeues); the record and metrics.csv equal those of the same run
    made locally in one go (started alongside)."""
    steps = steps_for(80, tmp_path / "calibrate")
    args = ["width=16", "seed=0", f"steps={steps}", "log_every=100"]
    local_dir = tmp_path / "local"
    local = start_run_py(*TINY, *args, f"hydra.run.dir={local_dir}", cwd=tmp_path, env=JOB_ENV)
    sweep = tmp_path / "sweep"
    proc = slurm_sweep(sweep, *args, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
                       "hydra.launcher.max_num_timeout=8", timeout=900)
    out, err = local.communicate(timeout=600)
    assert local.returncode == 0, err[-3000:]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = closing_table(proc.stdout, sweep)
    print("\n".join(table))
    assert table[0] == f"wcntk: sweep {sweep}: 1 jobs: 1 ok"
    job = sweep / f"dataset=digits,log_every=100,seed=0,steps={steps},width=16"
    record = json.loads((job / "summary.json").read_text())
    assert record["status"] == "ok" and len(record["resumed_from"]) >= 1, record["resumed_from"]
    assert f"resumed {len(record['resumed_from'])}×" in table[1]
    reference = json.loads((local_dir / "summary.json").read_text())
    assert (job / "metrics.csv").read_bytes() == (local_dir / "metrics.csv").read_bytes()
    for key in ("last_step", "initial", "final"):
        assert record[key] == reference[key], key
    assert_this_checkout(record)
