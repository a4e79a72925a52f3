"""The resnet and the transformer on the generic path: training step, NTK and correlations
against the per-sample Jacobian contraction, and the `steps=0` run, at two widths each.

Setup: standardized MNIST (1×28×28), 10 outputs, float32, relu, NTK parameterization, depth 1
(--depth), 1 thread (--threads); the transformer with its defaults (2 heads, 7×7 patches, 1/d
logits). Per (model, width), measured interleaved (`compare`, median of --repeats):

  net step        one full-batch GD step of the network on --n-train images (forward, backward,
                  SGD update)
  twin step       the same for the twin (the trace, wcntk.core.linearize_trace, of the full batch,
                  as the Trainer uses it)
  tutorial jac    the PyTorch NTK tutorial's Jacobian contraction on --probes probes
                  (benchmarks/ntk.py), the unit of the two ratios
  empirical_ntk   wcntk.core.ntk.empirical_ntk (target ≤ 1.0× the tutorial's contraction)
  correlations    C02, C03, C11 by the implementation the Trainer uses (wcntk.core.implementations:
                  the generic pass, with 32 probes per chunk for the transformer; target ≤ 10×)

and once, in a fresh process: `python run.py model=<kind> width=<w> depth=<d> steps=0
wandb.mode=disabled progress=false threads=<threads>` (wall time, the process start included).

    python benchmarks/models.py [--cases resnet:16,resnet:32,transformer:32,transformer:64]
                                [--probes 32] [--n-train 256] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import _common as bench  # first: sets OMP_WAIT_POLICY before torch is imported
import torch
from ntk import probes, tutorial_jacobian_contraction

from wcntk.core.implementations import implementation_for
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.linearization import LinearizedModel
from wcntk.core.losses import mse
from wcntk.core.models import build_model
from wcntk.core.ntk import choose_method, empirical_ntk, sample_cost


def steps(model, f, x: torch.Tensor, y: torch.Tensor):
    """(net step, twin step): one full-batch GD step each, lr 0.1."""
    net_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    params0 = params_of(model)
    twin = LinearizedModel(f, params0).cached(x, trace_after=0)
    twin_params = {k: v.clone().requires_grad_(True) for k, v in params0.items()}
    twin_opt = torch.optim.SGD(twin_params.values(), lr=0.1)

    def net_step():
        net_opt.zero_grad()
        mse(model(x), y).backward()
        net_opt.step()

    def twin_step():
        twin_opt.zero_grad()
        mse(twin(twin_params), y).backward()
        twin_opt.step()

    return net_step, twin_step


def run_seconds(kind: str, width: int, depth: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(bench.ROOT / "run.py"), f"model={kind}", f"width={width}",
                        f"depth={depth}", "steps=0", "wandb.mode=disabled", "progress=false",
                        f"threads={threads}", f"hydra.run.dir={tmp}/run"], check=True, cwd=bench.ROOT,
                       capture_output=True)
        return time.perf_counter() - start


def row(kind: str, width: int, x: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, args) -> dict:
    model = build_model(ModelConfig(kind=kind, width=width, depth=args.depth), tuple(x.shape[1:]), 10, seed=0)
    f, params = functional(model), params_of(model)

    def f_single(p, xa):
        return f(p, xa.unsqueeze(0)).squeeze(0)

    net_step, twin_step = steps(model, f, xt, yt)
    t = bench.compare({
        "net": net_step, "twin": twin_step,
        "tutorial_jac": lambda: tutorial_jacobian_contraction(f_single, params, x, x),
        "ntk": lambda: empirical_ntk(f, params, x),
        "correlations": lambda: implementation_for(model).correlations(model, f, params, x, 1.0),
    }, warmup=1, repeats=args.repeats)
    s = {k: v["median_s"] for k, v in t.items()}
    return {"model": kind, "width": width, "params": sum(v.numel() for v in params.values()),
            "net step (s)": s["net"], "twin step (s)": s["twin"],
            "tutorial jac (s)": s["tutorial_jac"], "empirical_ntk (s)": s["ntk"],
            "auto method": choose_method(sample_cost(f, params, x), len(x), len(x), True),
            "ntk ÷ tutorial": s["ntk"] / s["tutorial_jac"], "correlations (s)": s["correlations"],
            "corr ÷ tutorial": s["correlations"] / s["tutorial_jac"],
            "steps=0 run (s)": run_seconds(kind, width, args.depth, args.threads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="resnet:16,resnet:32,transformer:32,transformer:64",
                        help="model:width, comma-separated")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = bench.env_info()
    bench.print_env(meta)
    xt = probes(args.n_train)
    x = xt[:args.probes]
    yt = torch.nn.functional.one_hot(torch.arange(len(xt)) % 10, 10).float()
    start = time.perf_counter()
    rows = []
    for case in args.cases.split(","):
        kind, width = case.split(":")
        rows.append(row(kind, int(width), x, xt, yt, args))
        bench.print_table(rows[-1:])
    bench.print_table(rows, title=f"resnet and transformer, {args.probes} probes × 10 outputs, "
                                  f"{args.n_train} training images, depth {args.depth}")
    meta["loadavg_1m_end"] = bench.os.getloadavg()[0]
    meta["wall_s"] = time.perf_counter() - start
    bench.write_results("models", rows, meta, {"args": vars(args)})


if __name__ == "__main__":
    main()
