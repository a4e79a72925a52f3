"""The config: one strict schema (wcntk.run.config.RunConfig), conf/ groups, the debug preset,
run.py's command-line check (one line, before any work, no run dir) and its run dirs.

Composing in-process is fast; the tests that run `python run.py` as a subprocess are `slow`."""
import dataclasses
import enum
import functools
import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, run_py, start_run_py, tiny_config
from wcntk.__main__ import cli
from wcntk.core.layers import ModelConfig
from wcntk.run import cli_checks, entry
from wcntk.run.config import (
    RunConfig,
    checkpoint_interval,
    config_keys,
    library_configs,
    run_config,
    validate_config,
)
from wcntk.run.record import BOOKKEEPING_KEYS
from wcntk.training.config import OptimizerConfig, TrainConfig
from wcntk.training.data import DataConfig

REAL_SWEEPS = ["activations", "claim", "lr_scaling", "parameterization", "width_scaling"]


def compose_cfg(*overrides, hydra_node=False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def composed(*overrides):
    return OmegaConf.to_container(compose_cfg(*overrides), resolve=True)


@functools.cache
def _composed_groups(groups: tuple[str, ...]):
    return compose_cfg(*groups)


def composed_quickly(*overrides):
    """`composed`, with Hydra composing each choice of config groups once: the `key=value`
    overrides are then merged into that typed config (OmegaConf parses and type-checks them as
    Hydra does). For tests whose subject is validation, not composition."""
    groups = tuple(o for o in overrides if "." not in o.split("=")[0])
    values = [o for o in overrides if o not in groups]
    cfg = OmegaConf.merge(_composed_groups(groups), OmegaConf.from_dotlist(values))
    return OmegaConf.to_container(cfg, resolve=True)


# ----------------------------------------------------------------------------- the schema

def test_defaults_reproduce_the_reference_experiment():
    cfg = composed()
    validate_config(cfg)
    assert (cfg["width"], cfg["depth"], cfg["activation"], cfg["parameterization"]) == \
        (1024, 1, "relu", "ntk")
    assert (cfg["steps"], cfg["loss"], cfg["precision"], cfg["device"], cfg["probes"]) == \
        (1000, "mse", "float32", "auto", 32)
    assert (cfg["dataset"]["name"], cfg["dataset"]["n_train"], cfg["dataset"]["n_test"]) == \
        ("mnist", 256, 256)
    assert cfg["optimizer"] == {**cfg["optimizer"], "name": "gd", "lr": 1.0, "batch_size": None}
    assert cfg["model"] == {"kind": "mlp", "w_std": 1.0, "b_std": 0.05, "heads": 2, "patch_size": None,
                            "attention_logits": "inv_d", "target": None, "kwargs": {}}
    assert cfg["wandb"]["mode"] == "offline" and cfg["wandb"]["init_timeout"] == 10.0
    model, data, opt, train = library_configs(cfg)
    assert (model, data, opt, train) == (ModelConfig(), DataConfig(), OptimizerConfig(), TrainConfig())


def test_the_schema_is_the_library_configs():
    """Every library setting is a key of the schema, with the library's own default: one definition."""
    run_cfg = RunConfig()
    assert run_cfg.dataset == DataConfig() and run_cfg.optimizer == OptimizerConfig()
    assert run_cfg.model_config() == ModelConfig() and run_cfg.train_config() == TrainConfig()
    keys = set(config_keys())
    top = ("width", "depth", "activation", "parameterization")
    model_keys = {f.name if f.name in top else f"model.{f.name}" for f in dataclasses.fields(ModelConfig)}
    assert model_keys <= keys
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= keys
    assert {f"dataset.{f.name}" for f in dataclasses.fields(DataConfig)} <= keys
    assert {f"optimizer.{f.name}" for f in dataclasses.fields(OptimizerConfig)} <= keys
    # and a composed config turns back into the library's objects
    cfg = compose_cfg("optimizer=adam", "dataset.classes=[0,7]", "model=cnn", "dataset=digits", "width=8")
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, RunConfig) and isinstance(obj.optimizer, OptimizerConfig)
    assert obj.optimizer.betas == [0.9, 0.999] and obj.dataset.classes == [0, 7]
    assert obj.model_config() == ModelConfig(kind="cnn", width=8)


