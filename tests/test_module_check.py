"""A user's own module (model=custom) is measured right or refused in one line before any work:
the pre-flight check (wcntk.training.module_check), frozen parameters against an explicit
computation with the frozen weight as a constant, the factory contract (**kwargs, width), a
finite divergence, and the learning-rate sanity line against the closed-form GD limit."""
from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from tests.conftest import ROOT, run_py
from wcntk.core.layers import ModelConfig
from wcntk.core.linearization import LinearizedModel
from wcntk.core.losses import mse
from wcntk.training.config import OptimizerConfig, TrainConfig
from wcntk.training.data import DataConfig
from wcntk.training.module_check import coupling_tolerance
from wcntk.training.network_check import check_network
from wcntk.training.trainer import Trainer, divergence, gd_stable_lr

DIGITS = DataConfig(name="digits", n_train=24, n_test=8)


def custom(name: str, **changes) -> ModelConfig:
    return ModelConfig(kind="custom", target=f"tests.odd_nets.{name}", **{"width": 16, **changes})


REFUSED = {  # factory in tests/odd_nets.py -> what its one line says
    "all_frozen": "every parameter has requires_grad=False: nothing to train",
    "batch_centred": "samples are coupled: a batch's outputs differ from each input's alone by",
    "one_row": "the module maps a batch of shape [3, 1, 8, 8] to [1, 10], expected [3, 10]",
    "float64_output": "the module returns float64 outputs in a float32 run: keep every output in the "
                      "run's precision (remove the cast in forward, or run with precision=float64)",
    "half_inside": "the module fails on a batch of inputs of shape [3, 1, 8, 8] (RuntimeError:",
    "detached_output": "no gradient reaches the output from the trainable parameters",
    "dropout": "forward is random (two calls on the same input differ; Dropout?): call model.eval()",
    "batchnorm_training": "forward changes the buffer '2.running_mean' (as BatchNorm in training mode",
    "mutates_buffer": "forward changes the buffer 'calls'",
    "weight_norm": "the module fails in the derivative correlations (nested jvp) (NotImplementedError: "
                   "Trying to use forward AD with _weight_norm_interface",
    "needs_hidden_layers": "the factory needs an argument 'hidden_layers' that the runner does not "
                           "provide: add model.kwargs.hidden_layers=…",
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_modules_the_run_cannot_measure_are_refused_in_one_line(name):
    with pytest.raises(ValueError) as err, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_network(custom(name), DIGITS)
    assert not caught, [str(w.message) for w in caught]   # torch's warnings stay inside the check
    message = str(err.value)
    assert message.startswith(f"model.target='tests.odd_nets.{name}': {REFUSED[name]}"), message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["groupnorm", "layernorm", "batchnorm_eval", "frozen_first_layer",
                                  "open_kwargs"])
def test_per_sample_normalisations_and_frozen_weights_are_accepted(name):
    check_network(custom(name), DIGITS)
    check_network(custom(name), DIGITS, dtype=torch.float64)


def test_coupling_tolerance_follows_the_dtype():
    assert coupling_tolerance(torch.float32) == pytest.approx(3.45e-4, rel=0.01)
    assert coupling_tolerance(torch.float64) == pytest.approx(1.49e-8, rel=0.01)


def _trainer(model: ModelConfig, steps: int = 6, lr: float = 0.5, **train) -> Trainer:
    return Trainer(model, DIGITS, OptimizerConfig(lr=lr),
                   TrainConfig(steps=steps, log_every=2, probes=4, progress=False, device="cpu",
                               precision="float64", **train))


def test_a_frozen_weight_is_a_constant_everywhere():
    """The network with W1 frozen against the same function with W1 a buffer (a constant the
    measurement never sees): θ, the twin, the NTK, the correlations and every logged row agree."""
    frozen, buffer = (_trainer(custom(name, width=12)) for name in ("frozen_first_layer",
                                                                     "first_layer_as_buffer"))
    assert set(frozen.params0) == set(buffer.params0) == {"w2", "b2"}
    assert frozen.n_params == buffer.n_params == 10 * 12 + 10
    assert frozen.facts()["n_frozen_params"] == 12 * 64 and buffer.facts()["n_frozen_params"] == 0
    rows = {}
    for name, trainer in (("frozen", frozen), ("buffer", buffer)):
        rows[name] = []
        trainer.log = lambda t, m, out=rows[name]: out.append((t, m))
        assert trainer.run().status == "ok"
    for (t, a), (s, b) in zip(rows["frozen"], rows["buffer"], strict=True):
        assert t == s and a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-14), key
    w1 = frozen.model.w1
    assert not w1.requires_grad and torch.equal(w1, buffer.model.w1)   # the network kept it frozen


