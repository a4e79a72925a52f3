"""One full-batch GD step of the network, of its linearized twin, and of both (Trainer.step),
against the matmul floor, plus variants measured in the same run.

Setup: the default run's data (256 standardized MNIST training inputs, 784 → 10, MSE on one-hot
targets), MLP relu NTK parameterization, depth 1 (--depths 1,3 for depth 3 too), widths
256, 1024, 4096 (--max-width adds 16384), float32, lr 1 (the Trainer's defaults).

Floor. With N samples and layer l mapping in_l → out_l (784 → n → … → n → 10):
    forward                 2·N·Σ_l in_l·out_l
    backward, weight grads  2·N·Σ_l in_l·out_l
    backward, input grads   2·N·Σ_{l≥2} in_l·out_l   (none for layer 1: x needs no gradient)
    step FLOPs = 2·N·(2·Σ_l in_l·out_l + Σ_{l≥2} in_l·out_l)       (elementwise work not counted)
floor = step FLOPs / (FLOP/s of a large float32 torch.mm, 2048², measured in this run at the
same thread count). "% of floor" = floor / measured time (100 % = the step runs at large-mm speed).
"mm only" is the step's own matmuls (same shapes, same transposes) run back to back: what the
step would cost with zero overhead at the GEMM efficiency these shapes get.

Rows (each with its own copy of the parameters and its own optimizer, all measured interleaved):
  net            the Trainer's network step: zero_grad(set_to_none) + mse(model(x), y).backward()
                 + SGD.step, the model as in wcntk (weight * c_w every forward)
  net_outscale   same, layer as c_w·(a Wᵀ) + c_b·b (scalar folded into the matmul output)
  net_addmm      same, layer as addmm(b, a, Wᵀ, beta=c_b, alpha=c_w) (scalar inside the GEMM)
  net_foreach    net_addmm with the update as one torch._foreach_add_ (no optimizer object)
  net_compiled   torch.compile(model) (plain network only, never jvp code) + SGD.step
  twin           the Trainer's twin step for a fixed batch: Trainer.linearized_at(x)(params) +
                 backward + SGD.step (since 6d261b6 the hand-written wcntk.core.linearization.linearized_mlp)
  twin_linearize the traced path: LinearizedModel.cached(x)(params) (wcntk.core.linearize_trace)
  twin_jvp       the twin through torch.func.jvp per call (LinearizedModel.__call__)
  twin_manual    hand-written linearized MLP, trained in Δ = θ − θ₀ coordinates with cached primal
                 activations: ḣ_l = c_w(ΔW_l a_{l-1} + W⁰_l ȧ_{l-1}) + c_b Δb_l, ȧ_l = σ'(h_l)·ḣ_l,
                 f_lin = f(θ₀) + ḣ_{L+1}; addmm for the scalars, foreach update
  both           Trainer.step() (network + twin) of a steps=0 Trainer: the twin in parameter space
  both_function  Trainer.step() with twin_space=function (wcntk.training.function_space; Θ₀ built
                 before the timing): its floor counts Θ₀·vec(R), 2·(N·k)² FLOPs, for the twin
  both_proposed  net_foreach + twin_manual
Threads: every row at torch's default thread count, then every row again at 1 thread (each
block interleaved within itself; the floor is measured at the same thread count).

--networks (instead of the tables above): every network's net + twin step against its own plain
training step (issue 31's target: ≤ 2.0× each), full batch of --samples inputs of --dataset
(digits by default, as issue 31 measured), float32, --network-threads threads (1 by default), each
network's rows interleaved:
  plain          the network's own step, as the Trainer does it for the network alone:
                 zero_grad(set_to_none) + loss(model(x), y).backward() + optimizer.step
  twin           the parameter-space twin's step alone (Trainer.twin_train + backward + step): the
                 MLP's hand-written twin, the others' trace (wcntk.core.linearize_trace)
  both           Trainer.step() (network + twin) of a 1000-step run: twin_space=auto, i.e. the
                 function-space twin (wcntk.training.function_space) where auto picks it; its Θ₀
                 on the training set is timed once (kernel_s) and not in the step
  parameter      Trainer.step() with twin_space=parameter (the twin on its own parameters)
Each round times --burst (3) back-to-back calls of each row (a training loop's steps follow one
another; a single call between other rows' calls finds the caches and the allocator's free
blocks taken by them). Ratios are the median (and quartiles) over rounds of each round's own
ratio to its plain step, so that load drifting between rounds cancels. A network is
NETWORK:WIDTH (depth 1, the run's defaults otherwise).

    python benchmarks/train_step.py [--max-width] [--depths 1,3] [--no-compile]
    python benchmarks/train_step.py --networks [mlp:1024,cnn:64,resnet:64,transformer:64] [--profile]
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

from _common import (compare, env_info, function_twin_step_flops, matmul_gflops, mlp_dims, net_step_flops,
                     print_env, print_table, time_once, twin_step_flops, write_results)

import torch
from torch import Tensor, nn

from wcntk.training.data import DataConfig
from wcntk.core.linearization import LinearizedModel
from wcntk.core.losses import mse
from wcntk.core.mlp import MLP
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer


def layers_of(model: MLP):
    return [*model.hidden, model.readout]


# ----------------------------------------------------------------------------- network variants
def forward_outscale(model: MLP, x: Tensor) -> Tensor:
    a, layers = x, layers_of(model)
    for i, lay in enumerate(layers):
        h = lay.c_w * (a @ lay.weight.T) + lay.c_b * lay.bias
        a = h if i == len(layers) - 1 else model.act(h)
    return a


def forward_addmm(model: MLP, x: Tensor) -> Tensor:
    a, layers = x, layers_of(model)
    for i, lay in enumerate(layers):
        h = torch.addmm(lay.bias, a, lay.weight.T, beta=lay.c_b, alpha=lay.c_w)
        a = h if i == len(layers) - 1 else model.act(h)
    return a


def sgd_step_fn(model: nn.Module, fwd: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, lr: float):
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        mse(fwd(x), y).backward()
        opt.step()
    return step


def foreach_step_fn(params: list[Tensor], loss: Callable[[], Tensor], lr: float):
    def step():
        for p in params:
            p.grad = None
        loss().backward()
        with torch.no_grad():
            torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)
    return step


# ----------------------------------------------------------------------------- hand-written twin
class ManualTwin:
    """f_lin(θ₀ + Δ) for a fixed batch x, trained in Δ coordinates (Δ starts at 0)."""

    def __init__(self, model: MLP, x: Tensor):
        self.layers = layers_of(model)
        self.act = model.act
        a, self.inputs, self.dsig, self.w0s = x, [], [], []
        with torch.no_grad():
            for i, lay in enumerate(self.layers):
                self.inputs.append(a)
                self.w0s.append((lay.c_w * lay.weight).detach().clone())    # c_w·W⁰, constant
                h = torch.addmm(lay.bias, a, lay.weight.T, beta=lay.c_b, alpha=lay.c_w)
                if i < len(self.layers) - 1:
                    ones = torch.ones_like(h)
                    out, d = torch.func.jvp(self.act, (h,), (ones,))
                    self.dsig.append(d)
                    a = out
                else:
                    self.f0 = h.detach().clone()
        self.deltas = [torch.zeros_like(t, requires_grad=True) for lay in self.layers
                       for t in (lay.weight.detach(), lay.bias.detach())]

    def __call__(self, deltas: list[Tensor]) -> Tensor:
        a_dot = None
        for i, lay in enumerate(self.layers):
            dW, db = deltas[2 * i], deltas[2 * i + 1]
            h_dot = torch.addmm(db, self.inputs[i], dW.T, beta=lay.c_b, alpha=lay.c_w)
            if a_dot is not None:
                h_dot = torch.addmm(h_dot, a_dot, self.w0s[i].T)
            if i < len(self.layers) - 1:
                a_dot = self.dsig[i] * h_dot
        return self.f0 + h_dot


def matmul_only_fn(model: MLP, x: Tensor) -> Callable[[], None]:
    """The step's matmuls with their shapes: forward a Wᵀ, weight grad gᵀ a, input grad g W."""
    dims = mlp_dims(model)
    N = x.shape[0]
    acts = [x] + [torch.randn(N, o) for _, o in dims[:-1]]
    gouts = [torch.randn(N, o) for _, o in dims]
    Ws = [layer.weight.detach() for layer in layers_of(model)]

    def run():
        for i, (a, g, W) in enumerate(zip(acts, gouts, Ws, strict=False)):
            a @ W.T
            g.T @ a
            if i > 0:
                g @ W
    return run


