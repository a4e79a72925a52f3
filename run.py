"""Train a network and its linearized twin side by side: `python run.py width=4096`.

Thin Hydra entry point. Before Hydra starts, the command line is checked against the schema
(wcntk.run.config.RunConfig, registered here in Hydra's ConfigStore): unknown keys, wrong types,
bad interpolations and bad settings end with one `wcntk: error: …` line and leave no run
directory; a timestamped run directory is then claimed exclusively, and an unwritable dir or
one that holds a finished run is refused. Each job holds its dir's writer lock (wcntk.run.rundir)
and hands its resolved config to wcntk.run.job.run_job.
"""
import copy
import os
import re
import secrets
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine spinning
# threads made a training step up to 6x slower (README, Performance). Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra._internal.utils import get_args_parser  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from hydra.errors import CompactHydraException, HydraException  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from wcntk.run.config import config_keys, one_line, run_config, schema, unknown_key_message, validate_config  # noqa: E402
from wcntk.run.job import FinishedRecord, prepare_run_dir, run_job  # noqa: E402
from wcntk.run.lifecycle import Interrupted, interruptible  # noqa: E402
from wcntk.run.outcome import closing_line, metrics_text  # noqa: E402
from wcntk.run.provenance import LAUNCH_ENV  # noqa: E402
from wcntk.run.record import BOOKKEEPING_KEYS, effective_status, read_summary  # noqa: E402
from wcntk.run.rundir import LOCK_FILE, RunningElsewhere, lock_is_held, supersede, writer_lock  # noqa: E402
from wcntk.run.tracking import write_invalid_setting_record  # noqa: E402
from wcntk.training.data import DatasetUnavailable  # noqa: E402
from wcntk.training.progress import say  # noqa: E402

CONF = Path(__file__).resolve().parent / "conf"

ConfigStore.instance().store(name="run_schema", node=schema())
# Keys that never change a run's numbers stay out of sweep job-dir names (one list, in wcntk.run.record).
# Stored here rather than in YAML; the ConfigStore reaches joblib/submitit workers, which name the dirs.
ConfigStore.instance().store(name="bookkeeping_keys", node={
    "hydra": {"job": {"config": {"override_dirname": {"exclude_keys": list(BOOKKEEPING_KEYS)}}}}})


class ConfigError(CompactHydraException, ValueError):
    """A user mistake on the command line or in a config value: reported as one line (Hydra, too,
    shows a failed job's CompactHydraException without a traceback)."""


def config_groups() -> dict[str, list[str]]:
    """Config group -> its options (conf/<group>/<option>.yaml), Hydra's own groups left out."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(CONF.iterdir()) if d.is_dir() and d.name != "hydra"}


def check_keys(overrides: list) -> None:
    """Every override names a schema key, a config group, or a Hydra setting; else one line
    naming the closest valid key (`+key` is no way around the schema)."""
    groups = config_groups()
    known = set(config_keys())
    for override in overrides:
        key = override.key_or_group
        if override.is_hydra_override():
            continue
        if key in groups:
            if override.is_delete():
                continue
            try:
                values = list(override.sweep_string_iterator()) if override.is_sweep_override() \
                    else [override.value()]
            except HydraException:  # glob(…) over a group's options: Hydra expands and checks it
                continue
            for value in values:
                if str(value) not in groups[key]:
                    raise ConfigError(f"unknown {key} {value!r}: choose one of {', '.join(groups[key])}")
            continue
        if key.startswith("model.kwargs."):  # a custom network's own arguments: any name
            continue
        if key not in known and re.sub(r"\.\d+$", "", key) not in known:  # optimizer.betas.0 is fine
            raise ConfigError(unknown_key_message(key, tuple(groups)))
        if override.is_delete():
            raise ConfigError(f"~{key}: a schema key cannot be removed; set it instead ({key}=…)")


def check_sweep_values(task: dict, override) -> None:
    """Each value a command-line sweep gives its key has the schema's type (and resolves)."""
    try:
        values = list(override.sweep_iterator())
    except HydraException:  # interval(…) sweeps have no fixed values
        return
    *parents, leaf = override.key_or_group.split(".")
    for value in values:
        job = copy.deepcopy(task)
        node = job
        try:
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[int(leaf) if isinstance(node, list) else leaf] = value
        except (KeyError, IndexError, TypeError, ValueError):  # a path Hydra itself will reject
            return
        try:
            run_config(job)
        except ValueError as err:
            raise ConfigError(f"{err} (in the sweep {override.input_line})") from None


