"""GPU check in a few minutes: a wide deep run on CUDA with its throughput and memory.

Default: MLP width 16384, depth 3, relu, NTK parameterization, the default data (256 MNIST
training / 256 test inputs), full-batch GD, 1000 steps, evaluation every 25 steps,
correlations (all-parameter C02/C03/C11, NTK change, step ratios) at step 0 and at the end,
float32 with TF32 off (the Trainer turns it off; checked here). Prints:

  wall time    Trainer set-up, the whole Trainer.run(), and inside it the evaluate() and
               correlations() calls (timed by wrapping the instance's methods);
  throughput   one Trainer.step() (network + twin; a CUDA-graph replay when the Trainer chose one,
               see step_mode), the same step eager, one network-only step and one evaluate(),
               timed after the run (median of --timing-steps, with device syncs), as achieved
               TFLOP/s from the counted FLOPs (`flops_counted`: MLP = matmul FLOPs, see
               _common.net_step_flops / twin_step_flops; CNN = direct-convolution FLOPs, while
               cuDNN may run Winograd/FFT algorithms that need fewer, so a CNN's "% of mm" can
               pass 100 %), against the device's measured float32 torch.mm TFLOP/s (TF32 off);
  memory       torch.cuda.max_memory_allocated over the whole run (CPU: peak RSS instead);
  --profile    a torch.profiler summary of one Trainer.step(): the top operators/kernels, the
               number of kernel and graph launches, and the host (CPU) time of the step.

CNN case (--model cnn: 3×3 convs of --width channels on MNIST 28×28, global average pool; the
twin is the generic torch.func path, NTK and correlations the generic ones): FLOPs are the
direct-convolution + readout counts of cnn_step.py.

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

from _common import (benchmark_device, env_info, matmul_gflops, mlp_dims, net_step_flops, print_env,
                     print_table, sync, twin_step_flops, write_results)

import torch
from cnn_step import conv_macs
from cnn_step import step_flops as cnn_step_flops

from wcntk.training.data import DataConfig
from wcntk.core.losses import mse
from wcntk.core.layers import ModelConfig
import wcntk.training.trainer
from wcntk.training.config import CudaGraphs
from wcntk.training.trainer import OptimizerConfig, TrainConfig, Trainer

LAUNCH_EVENTS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                 "cudaGraphLaunch")


def timed_method(obj, name: str, acc: dict[str, float], device) -> None:
    """Replace obj.<name> (on this instance / module only) by a wrapper adding its synced wall
    time to acc."""
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


def profile_step(trainer: Trainer, device: torch.device) -> dict[str, float]:
    """torch.profiler over one Trainer.step(): prints its top rows; returns launches and host ms."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    sync(device)
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        trainer.step()
        host_s = time.perf_counter() - t
        sync(device)
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=15))
    launches = {k: sum(e.count for e in averages if e.key == k) for k in LAUNCH_EVENTS}
    summary = {"kernel_launches": sum(v for k, v in launches.items() if k != "cudaGraphLaunch"),
               "graph_launches": launches["cudaGraphLaunch"], "host_ms": host_s * 1e3}
    print(f"one step ({trainer.step_mode}): {summary['kernel_launches']} kernel launches, "
          f"{summary['graph_launches']} graph launches, host time {summary['host_ms']:.3f} ms", flush=True)
    return summary


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
    ap.add_argument("--cuda-graphs", default="auto", choices=[str(c) for c in CudaGraphs])
    ap.add_argument("--profile", action="store_true", help="torch.profiler summary of one step")
    args = ap.parse_args()
    device = benchmark_device(args.device, "a small --width")
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
    acc: dict[str, float] = {}
    timed_method(wcntk.training.trainer, "build_model", acc, device)     # the Trainer's own θ₀ draw
    trainer = Trainer(model_cfg,
                      DataConfig(), OptimizerConfig(),
                      TrainConfig(steps=args.steps, device=args.device, progress=False,
                                  log_every=args.log_every, cuda_graphs=args.cuda_graphs))
    sync(device)
    setup_s = time.perf_counter() - t
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
    eager_s = median_time(trainer.eager_step, args.timing_steps, device)
    eval_s = median_time(trainer.evaluate, args.timing_steps, device)
    prof = profile_step(trainer, device) if args.profile else {}
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
        "step_mode": trainer.step_mode, "both_step_ms": both_s * 1e3, "eager_both_step_ms": eager_s * 1e3,
        "net_step_ms": net_s * 1e3, "evaluate_ms": eval_s * 1e3,
        "flops_counted": "direct conv + readout" if args.model == "cnn" else "matmul",
        "build_model_s": acc["build_model"],
        "net_tflops": f_net / net_s / 1e12, "both_tflops": (f_net + f_twin) / both_s / 1e12,
        "mm_tflops": mm["gflops"] / 1e3,
        "net_pct_of_mm": 100 * f_net / net_s / (mm["gflops"] * 1e9),
        "both_pct_of_mm": 100 * (f_net + f_twin) / both_s / (mm["gflops"] * 1e9),
        "peak_mem_gib": peak_gib, "memory_measure": mem_kind,
        "func_rmse_train": result.final.get("lin/func_rmse_train"), "corr_C02": result.final.get("corr/C02"),
        **prof,
    }
    print_table([{k: row[k] for k in ("device", "model", "width", "depth", "steps", "n_params", "status",
                                      "total_wall_s", "setup_s", "train_steps_s", "evaluate_s",
                                      "correlations_s")}],
                title="Wall time (s)")
    print_table([{k: row[k] for k in ("step_mode", "both_step_ms", "eager_both_step_ms", "evaluate_ms",
                                      "build_model_s")}], title="Per call")
    print_table([{k: row[k] for k in ("flops_counted", "net_step_ms", "net_tflops", "both_step_ms",
                                      "both_tflops", "mm_tflops", "net_pct_of_mm", "both_pct_of_mm",
                                      "peak_mem_gib")}],
                title=f"Throughput (float32, TF32 off; counted FLOPs) and memory ({mem_kind})")
    print(f"final func_rmse_train {row['func_rmse_train']}, corr/C02 {row['corr_C02']}")
    write_results(args.out or f"gpu_{device.type}", [row], info, {"args": vars(args)})


if __name__ == "__main__":
    main()
