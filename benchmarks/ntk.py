"""The generic empirical NTK and the generic derivative correlations against the PyTorch NTK
tutorial's two methods, measured in the same run.

Setup: 32 standardized MNIST training images (1×28×28) as probes, 10 outputs, float32, CNN relu
NTK parameterization, (width, depth) from --cases (default 64×1, 32×2, 64×2), 1 thread.

Rows (`compare`, interleaved, median of --repeats):
  tutorial_jac    the tutorial's Jacobian contraction: vmap(jacrev(f_single)) on x1 and again on
                  x2 (= x1), one einsum per parameter tensor, stacked and summed
  tutorial_ntvp   the tutorial's NTK-vector products: vmap over pairs of single samples (x1_a, x2_b)
                  of vjp + k jvps (timed once: it takes minutes; --skip-ntvp leaves it out)
  ntk             wcntk.core.ntk.empirical_ntk(f, params, x) (method "auto"; which one it took is shown)
  ntk_ntvp        empirical_ntk(..., method="ntvp") (timed once, like tutorial_ntvp)
  jacobian        wcntk.core.ntk.per_sample_jacobian alone (the per-sample Jacobian contraction's
                  Jacobian, the unit the correlations are compared with)
  correlations    wcntk.core.correlations.derivative_correlations(f, params, x) (C02, C03, C11)

Also, on an MLP 784 → --mlp-width → 10 (erf): empirical_ntk (both methods) against the rank-one
mlp_ntk, max |Δ| / max |Θ| in float32 and float64.

    python benchmarks/ntk.py [--cases 64x1,32x2,64x2] [--repeats 3] [--skip-ntvp] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import _common as bench  # first: sets OMP_WAIT_POLICY before torch is imported
import torch
from torch.func import jacrev, jvp, vjp, vmap

from wcntk.core.correlations import derivative_correlations
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.models import build_model
from wcntk.core.ntk import choose_method, empirical_ntk, mlp_ntk, per_sample_jacobian, sample_cost
from wcntk.training.data import DataConfig, load_dataset


def tutorial_jacobian_contraction(f_single, params, x1, x2):
    jac1 = vmap(jacrev(f_single), (None, 0))(params, x1)
    jac1 = [j.flatten(2) for j in jac1.values()]
    jac2 = vmap(jacrev(f_single), (None, 0))(params, x2)
    jac2 = [j.flatten(2) for j in jac2.values()]
    return torch.stack([torch.einsum("Naf,Mbf->NMab", a, b) for a, b in zip(jac1, jac2, strict=True)]).sum(0)


def tutorial_ntk_vector_products(f_single, params, x1, x2):
    def get_ntk(xa, xb):
        out, vjp_fn = vjp(lambda p: f_single(p, xa), params)

        def column(vec):
            return jvp(lambda p: f_single(p, xb), (params,), vjp_fn(vec))[1]

        return vmap(column)(torch.eye(out.numel(), dtype=out.dtype).view(out.numel(), -1))

    return vmap(vmap(get_ntk, (None, 0)), (0, None))(x1, x2)


def probes(n: int) -> torch.Tensor:
    data = load_dataset(DataConfig(name="mnist", n_train=n, n_test=0), flatten=False, loss="mse", seed=0)
    return data.x_train


def cnn_row(width: int, depth: int, x: torch.Tensor, args) -> dict:
    model = build_model(ModelConfig(kind="cnn", width=width, depth=depth), tuple(x.shape[1:]), 10, seed=0)
    f, params = functional(model), params_of(model)

    def f_single(p, xa):
        return f(p, xa.unsqueeze(0)).squeeze(0)

    ours = empirical_ntk(f, params, x)
    ref = tutorial_jacobian_contraction(f_single, params, x, x).permute(0, 2, 1, 3)
    t = bench.compare({
        "tutorial_jac": lambda: tutorial_jacobian_contraction(f_single, params, x, x),
        "ntk": lambda: empirical_ntk(f, params, x),
        "jacobian": lambda: per_sample_jacobian(f, params, x, x.shape[0]),
        "correlations": lambda: derivative_correlations(f, params, x),
    }, warmup=1, repeats=args.repeats)
    s = {k: v["median_s"] for k, v in t.items()}
    row = {"width": width, "depth": depth, "params": sum(v.numel() for v in params.values()),
           "auto method": choose_method(sample_cost(f, params, x), len(x), len(x), True),
           "tutorial jac (s)": s["tutorial_jac"]}
    if not args.skip_ntvp:
        row["tutorial ntvp (s)"] = bench.time_once(
            lambda: tutorial_ntk_vector_products(f_single, params, x, x))
        row["ntk ntvp (s)"] = bench.time_once(lambda: empirical_ntk(f, params, x, method="ntvp"))
    best = min(s["tutorial_jac"], row.get("tutorial ntvp (s)", float("inf")))
    row.update({"empirical_ntk (s)": s["ntk"], "÷ best tutorial": s["ntk"] / best,
                "max |Δ| vs tutorial": float((ours - ref).abs().max()),
                "jacobian (s)": s["jacobian"], "correlations (s)": s["correlations"],
                "correlations ÷ jac. contraction": s["correlations"] / s["ntk"]})
    return row


def mlp_agreement(width: int, x: torch.Tensor) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.float64):
        model = build_model(ModelConfig(width=width, activation="erf"), (784,), 10, seed=0, dtype=dtype)
        f, params, xf = functional(model), params_of(model), x[:8].flatten(1).to(dtype)
        ref = mlp_ntk(model, xf)
        for method in ("jacobian", "ntvp"):
            got = empirical_ntk(f, params, xf, method=method)
            rows.append({"width": width, "dtype": str(dtype).replace("torch.", ""), "method": method,
                         "max |Δ| / max |Θ| vs mlp_ntk": float((got - ref).abs().max() / ref.abs().max())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="64x1,32x2,64x2", help="width x depth, comma-separated")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-ntvp", action="store_true")
    parser.add_argument("--mlp-width", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = bench.env_info()
    bench.print_env(meta)
    x = probes(args.probes)
    start = time.perf_counter()
    rows = []
    for case in args.cases.split(","):
        width, depth = (int(v) for v in case.split("x"))
        rows.append(cnn_row(width, depth, x, args))
        bench.print_table(rows[-1:])
    bench.print_table(rows, title=f"Generic NTK and correlations, CNN, {args.probes} probes × 10 outputs")
    mlp = mlp_agreement(args.mlp_width, x)
    bench.print_table(mlp, title="empirical_ntk vs mlp_ntk on an erf MLP (8 probes)")
    meta["loadavg_1m_end"] = bench.os.getloadavg()[0]
    meta["wall_s"] = time.perf_counter() - start
    bench.write_results("ntk", rows, meta, {"mlp_agreement": mlp, "args": vars(args)})


if __name__ == "__main__":
    main()
