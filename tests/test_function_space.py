"""The twin trained in function space (wcntk.training.function_space) against the twin trained on
its own parameters (itself checked against closed-form kernel dynamics in test_run.py): same outputs,
same θ_lin, for every linear optimizer, a dense and a generic network; when auto picks which; and
checkpoints of both kinds."""
from __future__ import annotations

import io

import pytest
import torch

from wcntk.core.implementations import GENERIC, MLP_FAST, MLP_PARAMS_PER_KERNEL_ENTRY
from wcntk.core.layers import ModelConfig
from wcntk.training.config import validate_all
from wcntk.training.data import DataConfig
from wcntk.training.function_space import MAX_KERNEL_ROWS, MIN_STEPS, function_space_reason
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer

DATA = DataConfig(name="synthetic", n_train=24, n_test=8, input_dim=5, n_classes=3, standardize=False)


def trainer(space: str, kind: str = "mlp", opt: str = "gd", batch_size: int | None = None,
            loss: str = "mse", precision: str = "float64", steps: int = 12, capture=None,
            width: int = 8) -> Trainer:
    model = ModelConfig(kind=kind, width=width, activation="tanh")
    data = DATA if kind == "mlp" else DataConfig(name="digits", n_train=24, n_test=8)
    return Trainer(model, data, OptimizerConfig(name=opt, lr=0.3, batch_size=batch_size),
                   TrainConfig(steps=steps, log_every=4, probes=4, progress=False, device="cpu", loss=loss,
                               precision=precision, twin_space=space), capture=capture)


