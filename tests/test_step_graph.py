"""The CUDA-graph step's logic in its eager form (wcntk.training.step_graph, Trainer.graph_step): the
check against the eager step, the fallback and its one line, the rewind, the config switch."""
from __future__ import annotations

import io

import pytest
import torch

from wcntk.core.models import ModelConfig
from wcntk.training.data import DataConfig
from wcntk.training.step_graph import choose_step, max_rel_diff
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer, to_floats

SETTINGS = [dict(name="sgd", lr=0.5, batch_size=8), dict(name="momentum", lr=0.1),
            dict(name="adam", lr=1e-3)]


def trainer(opt: dict, capture=None, **train) -> Trainer:
    data = DataConfig(name="synthetic", n_train=32, n_test=16, input_dim=6, n_classes=3, standardize=False)
    return Trainer(ModelConfig(width=16, activation="tanh"), data, OptimizerConfig(**opt),
                   TrainConfig(steps=12, log_every=4, probes=4, progress=False, device="cpu", **train),
                   capture=capture)


def eager_capture(body):
    """What a graph replays, done eagerly: the body itself."""
    return body


@pytest.mark.parametrize("opt", SETTINGS, ids=lambda o: o["name"])
def test_replayed_step_is_kept_and_the_run_is_the_eager_run(opt):
    """The check runs one eager step and one replay, then rewinds: the run is step for step
    the eager run (same θ₀, same minibatches, optimizer state restarted)."""
    graphed = trainer(opt, capture=eager_capture)
    result = graphed.run()
    assert graphed.step_mode == "graph"
    eager = trainer(opt)
    assert eager.step_mode == "eager" and eager.run().final == result.final


def test_capture_failure_falls_back_to_eager_with_one_line(capsys):
    def broken(body):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
    t = trainer(SETTINGS[2], capture=broken)
    result = t.run()
    err = capsys.readouterr().err.strip().splitlines()
    assert t.step_mode == "eager" and len(err) == 1
    assert err[0] == ("wcntk: cuda_graphs: capturing the training step failed (RuntimeError: operation not "
                      "permitted when stream is capturing); training with eager steps")
    assert result.final == trainer(SETTINGS[2]).run().final


def test_a_replay_that_differs_falls_back_to_eager(capsys):
    t = trainer(SETTINGS[0], capture=lambda body: lambda: None)   # a "graph" that does nothing
    result = t.run()
    err = capsys.readouterr().err
    assert t.step_mode == "eager" and "differs from the eager step by" in err and "> 1e-06" in err
    assert result.final == trainer(SETTINGS[0]).run().final


def test_choose_step_threshold():
    """err = max ‖S₁ᵍ − S₁ᵉ‖/‖S₁ᵉ‖: a replay off by 1e-7 relative is kept, by 1e-5 is not."""
    x = torch.ones(4, dtype=torch.float64)

    def run(offset):
        def body():
            x.add_(1.0)
        def capture(b):
            return lambda: (b(), x.mul_(1 + offset))
        def rewind():
            x.fill_(1.0)
        return choose_step(lambda: None, body, lambda: [x], rewind, capture)
    assert run(1e-7).graphed and not run(1e-5).graphed
    assert torch.equal(x, torch.ones(4, dtype=torch.float64))        # rewound either way
    assert max_rel_diff([torch.zeros(2)], [torch.zeros(2)]) == 0.0


def test_cuda_graphs_switch():
    with pytest.raises(ValueError, match=r"^cuda_graphs=on needs a CUDA device \(device=cpu") as err:
        TrainConfig(device="cpu", cuda_graphs="on").validate(32)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="cuda_graphs must be one of auto, on, off"):
        TrainConfig(device="cpu", cuda_graphs="yes").validate(32)
    assert not TrainConfig(device="cpu").graphs_wanted()
    t = trainer(SETTINGS[2])                        # auto on the CPU: eager, Adam as before
    assert t.step_mode == "eager" and not t.net_opt.defaults["capturable"]


def test_a_logged_row_becomes_floats_at_once():
    row = {"a": torch.tensor(0.1, dtype=torch.float32), "b": torch.tensor(2.5, dtype=torch.float64)}
    assert to_floats(row) == {"a": float(row["a"]), "b": 2.5}


@pytest.mark.parametrize("opt", SETTINGS, ids=lambda o: o["name"])
def test_a_restored_run_chooses_its_graph_step_from_the_restored_state(opt):
    """A checkpoint's state is restored before the first step; the graph step's check then rewinds
    to that state (its minibatch position included), not to the seed's start: the graph-stepped
    continuation is the eager run's."""
    eager = trainer(opt)
    rows = []
    eager.log = lambda t, m: rows.append((t, m))
    buf = io.BytesIO()
    eager.run(boundary=lambda t: torch.save(eager.state_dict(t), buf) if t == 5 else None)
    graphed = trainer(opt, capture=eager_capture)
    graphed.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    resumed = []
    graphed.log = lambda t, m: resumed.append((t, m))
    graphed.run()
    assert graphed.step_mode == "graph"
    assert resumed == [(t, m) for t, m in rows if t > 5]