def claim_dir(pattern_resolved: str) -> str:
    """Create `pattern_resolved` (or, if another run took it first, the same name + `-1`, `-2`, …)
    with an exclusive mkdir: two runs never share a directory."""
    Path(pattern_resolved).parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = pattern_resolved if n == 0 else f"{pattern_resolved}-{n}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"could not create a fresh run directory next to {pattern_resolved}")


def check_command_line(argv: list[str]) -> list[str]:
    """Compose and validate the config of `python run.py *argv` before Hydra runs (no run dir
    yet), raising ConfigError with one line. Returns argv to hand to Hydra: with a timestamped
    run (or multirun) dir claimed here and pinned as `hydra.run.dir=…` (`hydra.sweep.dir=…`).

    Under multirun, keys, types and interpolations are checked here (the base config, and each
    value a command-line sweep gives a key); the settings of each job when it starts, so that a
    bad job fails alone."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.shell_completion:
        return argv
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as err:
        raise ConfigError(one_line(err)) from None
    check_keys(overrides)
    if args.info or args.cfg:  # only shows a config: no run dir
        return argv
    sweeps = [o for o in overrides if o.is_sweep_override()]
    fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
    config_dir = os.path.abspath(args.config_dir) if args.config_dir else str(CONF)
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(args.config_name or "config", overrides=fixed, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(one_line(err)) from None
    multirun = args.multirun or cfg.hydra.mode == RunMode.MULTIRUN
    if sweeps and not multirun:
        line = sweeps[0].input_line
        key, _, value = line.partition("=")
        raise ConfigError(f"{line} is a sweep: add --multirun (or +sweep=…)"
                          + (f", or write a list as {key}=[{value}]" if "," in value else ""))
    try:
        task = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                                      resolve=True)
        if not multirun:
            validate_config(task)
    except (OmegaConfBaseException, ValueError) as err:
        raise ConfigError(one_line(err)) from None
    for override in sweeps:
        if override.key_or_group not in config_groups():
            check_sweep_values(task, override)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    # Every job of a multirun records which launch ran it (the sweep's closing table reads it).
    launch = [f"++hydra.job.env_set.{LAUNCH_ENV}={secrets.token_hex(6)}"] if multirun else []
    try:
        resolved = str(OmegaConf.select(cfg, key, throw_on_missing=True))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    check_writable(resolved, key)
    if "${now:" not in OmegaConf.to_container(cfg.hydra.sweep if multirun else cfg.hydra.run)["dir"]:
        if not multirun:
            check_run_dir(resolved, bool(task.get("overwrite")))
        # A stable dir (a sweep's, or set on the command line): re-running reuses it.
        return with_overrides(argv, args.overrides, launch)
    claimed = claim_dir(resolved)
    if not re.fullmatch(r"[\w/.:+@~-]+", claimed):
        claimed = "'" + claimed.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return with_overrides(argv, args.overrides, [*launch, f"{key}={claimed}"])


def with_overrides(argv: list[str], overrides: list[str], extra: list[str]) -> list[str]:
    """argv with `extra` added right after its overrides (argparse takes them as one run of
    positional arguments: one appended after an option such as `--config-dir DIR` is rejected)."""
    at = len(argv) - argv[::-1].index(overrides[-1]) if overrides else len(argv)
    return [*argv[:at], *extra, *argv[at:]]


def check_writable(path: str, key: str) -> None:
    """One line (ConfigError) when the run or sweep dir `path` cannot be created and written:
    its nearest existing ancestor must be a directory this user may write into (a relative
    path's is often the working directory)."""
    ancestor = Path(path).absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not (ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK)):
        raise ConfigError(f"{key}={path} cannot be written: {ancestor} is not a directory you may write "
                          f"into; choose another {key}")


def check_run_dir(run_dir: str, overwrite: bool) -> None:
    """A run dir given on the command line that another process is writing, or (without
    overwrite=true) that holds a finished run's record, is refused here with one line, before
    Hydra writes anything into it (run_job checks again, holding the dir's lock)."""
    held = lock_is_held(run_dir)
    if held:
        raise ConfigError(f"{run_dir} is being written by another process (running elsewhere)")
    summary = read_summary(run_dir)
    if summary is not None and not overwrite and effective_status(summary, held) != "stale":
        raise ConfigError(f"{run_dir} already holds a finished run (status {summary['status']}); choose "
                          f"another hydra.run.dir, or add overwrite=true to move its record to "
                          f"{Path(run_dir) / 'superseded'}/")


