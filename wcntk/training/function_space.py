"""The twin trained in function space: the same linearized training, without a jvp per step.

With f_lin(x; θ) = f(x; θ₀) + J₀(x)(θ − θ₀), the twin's gradient on a minibatch B of the training
inputs X is g = J₀(X_B)ᵀ r with r = ∂L(f_lin(X_B), y_B)/∂f_lin(X_B) [|B|, k]. For gd, sgd and
momentum SGD every update is a linear combination of such gradients, so from θ₀

    θ_lin − θ₀ = J₀(X)ᵀ vec(R)      for coefficients R [N, k] that start at 0,
    f_lin(X) = f(X; θ₀) + Θ₀ vec(R),   Θ₀ = J₀(X) J₀(X)ᵀ, the NTK on X [N·k, N·k] (computed once).

One step, as torch.optim.SGD does it in parameter space (lr η, momentum μ, dampening 0):

    F_B = f(X_B; θ₀) + Θ₀[B, :] vec(R),   r = ∂L(F_B, y_B)/∂F_B,
    gd, sgd:    R_B ← R_B − η r
    momentum:   M ← μ M + scatter_B(r),   R ← R − η M        (M: the momentum buffer's coefficients)

a [|B|·k, N·k] matrix-vector product instead of the twin's forward jvp (two GEMMs per layer) and
its backward. The twin's parameters θ_lin = θ₀ + J₀(X)ᵀ vec(R) are one vjp of the parameter-space
twin f_lin(·, X), computed when asked for (evaluation). Adam's update is not linear in the
gradients: Adam keeps the parameter-space twin. Exact in exact arithmetic; in floating point the
two differ by round-off (tests/test_function_space.py).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..core.layers import Params

# twin_space=auto trains in function space when the kernel is small and the run long enough to repay it:
MAX_KERNEL_ROWS = 8192       # N·k: Θ₀ [N·k, N·k] ≤ 256 MB in float32
MIN_STEPS = 100              # Θ₀ costs ~5-60 parameter-space twin steps (docs/performance.md)
KERNEL_BUDGET = 2e9          # bytes for building Θ₀ (a resnet of width 64 on 256 images: 0.77 GB of Jacobian)
LINEAR_OPTIMIZERS = ("gd", "sgd", "momentum")


def function_space_reason(choice: str, optimizer: str, n: int, k: int, steps: int,
                          misfit: Callable[[], str | None]) -> str | None:
    """None when the twin trains in function space for `twin_space=choice`, else why not. `misfit()`,
    asked last, is the network's own reason (wcntk.core.implementations: Θ₀ too costly to build, or
    the parameter-space step cheaper than Θ₀'s product), None when function space pays."""
    if choice == "parameter":
        return "twin_space=parameter"
    if optimizer not in LINEAR_OPTIMIZERS:
        return f"optimizer {optimizer}: its update is not linear in the gradients"
    if choice == "function":
        return None
    if n * k > MAX_KERNEL_ROWS:
        return f"{n} training inputs × {k} outputs > {MAX_KERNEL_ROWS} kernel rows"
    if steps < MIN_STEPS:
        return f"steps {steps} < {MIN_STEPS}: the kernel would not repay itself"
    return misfit()


class FunctionSpaceTwin:
    """The twin's training state as coefficients R (and M for momentum); module docstring."""

    def __init__(self, n: int, k: int, lr: float, momentum: float | None,
                 loss_fn: Callable[[Tensor, Tensor], Tensor], dtype: torch.dtype, device: torch.device,
                 build: Callable[[], tuple[Tensor, Tensor]]):
        """`build()` → (f(X; θ₀) [N, k], Θ₀ [N, k, N, k]), called once, at the first step."""
        self.n, self.k, self.lr, self.momentum, self.loss_fn = n, k, lr, momentum, loss_fn
        self.coef = torch.zeros(n, k, dtype=dtype, device=device)
        self.velocity = None if momentum is None else torch.zeros(n, k, dtype=dtype, device=device)
        self._build = build
        self.out0: Tensor | None = None
        self.kernel: Tensor | None = None       # Θ₀ as [N, k, N·k]

    def prepare(self) -> None:
        """Build f(X; θ₀) and Θ₀ (once)."""
        if self.kernel is None:
            out0, kernel = self._build()
            self.out0 = out0.detach().reshape(self.n, self.k)
            self.kernel = kernel.detach().reshape(self.n, self.k, self.n * self.k)

    def outputs(self, idx: Tensor | None = None) -> Tensor:
        """f_lin(X_B) = f(X_B; θ₀) + Θ₀[B, :] vec(R) (B = all of X when idx is None)."""
        self.prepare()
        rows, out0 = ((self.kernel, self.out0) if idx is None
                      else (self.kernel.index_select(0, idx), self.out0.index_select(0, idx)))
        return out0 + (rows.flatten(0, 1) @ self.coef.reshape(-1)).view_as(out0)

    def step(self, idx: Tensor | None, y: Tensor) -> None:
        """One optimizer step on the minibatch idx (None: the full batch) with targets y."""
        with torch.no_grad():
            out = self.outputs(idx)
        out.requires_grad_(True)
        (residual,) = torch.autograd.grad(self.loss_fn(out, y), out)
        with torch.no_grad():
            if self.velocity is None:
                if idx is None:
                    self.coef.sub_(residual, alpha=self.lr)
                else:
                    self.coef.index_add_(0, idx, residual, alpha=-self.lr)
            else:
                self.velocity.mul_(self.momentum)
                if idx is None:
                    self.velocity.add_(residual)
                else:
                    self.velocity.index_add_(0, idx, residual)
                self.coef.sub_(self.velocity, alpha=self.lr)

    def parameters(self, linearized: Callable[[Params], Tensor], params0: Params) -> Params:
        """θ_lin = θ₀ + J₀(X)ᵀ vec(R): the vjp of `linearized` = f_lin(·, X) with R (exact: f_lin is
        affine in θ, so its vjp is J₀(X)ᵀ wherever it is taken)."""
        at = {name: p.detach().clone().requires_grad_(True) for name, p in params0.items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(linearized(at), list(at.values()), self.coef, allow_unused=True)
        return {name: p0.detach() + (0 if g is None else g)
                for (name, p0), g in zip(params0.items(), grads, strict=True)}

    def tensors(self) -> list[Tensor]:
        """The state a step changes (what a CUDA graph's rewind restores)."""
        return [self.coef] if self.velocity is None else [self.coef, self.velocity]

    def state_dict(self) -> dict[str, Tensor | None]:
        return {"coef": self.coef.detach().cpu(),
                "velocity": None if self.velocity is None else self.velocity.detach().cpu()}

    def load_state_dict(self, state: dict[str, Tensor | None]) -> None:
        if state["coef"].shape != self.coef.shape or (state["velocity"] is None) != (self.velocity is None):
            raise ValueError("the checkpoint's function-space twin is not this run's "
                             "(training set or optimizer)")
        with torch.no_grad():
            self.coef.copy_(state["coef"])
            if self.velocity is not None:
                self.velocity.copy_(state["velocity"])
