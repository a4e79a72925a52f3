"""θ₀'s fingerprint: which initial network a run started from. A resumed run rebuilds θ₀ from
its seed (it is not saved), so the record and the checkpoint keep this fingerprint and a resume
compares it with the rebuilt one's.

    trainable = sha256 over the trainable parameters (requires_grad),
    frozen    = sha256 over the other parameters and the buffers,

each over its tensors sorted by name, every tensor as its name, shape and values in C order,
floating point ones as float64 on the CPU (exact for every float dtype), others in their own
dtype. The same model, dtype and device give the same fingerprint; it tells nothing about
numbers across dtypes.
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """The sha256 (hex) of named tensors, as the module docstring says."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float64)
        t = t.contiguous()
        digest.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def theta0_fingerprint(model: nn.Module) -> dict[str, str]:
    """{"trainable": sha256, "frozen": sha256} of a model's current parameters and buffers."""
    params = dict(model.named_parameters())     # a tensor shared under several names: once
    trainable = {k: v for k, v in params.items() if v.requires_grad}
    frozen = {**{k: v for k, v in params.items() if not v.requires_grad}, **dict(model.named_buffers())}
    return {"trainable": tensors_sha256(trainable), "frozen": tensors_sha256(frozen)}
