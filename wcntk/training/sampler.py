"""The minibatch order of a run: seeded, reshuffled every epoch, waiting on the device for the
step (a CUDA graph replays its reads), and saved and restored with a checkpoint."""
from __future__ import annotations

import torch
from torch import Tensor


class MinibatchSampler:
    """Seeded reshuffling minibatches, epochs without replacement (a short remainder is
    dropped); full batch when batch_size is None.

    Order: epoch e is the e-th torch.randperm(n) of a CPU Generator().manual_seed(seed), cut
    into n // batch_size minibatches in turn. The next `block` minibatches wait on the device
    as one [block, batch_size] index buffer: `indices()` reads the row at a device cursor and
    advances it (device work only, so a captured CUDA graph replays it), `advance()` (host,
    once before every step) refills the buffer in place when its rows are used up."""

    def __init__(self, n: int, batch_size: int | None, seed: int, device: torch.device, block: int = 256):
        self.n, self.seed, self.block = n, seed, block
        self.full = batch_size is None or batch_size == n
        self.batch_size = n if batch_size is None else batch_size
        rows = 0 if self.full else block
        self.buffer = torch.empty(rows, self.batch_size, dtype=torch.long, device=device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)
        self.rewind()

    def rewind(self) -> None:
        """Back to the first minibatch of the seed (buffers refilled in place)."""
        self.gen = torch.Generator().manual_seed(self.seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.used = 0
        if not self.full:
            self._refill()

    def _refill(self) -> None:
        rows = []
        for _ in range(self.block):
            if len(self.order) < self.batch_size:
                self.order = torch.randperm(self.n, generator=self.gen)
            rows.append(self.order[:self.batch_size])
            self.order = self.order[self.batch_size:]
        self.buffer.copy_(torch.stack(rows))
        self.cursor.zero_()
        self.used = 0

    def advance(self) -> None:
        """Host bookkeeping before a step: refill the buffer when all its rows were used."""
        if self.full:
            return
        if self.used == self.block:
            self._refill()
        self.used += 1

    def state_dict(self) -> dict[str, object]:
        """The position in the minibatch order, between steps: the generator's state, the rest of
        the current epoch's permutation (`order`), the device buffer (on the CPU), its cursor and
        how many of its rows were used."""
        return {"gen": self.gen.get_state(), "order": self.order.clone(), "buffer": self.buffer.cpu().clone(),
                "cursor": self.cursor.cpu().clone(), "used": self.used}  # copies: a snapshot (graph_step)

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Back to a position `state_dict` returned (for the same n, batch size and block): the
        buffer and cursor are refilled in place, so a captured CUDA graph keeps reading them."""
        buffer, cursor = state["buffer"], state["cursor"]
        if buffer.shape != self.buffer.shape or cursor.shape != self.cursor.shape:
            raise ValueError(f"sampler state of shape {tuple(buffer.shape)} does not fit this sampler's "
                             f"{tuple(self.buffer.shape)}")
        self.gen.set_state(state["gen"])
        self.order = state["order"].clone()
        self.buffer.copy_(buffer)
        self.cursor.copy_(cursor)
        self.used = int(state["used"])

    def indices(self) -> Tensor | None:
        """Indices of this step's minibatch on the device (None = the full training set)."""
        if self.full:
            return None
        idx = self.buffer.index_select(0, self.cursor).view(-1)
        self.cursor.add_(1)
        return idx
