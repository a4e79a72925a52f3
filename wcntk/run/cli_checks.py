"""The command line's checks before Hydra starts (no run directory yet): unknown keys, wrong
types, bad interpolations and bad settings end with one `wcntk: error: …` line (ConfigError);
then a timestamped run (or sweep) directory is claimed exclusively, and an unwritable dir or one
that holds a finished run is refused. Also the schema's registration in Hydra's ConfigStore.
"""
from __future__ import annotations

import copy
import os
import re
import secrets
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..core.custom import resolve_target, takes_width
from .config import config_keys, one_line, run_config, schema, unknown_key_message, validate_config
from .provenance import LAUNCH_ENV
from .record import BOOKKEEPING_KEYS, CHECKPOINT_FILE, Status, effective_status, read_record
from .rundir import finished_run_message, lock_is_held

CONF = Path(str(files("wcntk") / "conf"))   # the package's configs (wcntk/conf: the checkout's conf/)


def register_configs() -> None:
    """Put the schema (`run_schema`, conf/config.yaml's defaults list names it) and the keys that
    stay out of sweep job-dir names (wcntk.run.record.BOOKKEEPING_KEYS) in Hydra's ConfigStore.
    Stored in code rather than YAML; run.py calls this as it loads, before Hydra composes
    anything, and from there it reaches joblib/submitit workers, which compose each job's config
    and name its dir."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=schema())
    store.store(name="bookkeeping_keys", node={
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


def check_width_reaches_factory(task: dict, set_keys: set[str], swept_keys: set[str]) -> None:
    """A custom factory that takes no `width` (nor **kwargs) builds the same network at every
    width: a sweep over width is refused, a run that sets width gets one warning line."""
    model = task.get("model") or {}
    if model.get("kind") != "custom" or "width" not in set_keys | swept_keys:
        return
    if takes_width(resolve_target(model.get("target"))):
        return
    what = f"model.target={model['target']} takes no width argument (nor **kwargs)"
    if "width" in swept_keys:
        raise ConfigError(f"{what}: every width of the sweep would build the same network; "
                          f"add a width parameter to the factory")
    print(f"wcntk: warning: {what}: width={task['width']} changes nothing (the record still says it)",
          file=sys.stderr, flush=True)


def sweep_file_params(cfg: DictConfig, given: set[str]) -> list:
    """The sweeps a sweep file sets (`hydra.sweeper.params`) for keys the command line leaves alone."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    lines = [f"{key}={value}" for key, value in params.items() if key not in given]
    try:
        return [o for o in OverridesParser.create().parse_overrides(lines) if o.is_sweep_override()]
    except HydraException:  # Hydra's sweeper reports it
        return []


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

    Under multirun, keys, types (a closed choice's value included) and interpolations are checked
    here (the base config, and each value a sweep on the command line or in a sweep file gives a
    key); the settings of each job when it starts, so that a bad job fails alone."""
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
    file_sweeps = sweep_file_params(cfg, {o.key_or_group for o in overrides}) if multirun else []
    for override in [*sweeps, *file_sweeps]:
        if override.key_or_group not in config_groups():
            check_sweep_values(task, override)
    check_width_reaches_factory(task, {o.key_or_group for o in overrides},
                                {o.key_or_group for o in [*sweeps, *file_sweeps]})
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
    path's is often the working directory). The permission bits do not tell it for root, nor
    on /proc, /sys or a read-only mount, so an empty directory is made there and removed."""
    ancestor = Path(path).absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    why = ""
    if ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK):
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".wcntk-probe-", dir=ancestor))
            return
        except OSError as err:
            why = f" ({err.strerror})"
    raise ConfigError(f"{key}={path} cannot be written: {ancestor} is not a directory you may write "
                      f"into{why}; choose another {key}")


def check_run_dir(run_dir: str, overwrite: bool) -> None:
    """A run dir given on the command line that another process is writing, or (without
    overwrite=true) that holds a finished run's record, is refused here with one line, before
    Hydra writes anything into it (the job settles the dir again, holding its lock:
    wcntk.run.job.prepare_run_dir)."""
    held = lock_is_held(run_dir)
    if held:
        raise ConfigError(f"{run_dir} is being written by another process (running elsewhere)")
    summary = read_record(run_dir)
    status = None if summary is None else effective_status(summary, held)
    continues = status == Status.INTERRUPTED and (Path(run_dir) / CHECKPOINT_FILE).exists()
    if status is not None and not overwrite and status != Status.STALE and not continues:
        raise ConfigError(finished_run_message(run_dir, summary.status))