def test_a_kwargs_factory_receives_every_offered_argument_and_the_record_says_so():
    narrow, wide = (_trainer(custom("open_kwargs", width=w), steps=0) for w in (16, 64))
    assert narrow.n_params != wide.n_params
    args = wide.facts()["factory_arguments"]
    assert args["width"] == 64 and args["input_shape"] == [1, 8, 8] and args["out_features"] == 10
    assert args["generator"] == "torch.Generator(seed=0)" and json.dumps(args)


def test_a_loss_that_grows_finitely_by_the_factor_is_diverged():
    assert divergence({"net/train_loss": 2e6, "twin/train_loss": 1.0},
                      {"net/train_loss": 1.0, "twin/train_loss": 1.0}, 1e6).startswith("net/train_loss 2e+06")
    assert divergence({"net/train_loss": 9e5, "twin/train_loss": 1.0},
                      {"net/train_loss": 1.0, "twin/train_loss": 1.0}, 1e6) is None
    assert "non-finite" in divergence({"net/train_loss": math.nan, "twin/train_loss": 1.0}, {}, 1e6)
    result = _trainer(ModelConfig(width=16, activation="identity"), steps=40, lr=40.0,
                      diverge_factor=100.0).run()
    assert result.status == "diverged" and "× its initial" in result.message
    assert math.isfinite(result.final["net/train_loss"])


