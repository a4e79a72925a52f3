"""One full-batch GD step of the CNN, of its linearized twin, and of both (Trainer.step), against
the conv + matmul floor, plus variants measured in the same run.

Setup: 256 standardized MNIST training images (1×28×28), CNN relu NTK parameterization (3×3 same
convolutions of `width` channels, global average pool, dense readout to 10), MSE on one-hot
targets, float32, lr 1 (the Trainer's defaults); widths × depths from --cases.

Floor. With N samples and conv layer l mapping C_{l-1} → C_l channels on H×W pixels,
mac_l = H·W·C_l·C_{l-1}·9 multiply-adds per sample (the readout adds C_L·10):
    network: forward 2N·Σ mac_l, weight grads 2N·Σ mac_l, input grads 2N·Σ_{l≥2} mac_l
    twin:    forward 2N·(Σ mac_l + Σ_{l≥2} mac_l) (conv(a, ΔW) every layer, conv(ȧ, W⁰) from the
             second), backward the same again
floor = FLOPs / (FLOP/s of a 2048² float32 torch.mm measured in this run at the same thread count).

Rows (interleaved):
  net           the Trainer's network step (zero_grad, mse(model(x), y).backward(), SGD.step)
  net_cl        the same with the model and x in channels_last memory format
  twin          the Trainer's twin step on the full batch: the trace (wcntk.core.linearize_trace) of
                f(θ₀ + ·, x) built once (Trainer.twin_train), + backward + SGD.step
  twin_jvp      the twin through torch.func.jvp per call (what a minibatch step does)
  both          Trainer.step()

    python benchmarks/cnn_step.py [--cases 64x1,32x2,64x2] [--threads 1] [--samples 256]
"""
from __future__ import annotations

import argparse
import copy

import _common as bench  # first: sets OMP_WAIT_POLICY before torch is imported
import torch

from wcntk.core.layers import ModelConfig
from wcntk.core.losses import mse
from wcntk.training.data import DataConfig
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer


def conv_macs(trainer: Trainer) -> list[int]:
    """Multiply-adds per sample of each conv layer (same padding: H×W output pixels)."""
    h, w = trainer.data.input_shape[1:]
    return [h * w * layer.weight[0].numel() * layer.weight.shape[0] for layer in trainer.model.hidden]


def step_flops(n: int, macs: list[int], readout: int) -> tuple[float, float]:
    """(network, twin) matmul/conv FLOPs of one full-batch step on n samples."""
    net = 2.0 * n * (2 * sum(macs) + sum(macs[1:]) + 3 * readout)
    twin = 2.0 * n * (2 * (sum(macs) + sum(macs[1:])) + 4 * readout)
    return net, twin


def sgd_step(model, x, y, opt):
    opt.zero_grad(set_to_none=True)
    mse(model(x), y).backward()
    opt.step()


def bench_case(width: int, depth: int, args) -> dict:
    data_cfg = DataConfig(name="mnist", n_train=args.samples, n_test=0)
    trainer = Trainer(ModelConfig(kind="cnn", width=width, depth=depth), data_cfg, OptimizerConfig(),
                      TrainConfig(steps=0, device="cpu", progress=False, probes=min(32, args.samples)))
    x, y, lr = trainer.data.x_train, trainer.data.y_train, trainer.lr
    net = trainer.model
    net_opt = torch.optim.SGD(net.parameters(), lr=lr)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    cl_opt = torch.optim.SGD(net_cl.parameters(), lr=lr)
    twin_params = {k: v.clone().requires_grad_(True) for k, v in trainer.params0.items()}
    twin_opt = torch.optim.SGD(twin_params.values(), lr=lr)

    def twin_step(fn):
        twin_opt.zero_grad(set_to_none=True)
        mse(fn(twin_params), y).backward()
        twin_opt.step()

    fns = {
        "net": lambda: sgd_step(net, x, y, net_opt),
        "net_cl": lambda: sgd_step(net_cl, x_cl, y, cl_opt),
        "twin": lambda: twin_step(trainer.twin_train),
        "twin_jvp": lambda: twin_step(lambda p: trainer.twin(p, x)),
        "both": trainer.step,
    }
    t = bench.compare(fns, warmup=2, repeats=args.repeats)
    mm = bench.matmul_gflops()["gflops"]
    macs = conv_macs(trainer)
    f_net, f_twin = step_flops(args.samples, macs, width * 10)
    floor_net, floor_twin = f_net / mm / 1e9, f_twin / mm / 1e9
    ms = {k: v["median_s"] * 1e3 for k, v in t.items()}
    return {"width": width, "depth": depth, "params": trainer.n_params, "threads": torch.get_num_threads(),
            "mm GFLOP/s": mm, "net floor (ms)": floor_net * 1e3, "net (ms)": ms["net"],
            "net % of floor": 100 * floor_net * 1e3 / ms["net"], "net_cl (ms)": ms["net_cl"],
            "twin floor (ms)": floor_twin * 1e3, "twin (ms)": ms["twin"],
            "twin % of floor": 100 * floor_twin * 1e3 / ms["twin"], "twin_jvp (ms)": ms["twin_jvp"],
            "both (ms)": ms["both"], "both % of floor": 100 * (floor_net + floor_twin) * 1e3 / ms["both"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="64x1,32x2,64x2", help="width x depth, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = bench.env_info()
    bench.print_env(meta)
    rows = []
    for case in args.cases.split(","):
        width, depth = (int(v) for v in case.split("x"))
        rows.append(bench_case(width, depth, args))
        bench.print_table(rows[-1:])
    bench.print_table(rows, title="CNN full-batch GD step vs the conv + matmul floor")
    bench.write_results("cnn_step", rows, meta, {"args": vars(args)})


if __name__ == "__main__":
    main()
