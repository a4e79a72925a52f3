"""Correctness of the GPU trainer, in one go (exit status 1 if a check fails):

  theta0        build_model on --device equals the CPU's, bit for bit, in float32 and float64;
  device_f64    a float64 run (eager) on --device against the same run on the CPU: every final
                metric within 1e-9 relative (|a − b| ≤ 1e-9 · max(|b|, 1e-12));
  graph_eager   per optimizer (gd, sgd with batch_size, momentum, adam) and for the CNN, a float32
                run with cuda_graphs=on against cuda_graphs=off: the Trainer kept the replay
                (step_mode == graph) and every final metric within 1e-5 relative; the same for
                the function-space twin (sgd, momentum, the CNN; twin_space=function), which
                device_f64 checks with sgd too;
  tf32          empirical_ntk of a CNN with torch's TF32 flags on: the flags come back on, the
                float32 NTK within 1e-5 relative of the float64 one.

On a machine without CUDA, `--device cpu` tries the script at its sizes: the CPU stands in for
the device and the graph is replaced by its eager form (Trainer(capture=...)).

    python benchmarks/device_correctness.py                 # cuda
    python benchmarks/device_correctness.py --device cpu    # the script's own test
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse
import sys

import _common  # noqa: F401

import torch

from wcntk.training.data import DataConfig
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.models import build_model
from wcntk.core.ntk import empirical_ntk
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer

OPTIMIZERS = {"gd": dict(name="gd", lr=1.0), "sgd": dict(name="sgd", lr=0.5, batch_size=32),
              "momentum": dict(name="momentum", lr=0.1), "adam": dict(name="adam", lr=1e-3)}


def run(device: str, precision: str, opt: dict, model: ModelConfig, graphs: str, capture=None,
        space: str = "parameter") -> Trainer:
    data = DataConfig(name="digits", n_train=128, n_test=64)
    t = Trainer(model, data, OptimizerConfig(**opt),
                TrainConfig(steps=40, log_every=10, probes=8, progress=False, device=device,
                            precision=precision, cuda_graphs=graphs, twin_space=space), capture=capture)
    t.result = t.run()
    return t


def rel_err(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; --device cpu tries the script")
    graphs, capture = ("on", None) if cuda else ("off", lambda body: body)
    mlp, cnn = ModelConfig(width=256, depth=2, activation="tanh"), ModelConfig(kind="cnn", width=8, depth=1)
    failures = []

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            failures.append(name)

    for dtype in (torch.float32, torch.float64):
        on_dev = params_of(build_model(mlp, (64,), 10, seed=3, dtype=dtype, device=args.device))
        on_cpu = params_of(build_model(mlp, (64,), 10, seed=3, dtype=dtype))
        same = all(torch.equal(on_dev[k].cpu(), on_cpu[k]) for k in on_cpu)
        check(f"theta0 {dtype}", same, "bit-identical to the CPU's" if same else "differs from the CPU's")

    for name, space in (("gd", "parameter"), ("sgd", "parameter"), ("sgd", "function")):
        dev = run(args.device, "float64", OPTIMIZERS[name], mlp, "off", space=space).result.final
        cpu = run("cpu", "float64", OPTIMIZERS[name], mlp, "off", space=space).result.final
        err = rel_err(dev, cpu)
        check(f"device_f64 {name} {space}", err <= 1e-9, f"max relative difference {err:.1e}")

    cases = ([(name, opt, mlp, "parameter") for name, opt in OPTIMIZERS.items()]
             + [("cnn gd", OPTIMIZERS["gd"], cnn, "parameter")]
             + [(f"{name} function space", OPTIMIZERS[name], mlp, "function") for name in ("sgd", "momentum")]
             + [("cnn gd function space", OPTIMIZERS["gd"], cnn, "function")])
    for name, opt, model, space in cases:
        graphed = run(args.device, "float32", opt, model, graphs, capture, space)
        eager = run(args.device, "float32", opt, model, "off", space=space)
        err = rel_err(graphed.result.final, eager.result.final)
        check(f"graph_eager {name}", graphed.step_mode == "graph" and err <= 1e-5,
              f"step_mode {graphed.step_mode}, max relative difference {err:.1e}")

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ntks = {}
    for dtype in (torch.float32, torch.float64):
        net = build_model(ModelConfig(kind="cnn", width=32, depth=2), (1, 8, 8), 3, seed=0, dtype=dtype,
                          device=args.device)
        x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        ntks[dtype] = empirical_ntk(functional(net), params_of(net), x.to(args.device, dtype)).double().cpu()
    flags_back = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    err = ((ntks[torch.float32] - ntks[torch.float64]).norm() / ntks[torch.float64].norm()).item()
    check("tf32", flags_back and err <= 1e-5,
          f"NTK float32 vs float64 {err:.1e}, flags restored {flags_back}")

    print(f"{len(failures)} check(s) failed: {', '.join(failures)}" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