def test_stable_lr_is_the_closed_form_gd_limit_of_a_linear_model():
    """f(x) = W x: Θ = X Xᵀ ⊗ I, and full-batch GD on 1/(2m)‖XWᵀ − Y‖² is stable iff
    η < 2m / λ_max(X Xᵀ); on either side of the limit the loss shrinks or explodes."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(6, 2, generator=gen,
                                                                            dtype=torch.float64)
    gram = x @ x.T
    ntk = torch.einsum("ab,oq->aobq", gram, torch.eye(2, dtype=torch.float64))
    limit = gd_stable_lr(ntk)
    assert limit == pytest.approx(2 * 6 / torch.linalg.eigvalsh(gram).max().item(), rel=1e-12)
    for factor, shrinks in ((0.95, True), (1.05, False)):
        w = torch.zeros(2, 4, dtype=torch.float64)
        for _ in range(400):
            w = w - factor * limit * (x @ w.T - y).T @ x / 6
        residual = (x @ w.T - y).norm().item()
        assert (residual < y.norm().item()) == shrinks


def test_an_lr_above_the_stable_limit_gets_one_warning_line(capsys):
    trainer = _trainer(ModelConfig(width=16, activation="tanh"), steps=1, lr=1e3)
    trainer.run()
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("wcntk: warning: effective lr 1000 is above 2/λ_max")
    assert trainer.facts()["stable_lr"] < 1e3
    _trainer(ModelConfig(width=16, activation="tanh"), steps=1, lr=0.1).run()
    assert "warning" not in capsys.readouterr().err


CLI = ["model=custom", "debug=default", "dataset=digits", "wandb.mode=disabled"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dropout", "batchnorm_training", "mutates_buffer", "half_inside",
                                  "all_frozen", "detached_output", "weight_norm", "needs_hidden_layers"])
def test_cli_refuses_the_traceback_cases_in_one_line_before_any_run_dir(tmp_path, name):
    proc = run_py(*CLI, f"model.target=tests.odd_nets.{name}", f"hydra.run.dir={tmp_path}/run", cwd=ROOT)
    assert proc.returncode == 1 and not (tmp_path / "run").exists()
    line = proc.stderr.strip()
    assert line.startswith(f"wcntk: error: model.target='tests.odd_nets.{name}': {REFUSED[name]}"), line
    assert "\n" not in line


@pytest.mark.slow
def test_cli_a_factory_without_width_warns_once_and_a_width_sweep_is_refused(tmp_path):
    proc = run_py(*CLI, "model.target=tests.odd_nets.no_width", "width=64", "steps=1",
                  f"hydra.run.dir={tmp_path}/run", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert ("wcntk: warning: model.target=tests.odd_nets.no_width takes no width argument (nor **kwargs): "
            "width=64 changes nothing") in proc.stderr
    proc = run_py("--multirun", *CLI, "model.target=tests.odd_nets.no_width", "width=8,16",
                  f"hydra.sweep.dir={tmp_path}/sweep", cwd=ROOT)
    assert proc.returncode == 1 and not (tmp_path / "sweep").exists()
    assert proc.stderr.strip() == ("wcntk: error: model.target=tests.odd_nets.no_width takes no width "
                                   "argument (nor **kwargs): every width of the sweep would build the "
                                   "same network; add a width parameter to the factory")


def _explicit_tied(theta: dict[str, torch.Tensor], x: torch.Tensor, share_weight_only: bool) -> torch.Tensor:
    """tests.odd_nets.TiedLayer written out over its distinct tensors: the tied layer (a.weight,
    a.bias) applied twice, or with only the weight shared, the second time with its own b.bias."""
    def linear(h, name):
        return h @ theta[f"{name}.weight"].T + theta[f"{name}.bias"]
    h = torch.tanh(linear(torch.tanh(linear(x.flatten(1), "inp")), "a"))
    h = h @ theta["a.weight"].T + theta["b.bias" if share_weight_only else "a.bias"]
    return linear(torch.tanh(h), "out")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tied_layer", "shared_weight"])
def test_a_layer_under_two_names_or_a_shared_weight_is_each_tensor_once(name):
    """θ, n_params, the NTK, and 4 full-batch GD steps of the network and of the twin (traced by
    wcntk.core.linearize_trace from its third call) against float64 explicit computations over the
    distinct tensors: f written out, Θ = J Jᵀ and the twin f(θ₀) + J(θ − θ₀) from an explicit
    Jacobian."""
    share = name == "shared_weight"
    check_network(custom(name, width=6), DIGITS, dtype=torch.float64)
    trainer = _trainer(custom(name, width=6), steps=4, lr=0.3)
    names = ["inp.weight", "inp.bias", "a.weight", "a.bias", *(["b.bias"] if share else []),
             "out.weight", "out.bias"]
    assert sorted(trainer.params0) == sorted(names)
    theta0 = {k: trainer.params0[k].clone() for k in names}
    assert trainer.n_params == sum(v.numel() for v in theta0.values()) == 64 * 6 + 6 + 36 + 6 + 6 * share + 70
    x, y = trainer.data.x_train, trainer.data.y_train

    def f(*tensors, x=x):
        return _explicit_tied(dict(zip(names, tensors, strict=True)), x, share)

    jac = torch.autograd.functional.jacobian(lambda *t: f(*t, x=trainer.x_probe), tuple(theta0.values()),
                                         vectorize=True)
    j = torch.cat([part.reshape(part.shape[0] * part.shape[1], -1) for part in jac], dim=1)
    m = len(trainer.x_probe)
    ntk = trainer.impl.ntk(trainer.model, trainer.f, trainer.params0, trainer.x_probe)
    torch.testing.assert_close(ntk, (j @ j.T).reshape(m, 10, m, 10), rtol=1e-12, atol=1e-12)

    full = torch.cat([p.reshape(x.shape[0] * 10, -1) for p in
                      torch.autograd.functional.jacobian(f, tuple(theta0.values()), vectorize=True)], dim=1)
    out0 = f(*theta0.values()).detach()
    net, twin = list(theta0.values()), torch.cat([v.reshape(-1) for v in theta0.values()])
    flat0 = twin.clone()
    for _ in range(4):
        grads = torch.autograd.grad(mse(f(*[v.requires_grad_(True) for v in net]), y), net)
        net = [(v - 0.3 * g).detach() for v, g in zip(net, grads, strict=True)]
        residual = out0 + (full @ (twin - flat0)).reshape(out0.shape) - y
        twin = twin - 0.3 * full.T @ residual.reshape(-1) / x.shape[0]
    model_params = dict(trainer.model.named_parameters())
    live = dict(zip(names, net, strict=True))
    assert trainer.run().status == "ok"
    for k in names:
        assert model_params[k] is dict(trainer.model.named_parameters())[k]   # the network's own tensors
        torch.testing.assert_close(trainer.model.get_parameter(k).detach(), live[k], rtol=1e-10, atol=1e-12)
    twin_flat = torch.cat([trainer.twin_params[k].detach().reshape(-1) for k in names])
    torch.testing.assert_close(twin_flat, twin, rtol=1e-10, atol=1e-12)
    assert not torch.equal(trainer.model.a.weight, theta0["a.weight"])   # the tied layer trains


def test_the_check_runs_the_twin_the_run_traces(monkeypatch):
    """A module whose twin trace (wcntk.core.linearize_trace) fails is refused by the pre-flight,
    in one line."""
    def broken(self, x):
        raise RuntimeError("cannot trace this module")
    monkeypatch.setattr(LinearizedModel, "_trace", broken)
    with pytest.raises(ValueError) as err:
        check_network(custom("groupnorm", width=8), DIGITS)
    assert "the linearized twin's steps" in str(err.value) and "cannot trace this module" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_parameter_forward_never_reads_is_named_once_and_left_out_of_theta(capsys):
    """tests.odd_nets.unused_parameter holds `spare` (4×64, drawn ×10) that forward never reads:
    θ, n_params and lin/param_rel_change are over w1, w2, b2 (an explicit ‖θ_t − θ₀‖/‖θ₀‖ over
    them), facts.n_unused_params says 256, and one warning line names it."""
    check_network(custom("unused_parameter", width=12), DIGITS)
    trainer = _trainer(custom("unused_parameter", width=12), steps=4, lr=0.3)
    used = ["w1", "w2", "b2"]
    theta0 = {k: trainer.model.get_parameter(k).detach().clone() for k in [*used, "spare"]}
    assert sorted(trainer.params0) == sorted(used) and trainer.n_params == 12 * 64 + 10 * 12 + 10
    result = trainer.run()
    assert result.status == "ok"
    change = sum((trainer.model.get_parameter(k).detach() - theta0[k]).pow(2).sum() for k in used).sqrt()
    norm0 = sum(theta0[k].pow(2).sum() for k in used).sqrt()
    assert result.final["lin/param_rel_change"] == pytest.approx((change / norm0).item(), rel=1e-10)
    with_spare = (change / (norm0.pow(2) + theta0["spare"].pow(2).sum()).sqrt()).item()
    assert result.final["lin/param_rel_change"] > 2 * with_spare   # what counting `spare` gave
    facts = trainer.facts()
    assert facts["n_unused_params"] == 256 and facts["n_params"] == trainer.n_params
    lines = [line for line in capsys.readouterr().err.splitlines() if "no gradient" in line]
    assert lines == ["wcntk: warning: 1 trainable parameter(s) receive no gradient from the output (spare; "
                     "256 entries): left out of θ, n_params and lin/param_rel_change (facts.n_unused_params)"]


def test_a_lazy_module_is_materialised_under_the_seed_before_theta0():
    check_network(custom("lazy", width=8), DIGITS)
    first, again = (_trainer(custom("lazy", width=8), steps=2) for _ in range(2))
    assert first.n_params == 64 * 8 + 8 + 8 * 10 + 10
    for k, v in first.params0.items():
        assert torch.equal(v, again.params0[k])   # the dry forward draws under the run's seed
    assert first.run().status == "ok"


@pytest.mark.slow
def test_multihead_attention_in_eval_mode_is_accepted_and_exact_at_step_0():
    """nn.MultiheadAttention's fused inference path is off: the check's two calls agree, forward AD
    goes through, and the network and the twin agree exactly at θ₀."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no torch warning either
        check_network(custom("attention_eval", width=8), DIGITS)
    trainer = _trainer(custom("attention_eval", width=8), steps=2, lr=0.1)
    result = trainer.run()
    assert result.status == "ok" and result.initial["lin/func_rmse_train"] == 0.0


