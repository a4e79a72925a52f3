"""GPU check in a few minutes: a wide deep run on CUDA with its throughput and memory.

Default: MLP width 16384, depth 3, relu, NTK parameterization, the default data (256 MNIST
training / 256 test inputs), full-batch GD, 1000 steps, evaluation every 25 steps,
correlations (all-parameter C02/C03/C11, NTK change, step ratios) at step 0 and at the end,
float32 with TF32 off (the Trainer turns it off; checked here). Prints:

  wall time    Trainer set-up, the whole Trainer.run(), and inside it the evaluate() and
               correlations() calls (timed by wrapping the instance's methods);
  throughput   one Trainer.step() (network + twin) and one network-only step timed after the
               run (median of --timing-steps, with device syncs), as achieved TFLOP/s from the
               counted matmul FLOPs (see _common.net_step_flops / twin_step_flops), against
               the device's measured float32 torch.mm TFLOP/s (TF32 disabled);
  memory       torch.cuda.max_memory_allocated over the whole run (CPU: peak RSS instead).

CNN case (--model cnn: 3×3 convs of --width channels on MNIST 28×28, global average pool; the
twin is the generic torch.func path, NTK and correlations the generic ones): FLOPs are the
conv + readout counts of cnn_step.py.

Test it anywhere with a tiny size:
    python benchmarks/gpu.py --device cpu --width 64 --steps 20
    python benchmarks/gpu.py --device cpu --model cnn --width 8 --depth 1 --steps 5
On the GPU machine:
    python benchmarks/gpu.py                       # width 16384, depth 3, 1000 steps, cuda
    python benchmarks/gpu.py --model cnn --width 256 --depth 3 --steps 200
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse
import resource
import statistics
import time

from _common import (env_info, matmul_gflops, mlp_dims, net_step_flops, print_env, print_table, sync,
                     twin_step_flops, write_results)

import torch
from cnn_step import conv_macs
from cnn_step import step_flops as cnn_step_flops

from wcntk.data import DataConfig
from wcntk.losses import mse
from wcntk.models import ModelConfig
from wcntk.trainer import OptimizerConfig, TrainConfig, Trainer, disable_tf32


def timed_method(obj, name: str, acc: dict[str, float], device) -> None:
    """Replace obj.<name> (on this instance only) by a wrapper adding its synced wall time to acc."""
    inner = getattr(obj, name)

    def wrapper(*a, **kw):
        sync(device)
        t = time.perf_counter()
        out = inner(*a, **kw)
        sync(device)
        acc[name] = acc.get(name, 0.0) + time.perf_counter() - t
        acc[f"n_{name}"] = acc.get(f"n_{name}", 0) + 1
        return out
    setattr(obj, name, wrapper)


def median_time(fn, n: int, device) -> float:
    times = []
    for _ in range(n):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    ap.add_argument("--width", type=int, default=16384)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--timing-steps", type=int, default=10)
    ap.add_argument("--mm-size", type=int, default=None,
                    help="square matmul size (default 8192 cuda, 1024 cpu)")
    ap.add_argument("--out", default=None, help="results name (default gpu_<device>)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; use --device cpu with a small --width to test "
                         "the script")
    disable_tf32()
    info = env_info(device)
    print_env(info)
    if device.type == "cuda":
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        torch.cuda.reset_peak_memory_stats(device)
    mm = matmul_gflops(args.mm_size or (8192 if device.type == "cuda" else 1024), device=device)
    print(f"torch.mm {mm['size']}² float32 (TF32 off): {mm['gflops'] / 1e3:.2f} TFLOP/s", flush=True)

    wall0 = time.perf_counter()
    t = time.perf_counter()
    model_cfg = ModelConfig(kind=args.model, width=args.width, depth=args.depth, activation=args.activation)
    trainer = Trainer(model_cfg,
                      DataConfig(), OptimizerConfig(),
                      TrainConfig(steps=args.steps, device=args.device, progress=False,
                                  log_every=args.log_every))
    sync(device)
    setup_s = time.perf_counter() - t
    acc: dict[str, float] = {}
    timed_method(trainer, "evaluate", acc, device)
    timed_method(trainer, "correlations", acc, device)
    t = time.perf_counter()
    result = trainer.run()
    sync(device)
    run_s = time.perf_counter() - t
    total_s = time.perf_counter() - wall0

    # throughput after the run (the run's own steps are not synced one by one)
    x, y = trainer.data.x_train, trainer.data.y_train
    opt = trainer.net_opt

    def net_step():
        opt.zero_grad(set_to_none=True)
        mse(trainer.model(x), y).backward()
        opt.step()
    trainer.step()
    both_s = median_time(trainer.step, args.timing_steps, device)
    net_step()
    net_s = median_time(net_step, args.timing_steps, device)
    if args.model == "cnn":
        f_net, f_twin = cnn_step_flops(len(x), conv_macs(trainer), args.width * trainer.data.n_classes)
    else:
        dims = mlp_dims(trainer.model)
        f_net, f_twin = net_step_flops(len(x), dims), twin_step_flops(len(x), dims)
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2 ** 30
        mem_kind = "torch.cuda.max_memory_allocated"
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        mem_kind = "peak RSS (ru_maxrss)"
    steps_s = run_s - acc.get("evaluate", 0.0) - acc.get("correlations", 0.0)
    row = {
        "device": str(device), "model": args.model, "width": args.width, "depth": args.depth,
        "steps": args.steps,
        "n_params": trainer.n_params, "status": result.status,
        "total_wall_s": total_s, "setup_s": setup_s, "run_s": run_s,
        "train_steps_s": steps_s, "evaluate_s": acc.get("evaluate",
                                                        0.0), "n_evaluate": acc.get("n_evaluate", 0),
        "correlations_s": acc.get("correlations", 0.0), "n_correlations": acc.get("n_correlations", 0),
        "both_step_ms": both_s * 1e3, "net_step_ms": net_s * 1e3,
        "net_tflops": f_net / net_s / 1e12, "both_tflops": (f_net + f_twin) / both_s / 1e12,
        "mm_tflops": mm["gflops"] / 1e3,
        "net_pct_of_mm": 100 * f_net / net_s / (mm["gflops"] * 1e9),
        "both_pct_of_mm": 100 * (f_net + f_twin) / both_s / (mm["gflops"] * 1e9),
        "peak_mem_gib": peak_gib, "memory_measure": mem_kind,
        "func_rmse_train": result.final.get("lin/func_rmse_train"), "corr_C02": result.final.get("corr/C02"),
    }
    print_table([{k: row[k] for k in ("device", "model", "width", "depth", "steps", "n_params", "status",
                                      "total_wall_s", "setup_s", "train_steps_s", "evaluate_s",
                                      "correlations_s")}],
                title="Wall time (s)")
    print_table([{k: row[k] for k in ("net_step_ms", "net_tflops", "both_step_ms", "both_tflops", "mm_tflops",
                                      "net_pct_of_mm", "both_pct_of_mm", "peak_mem_gib")}],
                title=f"Throughput (float32, TF32 off) and memory ({mem_kind})")
    print(f"final func_rmse_train {row['func_rmse_train']}, corr/C02 {row['corr_C02']}")
    write_results(args.out or f"gpu_{device.type}", [row], info, {"args": vars(args)})


if __name__ == "__main__":
    main()
