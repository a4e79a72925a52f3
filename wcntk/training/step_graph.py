"""A training step replayed as a CUDA graph, used only after it matched the eager step.

A step is `prepare()` (host bookkeeping, e.g. the sampler's buffer refill) followed by
`body()` (device work only: what a graph captures). `choose_step` captures `body` once with
`capture` (default `cuda_graph_capture`) and decides by one check from the current state S₀:

    eager step                   -> S₁ᵉ  (every state tensor: parameters, optimizer state)
    rewind to S₀, replay         -> S₁ᵍ
    err = max over state tensors of ‖S₁ᵍ − S₁ᵉ‖ / ‖S₁ᵉ‖   (‖·‖ Frobenius; ‖S₁ᵍ − S₁ᵉ‖ if ‖S₁ᵉ‖ = 0)

err ≤ `rtol` (1e-6: float32 round-off) keeps the replay; a larger err, or a capture that raises,
keeps the eager step and says why in one line. The state is rewound to S₀ at the end either way.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

RTOL = 1e-6

Capture = Callable[[Callable[[], None]], Callable[[], None]]


def cuda_graph_capture(body: Callable[[], None], warmup: int = 3) -> Callable[[], None]:
    """Capture `body` as a CUDA graph and return its replay. `warmup` eager calls on a side
    stream first (as torch.cuda.graphs requires; they change the state: rewind afterwards)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            body()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def max_rel_diff(got: Sequence[Tensor], ref: Sequence[Tensor]) -> float:
    """max over pairs of ‖got − ref‖ / ‖ref‖ (‖got − ref‖ where ‖ref‖ = 0), in float64."""
    worst = 0.0
    for g, r in zip(got, ref, strict=True):
        diff = (g.double() - r.double()).norm().item()
        norm = r.double().norm().item()
        worst = max(worst, diff / norm if norm > 0 else diff)
    return worst


@dataclass
class StepChoice:
    step: Callable[[], None]        # prepare() then the replay (graphed) or body() (eager)
    graphed: bool
    note: str | None                # why the eager step was kept (None when graphed)


def choose_step(prepare: Callable[[], None], body: Callable[[], None], state: Callable[[], list[Tensor]],
                rewind: Callable[[], None], capture: Capture = cuda_graph_capture,
                rtol: float = RTOL) -> StepChoice:
    """The replayed step if it matches the eager one (module docstring), else the eager step."""
    def eager() -> None:
        prepare()
        body()

    eager()
    reference = [t.detach().clone() for t in state()]
    rewind()
    try:
        replay = capture(body)
        rewind()
        prepare()
        replay()
        err = max_rel_diff(state(), reference)
    except Exception as exc:  # noqa: BLE001 (any capture failure means: train eagerly)
        rewind()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return StepChoice(eager, False, f"cuda_graphs: capturing the training step failed "
                                        f"({type(exc).__name__}: {reason}); training with eager steps")
    rewind()
    if not err <= rtol:
        return StepChoice(eager, False, f"cuda_graphs: the replayed step differs from the eager step by "
                                        f"{err:.1e} relative (> {rtol:g}); training with eager steps")

    def graphed() -> None:
        prepare()
        replay()

    return StepChoice(graphed, True, None)
