"""Shared helpers of the benchmark scripts: timing, the matmul floor, tables, results files.

Timings on a shared machine are noisy, so every script reports *ratios* of things measured
in the same run, and `compare` interleaves the candidates (round-robin, one call of each per
round) so that a burst of load from elsewhere hits all of them alike; the median of the
rounds is reported.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:           # `python benchmarks/x.py` from anywhere imports wcntk
    sys.path.insert(0, str(ROOT))

# As run.py does (it must precede torch's import): idle OpenMP threads sleep instead of spinning,
# which on a shared machine decides whether 2 threads help or cost 10-100x per small op.
# An OMP_WAIT_POLICY already in the environment is kept (and reported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def sync(device: Any = None) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def time_once(fn: Callable[[], Any], device: Any = "cpu") -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def compare(fns: dict[str, Callable[[], Any]], warmup: int = 2, repeats: int = 7,
            device: Any = "cpu", min_round_s: float = 0.0) -> dict[str, dict[str, float]]:
    """Median/min seconds per call of each fn, measured interleaved.

    `warmup` untimed rounds first; then `repeats` rounds, each calling every fn once (if one
    call is shorter than `min_round_s` it is repeated within the round and averaged, so tiny
    calls are not dominated by timer noise).
    """
    inner = {name: 1 for name in fns}
    for _ in range(warmup):
        for name, fn in fns.items():
            t = time_once(fn, device)
            if min_round_s > 0 and t > 0:
                inner[name] = max(inner[name], min(1000, int(min_round_s / t)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = inner[name]
            samples[name].append(time_once(lambda fn=fn, n=n: [fn() for _ in range(n)], device) / n)
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "repeats": len(s),
                   "spread": (max(s) - min(s)) / statistics.median(s) if statistics.median(s) else 0.0}
            for name, s in samples.items()}


def measure(fn: Callable[[], Any], warmup: int = 2, repeats: int = 7, device: Any = "cpu",
            min_round_s: float = 0.0) -> dict[str, float]:
    return compare({"fn": fn}, warmup, repeats, device, min_round_s)["fn"]


def matmul_gflops(size: int = 2048, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                  repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a square `size`×`size` torch.mm (2·size³ FLOPs), median of `repeats`."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    out = torch.empty(size, size, dtype=dtype, device=device)
    t = measure(lambda: torch.mm(a, b, out=out), warmup=2, repeats=repeats, device=device)
    flops = 2.0 * size ** 3
    return {"size": size, "median_s": t["median_s"], "gflops": flops / t["median_s"] / 1e9,
            "gflops_best": flops / t["min_s"] / 1e9}


def benchmark_device(name: str, cpu_hint: str) -> torch.device:
    """The device a GPU benchmark runs on, TF32 off (exact float32, as the Trainer runs); exits
    with one line naming `cpu_hint` (how to try the script on the CPU) when CUDA is asked for but
    absent."""
    from wcntk.core.tf32 import disable_tf32

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"CUDA is not available here; use --device cpu with {cpu_hint} to test the script")
    disable_tf32()
    return device


def env_info(device: Any = "cpu") -> dict[str, Any]:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "device": str(device),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def print_env(info: dict[str, Any]) -> None:
    keys = ("torch", "threads", "omp_wait_policy", "cpu_count", "cpu", "gpu", "device", "loadavg_1m")
    print("  ".join(f"{k}={info[k]}" for k in keys if k in info))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0:
            return "0"
        a = abs(value)
        if a >= 1e4 or a < 1e-3:
            return f"{value:.2e}"
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return "" if value is None else str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                title: str | None = None) -> str:
    """Markdown table of `rows` (dicts); returns the text as well as printing it."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = []
    if title:
        lines.append(f"\n{title}")
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=False)) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_results(name: str, rows: Sequence[dict[str, Any]], meta: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> Path:
    """benchmarks/results/<name>.json (meta + rows + extra) and <name>.csv (rows)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    with open(path, "w") as fh:
        json.dump({"meta": meta, "rows": list(rows), **(extra or {})}, fh, indent=2, default=str)
    if rows:
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        with open(RESULTS / f"{name}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    print(f"\nwrote {path.relative_to(ROOT)} (+ .csv)")
    return path


def mnist_like(n: int, seed: int = 0, dtype: torch.dtype = torch.float32, device: Any = "cpu"):
    """(x [n, 784], y one-hot [n, 10]): the default run's data (bundled MNIST, standardized),
    or random MNIST-shaped data if it cannot be loaded."""
    try:
        from wcntk.training.data import DataConfig, load_dataset
        data = load_dataset(DataConfig(name="mnist", n_train=n, n_test=0),
                            flatten=True, loss="mse", seed=seed, dtype=dtype, device=device)
        return data.x_train, data.y_train, data.source
    except Exception as err:  # noqa: BLE001 - benchmark still runs on synthetic inputs
        print(f"(MNIST unavailable: {err}; using random MNIST-shaped inputs)")
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 784, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        y = torch.nn.functional.one_hot(torch.randint(0, 10, (n,), generator=g), 10)
        return x, y.to(device=device, dtype=dtype), "random"


def mlp_dims(model) -> list[tuple]:
    """[(in_l, out_l)] of an wcntk MLP's layers, readout last."""
    return [(layer.weight.shape[1], layer.weight.shape[0]) for layer in [*model.hidden, model.readout]]


def net_step_flops(n_samples: int, dims: Sequence[tuple]) -> float:
    """Matmul FLOPs of one network GD step on n_samples inputs (elementwise work not counted):
    forward 2·N·Σ_l in_l·out_l, weight grads the same, input grads 2·N·Σ_{l≥2} in_l·out_l
    (layer 1 needs none: x has no gradient)."""
    mac = [i * o for i, o in dims]
    return 2.0 * n_samples * (2 * sum(mac) + sum(mac[1:]))


def mlp_kernel_flops(n_samples: int, dims: Sequence[tuple]) -> float:
    """Matmul FLOPs of the MLP's NTK on n_samples inputs (wcntk.core.ntk.mlp_ntk; the function-space
    twin's Θ₀): per layer the δ Gram 2·(N·k)²·out_l and the input Gram 2·N²·in_l, plus one forward and
    k backward passes 2·N·(Σ_l in_l·out_l + k·Σ_{l≥2} in_l·out_l)."""
    k = dims[-1][1]
    mac = [i * o for i, o in dims]
    grams = sum(2.0 * (n_samples * k) ** 2 * o + 2.0 * n_samples ** 2 * i for i, o in dims)
    return grams + 2.0 * n_samples * (sum(mac) + k * sum(mac[1:]))


def function_twin_step_flops(n_samples: int, dims: Sequence[tuple]) -> float:
    """FLOPs of one full-batch function-space twin step (wcntk.training.function_space): Θ₀ vec(R),
    a [N·k, N·k] matrix-vector product."""
    return 2.0 * (n_samples * dims[-1][1]) ** 2


def twin_step_flops(n_samples: int, dims: Sequence[tuple]) -> float:
    """Matmul FLOPs of one twin GD step: forward ΔW_l a_{l-1} (all l) and W⁰_l ȧ_{l-1} (l ≥ 2),
    backward the weight grads (all l) and the ȧ grads through W⁰ (l ≥ 2)."""
    mac = [i * o for i, o in dims]
    return 2.0 * n_samples * (2 * sum(mac) + 2 * sum(mac[1:]))
