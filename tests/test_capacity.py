"""wcntk.run.capacity: the memory estimate uses each network's own sizes (issue 21, item 4)."""
from __future__ import annotations

import pytest

from tests.conftest import run_py, tiny_config
from wcntk.core.layers import ModelConfig, num_params, params_of
from wcntk.core.models import build_model
from wcntk.run import capacity
from wcntk.run.config import validate_config
from wcntk.training.data import DataConfig, data_shapes

DIGITS, MNIST = DataConfig(name="digits"), DataConfig(name="mnist")
GB = 10 ** 9


@pytest.mark.parametrize("kind,data,changes", [
    ("mlp", MNIST, {"depth": 3}), ("cnn", DIGITS, {"depth": 2}), ("resnet", DIGITS, {}),
    ("resnet", MNIST, {"depth": 2}), ("transformer", DIGITS, {"heads": 2}),
    ("transformer", MNIST, {"heads": 4, "patch_size": 4, "depth": 2})])
def test_parameter_count_is_the_built_networks(kind, data, changes):
    cfg = ModelConfig(kind=kind, width=8, **changes)
    shape, k = data_shapes(data)
    built = num_params(params_of(build_model(cfg, shape, k, seed=0)))
    assert capacity.network_sizes(cfg, data, 4)[0] == built


def test_activations_grow_with_the_image_and_the_attention():
    """A conv keeps a width × H × W map per input: the cnn's and resnet's A scale with H·W
    (mnist 28×28 against digits 8×8); the transformer's attention weights add T² per head and
    block to its A."""
    for kind in ("cnn", "resnet"):
        cfg = ModelConfig(kind=kind, width=16, depth=2)
        small, large = (capacity.network_sizes(cfg, d, 4)[1] for d in (DIGITS, MNIST))
        assert large == small * (28 * 28) // (8 * 8)
    width, depth = 16, 3

    def a(heads, patch):
        return capacity.network_sizes(ModelConfig(kind="transformer", width=width, depth=depth, heads=heads,
                                                  patch_size=patch), MNIST, 4)[1]
    for patch in (2, 4, 7):
        tokens = (28 // patch) ** 2
        assert a(4, patch) - a(2, patch) == 2 * depth * tokens ** 2            # T² per head and block
        assert a(2, patch) == tokens * width * (6 * depth + 1) + 2 * depth * tokens ** 2
    # the MLP's estimate is what it was: width · depth per input
    assert capacity.network_sizes(ModelConfig(width=32, depth=2), MNIST, 4)[1] == 64


def test_custom_network_is_measured_on_the_meta_device():
    """examples.my_nets: P is the module's own count, A the activations autograd keeps per input
    (more with width and with layers); a factory the meta device cannot run is not estimated."""
    def cfg(width, layers=1, target="examples.my_nets.make_net"):
        return ModelConfig(kind="custom", width=width, target=target, kwargs={"hidden_layers": layers})
    shape, k = data_shapes(DIGITS)
    for width, layers in ((16, 1), (16, 2), (64, 2)):
        built = num_params(params_of(build_model(cfg(width, layers), shape, k, seed=0)))
        assert capacity.network_sizes(cfg(width, layers), DIGITS, 4)[0] == built
    a = {(w, n): capacity.network_sizes(cfg(w, n), DIGITS, 4)[1] for w, n in ((16, 1), (64, 1), (64, 2))}
    assert a[(16, 1)] < a[(64, 1)] < a[(64, 2)]
    odd = ModelConfig(kind="custom", width=16, target="tests.test_capacity.needs_values")
    assert num_params(params_of(build_model(odd, shape, k, seed=0))) == 64 * k + k    # fine on the CPU
    assert capacity.network_sizes(odd, DIGITS, 4) is None


def needs_values(input_shape, out_features):
    """A factory that reads a value (impossible on the meta device)."""
    import torch
    if torch.zeros(1).item() != 0:
        raise AssertionError
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, out_features))


def test_refusal_names_the_largest_width_that_fits(monkeypatch):
    monkeypatch.setattr(capacity, "free_memory", lambda device: ("the CPU's RAM", 8 * GB))
    for cfg, data in ((ModelConfig(), MNIST), (ModelConfig(kind="resnet", width=64, depth=2), DIGITS),
                      (ModelConfig(kind="transformer", width=64, heads=4), MNIST),
                      (ModelConfig(kind="cnn", width=256, depth=2), MNIST)):
        capacity.check_memory(cfg, data, 4, "cpu")                       # ordinary runs: accepted
    big = ModelConfig(kind="resnet", width=40000)
    with pytest.raises(ValueError) as err:
        capacity.check_memory(big, DIGITS, 4, "cpu")
    message = str(err.value)
    assert message.startswith("width=40000 needs about ") and "model=resnet" in message
    fits = int(message.split("width <= ")[1].split()[0])
    assert 1000 < fits < 40000
    need = [sum(capacity.memory_needed(ModelConfig(kind="resnet", width=w), DIGITS, 4))
            for w in (fits, fits + 1)]
    assert need[0] <= 8 * GB < need[1]
    # the MLP formula it used before for every network accepted this width
    assert sum(capacity.memory_needed(ModelConfig(width=40000), DIGITS, 4)) < 8 * GB


def test_the_function_space_kernel_is_counted_where_the_twin_may_train_there(monkeypatch):
    """Θ₀ [N·k, N·k] of wcntk.training.function_space: counted when twin_space, the optimizer, N·k
    and steps allow function space (the network's own rule assumed to), with a way out named."""
    data = DataConfig(name="digits", n_train=800, n_test=16)        # N·k = 8000: 256 MB in float32
    assert capacity.kernel_rows(data, "gd", "auto", 1000) == 8000
    assert capacity.kernel_rows(data, "momentum", "function", 1) == 8000
    for optimizer, space, steps in (("adam", "auto", 1000), ("gd", "parameter", 1000), ("gd", "auto", 99)):
        assert capacity.kernel_rows(data, optimizer, space, steps) == 0
    assert capacity.kernel_rows(DataConfig(name="digits", n_train=900), "gd", "auto", 1000) == 0   # > 8192
    assert capacity.memory_needed(ModelConfig(width=8), data, 8, 8000)[2] == 8000 ** 2 * 8
    monkeypatch.setattr(capacity, "free_memory", lambda device: ("the CPU's RAM", 200 * 10 ** 6))
    capacity.check_memory(ModelConfig(width=8), data, 4, "cpu")                 # without Θ₀ it fits
    with pytest.raises(ValueError) as err:
        capacity.check_memory(ModelConfig(width=8), data, 4, "cpu", kernel=8000)
    message = str(err.value)
    assert "256 MB for the function-space twin's kernel (twin_space=parameter needs none)" in message
    assert "no width fits" in message
    cfg = tiny_config(**{"dataset.n_train": 800, "twin_space": "function"})
    with pytest.raises(ValueError, match="function-space twin's kernel"):
        validate_config(cfg)
    validate_config(tiny_config(**{"dataset.n_train": 800, "twin_space": "parameter"}))


@pytest.mark.slow
def test_cli_refuses_a_resnet_too_wide_for_memory_in_one_line(tmp_path):
    proc = run_py("model=resnet", "dataset=digits", "width=40000", "wandb.mode=disabled",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("wcntk: error: width=40000 needs about ") and "model=resnet" in proc.stderr
    assert "width <= " in proc.stderr and "fits (estimate: wcntk.run.capacity)" in proc.stderr
    assert not (tmp_path / "run").exists()
