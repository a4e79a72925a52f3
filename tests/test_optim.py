"""wcntk.optim.GradientDescent is torch.optim.SGD without momentum, bitwise."""
from __future__ import annotations

import pytest
import torch

from wcntk.optim import GradientDescent


@pytest.mark.slow   # torch.optim imports torch._dynamo (seconds)
def test_same_iterates_as_torch_sgd():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 3, generator=gen)
    x, y = torch.randn(8, 5, generator=gen), torch.randn(8, 3, generator=gen)
    ours, ref = w0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    opt_ours, opt_ref = GradientDescent([ours], lr=0.3), torch.optim.SGD([ref], lr=0.3)
    for _ in range(5):
        for w, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            ((x @ w - y) ** 2).mean().backward()
            opt.step()
    assert torch.equal(ours, ref) and not torch.equal(ours, w0)
    opt_ours.zero_grad()
    assert ours.grad is None
