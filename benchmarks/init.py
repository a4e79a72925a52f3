"""θ₀ set-up time: `build_model` (scheme chunked-v2, chunks drawn by several threads) against
the previous scheme (one CPU generator per model, every parameter drawn in float64 in order on
one thread, then cast), measured interleaved (`_common.compare`).

    python benchmarks/init.py                       # MLP 784→n…n→10, float32, cpu
    python benchmarks/init.py --cases 16384x3 --device cuda

The baseline is the old code path written out here; both produce float32 parameters on
--device, so the device transfer is in both columns.
"""
from __future__ import annotations  # noqa: I001 (_common first: it sets OMP_WAIT_POLICY before torch loads)

import argparse

from _common import compare, env_info, print_env, print_table, write_results

import torch

from wcntk.core.layers import ModelConfig, layer_scales
from wcntk.core.models import build_model


def sequential_init(cfg: ModelConfig, d_in: int, k: int, seed: int,
                    device: torch.device) -> list[torch.Tensor]:
    """The previous θ₀: W then b layer by layer from one Generator().manual_seed(seed), float64."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [d_in] + [cfg.width] * cfg.depth + [k]
    out = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        sw, _, sb, _ = layer_scales(cfg.parameterization, fi, cfg.w_std, cfg.b_std, i == len(sizes) - 2)
        for shape, std in (((fo, fi), sw), ((fo,), sb)):
            z = torch.randn(shape, generator=gen, dtype=torch.float64) * std
            out.append(z.to(device=device, dtype=torch.float32))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="1024x1,4096x1,4096x3", help="widthxdepth,…")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default=None, help="comma list of thread counts (default 1 and torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else sorted({1, torch.get_num_threads()}))
    info = env_info(device)
    print_env(info)
    rows = []
    for case in args.cases.split(","):
        width, depth = (int(v) for v in case.split("x"))
        cfg = ModelConfig(width=width, depth=depth)
        fns = {"sequential": lambda cfg=cfg: sequential_init(cfg, 784, 10, 0, device)}
        for t in threads:
            fns[f"chunked_{t}"] = lambda cfg=cfg, t=t: build_model(cfg, (784,), 10, seed=0, device=device,
                                                                  threads=t)
        res = compare(fns, warmup=1, repeats=args.repeats, device=device)
        params = (784 * width + width) + (depth - 1) * (width * width + width) + (width * 10 + 10)
        row = {"case": case, "params": params, "sequential_s": res["sequential"]["median_s"]}
        for t in threads:
            row[f"chunked_{t}_s"] = res[f"chunked_{t}"]["median_s"]
            row[f"speedup_{t}"] = row["sequential_s"] / row[f"chunked_{t}_s"]
        rows.append(row)
    print_table(rows, title=f"build_model vs the sequential draw ({device}, float32, "
                            f"median of {args.repeats})")
    write_results(f"init_{device.type}", rows, info, {"args": vars(args)})


if __name__ == "__main__":
    main()
