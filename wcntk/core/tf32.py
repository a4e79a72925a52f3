"""TF32 off for every float32 matmul and convolution wcntk computes.

Linearity deviations are 1e-4…1e-6 of the outputs; TF32 (10-bit mantissa) rounds at ~1e-3 and
would swamp them. torch's defaults leave cuDNN convolutions in TF32
(torch.backends.cudnn.allow_tf32 = True), so the library turns it off itself: the Trainer for the
whole process (`disable_tf32`), and the NTK / correlation functions, when called on their own
(a notebook), for the duration of the call (`no_tf32`, also usable as `with no_tf32(): ...`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def disable_tf32() -> None:
    """allow_tf32 = False for CUDA matmuls and cuDNN convolutions, from now on."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@contextmanager
def no_tf32() -> Iterator[None]:
    """TF32 off inside the block (or the decorated function), the caller's flags restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    disable_tf32()
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