def test_group_files_hold_only_what_differs_from_the_schema():
    defaults = {"dataset": DataConfig(), "optimizer": OptimizerConfig(), "model": RunConfig().model}
    for group, default in defaults.items():
        for path in sorted((CONF / group).glob("*.yaml")):
            for key, value in yaml.safe_load(path.read_text()).items():
                if key not in ("name", "kind"):  # what the option is
                    assert value != getattr(default, key), f"{path.name}: {key}: {value} repeats the schema"


@pytest.mark.parametrize("overrides, expect", [
    (["width=4096"], {"width": 4096}),
    (["depth=3", "activation=erf", "optimizer=sgd", "optimizer.batch_size=32"],
     {"depth": 3, "activation": "erf", "optimizer.name": "sgd", "optimizer.batch_size": 32}),
    (["model=cnn", "dataset=digits", "width=64"],
     {"model.kind": "cnn", "dataset.name": "digits", "width": 64}),
    (["parameterization=mean_field"], {"parameterization": "mean_field"}),
    (["loss=xent", "optimizer=adam", "optimizer.lr=1e-3"],
     {"loss": "xent", "optimizer.name": "adam", "optimizer.lr": 1e-3}),
    (["precision=float64", "width=256"], {"precision": "float64", "width": 256}),
    (["optimizer=momentum"], {"optimizer.name": "momentum", "optimizer.momentum": 0.9, "optimizer.lr": 0.1}),
    (["optimizer=sgd"], {"optimizer.batch_size": 32, "optimizer.lr": 1.0}),
    (["dataset=fashion_mnist"], {"dataset.name": "fashion_mnist", "dataset.source": "torchvision"}),
    (["dataset=cifar10", "dataset.grayscale=true"], {"dataset.name": "cifar10", "dataset.grayscale": True}),
    (["dataset=synthetic", "dataset.input_dim=8"],
     {"dataset.name": "synthetic", "dataset.input_dim": 8, "dataset.standardize": False}),
    (["dataset.classes=[0,7]"], {"dataset.classes": [0, 7]}),
    (["optimizer.lr_width_exponent=-0.5", "optimizer.width_ref=64"],
     {"optimizer.lr_width_exponent": -0.5, "optimizer.width_ref": 64}),
    (["seed=3", "steps=0", "log_every=5", "corr_every=10", "probes=8", "device=cpu"],
     {"seed": 3, "steps": 0, "log_every": 5, "corr_every": 10, "probes": 8, "device": "cpu"}),
    (["wandb.mode=disabled", "wandb.project=p", "wandb.group=g", "wandb.tags=[a,b]",
      "wandb.init_timeout=2.5"],
     {"wandb.mode": "disabled", "wandb.project": "p", "wandb.group": "g", "wandb.tags": ["a", "b"],
      "wandb.init_timeout": 2.5}),
])
def test_documented_overrides(overrides, expect):
    cfg = composed(*overrides)
    validate_config(cfg)
    for dotted, value in expect.items():
        assert OmegaConf.select(OmegaConf.create(cfg), dotted) == value, dotted


