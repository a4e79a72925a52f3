"""θ₀'s fingerprint: which initial network a run started from. A resumed run rebuilds θ₀ from
its seed (it is not saved), so the record and the checkpoint keep this fingerprint and a resume
compares it with the rebuilt one's.

    trainable = sha256 over the trainable parameters (requires_grad),
    frozen    = sha256 over the other parameters and the buffers,

each over its tensors sorted by name, every tensor as its name, shape and values in C order,
floating point ones as float64 on the CPU (exact for every float dtype), others in their own
dtype. The same model, dtype and device give the same fingerprint; it tells nothing about
numbers across dtypes. Values go to the CPU and to float64 CHUNK_ELEMENTS at a time (a width-16384
network on a GPU is never copied whole to the host, let alone as float64).
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

CHUNK_ELEMENTS = 1 << 22   # values per host copy: 32 MiB as float64


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """The sha256 (hex) of named tensors, as the module docstring says."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        dtype = torch.float64 if t.is_floating_point() else t.dtype
        digest.update(f"{name}|{str(dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        values = t.contiguous().view(-1)          # C order, on the tensor's own device
        for start in range(0, values.numel(), CHUNK_ELEMENTS):
            chunk = values[start:start + CHUNK_ELEMENTS].to("cpu", dtype)
            digest.update(chunk.numpy())                # (its buffer: no copy)
    return digest.hexdigest()


def theta0_fingerprint(model: nn.Module) -> dict[str, str]:
    """{"trainable": sha256, "frozen": sha256} of a model's current parameters and buffers."""
    params = dict(model.named_parameters())     # a tensor shared under several names: once
    trainable = {k: v for k, v in params.items() if v.requires_grad}
    frozen = {**{k: v for k, v in params.items() if not v.requires_grad}, **dict(model.named_buffers())}
    return {"trainable": tensors_sha256(trainable), "frozen": tensors_sha256(frozen)}
