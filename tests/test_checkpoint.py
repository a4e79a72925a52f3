"""Checkpoints (wcntk.run.checkpoint): the trainer's and the sampler's state round-trip, a run
stopped by a signal (or killed) continues from its checkpoint to the numbers of an uninterrupted
run, bad or foreign checkpoints are set aside, and the checkpoint goes once the run is ok."""
from __future__ import annotations

import io

import pytest
import torch

from tests.conftest import tiny_config
from wcntk.run.config import run_config
from wcntk.training.trainer import MinibatchSampler, Trainer


def trainer_of(**changes) -> Trainer:
    model, data, opt, train = run_config(tiny_config(**changes)).library_configs()
    return Trainer(model, data, opt, train)


def test_sampler_state_round_trips_mid_epoch_and_across_buffer_refills():
    a = MinibatchSampler(n=10, batch_size=3, seed=7, device=torch.device("cpu"), block=4)
    for _ in range(6):  # mid-epoch (3 batches an epoch), second buffer
        a.advance()
        a.indices()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    b = MinibatchSampler(n=10, batch_size=3, seed=99, device=torch.device("cpu"), block=4)
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    for _ in range(20):
        a.advance()
        b.advance()
        assert torch.equal(a.indices(), b.indices())


@pytest.mark.slow
def test_trainer_state_round_trip_continues_bit_for_bit():
    """A run restored from a state saved at step 5 (minibatches, adam) logs the rows of one run."""
    changes = {"optimizer.name": "adam", "optimizer.lr": 0.01, "optimizer.batch_size": 16, "corr_every": 4}
    rows_a: list = []
    whole = trainer_of(**changes)
    whole.log = lambda t, m: rows_a.append((t, m))
    saved = {}

    def save_at_5(t):
        if t == 5:
            buf = io.BytesIO()
            torch.save(whole.state_dict(t), buf)
            saved["state"] = buf.getvalue()
    result_a = whole.run(boundary=save_at_5)

    rows_b: list = []
    resumed = trainer_of(**changes)
    resumed.log = lambda t, m: rows_b.append((t, m))
    resumed.load_state_dict(torch.load(io.BytesIO(saved["state"]), weights_only=True))
    result_b = resumed.run()
    assert [t for t, _ in rows_b] == [t for t, _ in rows_a if t > 5]
    assert rows_b == [(t, m) for t, m in rows_a if t > 5]
    assert result_b.initial == result_a.initial and result_b.final == result_a.final