@pytest.mark.parametrize("overrides, error", [
    (["foo=1"], ConfigCompositionException),                 # unknown key
    (["optimizer.foo=1"], ConfigCompositionException),       # unknown nested key
    (["dataset=imagenet"], MissingConfigException),          # unknown dataset
    (["optimizer=lbfgs"], MissingConfigException),           # unknown optimizer
    (["model=vgg"], MissingConfigException),                 # unknown model
    (["+sweep=_common"], MissingConfigException),            # not a sweep (any more)
    (["+sweep=wandb_width_scaling"], MissingConfigException),  # the W&B spec is no Hydra config
    (["width=abc"], ConfigCompositionException),             # wrong type
    (["steps=1.5"], ConfigCompositionException),
    (["optimizer.lr=fast"], ConfigCompositionException),
    (["parameterization=mup"], ConfigCompositionException),  # a closed choice (an Enum)
    (["precision=float16"], ConfigCompositionException),
    (["wandb.mode=sometimes"], ConfigCompositionException),
    (["cuda_graphs=sometimes"], ConfigCompositionException),
    (["optimizer.name=GD"], ConfigCompositionException),     # the members' names are lower case
])
def test_bad_overrides_fail_at_composition(overrides, error):
    with pytest.raises(error):
        composed(*overrides)


