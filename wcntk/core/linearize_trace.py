"""The twin's tangent map θ̇ ↦ J(θ₀)θ̇ on a fixed batch, traced once: torch.func.linearize's
trace without what forward AD's generality leaves in it.

torch.func.linearize(f, θ₀) records the forward-mode jvp with make_fx and folds everything that
depends only on θ₀ and x into constants. Forward AD's formulas serve any dtype, memory layout and
missing tangent, and the recorded graph keeps, on every call, work that returns its operand:

- ``_to_copy(expand(t))`` to t's own shape, dtype and device after each product with a Python
  scalar (the c_w, c_b and branch multipliers): a full-size copy, and its backward another;
- ``t * 1.0`` (a branch scale 1/√depth at depth 1);
- ``J_x · 0 + t``: the term of the input x, which has no tangent, folded into a full-size zero
  constant that every call adds (for a conv: the whole conv(0, W₀) at trace time, then the add);
- a copy of every tangent (linearize traces with stride-0 tangents; here they are contiguous).

:func:`linearize` traces as torch.func.linearize does, replaces those nodes by their operand
(:func:`simplify`: each returns the same values; adding an exact zero can change only the sign
of a zero), then moves each layer's scalar multiplier onto the small operand of its conv or
matmul and accumulates a dense layer's two tangent terms in one GEMM (:func:`fuse`: float
round-off), drops dead code and folds the constants. The CNN, ResNet and transformer twins train
through it (benchmarks/train_step.py --networks measures the step; docs/performance.md).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.fx import GraphModule, Node
from torch.fx.experimental.const_fold import split_const_subgraphs
from torch.fx.experimental.proxy_tensor import make_fx

from .layers import Params

aten = torch.ops.aten
# ops whose output is exactly zero when their first operand is (the others being constants)
ZERO_PRESERVING = {aten.alias.default, aten.expand.default, aten.view.default, aten._unsafe_view.default,
                   aten.clone.default, aten._to_copy.default, aten.t.default, aten.transpose.int,
                   aten.unsqueeze.default, aten.permute.default, aten.mul.Tensor, aten.mm.default,
                   aten.bmm.default, aten.convolution.default}
ZEROS = {aten.zeros.default, aten._efficientzerotensor.default}


def linearize(f: Callable[[Params], Tensor], params0: Params) -> tuple[Tensor, Callable[[Params], Tensor]]:
    """(f(θ₀), θ̇ ↦ J(θ₀)θ̇) with θ̇ a dict like θ₀; differentiable in θ̇ by autograd."""
    names = list(params0)
    out0 = f(params0)

    def tangent(*flat: Tensor) -> Tensor:
        with fwAD.dual_level():
            duals = {k: fwAD.make_dual(params0[k], t) for k, t in zip(names, flat, strict=True)}
            return fwAD.unpack_dual(f(duals)).tangent

    with warnings.catch_warnings():   # the tracer warns about its own internals
        warnings.simplefilter("ignore")
        graph = make_fx(tangent)(*[torch.zeros_like(v) for v in params0.values()])
        simplify(graph)
        fuse(graph)
        folded = split_const_subgraphs(graph)

    def jvp_fn(tangents: Params) -> Tensor:
        return folded(*[tangents[k] for k in names])

    jvp_fn.graph = folded.graph   # what runs per call, for inspection
    return out0, jvp_fn


def simplify(gm: GraphModule) -> None:
    """Replace the identity nodes of the module docstring by their operand; drop dead code."""
    variable: set[Node] = set()   # nodes that depend on a tangent
    zero: set[Node] = set()       # nodes that are exactly zero whatever the tangents
    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            variable.add(node)
            continue
        inputs = node.all_input_nodes
        if any(i in variable for i in inputs):
            variable.add(node)
        if node.op != "call_function":
            continue
        if node.target in ZEROS or (node.target in ZERO_PRESERVING
                                    and _zero_times_constants(node, zero, variable)):
            zero.add(node)
            continue
        same = _identity_operand(node, zero)
        if same is not None and not any(_mutates(u) for u in (*node.users, *same.users)):
            node.replace_all_uses_with(same)
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def _zero_times_constants(node: Node, zero: set[Node], variable: set[Node]) -> bool:
    """The first tensor operand is zero and the others are finite constants (θ₀, x), no bias."""
    first, *rest = node.args
    if first not in zero or (node.target is aten.convolution.default and node.args[2] is not None):
        return False
    return not any(isinstance(a, Node) and a in variable for a in rest)


def _identity_operand(node: Node, zero: set[Node]) -> Node | None:
    """The operand `node` returns unchanged (same shape, dtype, device, values), else None."""
    args = node.args
    if not args or not isinstance(args[0], Node):
        return None
    if node.target is aten.expand.default or node.target is aten._to_copy.default:
        allowed = {"dtype", "layout", "device"} if node.target is aten._to_copy.default else set()
        return args[0] if set(node.kwargs) <= allowed and _same_tensor(node, args[0]) else None
    if node.target in (aten.mul.Tensor, aten.mul.Scalar) and args[1] == 1 and not isinstance(args[1], Node):
        return args[0] if _same_tensor(node, args[0]) else None
    if node.target is aten.add.Tensor and "alpha" not in node.kwargs:
        a, b = args
        for z, other in ((a, b), (b, a)):
            if z in zero and isinstance(other, Node) and _same_tensor(node, other):
                return other
    return None


def _same_tensor(node: Node, operand: Node) -> bool:
    """node's traced value has operand's shape, strides, dtype and device."""
    out, val = node.meta.get("val"), operand.meta.get("val")
    if not isinstance(out, Tensor) or not isinstance(val, Tensor):
        return False
    return (out.shape == val.shape and out.stride() == val.stride() and out.dtype == val.dtype
            and out.device == val.device and out.layout == val.layout)


def _mutates(node: Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    return schema is not None and schema.is_mutable


def fuse(gm: GraphModule) -> None:
    """Rewrites that save full-size passes at the cost of float round-off:

    - (Σ_i A_i ⊛ B_i) · c → Σ_i A_i ⊛ (c·B_i) for a Python scalar c (a layer's c_w), ⊛ a conv or
      matmul and B_i its smaller operand (c·W₀ then folds into a constant);
    - mm(a, b) + C → addmm(C, a, b) (the tangent's two terms W₀ȧ + ΔW a₀ of a dense layer), and
      its bias term c_b·Δb as the input of the first: addmm(addmm(c_b·Δb, a₀, c_w·ΔWᵀ), ȧ, c_w·W₀ᵀ).

    (A conv's bias is left to its own add: mkldnn's convolution_backward computes the weight
    gradient whenever the bias gradient is asked for, so conv(ȧ, W₀, bias) would double the cost
    of that conv's backward.)
    """
    graph = gm.graph
    for rewrite in (_scaled_product, _accumulated):
        for node in list(graph.nodes):
            if node.op != "call_function" or not node.users:
                continue
            with graph.inserting_before(node):
                new = rewrite(graph, node)
            if new is not None:
                node.replace_all_uses_with(new)
                graph.erase_node(node)
    graph.eliminate_dead_code()
    gm.recompile()


def _call(graph, target, args: tuple, like: Node, kwargs: dict | None = None) -> Node:
    """A new node computing a tensor of like's shape and dtype (like's meta)."""
    node = graph.call_function(target, args, kwargs or {})
    node.meta = dict(like.meta)
    return node


def _numel(node: Node) -> int:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return val.numel() if isinstance(val, Tensor) else 0


def _scaled_product(graph, node: Node) -> Node | None:
    c = node.args[1] if node.target is aten.mul.Tensor else None
    x = node.args[0]
    if (isinstance(c, float | int) and not isinstance(c, bool) and isinstance(x, Node) and _numel(node)
            and node.meta["val"].dtype == x.meta["val"].dtype):
        return _scaled(graph, x, c, _numel(node))
    return None


def _scaled(graph, x: Node, c: float, size: int) -> Node | None:
    """A node equal to x·c whose multiplications touch fewer than `size` entries, else None."""
    if not isinstance(x, Node):
        return None
    if 0 < _numel(x) < size:
        return _call(graph, aten.mul.Tensor, (x, c), x)
    if len(x.users) != 1 or x.op != "call_function":
        return None
    args = list(x.args)
    if x.target is aten.add.Tensor and "alpha" not in x.kwargs:
        terms = [_scaled(graph, a, c, size) for a in args]
        return None if None in terms else _call(graph, aten.add.Tensor, tuple(terms), x)
    if x.target in (aten.view.default, aten._unsafe_view.default):
        inner = _scaled(graph, args[0], c, size)
        return None if inner is None else _call(graph, x.target, (inner, *args[1:]), x)
    if x.target is aten.convolution.default:
        small = [1] if args[2] is None else []    # the weight (a bias would be scaled too)
    else:
        small = [1, 0] if x.target in (aten.mm.default, aten.bmm.default) else []
    for i in small:
        if 0 < _numel(args[i]) < size:
            args[i] = _call(graph, aten.mul.Tensor, (args[i], c), args[i])
            return _call(graph, x.target, tuple(args), x, dict(x.kwargs))
    return None


def _accumulated(graph, node: Node) -> Node | None:
    """node = mm(a, b) + C as addmm(C, a, b) (C of the product's shape), and a dense layer's
    bias term as the input of its first GEMM."""
    if node.target is not aten.add.Tensor or "alpha" in node.kwargs:
        return None
    a, b = node.args
    for term, other in ((a, b), (b, a)):
        if not isinstance(term, Node) or not isinstance(other, Node) or len(term.users) != 1:
            continue
        if term.target is aten.mm.default and _numel(other) == _numel(node) == _numel(term):
            return _call(graph, aten.addmm.default, (other, *term.args), node)
        vector = other.meta.get("val")
        if (isinstance(vector, Tensor) and vector.dim() == 1 and _numel(term) == _numel(node)
                and term.meta["val"].shape[-1] == vector.numel()):
            biased = _with_bias(graph, term, other)
            if biased is not None:
                return biased
    return None


def _with_bias(graph, x: Node, bias: Node) -> Node | None:
    """x + bias (bias 1-d, along x's last dimension) with the bias as the input of the first GEMM
    of x's accumulation, when x is one (through views that keep the last dimension)."""
    if not isinstance(x, Node) or len(x.users) != 1 or x.op != "call_function":
        return None
    if x.target is aten.mm.default:
        return _call(graph, aten.addmm.default, (bias, *x.args), x)
    if x.target is aten.addmm.default and not x.kwargs:
        inner = _with_bias(graph, x.args[0], bias)
        return None if inner is None else _call(graph, x.target, (inner, *x.args[1:]), x)
    if x.target in (aten.view.default, aten._unsafe_view.default):
        src = x.args[0]
        if isinstance(src, Node) and src.meta["val"].shape[-1] == x.meta["val"].shape[-1]:
            inner = _with_bias(graph, src, bias)
            return None if inner is None else _call(graph, x.target, (inner, *x.args[1:]), x)
    return None
