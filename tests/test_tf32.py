"""wcntk.core.tf32: the NTK and correlation functions run with TF32 off and give the caller's flags back."""
from __future__ import annotations

import pytest
import torch

from wcntk.core.correlations import derivative_correlations
from wcntk.core.ntk import empirical_ntk
from wcntk.core.tf32 import no_tf32


def flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def tf32_on():
    saved = flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("call", [
    lambda f, p, x: empirical_ntk(f, p, x),
    lambda f, p, x: derivative_correlations(f, p, x),
], ids=["empirical_ntk", "derivative_correlations"])
def test_library_calls_turn_tf32_off_and_restore_it(tf32_on, call):
    seen = []

    def f(params, x):
        seen.append(flags())
        return torch.tanh(x @ params["w"])

    params = {"w": torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))}
    call(f, params, torch.ones(2, 3, dtype=torch.float64))
    assert seen and set(seen) == {(False, False)}
    assert flags() == (True, True)


def test_no_tf32_restores_after_an_error(tf32_on):
    with pytest.raises(KeyError), no_tf32():
        assert flags() == (False, False)
        raise KeyError
    assert flags() == (True, True)