@pytest.mark.parametrize("overrides, message", [
    (["width=0"], "width"),
    (["width=-8"], "width"),
    (["depth=0"], "depth"),
    (["optimizer.lr=0"], "lr"),
    (["optimizer.lr=-1"], "lr"),
    (["optimizer.lr=inf"], "optimizer.lr must be finite"),
    (["optimizer.lr=nan"], "optimizer.lr must be finite"),
    (["optimizer.lr_width_exponent=nan"], "optimizer.lr_width_exponent must be finite"),
    (["optimizer.lr_width_exponent=-inf"], "optimizer.lr_width_exponent must be finite"),
    (["optimizer.lr=1e300", "optimizer.lr_width_exponent=300", "width=4096"], "effective learning rate"),
    (["optimizer=adam", "optimizer.betas=[2,2]"], "optimizer.betas must be two numbers in [0, 1)"),
    (["optimizer=adam", "optimizer.betas=[0.9,1.0]"], "optimizer.betas"),
    (["optimizer=adam", "optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer=momentum", "optimizer.momentum=-5"], "optimizer.momentum must be in [0, 1)"),
    (["optimizer=momentum", "optimizer.momentum=1"], "optimizer.momentum"),
    (["model.w_std=nan"], "model.w_std"),
    (["model.b_std=inf"], "model.b_std"),
    (["steps=-1"], "steps"),
    (["probes=300"], "probes"),
    (["optimizer=sgd", "optimizer.batch_size=1000"], "batch_size"),
    (["model=cnn", "dataset=synthetic"], "image dataset"),
    (["activation=swish"], "activation"),
    (["loss=hinge"], "loss"),
    (["dataset.classes=[0,0]"], "classes"),
    (["dataset=cifar10", "dataset.n_train=60000"], "cifar10: asked for 60000 examples from the train split"),
    (["dataset=digits", "dataset.n_train=1000", "dataset.n_test=1000"], "it has only 1797"),
    (["dataset.source=bundled", "dataset.n_train=5000"], "it has only 5000"),
    (["log_every=0"], "log_every"),
    (["threads=0"], "threads"),
    (["wandb.project=../../x"], "wandb.project"),
    (["wandb.project=a/b"], "wandb.project"),
    (["wandb.project=team:x"], "wandb.project"),
    (["wandb.project=''"], "wandb.project"),
    (["wandb.project=" + "p" * 129], "wandb.project"),
    (["wandb.init_timeout=0"], "wandb.init_timeout"),
    (["wandb.tags=[ok,'']"], "wandb.tags"),
    (["wandb.tags=[" + "t" * 65 + "]"], "wandb.tags"),
    (["device=cuda:x"], "device"),
    (["wandb.init_timeout=inf"], "wandb.init_timeout"),
])
def test_bad_values_fail_validation_with_one_line(overrides, message):
    with pytest.raises(ValueError) as err:
        validate_config(composed_quickly(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_hand_written_configs_are_checked_against_the_schema_too():
    assert run_config({"width": 8, "optimizer": {"name": "sgd"}}).optimizer.batch_size is None  # defaults
    with pytest.raises(ValueError, match=r"unknown config key 'optimizer.lrr' \(did you mean 'optimizer.lr'"):
        run_config({"optimizer": {"lrr": 0.1}})
    with pytest.raises(ValueError, match="width"):
        run_config({"width": "wide"})
    # Hydra lets `+key` past its struct check; the schema does not
    with pytest.raises(ValueError, match=r"unknown config key 'widht' \(did you mean 'width'\?\)"):
        validate_config(composed("+widht=64"))


def test_threads_per_job(monkeypatch):
    monkeypatch.setattr(entry.os, "cpu_count", lambda: 8)
    assert entry.torch_threads(None, None) is None                       # single run: torch's default
    assert entry.torch_threads(3, {"n_jobs": 2}) == 3                    # explicit wins
    assert entry.torch_threads(None, {"n_jobs": 2}) == 4                 # joblib: cores / n_jobs
    assert entry.torch_threads(None, {"n_jobs": -1}) == 1                # one job per core
    assert entry.torch_threads(None, {"n_jobs": 16}) == 1
    assert entry.torch_threads(None, {"partition": "gpu"}) is None       # submitit: no n_jobs


# ----------------------------------------------------------------------------- groups and presets

def test_only_real_sweeps_compose_under_sweep():
    assert sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")) == REAL_SWEEPS
    # sweeps/ stays the folder of grids: each conf/sweep entry is a link to its file there
    for name in REAL_SWEEPS:
        assert (CONF / "sweep" / f"{name}.yaml").resolve() == (ROOT / "sweeps" / f"{name}.yaml").resolve()
    assert sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml")) == REAL_SWEEPS
    assert cli_checks.config_groups()["sweep"] == REAL_SWEEPS


def test_sweep_dir_names_leave_out_exactly_the_bookkeeping_keys():
    cfg = compose_cfg("+sweep=width_scaling", hydra_node=True)
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == list(BOOKKEEPING_KEYS)
    # defined once, in Python: no YAML file repeats the list
    for path in [*CONF.rglob("*.yaml"), *(ROOT / "sweeps").rglob("*.yaml")]:
        assert "exclude_keys" not in path.read_text(), path
    volatile = [f"{key}={value}" for key, value in [
        ("progress", "false"), ("threads", "1"), ("device", "cpu"), ("cuda_graphs", "off"),
        ("dataset.data_dir", "/tmp/d"),
        ("dataset.download", "false"), ("wandb.mode", "disabled"), ("wandb.project", "p"),
        ("wandb.entity", "e"), ("wandb.group", "g"), ("wandb.tags", "[a]"), ("wandb.name", "n"),
        ("wandb.init_timeout", "3"), ("overwrite", "true"), ("checkpoint_every", "30s"),
        ("keep_checkpoint", "true")]]
    assert {o.split("=")[0] for o in volatile} | {"sweep"} == set(BOOKKEEPING_KEYS)
    cfg = compose_cfg("+sweep=width_scaling", "width=8", "seed=1", "steps=20", *volatile, hydra_node=True)
    assert cfg.hydra.job.override_dirname == "seed=1,steps=20,width=8"


def test_checkpoint_every_takes_steps_a_time_or_null():
    assert composed("checkpoint_every=500")["checkpoint_every"] == "500"
    assert checkpoint_interval("500") == ("steps", 500) and checkpoint_interval(None) is None
    assert checkpoint_interval("10min") == ("seconds", 600.0)
    assert checkpoint_interval("0.5h") == ("seconds", 1800.0)
    assert checkpoint_interval("30s") == ("seconds", 30.0)
    for bad in ("0", "-5", "10 minutes", "abc", "0s"):
        with pytest.raises(ValueError, match="checkpoint_every must be a number of steps"):
            validate_config(tiny_config(checkpoint_every=bad))


def test_debug_preset_composes_a_tiny_offline_run():
    cfg = composed("debug=default")
    validate_config(cfg)
    assert (cfg["width"], cfg["steps"], cfg["probes"], cfg["progress"]) == (16, 20, 8, False)
    assert (cfg["dataset"]["n_train"], cfg["dataset"]["n_test"], cfg["wandb"]["mode"]) == (64, 32, "disabled")
    # the command line still wins, and the preset combines with groups and sweeps
    cfg = composed("debug=default", "steps=50", "dataset=digits", "+sweep=width_scaling")
    assert (cfg["steps"], cfg["dataset"]["name"], cfg["dataset"]["n_train"], cfg["wandb"]["group"]) == \
        (50, "digits", 64, "width_scaling")


# ----------------------------------------------------------------------------- run.py's command-line check

@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def command_line(argv: list[str]) -> str | None:
    """`python run.py *argv` in-process, for a command line that stops before any job: its
    `wcntk: error: …` line (None when it ends with exit code 0)."""
    try:
        with mock.patch.dict(os.environ):  # cli sets HYDRA_FULL_ERROR for its process
            cli(argv)
    except SystemExit as stop:
        assert stop.code in (None, 0) or isinstance(stop.code, str)
        return stop.code or None
    return None


def checked(*overrides: str, check=cli_checks.check_run):
    """The config Hydra composes for these overrides, through a CommandLineCheck check."""
    cfg = compose_cfg(*overrides, hydra_node=True)
    check(cfg)
    return cfg


@pytest.mark.parametrize("argv, message", [
    (["+widht=64", "steps=10"], "unknown config key 'widht' (did you mean 'width'?)"),
    (["widht=64"], "unknown config key 'widht' (did you mean 'width'?)"),
    (["+optimizer.lrr=0.1"], "unknown config key 'optimizer.lrr' (did you mean 'optimizer.lr'?)"),
    (["++dataset.nn_train=3"], "unknown config key 'dataset.nn_train' (did you mean 'dataset.n_train'?)"),
    (["+sweep=_common"], "unknown sweep '_common': choose one of " + ", ".join(REAL_SWEEPS)),
    (["dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["--multirun", "dataset=mnist,imagenet"], "unknown dataset 'imagenet': choose one of cifar10, "
                                               "digits, fashion_mnist, mnist, synthetic (in the sweep"),
    (["width=${oc.env:HOME}"], "width:"),
    (["width=${oc.env:WCNTK_TEST_NO_SUCH_VAR}"], "WCNTK_TEST_NO_SUCH_VAR"),
    (["width=abc"], "width: Value 'abc' of type 'str' could not be converted to Integer"),
    (["width=-3"], "width must be a positive integer, got -3"),
    (["optimizer=adam", "optimizer.betas=[2,2]"], "optimizer.betas must be two numbers in [0, 1)"),
    (["optimizer=momentum", "optimizer.momentum=-5"], "optimizer.momentum must be in [0, 1)"),
    (["optimizer.lr=inf"], "optimizer.lr must be finite"),
    (["optimizer.lr_width_exponent=nan"], "optimizer.lr_width_exponent must be finite"),
    (["wandb.project=../../x"], "wandb.project='../../x' is not a valid W&B project name"),
    (["width=8,16"], "width=8,16 is a sweep: add --multirun (or +sweep=…), or write a list as width=[8,16]"),
    (["dataset.classes=[0,1"], "no viable alternative at input '[0,1'"),
    (["~width"], "~width: a schema key cannot be removed"),
    (["~steps"], "~steps: a schema key cannot be removed; set it instead (steps=…)"),
    (["--multirun", "width=8,abc"], "width: Value 'abc' of type 'str' could not be converted to Integer "
                                    "(in the sweep width=8,abc)"),
    (["+sweep=width_scaling", "seed=0,${oc.env:WCNTK_TEST_NO_SUCH_VAR}"], "WCNTK_TEST_NO_SUCH_VAR"),
    (["hydra.run.dir=/proc/x"], "hydra.run.dir=/proc/x cannot be written"),
    (["--multirun", "width=8,16", "hydra.sweep.dir=/proc/x"], "hydra.sweep.dir=/proc/x cannot be written"),
])
def test_command_line_mistakes_are_one_line_before_any_work(in_tmp, argv, message):
    line = command_line(argv)
    assert line.startswith("wcntk: error: ") and message in line and "\n" not in line
    assert not (in_tmp / "outputs").exists()


CLOSED_CHOICES = [
    ("optimizer.name", "foo", "gd, sgd, momentum, adam"),
    ("precision", "float16", "float32, float64"),
    ("parameterization", "ntkk", "ntk, standard, mean_field"),
    ("dataset.name", "mnits", "mnist, fashion_mnist, cifar10, digits, synthetic"),
    ("wandb.mode", "offlin", "offline, online, disabled"),
    ("cuda_graphs", "maybe", "auto, on, off"),
]


@pytest.mark.parametrize("key, bad, choices", CLOSED_CHOICES)
def test_a_closed_choice_is_rejected_at_composition_with_one_line(in_tmp, key, bad, choices):
    message = f"{key}: invalid value '{bad}', expected one of {choices}"
    assert command_line(["debug=default", f"{key}={bad}"]) == f"wcntk: error: {message}"
    # a sweep's value, on the command line or in a sweep file: before any job, naming the sweep
    # (one key at the top level and one nested: the path does not depend on the key)
    good = choices.split(", ")[0]
    if key in ("optimizer.name", "precision"):
        assert command_line(["--multirun", "debug=default", f"{key}={good},{bad}"]) == \
            f"wcntk: error: {message} (in the sweep {key}={good},{bad})"
        assert command_line(["debug=default", "+sweep=width_scaling",
                             f'++hydra.sweeper.params={{{key}:"{bad},{good}"}}']) == \
            f"wcntk: error: {message} (in the sweep {key}={bad},{good})"
    assert not (in_tmp / "outputs").exists()
    # a hand-written config goes through the same schema
    *parents, leaf = key.split(".")
    raw = {leaf: bad}
    for part in reversed(parents):
        raw = {part: raw}
    with pytest.raises(ValueError, match=re.escape(message)):
        run_config(raw)


def test_closed_choices_are_enums_that_read_and_record_as_strings():
    run = validate_config(composed("debug=default", "optimizer=adam", "precision=float64"))
    assert isinstance(run.optimizer.name, enum.StrEnum) and run.optimizer.name == "adam"
    record = run.recorded()
    assert record["optimizer"]["name"] == "adam" and record["precision"] == "float64"
    closed = [record["optimizer"]["name"], record["precision"], record["parameterization"],
              record["cuda_graphs"], record["model"]["kind"], record["model"]["attention_logits"],
              record["dataset"]["name"], record["dataset"]["source"], record["wandb"]["mode"]]
    assert all(type(value) is str for value in closed)
    assert json.loads(json.dumps(record)) == record
    raw = entry.raw_config(compose_cfg("debug=default"))  # a sweep job's record of a bad setting
    assert type(raw["optimizer"]["name"]) is str and type(raw["wandb"]["mode"]) is str
    # library users may pass plain strings: validate accepts them
    ModelConfig(kind="mlp", parameterization="mean_field", width=8).validate()
    OptimizerConfig(name="sgd").validate(n_train=64)
    DataConfig(name="digits", source="bundled").validate()
    with pytest.raises(ValueError, match="choose one of gd, sgd, momentum, adam"):
        OptimizerConfig(name="lbfgs").validate(n_train=64)


def test_a_timestamped_run_dir_is_claimed_exclusively(in_tmp):
    first = Path(checked("debug=default", "width=32").hydra.run.dir)
    assert str(first).startswith("outputs/runs/") and first.name.endswith("_w32_s0")
    assert first.is_dir() and not any(first.iterdir())
    second = Path(checked("debug=default", "width=32").hydra.run.dir)
    assert second != first and second.is_dir()
    # the same name taken twice (two runs in the same microsecond, or on two hosts): a suffix
    assert cli_checks.claim_dir(str(first)) == f"{first}-1"
    assert cli_checks.claim_dir(str(first)) == f"{first}-2"
    # a multirun gets a fresh timestamped sweep dir the same way, pinned in the overrides each
    # job's config is composed from, with the launch id every job records
    cfg = checked("debug=default", "hydra.mode=MULTIRUN", check=cli_checks.check_multirun)
    sweep_dir = cfg.hydra.sweep.dir
    assert sweep_dir.startswith("outputs/multirun/") and Path(sweep_dir).is_dir()
    pinned = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.hydra))
    assert {o.key_or_group: o.value() for o in pinned}["hydra.sweep.dir"] == sweep_dir
    assert cfg.hydra.job.env_set.WCNTK_LAUNCH_ID in {o.value() for o in pinned}


@pytest.mark.parametrize("launch_id", ["8129542e1335", "000123456789", "1e5", "nan", "abcdef012345"])
def test_the_launch_id_reaches_every_job_as_the_same_string(in_tmp, launch_id):
    """A hex launch id Hydra's parser would read as a number (`8129542e1335` is inf, `000123…` an
    int) is quoted in the pinned override: each job's $WCNTK_LAUNCH_ID must equal the id the
    sweep's closing table compares records with (an unquoted one made a job it ran look like
    another launch's, seen once in CI)."""
    with mock.patch.object(cli_checks.secrets, "token_hex", return_value=launch_id):
        cfg = checked("debug=default", "hydra.mode=MULTIRUN", check=cli_checks.check_multirun)
    assert cfg.hydra.job.env_set.WCNTK_LAUNCH_ID == launch_id
    pinned = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.hydra))
    values = {o.key_or_group: o.value() for o in pinned}
    assert values["hydra.job.env_set.WCNTK_LAUNCH_ID"] == launch_id