def twin_errors(trainer: Trainer, x: Tensor) -> dict[str, float]:
    """‖tangent − float64 tangent‖_F / ‖float64 tangent‖_F at θ₀ + Δ, Δ ~ 1e-2·N(0, 1), for the
    Trainer's, the linearize, the jvp and the hand-written twins (float32), tangent = f_lin − f(θ₀)
    each in its own precision. (With ReLU a pre-activation within float32 rounding of 0 can take
    the other σ' than in float64: one such unit moves max-norm errors to ~1e-2 at large widths,
    for every implementation alike; the Frobenius norm keeps it in proportion.)"""
    model = trainer.model
    gen = torch.Generator().manual_seed(3)
    p0 = params_of(model)
    delta = {k: 1e-2 * torch.randn(v.shape, generator=gen) for k, v in p0.items()}
    model64 = copy.deepcopy(model).double()
    lin64 = LinearizedModel(functional(model64), {k: v.double() for k, v in p0.items()})
    with torch.no_grad():
        tangent64 = lin64({k: p0[k].double() + delta[k].double() for k in p0},
                          x.double()) - model64(x.double())
        f0 = model(x)
    lin = LinearizedModel(functional(model), p0)
    p1 = {k: p0[k] + delta[k] for k in p0}
    manual = ManualTwin(model, x)
    with torch.no_grad():
        trainer_twin = trainer.linearized_at(x) if hasattr(trainer, "linearized_at") else lin.cached(x)
        outs = {"trainer": trainer_twin(p1), "linearize": lin.cached(x)(p1), "jvp": lin(p1, x),
                "manual": manual(list(delta.values()))}
    return {f"twin_err_{k}": float(((v - f0).double() - tangent64).norm() / tangent64.norm())
            for k, v in outs.items()}


