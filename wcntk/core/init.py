"""θ₀: seeded normal draws that are the same on every device, dtype and thread count.

Scheme `INIT_SCHEME` ("chunked-v2"): a parameter named `name` (its name in
`model.named_parameters()`) of shape (d₁, …, d_r) with n entries, flattened row-major, is cut
into chunks of `CHUNK` entries. Chunk c is drawn by its own CPU generator,

    z[c·CHUNK : (c+1)·CHUNK] = torch.randn(len, float64, generator=Generator().manual_seed(s)),
    s = first 8 bytes (little-endian) of BLAKE2b-64("chunked-v2|seed|signature|name|d₁x…xd_r|c") mod 2⁶³,

and the parameter is (z · std) computed in float64, then cast to its dtype and moved to its
device. `signature` is the model's shape signature (:func:`shape_signature`, e.g.
"mlp|width=16|depth=1|in=1x8x8|out=10"): every size that sets a parameter shape of the model.
Every chunk depends only on (seed, signature, name, shape, c), so the chunks can be drawn by any
number of threads in any order (torch.randn releases the GIL) and give the same values. The
signature is part of every tensor's key so that networks of different widths draw independent
θ₀ for every tensor, also those whose shape does not depend on the width (the readout bias,
shape (k,)), as a width sweep's fits assume; the tensor's own shape keeps a draw from being
another's leading entries. (chunked-v1 keyed by (seed, name, shape, c) alone: its readout
bias was the same at every width.) The parameterization and the activation are not in the
signature: `ntk` and `standard` draw the same normals (wcntk.core.models).
"""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

INIT_SCHEME = "chunked-v2"
CHUNK = 1 << 20


def shape_signature(kind: str, sizes: dict[str, object], input_shape: tuple[int, ...],
                    out_features: int) -> str:
    """"kind|key=value|…|in=d₁x…|out=k": the sizes that set a model's parameter shapes, in
    the given order (the θ₀ key of every tensor of that model, module docstring)."""
    dims = "x".join(str(d) for d in input_shape)
    return "|".join([kind, *(f"{k}={v}" for k, v in sizes.items()), f"in={dims}", f"out={out_features}"])


def chunk_seed(seed: int, name: str, shape: tuple[int, ...], chunk: int, signature: str = "") -> int:
    """The generator seed of chunk c of parameter `name` of this shape in the model of this
    shape signature (module docstring)."""
    dims = "x".join(str(d) for d in shape)
    key = f"{INIT_SCHEME}|{int(seed)}|{signature}|{name}|{dims}|{chunk}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (1 << 63)


def seeded_normal(shape: tuple[int, ...], std: float, seed: int, name: str, dtype: torch.dtype,
                  threads: int | None = None, signature: str = "") -> Tensor:
    """std · z cast to `dtype` (on the CPU), z the standard normals of (seed, signature, name, shape)
    in the module docstring's scheme; `threads` CPU threads draw the chunks (None:
    torch.get_num_threads())."""
    n = math.prod(shape)
    out = torch.empty(n, dtype=dtype)
    chunks = range(math.ceil(n / CHUNK))

    def fill(c: int) -> None:
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        gen = torch.Generator().manual_seed(chunk_seed(seed, name, shape, c, signature))
        z = torch.randn(hi - lo, generator=gen, dtype=torch.float64)
        out[lo:hi].copy_(z.mul_(std))

    workers = min(len(chunks), threads or torch.get_num_threads())
    if workers <= 1:
        for c in chunks:
            fill(c)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, chunks))
    return out.view(shape)


class ParamInit:
    """The θ₀ of one model: `normal(name, shape, std)` gives parameter `name`'s initial value
    on `device` in `dtype`; `signature` is the model's :func:`shape_signature` (see the module
    docstring)."""

    def __init__(self, seed: int, dtype: torch.dtype, device: torch.device, threads: int | None = None,
                 signature: str = ""):
        self.seed, self.dtype, self.device, self.threads = int(seed), dtype, torch.device(device), threads
        self.signature = signature

    def normal(self, name: str, shape: tuple[int, ...], std: float) -> Tensor:
        value = seeded_normal(tuple(shape), std, self.seed, name, self.dtype, self.threads, self.signature)
        return value.to(self.device)
