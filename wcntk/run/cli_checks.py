"""The command line's checks, inside Hydra's own start: Hydra parses the command line and composes
the config against the schema (unknown keys, wrong types, a missing group option), then
`CommandLineCheck`, a Hydra callback, checks what Hydra composed before any run (or sweep)
directory exists: keys the schema lacks (`+key=…` and `~key` included), every setting of a
single run, every value a sweep gives a key, and a writable, fresh directory, which it claims
exclusively. Every mistake is one `wcntk: error: …` line: ConfigError here, and Hydra's own
composition errors through `config_error` (wcntk.run.entry.cli).

Also the schema's registration in Hydra's ConfigStore.
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
import traceback
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from ..core.custom import resolve_target, takes_width
from ..training.progress import say
from .arms import arm_sweep_lines
from .config import (
    RunConfig,
    config_keys,
    one_line,
    run_config,
    schema,
    unknown_key_message,
    validate_config,
)
from .provenance import LAUNCH_ENV
from .record import BOOKKEEPING_KEYS, Status, effective_status, flatten, read_record
from .rundir import finished_run_message, lock_is_held

CONF = Path(str(files("wcntk") / "conf"))   # the package's configs (wcntk/conf: the checkout's conf/)


def register_configs() -> None:
    """Put the schema (`run_schema`, conf/config.yaml's defaults list names it) and the keys that
    stay out of sweep job-dir names (wcntk.run.record.BOOKKEEPING_KEYS) in Hydra's ConfigStore.
    Stored in code rather than YAML; wcntk/__main__.py calls this as it loads, before Hydra
    composes anything, and from there it reaches joblib/submitit workers, which compose each
    job's config and name its dir."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=schema())
    store.store(name="bookkeeping_keys", node={
        "hydra": {"job": {"config": {"override_dirname": {"exclude_keys": list(BOOKKEEPING_KEYS)}}}}})


class ConfigError(CompactHydraException, ValueError):
    """A user mistake on the command line or in a config value: reported as one line."""


def config_groups() -> dict[str, list[str]]:
    """Config group -> its options (conf/<group>/<option>.yaml), Hydra's own groups left out."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(CONF.iterdir()) if d.is_dir() and d.name != "hydra"}


def config_error(err: HydraException | OmegaConfBaseException) -> ConfigError:
    """Hydra's composition error as one line: a missing group option names the options, a key
    the schema lacks its nearest key, a sweep without --multirun the way to write it."""
    if isinstance(err, ConfigError):
        return err
    text = str(err)
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        return ConfigError(f"unknown {group} {option!r}: choose one of {', '.join(err.options)}")
    if key := re.match(r"Could not override '([^']+)'", text):
        return ConfigError(unknown_key_message(key[1], tuple(config_groups())))
    if sweep := re.match(r"Ambiguous value for argument '(([^=']+)=([^']*))'", text):
        line, key, value = sweep.groups()
        return ConfigError(f"{line} is a sweep: add --multirun (or +sweep=…)"
                           + (f", or write a list as {key}=[{value}]" if "," in value else ""))
    if text.startswith("Error merging override") and isinstance(err.__cause__, OmegaConfBaseException):
        return ConfigError(one_line(err.__cause__))   # `width: Value 'abc' … could not be converted …`
    return ConfigError(one_line(err))


class CommandLineCheck(Callback):
    """Hydra callback (conf/config.yaml's `hydra.callbacks.command_line_check`, listed first):
    check_run / check_multirun when a run or multirun starts, before Hydra makes its directory.
    A mistake ends the process with its one line (SystemExit: Hydra's callbacks turn any
    Exception into a warning and go on)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_mistakes(check_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_mistakes(check_multirun, config)


def refuse_mistakes(check: Callable[[DictConfig], None], config: DictConfig) -> None:
    """`check(config)`; a mistake ends the process with its one line, any other exception with
    its traceback (never Hydra's warning, after which the run would go on unchecked)."""
    try:
        check(config)
    except (HydraException, OmegaConfBaseException) as err:
        raise SystemExit(f"wcntk: error: {config_error(err)}") from None
    except Exception:
        traceback.print_exc()
        raise SystemExit(1) from None


def check_run(config: DictConfig) -> None:
    """A single run's composed config (Hydra's node included): its keys and every setting; then
    its run dir is checked and, if timestamped, claimed and pinned in `config`."""
    check_keys(config)
    try:
        run = validate_config(task_config(config))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_width_reaches_factory(run, command_line(config), swept=set())
    claim_run_dir(config, "hydra.run.dir", run.overwrite)


def check_multirun(config: DictConfig) -> None:
    """A multirun's composed config: keys and types of the base config and of each sweep value
    (the settings are each job's: a bad job fails alone, recorded, and the sweep goes on); then
    its sweep dir, and a launch id every job records (the sweep's closing table reads it)."""
    check_keys(config)
    try:
        run = run_config(task_config(config))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    given = command_line(config)
    sweeps = sweep_overrides(config, given) + arm_overrides(config)
    for override in sweeps:
        check_sweep_values(config, override)
    check_width_reaches_factory(run, given, {o.key_or_group for o in sweeps})
    pin(config, f"hydra.job.env_set.{LAUNCH_ENV}", secrets.token_hex(6))
    claim_run_dir(config, "hydra.sweep.dir", overwrite=False)


def task_config(config: DictConfig) -> DictConfig:
    """The composed config without Hydra's own node: what the job gets."""
    return OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])


def command_line(config: DictConfig) -> list:
    """The command line's overrides of the job's config, parsed (Hydra records them as given)."""
    try:
        return OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    except HydraException as err:
        raise config_error(err) from None


def check_keys(config: DictConfig) -> None:
    """The composed config has every schema key and no other: `+key=…` is no way around the
    schema, `~key` no way to drop one (a custom network's `model.kwargs.*` are its own)."""
    known = set(config_keys())
    task = OmegaConf.to_container(task_config(config), resolve=False)
    present = set()
    for key, _ in flatten(task):
        if key.startswith("model.kwargs."):
            continue
        if key not in known:
            raise ConfigError(unknown_key_message(key, tuple(config_groups())))
        present |= {".".join(key.split(".")[:n]) for n in range(1, key.count(".") + 2)}
    if removed := sorted(known - present - {"model.kwargs"}):
        raise ConfigError(f"~{removed[0]}: a schema key cannot be removed; set it instead ({removed[0]}=…)")


def sweep_overrides(config: DictConfig, given: list) -> list:
    """The sweeps of a multirun: the command line's (`given`, command_line), then a sweep file's
    (`hydra.sweeper.params`) for keys the command line leaves alone."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    names = {o.key_or_group for o in given}
    lines = [f"{key}={value}" for key, value in params.items() if key not in names]
    try:
        from_file = OverridesParser.create().parse_overrides(lines)
    except HydraException as err:
        raise config_error(err) from None
    return [o for o in [*given, *from_file] if o.is_sweep_override()]


def arm_overrides(config: DictConfig) -> list:
    """The values each arm of an arms sweep (`hydra/sweeper=arms`, wcntk.run.arms) gives its own
    keys, as sweeps (`width=choice(64,32)`): checked like a sweep file's grid."""
    arms = OmegaConf.select(config, "hydra.sweeper.arms")
    if arms is None:
        return []
    other = OmegaConf.select(config, "hydra.sweeper.other")
    lines = arm_sweep_lines(OmegaConf.to_container(arms, resolve=True),
                            OmegaConf.to_container(other, resolve=True) if other is not None else None,
                            list(config.hydra.overrides.task))
    try:
        return OverridesParser.create().parse_overrides([line for arm in lines.values() for line in arm])
    except HydraException as err:
        raise config_error(err) from None


def check_sweep_values(config: DictConfig, override) -> None:
    """Each value a sweep gives its key has the schema's type (and resolves); each option it
    gives a config group exists."""
    key = override.key_or_group
    try:
        values = list(override.sweep_iterator())
    except OmegaConfBaseException as err:  # an interpolation that does not resolve
        raise ConfigError(f"{one_line(err)} (in the sweep {override.input_line})") from None
    except HydraException:  # interval(…) and glob(…) sweeps: Hydra expands and checks them
        return
    groups = config_groups()
    for value in values:
        if key in groups:
            if str(value) not in groups[key]:
                raise ConfigError(f"unknown {key} {value!r}: choose one of {', '.join(groups[key])} "
                                  f"(in the sweep {override.input_line})")
            continue
        job = task_config(config)
        try:
            OmegaConf.update(job, key, value, merge=False, force_add=True)
            run_config(job)
        except (OmegaConfBaseException, ValueError) as err:
            raise ConfigError(f"{one_line(err)} (in the sweep {override.input_line})") from None


def check_width_reaches_factory(run: RunConfig, given: list, swept: set[str]) -> None:
    """A custom factory that takes no `width` (nor **kwargs) builds the same network at every
    width: a sweep over width is refused, a run that sets width gets one warning line."""
    if run.model.kind != "custom" or "width" not in {o.key_or_group for o in given} | swept:
        return
    if takes_width(resolve_target(run.model.target)):
        return
    what = f"model.target={run.model.target} takes no width argument (nor **kwargs)"
    if "width" in swept:
        raise ConfigError(f"{what}: every width of the sweep would build the same network; "
                          f"add a width parameter to the factory")
    say(f"warning: {what}: width={run.width} changes nothing (the record still says it)")


def pin(config: DictConfig, key: str, value: str) -> None:
    """Set a Hydra key in the config Hydra goes on with and in the overrides it composes each
    sweep job's config from (as if the command line had said `++key=value`)."""
    with read_write(config.hydra), open_dict(config.hydra):
        OmegaConf.update(config, key, value, force_add=True)
        config.hydra.overrides.hydra.append(f"++{key}={quoted(value)}")


def quoted(value: str) -> str:
    """An override's value as Hydra's parser reads it back intact: bare where it parses back as
    the same string, else single-quoted (a hex launch id like `8129542e1335` reads as a float,
    inf; `000123` as the int 123)."""
    if re.fullmatch(r"[\w/.:+@~-]+", value) and _parsed_value(value) == value:
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parsed_value(value: str) -> Any:
    """What Hydra's override parser makes of `key=value`'s value."""
    return OverridesParser.create().parse_override(f"key={value}").value()


def claim_run_dir(config: DictConfig, key: str, overwrite: bool) -> None:
    """The run (or sweep) dir `key` names can be written; a timestamped one is claimed
    exclusively (claim_dir) and pinned; a stable one (a sweep file's, or chosen on the command
    line) is reused: re-running resumes it, and a single run's is checked (check_run_dir)."""
    try:
        resolved = str(OmegaConf.select(config, key, throw_on_missing=True))
    except OmegaConfBaseException as err:
        raise ConfigError(one_line(err)) from None
    check_writable(resolved, key)
    pattern = OmegaConf.to_container(OmegaConf.select(config, key.rpartition(".")[0]))["dir"]
    if "${now:" not in pattern:
        if key == "hydra.run.dir":
            check_run_dir(resolved, overwrite)
        return
    pin(config, key, claim_dir(resolved))


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
    continues = status == Status.INTERRUPTED  # from its checkpoint, or from step 0 (prepare_run_dir)
    if status is not None and not overwrite and status != Status.STALE and not continues:
        raise ConfigError(finished_run_message(run_dir, summary.status))