def bench_width(width: int, depth: int, args, thread_counts: list[int], gflops: dict[int,
                                                                                     float]) -> list[dict]:
    default_threads = torch.get_num_threads()
    data_cfg = DataConfig(name="mnist", n_train=args.samples, n_test=0)
    train_cfg = TrainConfig(steps=0, device="cpu", progress=False, seed=0)
    model_cfg = ModelConfig(width=width, depth=depth, activation=args.activation)
    trainer = Trainer(model_cfg, data_cfg, OptimizerConfig(), train_cfg)
    x, y, lr = trainer.data.x_train, trainer.data.y_train, trainer.lr
    dims = mlp_dims(trainer.model)
    errors = twin_errors(trainer, x)                    # at θ₀, before any step
    fresh = lambda: copy.deepcopy(trainer.model)        # noqa: E731 - own parameters per row

    # Trainer internals, exactly as Trainer.step does them
    net_model = fresh()
    net_opt = torch.optim.SGD(net_model.parameters(), lr=lr)

    def net_step():
        net_opt.zero_grad(set_to_none=True)
        mse(net_model(x), y).backward()
        net_opt.step()

    twin = LinearizedModel(functional(fresh()), params_of(trainer.model))
    tp_t, tp_c, tp_j = ({k: v.clone().requires_grad_(True) for k, v in trainer.params0.items()}
                        for _ in range(3))
    opt_t, opt_c, opt_j = (torch.optim.SGD(p.values(), lr=lr) for p in (tp_t, tp_c, tp_j))
    t0 = time.perf_counter()
    twin_fn = twin.cached(x)
    linearize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer_twin_fn = trainer.linearized_at(x) if hasattr(trainer, "linearized_at") else trainer.twin_train
    trainer_twin_setup_s = time.perf_counter() - t0

    def twin_step():            # whatever the Trainer uses for a fixed full batch
        opt_t.zero_grad(set_to_none=True)
        mse(trainer_twin_fn(tp_t), y).backward()
        opt_t.step()

    def twin_cached_step():
        opt_c.zero_grad(set_to_none=True)
        mse(twin_fn(tp_c), y).backward()
        opt_c.step()

    def twin_jvp_step():
        opt_j.zero_grad(set_to_none=True)
        mse(twin(tp_j, x), y).backward()
        opt_j.step()

    m_out, m_addmm, m_fe = fresh(), fresh(), fresh()
    manual = ManualTwin(trainer.model, x)
    fe_params = list(m_fe.parameters())
    net_foreach = foreach_step_fn(fe_params, lambda: mse(forward_addmm(m_fe, x), y), lr)
    twin_manual = foreach_step_fn(manual.deltas, lambda: mse(manual(manual.deltas), y), lr)

    fns: dict[str, Callable[[], None]] = {
        "net": net_step,
        "net_outscale": sgd_step_fn(m_out, lambda a: forward_outscale(m_out, a), x, y, lr),
        "net_addmm": sgd_step_fn(m_addmm, lambda a: forward_addmm(m_addmm, a), x, y, lr),
        "net_foreach": net_foreach,
    }
    compile_s = None
    if args.compile:
        m_c = fresh()
        compiled = torch.compile(m_c, dynamic=False)
        fns["net_compiled"] = sgd_step_fn(m_c, compiled, x, y, lr)
        t0 = time.perf_counter()
        fns["net_compiled"]()                               # compile outside the timing
        compile_s = time.perf_counter() - t0
    function = Trainer(model_cfg, data_cfg, OptimizerConfig(),
                       TrainConfig(steps=1000, device="cpu", progress=False, seed=0, twin_space="function"))
    function.function_twin.prepare()                   # Θ₀ once, outside the timing
    fns.update({
        "twin": twin_step,
        "twin_linearize": twin_cached_step,
        "twin_jvp": twin_jvp_step,
        "twin_manual": twin_manual,
        "both": trainer.step,
        "both_function": function.step,
        "both_proposed": lambda: (net_foreach(), twin_manual()),
        "mm_only": matmul_only_fn(trainer.model, x),
    })
    rows = []
    flops_net, flops_twin = net_step_flops(len(x), dims), twin_step_flops(len(x), dims)
    flops_function = function_twin_step_flops(len(x), dims)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        times = compare(fns, warmup=args.warmup, repeats=args.repeats)
        floor_s = flops_net / (gflops[threads] * 1e9)
        for name, t in times.items():
            flops = (flops_net + flops_function if name == "both_function" else
                     {"twin": flops_twin, "both": flops_net + flops_twin}.get(name.split("_")[0], flops_net))
            rows.append({"width": width, "depth": depth, "variant": name, "threads": threads,
                         "ms": t["median_s"] * 1e3, "spread": t["spread"],
                         "pct_of_floor": 100 * floor_s / t["median_s"] if name != "mm_only" else None,
                         "vs_net": t["median_s"] / times["net"]["median_s"],
                         "gflops": flops / t["median_s"] / 1e9,
                         "floor_ms": floor_s * 1e3, "step_gflop": flops_net / 1e9})
    torch.set_num_threads(default_threads)
    extra = {"linearize_s": linearize_s, "trainer_twin_setup_s": trainer_twin_setup_s,
             "compile_s": compile_s, **errors}
    for r in rows:
        r.update(extra)
    return rows