def test_a_multirun_checks_settings_per_job(in_tmp):
    """The base config (batch 100 > n_train 64) is not a valid run, but a multirun's jobs may
    each be (n_train=200,300): settings are checked per job, keys and types before any job."""
    base = ("debug=default", "optimizer=sgd", "optimizer.batch_size=100")
    with pytest.raises(cli_checks.ConfigError, match="batch_size"):
        checked(*base)
    checked(*base, "hydra.mode=MULTIRUN", check=cli_checks.check_multirun)


def test_a_claimed_dir_with_odd_characters_reaches_hydra_intact(in_tmp):
    cfg = checked("debug=default", 'hydra.run.dir="my runs/it\'s ${now:%f}"')
    claimed = Path(cfg.hydra.run.dir)
    assert claimed.is_dir() and claimed.parent == Path("my runs")
    (override,) = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.hydra)[-1:])
    assert override.key_or_group == "hydra.run.dir" and Path(override.value()) == claimed


def test_a_run_dir_with_only_hydras_files_is_removed(tmp_path):
    bare, used = tmp_path / "bare", tmp_path / "used"
    for d in (bare, used):
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("width: 8\n")
        (d / "run.log").write_text("")
    (used / "metrics.csv").write_text("step\n")
    entry.remove_if_untouched(bare)
    entry.remove_if_untouched(used)
    assert not bare.exists() and (used / "metrics.csv").is_file()


