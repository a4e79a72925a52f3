"""Per-network arms of a sweep (`+sweep=claim`): each arm is one network with its own settings
and width grid, and the sweep runs the union of the arms' grids, never one arm's settings
crossed with another's (Hydra's basic sweeper crosses every swept key).

An arm maps keys to a value or a list (a list is swept within the arm); nested keys are
flattened (`optimizer: {lr: 0.3}` is `optimizer.lr`), and `model` is the network's config group
option. The jobs of arm A are the cartesian product of, in this order: A's keys, the sweep
file's `params` (seeds) and the command line's overrides. A key on the command line replaces it
in every arm (`steps`, `dataset.n_train`, `seed`, `width`, `optimizer.lr` …), except:

- `model=X` on the command line adds the arm X to the preset's (with the settings of the arm
  named X, else the sweep's `other` settings): `model=custom model.target=…` joins your
  network to the four;
- `model.target` and `model.kwargs.*` go only to the arms whose model is `custom` (the other
  networks refuse them).

The sweeper that runs it is hydra_plugins/wcntk_sweeper (Hydra finds plugins only there); the
command line's checks (wcntk.run.cli_checks) check every arm's values with the same expansion.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser

MODEL = "model"
CUSTOM_ONLY = ("model.target", "model.kwargs")   # keys only a custom network takes


def value_text(value: Any) -> str:
    """A YAML value as an override's value: true/false, numbers and names as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def flatten_arm(arm: Mapping[str, Any] | None, prefix: str = "") -> dict[str, list[str]]:
    """`{model: cnn, optimizer: {lr: 0.3}, width: [64, 32]}` → `{"model": ["cnn"],
    "optimizer.lr": ["0.3"], "width": ["64", "32"]}`: each dotted key with its values (a list is
    swept; a comma-separated string too, as a sweep file writes one)."""
    out: dict[str, list[str]] = {}
    for key, value in (arm or {}).items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_arm(value, dotted + "."))
        elif isinstance(value, list | tuple):
            out[dotted] = [value_text(v) for v in value]
        elif isinstance(value, str) and "," in value:
            out[dotted] = [v.strip() for v in value.split(",")]
        else:
            out[dotted] = [value_text(value)]
    return out


def _plain_key(key: str) -> str:
    return key.lstrip("+~")


def _is_custom_only(key: str) -> bool:
    key = _plain_key(key)
    return any(key == k or key.startswith(k + ".") for k in CUSTOM_ONLY)


def parsed_lines(lines: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Override lines (`seed=0,1,2`, `steps=50`, `+sweep=claim`) as (key as written, values)."""
    out = []
    for o in OverridesParser.create().parse_overrides(list(lines)):
        values = (list(o.sweep_string_iterator()) if o.is_sweep_override()
                  else [o.get_value_element_as_str()])
        out.append((o.get_key_element(), values))
    return out


def arm_settings(arms: Mapping[str, Any], other: Mapping[str, Any] | None,
                 command_line: Sequence[tuple[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """The arms that run: every arm of the preset, then one per `model=` value of the command
    line that is not an arm yet (its settings: `other`, with `model` set to it); each as
    flattened key → values (flatten_arm)."""
    settings = {name: {MODEL: [name], **flatten_arm(arm)} for name, arm in arms.items() if arm is not None}
    for key, values in command_line:
        if _plain_key(key) == MODEL:
            for name in values:
                settings.setdefault(name, {**flatten_arm(other), MODEL: [name]})
    return settings


def arm_jobs(arms: Mapping[str, Any], other: Mapping[str, Any] | None, params: Mapping[str, Any] | None,
             arguments: Sequence[str]) -> dict[str, list[list[str]]]:
    """Each arm's jobs, as the override lists Hydra composes each job from (module docstring):
    the arm's keys not given on the command line, the sweep file's `params` not given there, the
    command line's overrides (model=… left out: it names arms; model.target and model.kwargs.*
    only in custom arms)."""
    given = parsed_lines(arguments)
    given_keys = {_plain_key(k) for k, _ in given}
    from_file = parsed_lines([f"{k}={value_text(v)}" for k, v in (params or {}).items()
                              if _plain_key(k) not in given_keys])
    jobs: dict[str, list[list[str]]] = {}
    for name, arm in arm_settings(arms, other, given).items():
        custom = arm[MODEL] == ["custom"]
        dims = [(k, v) for k, v in arm.items() if k not in given_keys or k == MODEL]
        dims += from_file
        dims += [(k, v) for k, v in given if _plain_key(k) != MODEL and (custom or not _is_custom_only(k))]
        lines = [[f"{k}={v}" for v in values] for k, values in dims]
        jobs[name] = [list(job) for job in itertools.product(*lines)]
    return jobs


def arm_sweep_lines(arms: Mapping[str, Any], other: Mapping[str, Any] | None,
                    arguments: Sequence[str]) -> dict[str, list[str]]:
    """Per arm, its own keys (those the command line leaves alone) as sweep lines
    `key=choice(v1,…)`: what the command line's checks check, value by value."""
    given = parsed_lines(arguments)
    given_keys = {_plain_key(k) for k, _ in given}
    return {name: [f"{k}=choice({','.join(v)})" for k, v in arm.items()
                   if k not in given_keys or k == MODEL]
            for name, arm in arm_settings(arms, other, given).items()}