# ----------------------------------------------------------------------------- --networks
NETWORKS = "mlp:1024,cnn:64,resnet:64,transformer:64"


GEMM_CONV = {"aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution_backward"}


def profile_steps(kind: str, width: int, fns: dict[str, Callable[[], None]], steps: int = 5) -> list[dict]:
    """torch.profiler's self CPU time per step, split into the GEMM/conv kernels (GEMM_CONV) and
    everything else, with the GEMM/conv call count: what the twin does beyond the network."""
    from torch.profiler import ProfilerActivity, profile
    rows = []
    for name, fn in fns.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                fn()
        events = prof.key_averages()
        gemm = [e for e in events if e.key in GEMM_CONV]
        total_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
        gemm_ms = sum(e.self_cpu_time_total for e in gemm) / 1e3 / steps
        rows.append({"network": kind, "width": width, "step": name, "profiled_ms": total_ms,
                     "gemm_conv_ms": gemm_ms, "other_ms": total_ms - gemm_ms,
                     "gemm_conv_calls": sum(e.count for e in gemm) // steps,
                     "calls": {e.key: e.count // steps for e in gemm}})
    return rows


profile_rows: list[dict] = []


def bench_network(kind: str, width: int, args) -> dict:
    def make(space: str) -> Trainer:
        return Trainer(ModelConfig(kind=kind, width=width),
                       DataConfig(name=args.dataset, n_train=args.samples, n_test=0), OptimizerConfig(),
                       TrainConfig(steps=1000, device="cpu", progress=False, seed=0, twin_space=space))

    trainer, param = make("auto"), make("parameter")
    x, y = trainer.data.x_train, trainer.data.y_train
    model = copy.deepcopy(trainer.model)
    opt = torch.optim.SGD(model.parameters(), lr=trainer.lr)
    twin_params = {k: v.clone().requires_grad_(True) for k, v in trainer.params0.items()}
    twin_opt = torch.optim.SGD(twin_params.values(), lr=trainer.lr)

    def plain():
        opt.zero_grad(set_to_none=True)
        trainer.loss_fn(model(x), y).backward()
        opt.step()

    def twin():
        twin_opt.zero_grad(set_to_none=True)
        trainer.loss_fn(param.twin_train(twin_params), y).backward()
        twin_opt.step()

    kernel_s = None
    if trainer.function_twin is not None:
        kernel_s = time_once(trainer.function_twin.prepare)
    fns = {"plain": plain, "twin": twin, "both": trainer.step, "both_parameter": param.step}
    for _ in range(max(args.warmup, 4)):    # the twins' traces are built at their third call
        for fn in fns.values():
            fn()
    rounds: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):            # interleaved: `burst` back-to-back calls of each per round
        for k, fn in fns.items():
            rounds[k].append(time_once(lambda fn=fn: [fn() for _ in range(args.burst)]) / args.burst)

    def ratio(k: str) -> list[float]:        # per round, against that round's plain step
        return sorted(t / p for t, p in zip(rounds[k], rounds["plain"], strict=True))

    def iqr(k: str) -> str:
        r = ratio(k)
        return f"{r[len(r) // 4]:.2f}-{r[(3 * len(r)) // 4]:.2f}"

    ms = {k: statistics.median(v) * 1e3 for k, v in rounds.items()}
    if args.profile:
        profile_rows.extend(profile_steps(kind, width, {"plain": plain, "twin": twin}))
    return {"network": kind, "width": width, "params": trainer.n_params, "twin_path": trainer.impl.name,
            "twin_space": trainer.twin_space, "kernel_s": kernel_s,
            "plain_ms": ms["plain"], "twin_ms": ms["twin"], "both_ms": ms["both"],
            "both/plain": statistics.median(ratio("both")), "both/plain_iqr": iqr("both"),
            "parameter_ms": ms["both_parameter"],
            "parameter/plain": statistics.median(ratio("both_parameter")),
            "parameter/plain_iqr": iqr("both_parameter")}


def networks_table(args) -> None:
    torch.set_num_threads(args.network_threads)
    info = env_info()
    print_env(info)
    rows = []
    for spec in args.networks.split(","):
        kind, width = spec.split(":")
        rows.append(bench_network(kind, int(width), args))
        print(f"{spec}: both/plain {rows[-1]['both/plain']:.2f}", flush=True)
    info["loadavg_1m_end"] = os.getloadavg()[0]
    load = f"load {info.get('loadavg_1m', float('nan')):.2f} -> {info['loadavg_1m_end']:.2f}"
    print_table(rows, title=f"net + twin step vs the network's own step ({args.dataset}, {args.samples} "
                            f"inputs, {args.network_threads} thread(s), median of {args.repeats} interleaved "
                            f"rounds; ratios: median and quartiles of the rounds' own ratios; {load})")
    if profile_rows:
        print_table([{k: v for k, v in r.items() if k != "calls"} for r in profile_rows],
                    title=f"torch.profiler, self CPU ms per step (GEMM/conv: {', '.join(sorted(GEMM_CONV))})")
    for r in rows:
        print(f"{r['network']} w{r['width']}: net + twin <= 2.0x its plain step: {r['both/plain']:.2f} -> "
              f"{'MET' if r['both/plain'] <= 2.0 else 'MISSED'}")
    write_results(args.out + "_networks", rows, info, {"args": vars(args), "profile": profile_rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="256,1024,4096")
    ap.add_argument("--max-width", action="store_true", help="also width 16384")
    ap.add_argument("--depths", default="1")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--repeats", type=int, default=None, help="7 (--networks: 15)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--mm-size", type=int, default=2048)
    ap.add_argument("--default-threads-only", action="store_true", help="skip the 1-thread block")
    ap.add_argument("--out", default="train_step")
    ap.add_argument("--networks", nargs="?", const=NETWORKS, default=None, metavar="NET:WIDTH,...",
                    help=f"only the networks table (default {NETWORKS})")
    ap.add_argument("--dataset", default="digits", help="--networks: the data set")
    ap.add_argument("--network-threads", type=int, default=1, help="--networks: torch threads")
    ap.add_argument("--burst", type=int, default=3,
                    help="--networks: back-to-back calls per round (as a training loop makes them)")
    ap.add_argument("--profile", action="store_true",
                    help="--networks: also profile the plain and the twin step (GEMM/conv time vs the rest)")
    args = ap.parse_args()
    args.repeats = args.repeats or (15 if args.networks else 7)
    if args.networks:
        networks_table(args)
        return
    widths = [int(w) for w in args.widths.split(",")] + ([16384] if args.max_width else [])
    depths = [int(d) for d in args.depths.split(",")]
    default_threads = torch.get_num_threads()
    info = env_info()
    print_env(info)

    one = default_threads != 1 and not args.default_threads_only
    thread_counts = [default_threads] + ([1] if one else [])

    def floor_gflops() -> dict[int, float]:
        g = {}
        for n in thread_counts:
            torch.set_num_threads(n)
            g[n] = matmul_gflops(args.mm_size)["gflops"]
        torch.set_num_threads(default_threads)
        return g

    rows: list[dict] = []
    mm_runs = []
    for depth in depths:
        for width in widths:
            gflops = floor_gflops()              # re-measured per width: the load drifts
            mm_runs.append({"width": width, "depth": depth, **{f"mm_gflops_{k}t": v for k,
                                                               v in gflops.items()}})
            print(f"depth {depth} width {width}: torch.mm {args.mm_size}² " +
                  ", ".join(f"{v:.1f} GFLOP/s @{k}t" for k, v in gflops.items()), flush=True)
            width_rows = bench_width(width, depth, args, thread_counts, gflops)
            for r in width_rows:
                r["mm_gflops"] = gflops[r["threads"]]
            rows += width_rows
            print_table(width_rows, ["width", "depth", "variant", "threads", "ms", "spread", "pct_of_floor",
                                     "vs_net", "gflops"], title=f"depth {depth}, width {width}")

    summary = []
    for depth in depths:
        for width in widths:
            sel = {r["variant"]: r for r in rows if r["width"] == width and r["depth"] == depth}
            for threads in thread_counts:
                sel = {r["variant"]: r for r in rows
                       if r["width"] == width and r["depth"] == depth and r["threads"] == threads}
                net, twin, both = sel["net"], sel["twin"], sel["both"]
                prop_n, prop_t = sel["net_foreach"], sel["twin_manual"]
                summary.append({"width": width, "depth": depth, "threads": threads,
                                "mm_gflops": net["mm_gflops"], "floor_ms": net["floor_ms"],
                                "net_ms": net["ms"], "net_pct_floor": net["pct_of_floor"],
                                "twin_ms": twin["ms"], "twin/net": twin["ms"] / net["ms"],
                                "both_ms": both["ms"], "mm_only_ms": sel["mm_only"]["ms"],
                                "both_pct_floor": 100 * both["gflops"] / both["mm_gflops"],
                                "function_ms": sel["both_function"]["ms"],
                                "function_pct_floor": (100 * sel["both_function"]["gflops"]
                                                       / both["mm_gflops"]),
                                "prop_net_pct_floor": prop_n["pct_of_floor"],
                                "prop_twin/net": prop_t["ms"] / prop_n["ms"],
                                "prop_both_ms": sel["both_proposed"]["ms"]})
    print_table(summary, title="Summary (Trainer path; prop_* = net_foreach + twin_manual)")
    print_table([{"width": r["width"], "depth": r["depth"], "linearize_s": r["linearize_s"],
                  "trainer_twin_setup_s": r["trainer_twin_setup_s"],
                  "compile_s": r["compile_s"], "twin_err_trainer": r["twin_err_trainer"],
                  "twin_err_linearize": r["twin_err_linearize"], "twin_err_jvp": r["twin_err_jvp"],
                  "twin_err_manual": r["twin_err_manual"]}
                 for r in rows if r["variant"] == "net" and r["threads"] == thread_counts[0]],
                title="One-off costs and twin accuracy (‖tangent − float64 tangent‖_F / ‖float64 tangent‖_F)")
    for s in summary:
        if s["width"] == 4096 and s["depth"] == 1:
            print(f"[{s['threads']} threads] target net >= 70% of floor at 4096: "
                  f"{s['net_pct_floor']:.0f}% -> "
                  f"{'MET' if s['net_pct_floor'] >= 70 else 'MISSED'};  twin/net <= 1.5: "
                  f"{s['twin/net']:.2f} -> "
                  f"{'MET' if s['twin/net'] <= 1.5 else 'MISSED'};  net + twin >= 75% of its floor: "
                  f"parameter space {s['both_pct_floor']:.0f}%, "
                  f"function space {s['function_pct_floor']:.0f}%")
    write_results(args.out, rows, info, {"summary": summary, "mm": mm_runs, "args": vars(args)})


if __name__ == "__main__":
    main()