def torch_threads(requested, launcher) -> int | None:
    """Threads per job: `threads` if set; under the joblib launcher the cores divided among
    its n_jobs parallel jobs (-1 = one job per core); otherwise torch's default."""
    if requested is not None:
        return requested
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else max(1, n_jobs)))


def remove_if_untouched(run_dir: Path) -> None:
    """Remove a run dir that holds only what Hydra wrote (.hydra/, <job>.log) and the writer
    lock: no results."""
    kept = (".hydra", LOCK_FILE)
    if run_dir.is_dir() and all(p.name in kept or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    job = hydra_cfg.job.override_dirname if multirun else None
    try:
        with writer_lock(run_dir):
            run_locked(cfg, run_dir, multirun, job, hydra_cfg)
    except RunningElsewhere as err:
        if not multirun:
            sys.exit(f"wcntk: error: {err}")
        say(f"running elsewhere: {err}; left alone", job)  # the sweep goes on; its table lists the job


def run_locked(cfg: DictConfig, run_dir: Path, multirun: bool, job: str | None,
               hydra_cfg: DictConfig) -> None:
    """One run (or sweep job) in run_dir, whose writer lock this process holds."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        validated = asdict(validate_config(config))
    except (OmegaConfBaseException, ValueError) as err:
        if multirun:  # the job fails alone: recorded, so the sweep's table and the report list it
            old = read_summary(run_dir)
            if (run_dir / "summary.json").exists() and (old or {}).get("config_validated") is not False:
                supersede(run_dir)  # a record with results (or an unreadable one) is kept aside
            write_invalid_setting_record(run_dir, raw_config(cfg), f"invalid setting: {one_line(err)}")
            say(f"error: {one_line(err)}", job or run_dir.name)
            return
        remove_if_untouched(run_dir)
        sys.exit(f"wcntk: error: {one_line(err)}")
    threads = torch_threads(config["threads"], hydra_cfg.launcher if multirun else None)
    if threads is not None:
        torch.set_num_threads(threads)
    where = None if multirun else run_dir  # a sweep job's label names its dir
    try:
        done = prepare_run_dir(run_dir, validated, resume=multirun, overwrite=config["overwrite"],
                               label=job)
    except FinishedRecord as err:
        sys.exit(f"wcntk: error: {err}")
    if done is not None:
        print(f"wcntk: [{job}] skipped (already ok)  {metrics_text(done)}", flush=True)
        return
    try:
        summary = run_job(config, run_dir, resume=multirun, label=job)
    except Interrupted as err:
        say(closing_line(err.summary, where), job)
        raise
    except Exception as err:
        summary = getattr(err, "summary", None) or read_summary(run_dir)
        if summary is None:  # failed before the run was recorded
            raise
        say(closing_line(summary, where), job)
        if multirun:  # the other jobs go on; the sweep's closing table lists this one and exits 1
            return
        if not isinstance(err, DatasetUnavailable | OSError):
            raise  # a bug, not a setting or the machine: Hydra shows where
        sys.exit(1)
    if summary["status"] == "ok":
        print(f"wcntk: {f'[{job}] ' if job else ''}{closing_line(summary, where)}", flush=True)
    else:
        say(closing_line(summary, where), job)
        if not multirun:
            sys.exit(1)


def raw_config(cfg: DictConfig) -> dict:
    """The composed config as a plain dict: resolved, or as written (`${…}` kept) when one of
    its interpolations does not resolve."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)


if __name__ == "__main__":
    try:
        sys.argv[1:] = check_command_line(sys.argv[1:])
    except ConfigError as err:
        sys.exit(f"wcntk: error: {err}")
    try:
        with interruptible():
            main()
    except (Interrupted, KeyboardInterrupt) as err:
        # A job's interruption has been recorded and reported by the job; anything else (Ctrl-C
        # while Hydra starts, or in the launcher's process) gets one line here, never a traceback.
        if not isinstance(err, Interrupted) or err.summary is None:
            say(str(err) if isinstance(err, Interrupted) else "interrupted by SIGINT")
        sys.exit(err.exit_code if isinstance(err, Interrupted) else 130)
