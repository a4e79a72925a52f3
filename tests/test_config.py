"""Compose-API tests of conf/: defaults, documented overrides, and bad overrides."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

import run  # noqa: F401  (registers the typed schema in Hydra's ConfigStore)
from wcntk.job import validate_config
from wcntk.schema import essentials, library_configs

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def composed(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def test_defaults_reproduce_the_reference_experiment():
    cfg = composed()
    validate_config(cfg)
    assert (cfg["width"], cfg["depth"], cfg["activation"], cfg["parameterization"]) == (1024, 1, "relu", "ntk")
    assert (cfg["steps"], cfg["loss"], cfg["precision"], cfg["device"], cfg["probes"]) == (1000, "mse", "float32", "auto", 32)
    assert cfg["dataset"]["name"] == "mnist" and cfg["dataset"]["n_train"] == 256 and cfg["dataset"]["n_test"] == 256
    assert cfg["optimizer"] == {**cfg["optimizer"], "name": "gd", "lr": 1.0, "batch_size": None}
    assert cfg["model"] == {"kind": "mlp", "w_std": 1.0, "b_std": 0.05}
    assert cfg["wandb"]["mode"] == "offline"
    model, data, opt, train = library_configs(cfg)
    assert model.width == 1024 and data.name == "mnist" and opt.name == "gd" and train.steps == 1000


@pytest.mark.parametrize("overrides, expect", [
    (["width=4096"], {"width": 4096}),
    (["depth=3", "activation=erf", "optimizer=sgd", "optimizer.batch_size=32"],
     {"depth": 3, "activation": "erf", "optimizer.name": "sgd", "optimizer.batch_size": 32}),
    (["model=cnn", "dataset=digits", "width=64"], {"model.kind": "cnn", "dataset.name": "digits", "width": 64}),
    (["parameterization=mean_field"], {"parameterization": "mean_field"}),
    (["loss=xent", "optimizer=adam", "optimizer.lr=1e-3"], {"loss": "xent", "optimizer.name": "adam", "optimizer.lr": 1e-3}),
    (["precision=float64", "width=256"], {"precision": "float64", "width": 256}),
    (["optimizer=momentum"], {"optimizer.name": "momentum", "optimizer.momentum": 0.9}),
    (["dataset=fashion_mnist"], {"dataset.name": "fashion_mnist"}),
    (["dataset=cifar10", "dataset.grayscale=true"], {"dataset.name": "cifar10", "dataset.grayscale": True}),
    (["dataset=synthetic", "dataset.input_dim=8"], {"dataset.name": "synthetic", "dataset.input_dim": 8}),
    (["dataset.classes=[0,7]"], {"dataset.classes": [0, 7]}),
    (["optimizer.lr_width_exponent=-0.5", "optimizer.width_ref=64"],
     {"optimizer.lr_width_exponent": -0.5, "optimizer.width_ref": 64}),
    (["seed=3", "steps=0", "log_every=5", "corr_every=10", "probes=8", "device=cpu"],
     {"seed": 3, "steps": 0, "log_every": 5, "corr_every": 10, "probes": 8, "device": "cpu"}),
    (["wandb.mode=disabled", "wandb.project=p", "wandb.group=g", "wandb.tags=[a,b]"],
     {"wandb.mode": "disabled", "wandb.project": "p", "wandb.group": "g", "wandb.tags": ["a", "b"]}),
])
def test_documented_overrides(overrides, expect):
    cfg = composed(*overrides)
    validate_config(cfg)
    for dotted, value in expect.items():
        node = cfg
        for part in dotted.split("."):
            node = node[part]
        assert node == value, dotted


def test_essentials_name_the_setting():
    ess = essentials(composed("width=64", "optimizer=sgd", "seed=2"))
    assert ess["width"] == 64 and ess["optimizer"] == "sgd" and ess["seed"] == 2 and ess["batch_size"] == 32


@pytest.mark.parametrize("overrides, error", [
    (["foo=1"], ConfigCompositionException),                 # unknown key
    (["optimizer.foo=1"], ConfigCompositionException),       # unknown nested key
    (["dataset=imagenet"], MissingConfigException),          # unknown dataset
    (["optimizer=lbfgs"], MissingConfigException),           # unknown optimizer
    (["model=resnet"], MissingConfigException),              # unknown model
    (["width=abc"], ConfigCompositionException),             # wrong type
    (["steps=1.5"], ConfigCompositionException),
    (["optimizer.lr=fast"], ConfigCompositionException),
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
    (["steps=-1"], "steps"),
    (["probes=300"], "probes"),
    (["optimizer=sgd", "optimizer.batch_size=1000"], "batch_size"),
    (["model=cnn", "dataset=synthetic"], "image dataset"),
    (["activation=swish"], "activation"),
    (["parameterization=mup"], "parameterization"),
    (["loss=hinge"], "loss"),
    (["precision=float16"], "precision"),
    (["wandb.mode=sometimes"], "wandb.mode"),
    (["dataset.classes=[0,0]"], "classes"),
    (["log_every=0"], "log_every"),
])
def test_bad_values_fail_validation_with_one_line(overrides, message):
    with pytest.raises(ValueError) as err:
        validate_config(composed(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_threads_per_job(monkeypatch):
    monkeypatch.setattr(run.os, "cpu_count", lambda: 8)
    assert run.torch_threads(None, None) is None                       # single run: torch's default
    assert run.torch_threads(3, {"n_jobs": 2}) == 3                    # explicit wins
    assert run.torch_threads(None, {"n_jobs": 2}) == 4                 # joblib: cores / n_jobs
    assert run.torch_threads(None, {"n_jobs": -1}) == 1                # one job per core
    assert run.torch_threads(None, {"n_jobs": 16}) == 1
    assert run.torch_threads(None, {"partition": "gpu"}) is None       # submitit: no n_jobs
    with pytest.raises(ValueError, match="threads"):
        validate_config(composed("threads=0"))
