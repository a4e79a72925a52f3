"""Exact all-parameter derivative correlations vs the reference's finite-difference approach.

Network: 1-hidden-layer MLP, 784 → width → 10, erf, NTK parameterization (seed 0), on the
first `--probes` (32) standardized MNIST training inputs (the trainer's probe set).

ours       wcntk.core.correlations_mlp.mlp_derivative_correlations in float32: C02, C03 and C11 of
           every (probe, output) pair over ALL parameters (the path Trainer.correlations takes).
generic    (--generic, widths <= --generic-max-width) wcntk.core.correlations.derivative_correlations,
           the model-agnostic nested-jvp path, float32, same quantities.
baseline   what the reference implementation does, written here (correctly: no aliasing):
           float32 central finite differences with step h = 1e-3 on a sampled coordinate set S:
           per layer (hidden and readout) 10 weight entries and 10 bias entries, so
           d = |S| = 2 layers × (10 + 10) = 40. The d×d second-derivative block of every
           (probe, output) is
               H_ii = (f(θ+h e_i) − 2 f(θ) + f(θ−h e_i)) / h²                    (2 passes each)
               H_ij = (f(θ+he_i+he_j) − f(θ+he_i−he_j) − f(θ−he_i+he_j) + f(θ−he_i−he_j)) / 4h²
           (4 passes per pair i<j): 1 + 2d + 4·d(d−1)/2 = 2d² + 1 = 3201 forward passes, each
           on the 32 probes batched; the sampled gradient (f(θ+he_i) − f(θ−he_i))/2h comes free.
           It yields only the sampled C02/C11 analogues (no C03), so the time ratio is conservative.

Time ratio: `speedup` = one full baseline run / median of ours; `speedup_interleaved` =
3201 × (median of one baseline pass: shift two entries, forward, restore) / median of ours, the
two measured interleaved in the same rounds, so a change of machine load between the long
baseline run and ours does not bias it. `ours_fwd_equiv` = ours / one plain forward on the probes.
`proposal` is a depth-1 specialisation of the closed form written here (factorized_depth1) to
measure what a library change would gain.

Errors, all against float64:
  ours      ‖ours − exact‖_F / ‖exact‖_F per quantity (C02, C03, C11 over probes × outputs), the
            exact value being the same closed form in float64 (and, with --generic, the float64
            generic autodiff path agreeing with it is printed as an independent check);
  baseline  the FD block vs the exact float64 Hessian block of the same sampled coordinates,
            computed by autodiff (forward-over-forward) of F(z) = f(θ₀ + Σ_i z_i e_i, x) written
            with the sampled coordinates as explicit inputs (checked against the real model),
            ‖H_fd − H_exact‖_F / ‖H_exact‖_F over probes × outputs × d × d; likewise for the
            sampled gradient and the sampled C02 analogue ½ g_Sᵀ H_SS g_S.

Target (issue 5): ours ≥ 300× faster than the baseline at width 4096, ours within 1e-5 relative.

    python benchmarks/correlations.py [--max-width] [--generic] [--widths 256,1024]
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse
import time

from _common import compare, env_info, measure, mnist_like, print_env, print_table, write_results

import torch
from torch import Tensor
from torch.func import functional_call, jacfwd, jvp

from wcntk.core.correlations import derivative_correlations
from wcntk.core.correlations_mlp import mlp_derivative_correlations
from wcntk.core.mlp import MLP
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.models import build_model

QUANTITIES = ("C02", "C03", "C11")

# Coordinates: (parameter name, flat index) for every sampled entry, in a fixed order.
Coords = list[tuple[str, int]]


def sample_coords(model: MLP, per_kind: int, seed: int) -> Coords:
    """`per_kind` weight entries and `per_kind` bias entries of every layer, without replacement."""
    gen = torch.Generator().manual_seed(seed)
    coords: Coords = []
    for name, p in model.named_parameters():
        idx = torch.randperm(p.numel(), generator=gen)[:per_kind]
        coords += [(name, int(i)) for i in idx]
    return coords


@torch.no_grad()
def fd_hessian_block(model: MLP, x: Tensor, coords: Coords, h: float) -> tuple[Tensor, Tensor, int]:
    """Float32 central differences on the sampled coordinates: (H [m, k, d, d], g [m, k, d],
    number of forward passes). Parameters are perturbed in place and restored exactly."""
    flat = {name: p.view(-1) for name, p in model.named_parameters()}
    orig = [flat[n][i].clone() for n, i in coords]
    passes = 0

    def f_at(*shifts: tuple[int, float]) -> Tensor:
        nonlocal passes
        for c, s in shifts:
            n, i = coords[c]
            flat[n][i] = orig[c] + s
        out = model(x)
        for c, _ in shifts:
            n, i = coords[c]
            flat[n][i] = orig[c]
        passes += 1
        return out

    d = len(coords)
    f0 = f_at()
    fp = [f_at((i, h)) for i in range(d)]
    fm = [f_at((i, -h)) for i in range(d)]
    H = torch.empty(*f0.shape, d, d, dtype=f0.dtype)
    for i in range(d):
        H[..., i, i] = (fp[i] - 2 * f0 + fm[i]) / h ** 2
        for j in range(i + 1, d):
            hij = (f_at((i, h), (j, h)) - f_at((i, h), (j, -h))
                   - f_at((i, -h), (j, h)) + f_at((i, -h), (j, -h))) / (4 * h * h)
            H[..., i, j] = H[..., j, i] = hij
    g = torch.stack([(fp[i] - fm[i]) / (2 * h) for i in range(d)], dim=-1)
    return H, g, passes


def fd_pass_fn(model: MLP, x: Tensor, coords: Coords, h: float):
    """One baseline pass as fd_hessian_block does it: shift two entries, forward, restore."""
    flat = {name: p.view(-1) for name, p in model.named_parameters()}
    (n0, i0), (n1, i1) = coords[0], coords[-1]

    @torch.no_grad()
    def run():
        o0, o1 = flat[n0][i0].clone(), flat[n1][i1].clone()
        flat[n0][i0], flat[n1][i1] = o0 + h, o1 - h
        model(x)
        flat[n0][i0], flat[n1][i1] = o0, o1
    return run


def reduced_function(model: MLP, x: Tensor, coords: Coords):
    """F(z) = f(θ₀ + Σ_i z_i e_{coords[i]}, x) with z an explicit [d] input and θ₀ = the
    model's parameters: per layer h = c_w (a Wᵀ + Σ_{i∈W} z_i a[:, col_i] e_{row_i})
    + c_b (b + Σ_{i∈b} z_i e_{row_i}). Cheap to differentiate in z to any order."""
    params = dict(model.named_parameters())
    names = [f"hidden.{i}" for i in range(len(model.hidden))] + ["readout"]
    layers = []
    for name, mod in zip(names, [*model.hidden, model.readout], strict=False):
        W, b = params[f"{name}.weight"].detach(), params[f"{name}.bias"].detach()
        wsel = [(c, i) for c, (n, i) in enumerate(coords) if n == f"{name}.weight"]
        bsel = [(c, i) for c, (n, i) in enumerate(coords) if n == f"{name}.bias"]
        out_dim, in_dim = W.shape
        eye = torch.eye(out_dim, dtype=W.dtype)
        layers.append(dict(
            W=W, b=b, c_w=mod.c_w, c_b=mod.c_b,
            wz=torch.tensor([c for c, _ in wsel], dtype=torch.long),
            wrow=eye[[i // in_dim for _, i in wsel]], wcol=torch.tensor([i % in_dim for _, i in wsel]),
            bz=torch.tensor([c for c, _ in bsel], dtype=torch.long), brow=eye[[i for _, i in bsel]]))

    def F(z: Tensor) -> Tensor:
        a = x
        for idx, L in enumerate(layers):
            hw = a @ L["W"].T + (a[:, L["wcol"]] * z[L["wz"]]) @ L["wrow"]
            hb = L["b"] + z[L["bz"]] @ L["brow"]
            h = L["c_w"] * hw + L["c_b"] * hb
            a = h if idx == len(layers) - 1 else model.act(h)
        return a

    return F


def exact_block(F, d: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(H [m, k, d, d], g [m, k, d]) of F at z = 0 by forward-over-forward autodiff."""
    z0 = torch.zeros(d, dtype=dtype)
    eye = torch.eye(d, dtype=dtype)
    g = jacfwd(F)(z0)                                            # [m, k, d]
    cols = []
    for j in range(d):                                           # one column at a time: small memory
        def dF_j(z, j=j):
            return jvp(F, (z,), (eye[j],))[1]
        cols.append(jacfwd(dF_j)(z0))                            # [m, k, d]  (∂_i ∂_j F)
    return torch.stack(cols, dim=-1), g