@pytest.mark.parametrize("overrides, check", [
    (["+sweep=width_scaling", "debug=default"], cli_checks.check_multirun),   # resume reuses it
    (["debug=default", "hydra.run.dir=somewhere/mine"], cli_checks.check_run),  # chosen
])
def test_stable_or_chosen_dirs_are_left_alone(in_tmp, overrides, check):
    cfg = compose_cfg(*overrides, hydra_node=True)
    dirs = (cfg.hydra.run.dir, cfg.hydra.sweep.dir)
    check(cfg)
    assert (cfg.hydra.run.dir, cfg.hydra.sweep.dir) == dirs
    assert not (in_tmp / "outputs").exists() and not (in_tmp / "somewhere").exists()


@pytest.mark.parametrize("argv", [["--help"], ["--cfg", "job"]])
def test_showing_help_or_the_config_makes_no_dir(in_tmp, argv, capsys):
    assert command_line(argv) is None
    assert "width" in capsys.readouterr().out and not (in_tmp / "outputs").exists()


# ----------------------------------------------------------------------------- the CLI (subprocesses)

@pytest.mark.slow
@pytest.mark.parametrize("args, line", [
    (["+widht=64", "steps=10"], "wcntk: error: unknown config key 'widht' (did you mean 'width'?)"),
    (["+optimizer.lrr=0.1"], "wcntk: error: unknown config key 'optimizer.lrr' (did you mean"),
    (["width=${oc.env:HOME}"], "wcntk: error: width: "),
    (["optimizer=adam", "optimizer.betas=[2,2]"], "wcntk: error: optimizer.betas must be two numbers"),
    (["wandb.project=../../x"], "wcntk: error: wandb.project='../../x' is not a valid W&B project name"),
    (["optimizer.name=foo"], "wcntk: error: optimizer.name: invalid value 'foo', expected one of gd, sgd, "
                             "momentum, adam\n"),
    (["--multirun", "precision=float32,float16"], "wcntk: error: precision: invalid value 'float16', "
     "expected one of float32, float64 (in the sweep precision=float32,float16)\n"),
])
def test_cli_rejects_mistakes_with_one_line_and_no_run_dir(tmp_path, args, line):
    proc = run_py(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(line) and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []                       # no outputs/, no run dir


@pytest.mark.slow
def test_cli_help_lists_only_the_real_sweeps(tmp_path):
    proc = run_py("--help", cwd=tmp_path)
    assert proc.returncode == 0
    listing = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    groups = dict(line.split(": ", 1) for line in listing.splitlines() if ": " in line)
    assert groups["sweep"] == ", ".join(REAL_SWEEPS) and groups["debug"] == "default"


@pytest.mark.slow
def test_two_runs_started_together_get_a_dir_each(tmp_path):
    """`python run.py … optimizer.lr=0.5 & python run.py … optimizer.lr=0.1 & wait`."""
    procs = [start_run_py("debug=default", "dataset=digits", "seed=4", f"optimizer.lr={lr}", cwd=tmp_path)
             for lr in (0.5, 0.1)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    dirs = sorted(p.parent for p in (tmp_path / "outputs" / "runs").glob("*/*/summary.json"))
    assert len(dirs) == 2 and all(d.name.endswith("_w16_s4") for d in dirs)
    lrs = []
    for d in dirs:
        hydra_lr = yaml.safe_load((d / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"]
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["config"]["optimizer"]["lr"] == hydra_lr
        lrs.append(hydra_lr)
    assert sorted(lrs) == [0.1, 0.5]


@pytest.mark.slow
def test_cli_bad_job_in_a_multirun_names_itself_and_the_others_run(tmp_path):
    proc = run_py("--multirun", "debug=default", "dataset=digits", "steps=2", "optimizer=momentum",
                  "optimizer.momentum=-5,0.5", "hydra.sweep.dir=sw", cwd=tmp_path)  # the bad job first
    assert proc.returncode != 0
    line = r"wcntk: \[\S*optimizer\.momentum=-5\S*\] error: optimizer\.momentum must be in \[0, 1\), got -5"
    assert re.search(line, proc.stderr) and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    summaries = (tmp_path / "sw").glob("*/summary.json")
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in summaries}
    (good,) = [name for name in statuses if "optimizer.momentum=0.5" in name]
    (bad,) = [name for name in statuses if "optimizer.momentum=-5" in name]
    assert statuses == {good: "ok", bad: "failed"}
    # the sweep still ends with its table, which lists the bad job as failed
    assert re.search(r"2 jobs: 1 ok, 1 failed", proc.stdout), proc.stdout[-2000:]
    table_row = r"failed\s+\S*optimizer\.momentum=-5\S*\s+failed: invalid setting: optimizer\.momentum"
    assert re.search(table_row, proc.stdout)
