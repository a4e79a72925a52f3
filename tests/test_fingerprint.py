"""θ₀'s fingerprint (wcntk.core.fingerprint): every record and checkpoint holds it, two runs of one
config agree on it, a factory that cannot rebuild its θ₀ from the seed is refused before any work
(pre-flight) and, should one slip through, when a resume rebuilds another θ₀."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.conftest import ENV, ROOT, run_py, tiny_config
from tests.repro_nets import SHIFT_ENV
from wcntk.core.fingerprint import tensors_sha256, theta0_fingerprint
from wcntk.core.layers import ModelConfig
from wcntk.run.config import run_config
from wcntk.run.job import run_job
from wcntk.training.data import DataConfig
from wcntk.training.network_check import check_network
from wcntk.training.trainer import NotReproducible, Trainer


def test_the_fingerprint_is_the_sha256_of_the_named_float64_values():
    """Against an explicit digest; trainable and frozen tensors (buffers included) apart."""
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
    net[1].weight.requires_grad_(False)
    explicit = hashlib.sha256()   # sorted by name: 0.bias, 0.weight, 1.bias (1.weight is frozen)
    for name, t in (("0.bias", net[0].bias), ("0.weight", net[0].weight), ("1.bias", net[1].bias)):
        t = t.detach().to(torch.float64)
        explicit.update(f"{name}|float64|{list(t.shape)}|".encode() + t.numpy().tobytes())
    prints = theta0_fingerprint(net)
    assert prints["trainable"] == explicit.hexdigest()
    frozen = {"1.weight": net[1].weight, "1.running_mean": net[1].running_mean,
              "1.running_var": net[1].running_var, "1.num_batches_tracked": net[1].num_batches_tracked}
    assert prints["frozen"] == tensors_sha256(frozen)

    with torch.no_grad():   # one ulp of one trainable entry; then a buffer
        net[0].weight[0, 0] = torch.nextafter(net[0].weight[0, 0], torch.tensor(2.0))
    moved = theta0_fingerprint(net)
    assert moved["trainable"] != prints["trainable"] and moved["frozen"] == prints["frozen"]
    net[1].running_mean.add_(1)
    assert theta0_fingerprint(net)["frozen"] != moved["frozen"]


def test_the_fingerprint_streams_its_values_in_chunks_to_the_same_digest(monkeypatch):
    """Values go to the host a chunk at a time; the digest is the whole tensors' (non-contiguous,
    empty, integer and bool tensors included), whatever the chunk size."""
    from wcntk.core import fingerprint
    gen = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(7, 5, generator=gen, dtype=torch.float32).T,      # not contiguous
               "h": torch.randn(11, generator=gen, dtype=torch.float16), "empty": torch.zeros(0, 3),
               "count": torch.arange(9), "mask": torch.rand(6, generator=gen) > 0.5}
    explicit = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        t = (t.to(torch.float64) if t.is_floating_point() else t).contiguous()
        explicit.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode()
                        + t.numpy().tobytes())
    for chunk in (1, 4, 1 << 22):
        monkeypatch.setattr(fingerprint, "CHUNK_ELEMENTS", chunk)
        assert tensors_sha256(tensors) == explicit.hexdigest(), chunk


@pytest.mark.slow
def test_two_runs_of_one_config_record_the_same_fingerprint(tmp_path):
    records = [run_job(tiny_config(**{"steps": 3}), tmp_path / name) for name in ("a", "b")]
    other = run_job(tiny_config(**{"steps": 3, "seed": 1}), tmp_path / "c")
    (a, b), c = (r.facts for r in records), other.facts
    assert a["theta0_sha256"] == b["theta0_sha256"] != c["theta0_sha256"]
    assert a["theta0_frozen_sha256"] == b["theta0_frozen_sha256"]
    assert len(a["theta0_sha256"]) == 64
    on_disk = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert on_disk["facts"]["theta0_sha256"] == a["theta0_sha256"]


DIGITS = DataConfig(name="digits", n_train=24, n_test=8)


def test_a_factory_drawing_from_numpy_s_global_rng_is_refused_before_any_work():
    with pytest.raises(ValueError) as err:
        check_network(ModelConfig(kind="custom", target="tests.repro_nets.numpy_drawn", width=8), DIGITS)
    assert str(err.value) == (
        "model.target='tests.repro_nets.numpy_drawn': two calls with the same seed give different initial "
        "trainable tensors: draw them from the `generator` (or `seed`) the factory receives, not from "
        "numpy's or Python's global RNG (a resumed run rebuilds θ₀ from the seed)")


SHIFTED = {"model.kind": "custom", "model.target": "tests.repro_nets.shifted_by_env"}


def test_a_checkpoint_of_another_theta0_is_refused(monkeypatch):
    model, data, opt, train = run_config(tiny_config(**SHIFTED)).library_configs()
    monkeypatch.setenv(SHIFT_ENV, "0")
    state = Trainer(model, data, opt, train).state_dict(0)
    Trainer(model, data, opt, train).load_state_dict(state)       # the same θ₀: fine
    monkeypatch.setenv(SHIFT_ENV, "0.5")
    with pytest.raises(NotReproducible) as err:
        Trainer(model, data, opt, train).load_state_dict(state)
    assert str(err.value) == (
        "θ₀ rebuilt from seed 0 is not the checkpoint's (trainable tensors differ): the network's factory "
        "is not reproducible from its seed/generator (numpy's or Python's global RNG? a file?); start "
        "over with overwrite=true")


CLI = ["debug=default", "model=custom", "model.target=tests.repro_nets.shifted_by_env", "steps=12",
       "log_every=3", "optimizer.lr=0.5"]


@pytest.mark.slow
def test_run_py_refuses_to_continue_from_another_theta0_in_one_line(tmp_path):
    """SIGTERM in step 5 with θ₀ shifted by 0; re-run with another shift: one line, exit 1, no
    traceback, the checkpoint and metrics.csv's rows kept; overwrite=true starts over."""
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", *CLI]
    first = subprocess.run([sys.executable, str(ROOT / "tests" / "_signal_run.py"), str(int(signal.SIGTERM)),
                            "5", *args], env={**ENV, SHIFT_ENV: "0"}, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 143, first.stderr
    rows = (run_dir / "metrics.csv").read_bytes()
    second = run_py(*args, env={**ENV, SHIFT_ENV: "1"})
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    (line,) = second.stderr.splitlines()
    assert line.startswith("wcntk: failed: NotReproducible: θ₀ rebuilt from seed 0 is not the checkpoint's "
                           "(trainable tensors differ)") and "start over with overwrite=true" in line
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "metrics.csv").read_bytes() == rows
    third = run_py(*args, "overwrite=true", env={**ENV, SHIFT_ENV: "1"})
    assert third.returncode == 0, third.stderr