@pytest.mark.parametrize("kind, opt, batch_size, loss", [
    ("mlp", "gd", None, "mse"), ("mlp", "sgd", 8, "xent"), ("mlp", "momentum", 8, "mse"),
    ("mlp", "momentum", None, "xent"), ("cnn", "sgd", 8, "mse"),
])
def test_function_space_twin_is_the_parameter_space_twin(kind, opt, batch_size, loss):
    """12 steps in float64: the twin's outputs on train and test, θ_lin and every logged value agree
    to round-off; the network's own numbers are bit-identical (same minibatches)."""
    runs = {space: trainer(space, kind, opt, batch_size, loss) for space in ("function", "parameter")}
    results = {space: t.run() for space, t in runs.items()}
    fn, par = runs["function"], runs["parameter"]
    assert fn.twin_space == "function" and par.twin_space == "parameter"
    theta_fn, theta_par = fn.twin_params, par.twin_params
    moved = max((theta_par[k] - par.params0[k]).abs().max().item() for k in theta_par)
    assert moved > 1e-3    # the twin trained
    for k in theta_par:
        assert torch.allclose(theta_fn[k], theta_par[k], rtol=0, atol=1e-12 * max(1.0, moved))
    with torch.no_grad():
        for x in (fn.data.x_train, fn.data.x_test):
            assert torch.allclose(fn.twin(theta_fn, x), par.twin(theta_par, x), rtol=0, atol=1e-12)
        assert torch.allclose(fn.function_twin.outputs(), par.twin_train(theta_par), rtol=0, atol=1e-12)
    final_fn, final_par = results["function"].final, results["parameter"].final
    for key, value in final_par.items():
        if key.startswith("net/"):
            assert final_fn[key] == value, key
        else:
            assert final_fn[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_float32_function_space_twin_agrees_to_float32_round_off():
    fn, par = trainer("function", precision="float32"), trainer("parameter", precision="float32")
    fn.run(), par.run()
    with torch.no_grad():
        a, b = fn.function_twin.outputs(), par.twin_train(par.twin_params)
    assert (a - b).norm() <= 1e-5 * b.norm()


def test_auto_picks_function_space_only_where_it_is_exact_and_pays():
    fits = lambda: None  # noqa: E731
    assert function_space_reason("auto", "gd", 256, 10, 1000, fits) is None
    assert function_space_reason("auto", "momentum", 256, 10, MIN_STEPS, fits) is None
    assert "adam" in function_space_reason("auto", "adam", 256, 10, 1000, fits)
    assert "kernel rows" in function_space_reason("auto", "sgd", MAX_KERNEL_ROWS // 10 + 1, 10, 1000, fits)
    assert "repay" in function_space_reason("auto", "gd", 256, 10, MIN_STEPS - 1, fits)
    assert function_space_reason("auto", "gd", 256, 10, 1000, lambda: "why") == "why"
    assert function_space_reason("function", "gd", 10**6, 10, 1, lambda: "why") is None
    assert function_space_reason("parameter", "gd", 256, 10, 1000, fits) == "twin_space=parameter"
    # the Trainer asks the same and says so in its facts
    # the networks' own reasons (wcntk.core.implementations)
    mlp = trainer("auto", width=128)   # 1,155 parameters for 24 inputs × 3 outputs
    x = mlp.data.x_train
    assert mlp.n_params >= MLP_PARAMS_PER_KERNEL_ENTRY * 24 * 9
    assert MLP_FAST.function_space_misfit(mlp.model, mlp.f, mlp.params0, x, 1e9) is None
    small = trainer("auto", width=8)   # 75 parameters
    why = MLP_FAST.function_space_misfit(small.model, small.f, small.params0, x, 1e9)
    assert why == "75 parameters < 2·N·k² = 432: the parameter-space step is cheaper than Θ₀'s product"
    cnn = trainer("auto", kind="cnn")
    assert GENERIC.function_space_misfit(cnn.model, cnn.f, cnn.params0, cnn.data.x_train, 1e9) is None
    why = GENERIC.function_space_misfit(cnn.model, cnn.f, cnn.params0, cnn.data.x_train, 1e3)
    assert "NTK-vector products" in why
    # (width 128: 1,155 parameters ≥ 2·N·k² = 432 for 24 inputs × 3 outputs; width 8: 75)
    assert trainer("auto", steps=MIN_STEPS, width=128).facts()["twin_space"] == "function"
    assert trainer("auto", steps=MIN_STEPS - 1, width=128).facts()["twin_space"] == "parameter"
    assert trainer("auto", opt="adam", steps=MIN_STEPS, width=128).twin_space == "parameter"
    assert trainer("auto", steps=MIN_STEPS, width=8).twin_space == "parameter"


def test_function_space_with_adam_or_an_unknown_space_is_a_config_error():
    model = ModelConfig(width=8)
    needs = r"^twin_space=function needs optimizer gd, sgd or momentum \(adam's"
    with pytest.raises(ValueError, match=needs):
        validate_all(model, DATA, OptimizerConfig(name="adam", lr=1e-3),
                     TrainConfig(twin_space="function", probes=4))
    with pytest.raises(ValueError, match="twin_space must be one of auto, function, parameter"):
        validate_all(model, DATA, OptimizerConfig(), TrainConfig(twin_space="dual", probes=4))


def test_function_space_checkpoint_continues_bit_identically():
    straight = trainer("function", opt="momentum", batch_size=8)
    for _ in range(10):
        straight.step()
    first = trainer("function", opt="momentum", batch_size=8)
    for _ in range(6):
        first.step()
    state = first.state_dict(6)
    assert state["twin_space"] == "function" and state["twin"] is None and state["twin_opt"] is None
    resumed = trainer("function", opt="momentum", batch_size=8)
    resumed.load_state_dict(state)
    for _ in range(4):
        resumed.step()
    assert torch.equal(resumed.function_twin.coef, straight.function_twin.coef)
    assert torch.equal(resumed.function_twin.velocity, straight.function_twin.velocity)


def test_a_parameter_space_checkpoint_resumes_in_parameter_space():
    """A checkpoint from before the function-space twin (no `twin_space` key) holds the twin's
    parameters and optimizer state: a run whose config now picks function space continues it in
    parameter space, as it started."""
    straight = trainer("parameter", steps=MIN_STEPS, width=128)
    for _ in range(8):
        straight.step()
    first = trainer("parameter", steps=MIN_STEPS, width=128)
    for _ in range(5):
        first.step()
    state = first.state_dict(5)
    del state["twin_space"], state["twin_dual"]
    resumed = trainer("auto", steps=MIN_STEPS, width=128)
    assert resumed.twin_space == "function"
    resumed.load_state_dict(state)
    assert resumed.twin_space == "parameter"
    for _ in range(3):
        resumed.step()
    for k, v in straight.twin_params.items():
        assert torch.equal(resumed.twin_params[k], v)


def test_a_checkpoint_of_another_training_set_is_refused():
    state = trainer("function", opt="momentum").state_dict(0)
    state["twin_dual"]["coef"] = torch.zeros(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="function-space twin is not this run's"):
        trainer("function", opt="momentum").load_state_dict(state)


def test_function_space_step_replays_as_a_graph_and_matches_the_eager_run():
    """The CUDA-graph path in its eager form (tests/test_step_graph.py): Θ₀ is built before the
    capture, the coefficients are the state the check compares and the rewind restores."""
    graphed = trainer("function", opt="momentum", batch_size=8, capture=lambda body: body)
    result = graphed.run()
    assert graphed.step_mode == "graph"
    assert result.final == trainer("function", opt="momentum", batch_size=8).run().final


def test_a_stop_while_the_kernel_is_built_ends_at_a_boundary_with_row_0_logged():
    """Θ₀ of a generic network is built at the first step and can take long: a stop during it
    reaches boundary(0) (the state state_dict saves: no step taken, row 0 logged) within one
    module's pass, as a stop inside a measurement does."""
    t = trainer("function", kind="cnn")
    building, reached = [], []
    build = t.function_twin._build

    def build_and_note():
        building.append(True)
        return build()
    t.function_twin._build = build_and_note

    class Ended(Exception):
        pass

    def boundary(step):
        if building:
            reached.append((step, t.state_dict(step)["row_logged"], t.steps_taken))
            raise Ended
    with pytest.raises(Ended):
        t.run(boundary=boundary, stop=lambda: bool(building))
    assert reached == [(0, True, 0)] and t.function_twin.kernel is None


@pytest.mark.parametrize("space", ["function", "parameter"])
def test_a_generic_network_resumed_logs_the_rows_of_one_run(space):
    """The CNN's twins on the training and test sets are traced from their first call in a run that
    steps: a process resumed at step 5 evaluates row 8 by the same path as the process that ran from
    step 0 (plain jvps and the trace differ at round-off), so every row after 5 is bit-identical."""
    def make():
        t = trainer(space, kind="cnn", opt="momentum", batch_size=8, precision="float32")
        t.rows = []
        t.log = lambda step, row: t.rows.append((step, row))
        return t
    whole, buf = make(), io.BytesIO()
    whole.run(boundary=lambda step: torch.save(whole.state_dict(step), buf) if step == 5 else None)
    resumed = make()
    resumed.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    resumed.run()
    assert resumed.rows == [(step, row) for step, row in whole.rows if step > 5]