@pytest.mark.slow
def test_a_single_run_calls_the_factory_twice(tmp_path):
    """The pre-flight check's module is the memory estimate's and the run's (same seed, dtype, CPU);
    the only other call is the check's second build, which tells a reproducible θ₀."""
    from tests import odd_nets
    from wcntk.run import capacity
    from wcntk.run.job import run_job
    from wcntk.training import network_check
    before = odd_nets.CALLS["counted"]
    cfg = {"model": {"kind": "custom", "target": "tests.odd_nets.counted", "kwargs": {"tag": str(tmp_path)}},
           "width": 8, "steps": 1, "seed": 3, "probes": 4, "device": "cpu",
           "dataset": {"name": "digits", "n_train": 24, "n_test": 8}, "progress": False,
           "wandb": {"mode": "disabled"}}
    assert run_job(cfg, tmp_path / "run").status == "ok"
    assert odd_nets.CALLS["counted"] == before + 2
    model = custom("counted", width=8, kwargs={"tag": str(tmp_path)})
    shapes = (1, 8, 8), 10
    network_check._checked.clear()
    capacity._MEASURED.clear()
    check_network(model, DIGITS, seed=5)                 # kept; the estimate reads it
    from_check = capacity.measured_sizes(model, *shapes, torch.float32)
    assert odd_nets.CALLS["counted"] == before + 4
    capacity._MEASURED.clear()
    network_check._last.clear()
    assert capacity.measured_sizes(model, *shapes, torch.float32) == from_check   # the meta build's
    assert from_check[0] == 8 * 64 + 10 * 8 + 10 and odd_nets.CALLS["counted"] == before + 5
