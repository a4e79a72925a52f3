"""The SLURM launcher (conf/hydra/launcher/slurm.yaml) against a real one-node cluster, the one
`.ci/slurm_up.sh` starts (Debian's slurm-wlm and munge; `.ci/run` starts it before pytest).

Where no cluster answers, these tests skip and say why; in CI (`CI` or `WCNTK_SLURM` set) they
start it with .ci/slurm_up.sh and fail if it cannot start. Each sweep runs from a directory
outside the checkout, without PYTHONPATH, and every job's record must name this checkout's commit:
the jobs import the wcntk of the run.py that launched them.

The test cluster keeps no accounting (no slurmdbd), so `sacct` fails and submitit cannot tell a
cancelled job from a running one: submitit logs "Bypassing sacct error" and the launcher keeps
waiting for a job that left no result; the scancel test stops the launcher itself.
"""
from __future__ import annotations

import json
import os
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


def test_an_array_sweep_ends_ok(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    proc = slurm_sweep(sweep, "width=16,32", "seed=0,1", "steps=30")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = closing_table(proc.stdout, sweep)
    assert table[0] == f"wcntk: sweep {sweep}: 4 jobs: 4 ok"
    assert [row.split()[0] for row in table[1:]] == ["ok"] * 4
    found = records(sweep)
    assert sorted((r["config"]["width"], r["config"]["seed"]) for r in found.values()) == \
        [(16, 0), (16, 1), (32, 0), (32, 1)]
    for record in found.values():
        assert record["status"] == "ok" and record["last_step"] == 30
        assert_this_checkout(record)
    ids = submitit_jobs(sweep)
    assert len(ids) == 4 and len({i.split("_")[0] for i in ids}) == 1   # one array job, four tasks


def test_scancel_leaves_a_resumable_record_and_the_rerun_continues_it(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["width=16", "seed=0", "steps=2000", "log_every=100"]
    log = tmp_path / "launcher.log"
    with open(log, "w") as out:
        launcher = start_run_py("-m", *TINY, *LAUNCHER, *args, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                                env=JOB_ENV, stdout=out, stderr=subprocess.STDOUT)
    try:
        job = sweep / "dataset=digits,log_every=100,seed=0,steps=2000,width=16"

        wait_for(lambda: last_row(job) >= 200, 240, "the job's step 200", launcher)
        (task,) = submitit_jobs(sweep)
        subprocess.run(["scancel", task], check=True, timeout=30)

        def interrupted() -> bool:
            try:
                return json.loads((job / "summary.json").read_text())["status"] == "interrupted"
            except (OSError, ValueError, KeyError):
                return False
        wait_for(interrupted, 60, "the interrupted record")
        record = json.loads((job / "summary.json").read_text())
        assert record["message"] == "interrupted by SIGTERM" and 200 <= record["checkpoint_step"] < 2000
        assert (job / "checkpoint.pt").is_file()
        assert_this_checkout(record)
    finally:   # the launcher cannot see the cancelled job end (no sacct here): stop it
        launcher.terminate()
        launcher.wait(60)
    proc = slurm_sweep(sweep, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert closing_table(proc.stdout, sweep)[0] == f"wcntk: sweep {sweep}: 1 jobs: 1 ok"
    done = json.loads((job / "summary.json").read_text())
    assert done["status"] == "ok" and done["last_step"] == 2000
    assert done["resumed_from"] == [record["checkpoint_step"]]
    assert f"resumed from step {record['checkpoint_step']}" in (proc.stdout + proc.stderr + "".join(
        p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err")))


def test_a_preempted_job_is_requeued_by_slurm_and_continues_from_its_checkpoint(slurm, tmp_path):
    """`scontrol requeue` (what preemption with PreemptMode=REQUEUE does): SIGTERM, the job
    checkpoints and records interrupted, SLURM starts it again, it continues to ok; the launcher
    waits throughout and its table says the job was resumed once."""
    sweep = tmp_path / "sweep"
    args = ["width=16", "seed=0", "steps=2000", "log_every=100"]
    job = sweep / "dataset=digits,log_every=100,seed=0,steps=2000,width=16"
    launcher = start_run_py("-m", *TINY, *LAUNCHER, *args, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                            env=JOB_ENV)
    try:
        wait_for(lambda: last_row(job) >= 200, 240, "the job's step 200", launcher)
        (task,) = submitit_jobs(sweep)
        subprocess.run(["scontrol", "requeue", task], check=True, timeout=30)
        out, err = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, out[-3000:] + err[-3000:]
    table = closing_table(out, sweep)
    print("\n".join(table))
    record = json.loads((job / "summary.json").read_text())
    assert record["status"] == "ok" and len(record["resumed_from"]) == 1 and record["resumed_from"][0] >= 200
    assert table[0] == f"wcntk: sweep {sweep}: 1 jobs: 1 ok"
    assert f"resumed 1× (from step {record['resumed_from'][0]})" in table[1]


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