def check_reduced(model64: MLP, x64: Tensor, coords: Coords, F) -> float:
    """max |F(z) − f(θ₀ + z)| over a random z: the reduced function is the network."""
    z = 0.1 * torch.randn(len(coords), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = {k: v.detach().clone() for k, v in model64.named_parameters()}
    for (n, i), zi in zip(coords, z, strict=False):
        params[n].view(-1)[i] += zi
    with torch.no_grad():
        return float((F(z) - functional_call(model64, params, (x64,))).abs().max())


def _act_derivs(act, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(σ, σ', σ'', σ''') at h, elementwise, by nested forward-mode autodiff."""
    ones = torch.ones_like(h)
    d1 = lambda u: jvp(act, (u,), (ones,))[1]           # noqa: E731
    d2 = lambda u: jvp(d1, (u,), (ones,))[1]            # noqa: E731
    return (act(h), d1(h), *jvp(d2, (h,), (ones,)))


def factorized_depth1(model: MLP, x: Tensor, lr: float = 1.0) -> dict[str, Tensor]:
    """PROPOSAL, not in the library: the closed form of correlations_mlp for depth 1 with the
    (probe, output) structure factored out. For one hidden layer every per-pair vector is
    (function of the probe) ⊙ (power of q_o = c₂ W₂[o]), e.g. δ[a,o] = σ'(h_a) ⊙ q_o, so every
    sum over hidden units is a [m, n] @ [n, k] matmul and nothing of size pairs × width is
    formed. With s_a = c₁²‖x_a‖² + c_b1² (σ^(i) at h_a):
        D²φ      = s² (σ''σ'²) q³ + 2 c₂² s (σσ'²) q
        D³φ      = s³ (σ'''σ'³) q⁴ + 3 c₂² s² (σσ''σ'²) q²
        ‖∇²φ g‖² = s [s² (σ''²σ'²) q⁴ + 2 s c₂² (σσ''σ'²) q² + c₂⁴ Σσ²σ'²] + c₂² s² (σ'⁴) q²
    (a product "(A) qʲ" meaning Σ_i A[a,i] q_o,i^j)."""
    layer1, readout = model.hidden[0], model.readout
    W1, b1, W2 = layer1.weight.detach(), layer1.bias.detach(), readout.weight.detach()
    c1, cb1, c2 = layer1.c_w, layer1.c_b, readout.c_w
    x = x.flatten(1)
    s0, s1, s2, s3 = _act_derivs(model.act, c1 * (x @ W1.T) + cb1 * b1)
    s = (c1 ** 2 * x.pow(2).sum(-1) + cb1 ** 2)[:, None]
    q = c2 * W2
    q2 = q * q
    q3, q4 = q2 * q, q2 * q2
    s1sq = s1 * s1
    a22 = s2 * s1sq                                           # σ''σ'²
    m_a22q2 = (s0 * a22) @ q2.T                               # Σ σσ''σ'² q²
    second = s ** 2 * (a22 @ q3.T) + 2 * c2 ** 2 * s * ((s0 * s1sq) @ q.T)
    third = s ** 3 * ((s3 * s1sq * s1) @ q4.T) + 3 * c2 ** 2 * s ** 2 * m_a22q2
    hess_sq = (s * (s ** 2 * ((a22 * s2) @ q4.T) + 2 * s * c2 ** 2 * m_a22q2
                    + c2 ** 4 * (s1sq * s0 * s0).sum(-1, keepdim=True))
               + c2 ** 2 * s ** 2 * ((s1sq * s1sq) @ q2.T))
    return {"C02": lr ** 2 / 2 * second, "C03": lr ** 3 / 6 * third, "C11": lr ** 1.5 * hess_sq.sqrt()}


def rel(a: Tensor, b: Tensor) -> float:
    """‖a − b‖_F / ‖b‖_F in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="256,1024,4096")
    ap.add_argument("--max-width", action="store_true", help="also width 16384")
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--per-kind", type=int, default=10, help="sampled weights (and biases) per layer")
    ap.add_argument("--h", type=float, default=1e-3, help="finite-difference step")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds of ours")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="timed runs of the baseline")
    ap.add_argument("--generic", action="store_true", help="also time the generic jvp path")
    ap.add_argument("--generic-max-width", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--out", default=None, help="results name (default correlations_t<threads>)")
    args = ap.parse_args()

    widths = [int(w) for w in args.widths.split(",")] + ([16384] if args.max_width else [])
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out = args.out or f"correlations_t{torch.get_num_threads()}"
    info = env_info()
    print_env(info)
    x, _, source = mnist_like(max(args.probes, 256), seed=args.seed)
    x = x[:args.probes].contiguous()
    x64 = x.double()
    print(f"probes: {args.probes} inputs from {source}; erf, ntk, depth 1, 784 → width → 10")

    rows: list[dict] = []
    for width in widths:
        cfg = ModelConfig(width=width, depth=1, activation="erf", parameterization="ntk")
        model = build_model(cfg, (784,), 10, seed=args.seed, dtype=torch.float32)
        model64 = build_model(cfg, (784,), 10, seed=args.seed, dtype=torch.float64)
        row: dict = {"width": width, "n_params": sum(p.numel() for p in model.parameters())}

        # ours (float32), and its float64 reference
        ours = mlp_derivative_correlations(model, x)
        exact = mlp_derivative_correlations(model64, x64)
        for q in QUANTITIES:
            row[f"ours_relerr_{q}"] = rel(ours[q], exact[q])
        row["ours_relerr"] = max(row[f"ours_relerr_{q}"] for q in QUANTITIES)
        # proposal: depth-1 factorized closed form; ours, the proposal, a plain forward and one
        # baseline FD pass (perturb two entries, forward, restore) measured interleaved
        prop = factorized_depth1(model, x)
        row["proposal_relerr"] = max(rel(prop[q], exact[q]) for q in QUANTITIES)
        coords = sample_coords(model, args.per_kind, seed=args.seed + 100)
        t = compare({"ours": lambda model=model: mlp_derivative_correlations(model, x),
                     "proposal": lambda model=model: factorized_depth1(model, x),
                     "forward": lambda model=model: model(x).detach(),
                     "fd_pass": fd_pass_fn(model, x, coords, args.h)},
                    warmup=1, repeats=args.repeats, min_round_s=0.02)
        row["ours_s"] = t["ours"]["median_s"]
        row["ours_fwd_equiv"] = t["ours"]["median_s"] / t["forward"]["median_s"]
        row["fd_pass_s"] = t["fd_pass"]["median_s"]
        row["proposal_s"] = t["proposal"]["median_s"]
        row["ours_over_proposal"] = t["ours"]["median_s"] / t["proposal"]["median_s"]

        if args.generic and width <= args.generic_max_width:
            f32, p32 = functional(model), params_of(model)
            t_gen = measure(lambda f32=f32, p32=p32: derivative_correlations(f32, p32, x), warmup=0,
                            repeats=1)
            gen = derivative_correlations(f32, p32, x)
            row["generic_s"] = t_gen["median_s"]
            row["generic_over_ours"] = t_gen["median_s"] / row["ours_s"]
            row["generic_relerr"] = max(rel(gen[q], exact[q]) for q in QUANTITIES)
            if width == min(widths):   # independent float64 check of the closed form
                gen64 = derivative_correlations(functional(model64), params_of(model64), x64)
                row["closed_form_vs_autodiff64"] = max(rel(exact[q], gen64[q]) for q in QUANTITIES)

        # baseline: float32 FD Hessian block on the sampled coordinates
        d = len(coords)
        t_fd = []
        for _ in range(args.baseline_repeats):
            start = time.perf_counter()
            H_fd, g_fd, passes = fd_hessian_block(model, x, coords, args.h)
            t_fd.append(time.perf_counter() - start)
        t_base = sorted(t_fd)[len(t_fd) // 2]
        F = reduced_function(model64, x64, coords)
        row["reduced_fn_check"] = check_reduced(model64, x64, coords, F)
        H_ex, g_ex = exact_block(F, d, torch.float64)
        c02_fd = 0.5 * torch.einsum("aki,akij,akj->ak", g_fd.double(), H_fd.double(), g_fd.double())
        c02_ex = 0.5 * torch.einsum("aki,akij,akj->ak", g_ex, H_ex, g_ex)
        row.update(d=d, fd_passes=passes, baseline_s=t_base,
                   speedup=t_base / row["ours_s"],
                   speedup_interleaved=passes * row["fd_pass_s"] / row["ours_s"],
                   baseline_H_relerr=rel(H_fd, H_ex), baseline_g_relerr=rel(g_fd, g_ex),
                   baseline_C02S_relerr=rel(c02_fd, c02_ex),
                   proposal_speedup=t_base / row["proposal_s"],
                   H_exact_rms=float(H_ex.pow(2).mean().sqrt()),
                   H_exact_nonzero_frac=float((H_ex != 0).double().mean()))
        rows.append(row)
        print(f"width {width}: ours {row['ours_s']*1e3:.1f} ms, baseline {t_base:.2f} s "
              f"({passes} passes), speedup {row['speedup']:.0f}x "
              f"(interleaved {row['speedup_interleaved']:.0f}x), ours relerr {row['ours_relerr']:.1e}, "
              f"baseline H relerr {row['baseline_H_relerr']:.2g}", flush=True)

    cols = ["width", "n_params", "ours_s", "baseline_s", "speedup", "speedup_interleaved", "ours_relerr",
            "baseline_H_relerr",
            "baseline_g_relerr", "baseline_C02S_relerr"]
    print_table(rows, ["width", "ours_s", "ours_fwd_equiv", "fd_pass_s", "proposal_s", "ours_over_proposal",
                       "proposal_speedup", "proposal_relerr"],
                title="Where ours stands: its time in forward passes on the probes; the depth-1 factorized "
                      "closed form (proposal, not in the library) interleaved with it")
    if any("generic_s" in r for r in rows):
        cols += ["generic_s", "generic_over_ours", "generic_relerr"]
    print_table(rows, cols, title=f"Exact all-parameter C02+C03+C11 ({args.probes} probes) vs "
                                  f"FD {d}×{d} sampled Hessian block (2d²+1 = {2*d*d+1} passes), float32")
    print_table([{"width": r["width"], **{f"relerr_{q}": r[f"ours_relerr_{q}"] for q in QUANTITIES},
                  "reduced_fn_check": r["reduced_fn_check"], "H_exact_rms": r["H_exact_rms"],
                  "H_nonzero_frac": r["H_exact_nonzero_frac"],
                  "closed_form_vs_autodiff64": r.get("closed_form_vs_autodiff64")} for r in rows],
                title="Errors vs float64 (ours per quantity; reduced-function check = max |F(z) − f(θ₀+z)|)")
    at = {r["width"]: r for r in rows}
    if 4096 in at:
        r = at[4096]
        print(f"\ntarget speedup >= 300x at 4096: {r['speedup']:.0f}x (interleaved estimate "
              f"{r['speedup_interleaved']:.0f}x) -> {'MET' if r['speedup'] >= 300 else 'MISSED'}")
    worst = max(r["ours_relerr"] for r in rows)
    print(f"target ours within 1e-5 relative of float64: worst {worst:.1e} -> "
          f"{'MET' if worst <= 1e-5 else 'MISSED'}")
    write_results(args.out, rows, info, {"args": vars(args), "coords_per_width": d})


if __name__ == "__main__":
    main()
