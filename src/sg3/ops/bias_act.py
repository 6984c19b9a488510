"""bias_act: add a per-channel bias, apply an activation, scale by a gain, clamp (spec §2.2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sg3.ops import _dispatch
from sg3.ops._params import as_int, check_scalar, check_tensor


@dataclass(frozen=True)
class Activation:
    """One activation function of bias_act.

    Attributes:
        func: Pure-PyTorch function `(x, alpha) -> y` (differentiable to any order).
        def_alpha: Default alpha (only lrelu uses it).
        def_gain: Default gain.
        code: Integer code understood by the compiled kernels (see csrc/ops.h).
        has_2nd_grad: Whether the second derivative is non-zero somewhere.
    """

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    code: int
    has_2nd_grad: bool


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, _: x, 0.0, 1.0, 1, False),
    "relu": Activation(lambda x, _: torch.relu(x), 0.0, math.sqrt(2), 2, False),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 3, False),
    "tanh": Activation(lambda x, _: torch.tanh(x), 0.0, 1.0, 4, True),
    "sigmoid": Activation(lambda x, _: torch.sigmoid(x), 0.0, 1.0, 5, True),
    "elu": Activation(lambda x, _: F.elu(x), 0.0, 1.0, 6, True),
    "selu": Activation(lambda x, _: F.selu(x), 0.0, 1.0, 7, True),
    "softplus": Activation(lambda x, _: F.softplus(x), 0.0, 1.0, 8, True),
    "swish": Activation(lambda x, _: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9, True),
}


def _bias_act_ref(x, b, dim, spec: Activation, alpha: float, gain: float, clamp: float | None):
    """Pure-PyTorch bias_act (autograd gives every derivative order)."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])  # broadcast along dim
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _reduce_to_bias(g: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum a gradient over every axis except `dim` (the bias gradient)."""
    return g.sum([i for i in range(g.ndim) if i != dim])


def _kernel_view(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, int, bool]:
    """A contiguous view of x for the kernel, the bias axis in that view, and whether it was permuted.

    A channels_last `[N, C, H, W]` tensor with dim=1 is passed as its contiguous `[N, H, W, C]` view,
    avoiding a copy.
    """
    if x.is_contiguous():
        return x, dim, False
    if x.ndim == 4 and dim == 1 and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1), 3, True  # [N, H, W, C], contiguous
    return x.contiguous(), dim, False


_EMPTY: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _empty_like_kind(x: torch.Tensor) -> torch.Tensor:
    """A shared empty tensor of x's dtype and device (the kernels' "no bias" / "no dy"; never written)."""
    key = (x.dtype, x.device)
    empty = _EMPTY.get(key)
    if empty is None:
        empty = _EMPTY[key] = torch.empty([0], dtype=x.dtype, device=x.device)
    return empty


def _call_kernel(
    ext, x, b, dy, grad: int, dim: int, code: int, alpha: float, gain: float, clamp: float, db: bool = False
):
    """Run the compiled bias_act kernel on compatible layouts; returns a tensor laid out like x.

    With `db=True` (grad 1 or 3, an extension that has `bias_act_grad_db`), returns `(dx, db)` with the
    bias gradient reduced in the same pass.
    """
    xv, kdim, permuted = _kernel_view(x, dim)
    dyv = None
    if dy is not None:
        dyv = dy.permute(0, 2, 3, 1) if permuted else dy  # [N, H, W, C] view when x is channels_last
        dyv = dyv.contiguous()
    empty = _empty_like_kind(x)
    bv = b if b is not None else empty
    if db:
        out, dbias = ext.bias_act_grad_db(xv, bv, dyv, grad, kdim, code, alpha, gain, clamp)
        return (out.permute(0, 3, 1, 2) if permuted else out), dbias
    out = ext.bias_act(xv, bv, dyv if dyv is not None else empty, grad, kdim, code, alpha, gain, clamp)
    return out.permute(0, 3, 1, 2) if permuted else out


def _fuses_db(ext) -> bool:
    """Whether the extension reduces the bias gradient inside the backward kernel (the CPU one does)."""
    return hasattr(ext, "bias_act_grad_db")


# Kernel derivative modes (csrc/ops.h): 1 = from the pre-activation x (with b), 3 = from the output y.
_FROM_X, _FROM_Y = 1, 3


def _grad_mode(spec: Activation, alpha: float, gain: float, clamp: float) -> int | None:
    """How the backward reads act': None (a constant: linear without clamp, nothing saved), `_FROM_Y`
    (linear/relu/lrelu with gain > 0 and alpha >= 0: the sign and the clamp are visible in the output,
    which the next layer saves anyway) or `_FROM_X` (the other activations: x and b are saved)."""
    if spec.code == ACTIVATIONS["linear"].code and clamp < 0:
        return None
    if spec.code <= ACTIVATIONS["lrelu"].code and gain > 0 and alpha >= 0:
        return _FROM_Y
    return _FROM_X


class _BiasActCompiled(torch.autograd.Function):
    """Compiled bias_act forward; backward via _BiasActGradCompiled (so it differentiates twice).

    Saves what the derivative needs and no more (`_grad_mode`): for the piecewise-linear activations the
    output, which the following layer keeps for its own backward, so the pre-activation is freed.
    """

    @staticmethod
    def forward(ctx, x, b, ext, dim, spec, alpha, gain, clamp):  # noqa: D102
        y = _call_kernel(ext, x, b, None, 0, dim, spec.code, alpha, gain, clamp)
        mode = _grad_mode(spec, alpha, gain, clamp)
        ctx.mode = mode
        ctx.has_b = b is not None
        if mode == _FROM_X:
            ctx.save_for_backward(x, b)
        elif mode == _FROM_Y:
            ctx.save_for_backward(y)
        ctx.args = (ext, dim, spec, alpha, gain, clamp)
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        ext, dim, spec, alpha, gain, clamp = ctx.args
        mode = ctx.mode
        ref, b = (None, None)
        if mode == _FROM_X:
            ref, b = ctx.saved_tensors
        elif mode == _FROM_Y:
            (ref,) = ctx.saved_tensors
        want_db = ctx.has_b and ctx.needs_input_grad[1]
        if mode is None:  # linear without clamp: dx = gain * dy (differentiable as it stands)
            dx = dy * gain
            return dx, (_reduce_to_bias(dx, dim) if want_db else None), None, None, None, None, None, None
        fused = want_db and _fuses_db(ext)
        if torch.is_grad_enabled():  # create_graph: a differentiable node for double backward
            out = _BiasActGradCompiled.apply(dy, ref, b, ext, dim, spec, alpha, gain, clamp, fused, mode)
        else:  # plain backward: call the kernel directly (saves a node on small tensors)
            out = _call_kernel(ext, ref, b, dy, mode, dim, spec.code, alpha, gain, clamp, db=fused)
        dx, db = out if fused else (out, _reduce_to_bias(out, dim) if want_db else None)
        return dx, db, None, None, None, None, None, None


class _BiasActGradCompiled(torch.autograd.Function):
    """dx = dy * gain * act'(v) (zero where clamped), v read off `ref` = x (+ b) or the output y per `mode`;
    with `with_db` also db = dx summed over all axes but dim (one kernel pass); differentiable once more."""

    @staticmethod
    def forward(ctx, dy, ref, b, ext, dim, spec, alpha, gain, clamp, with_db, mode):  # noqa: D102
        ctx.save_for_backward(dy, ref, b)
        ctx.args = (ext, dim, spec, alpha, gain, clamp, mode)
        return _call_kernel(ext, ref, b, dy, mode, dim, spec.code, alpha, gain, clamp, db=with_db)

    @staticmethod
    def backward(ctx, ddx, ddb=None):  # noqa: D102
        dy, ref, b = ctx.saved_tensors
        ext, dim, spec, alpha, gain, clamp, mode = ctx.args
        if ddb is not None:  # db = sum(dx): its gradient reaches every element of dx along dim
            ddx = ddx + ddb.reshape([-1 if i == dim else 1 for i in range(ddx.ndim)])
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActGradCompiled.apply(ddx, ref, b, ext, dim, spec, alpha, gain, clamp, False, mode)
        # act'' is zero for the piecewise-linear activations (mode _FROM_Y): y and b get no gradient.
        if mode == _FROM_X and spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = _call_kernel(ext, ref, b, ddx * dy, 2, dim, spec.code, alpha, gain, clamp)
            if b is not None and ctx.needs_input_grad[2]:
                d_b = _reduce_to_bias(d_x, dim)
        return d_dy, d_x, d_b, None, None, None, None, None, None, None, None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Add bias `b` along axis `dim`, apply `act`, multiply by `gain`, clamp to `[-clamp, clamp]`.

    Args:
        x: Input tensor of any rank, floating point.
        b: Bias `[x.shape[dim]]` of the same dtype as x; None = no bias.
        dim: Axis of x that `b` runs along (unused without b).
        act: 'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus' or 'swish'.
        alpha: Negative slope of lrelu (None = 0.2); ignored by the other activations.
        gain: Output scale (None = the activation's default: sqrt(2) for relu/lrelu/swish, else 1).
        clamp: Clamp the output to `[-clamp, clamp]` (None = no clamping; must be >= 0).
        impl: 'auto', 'ref', 'cpp' or 'cuda'.

    Returns:
        Tensor of the same shape and dtype as x.
    """
    check_tensor(x, "x")
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    axis = as_int(dim)
    in_range = axis is not None and -x.ndim <= axis < x.ndim
    if axis is None or (b is not None and not in_range):
        raise ValueError(
            f"dim must be an int in [{-x.ndim}, {x.ndim}) for x of shape {list(x.shape)}, got {dim!r}"
        )
    dim = axis % x.ndim if in_range else 0  # dim only places b: without b any x (even 0-d) works
    if b is not None:
        check_tensor(b, "b", ndim=None)
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"b must be 1-D of length x.shape[{dim}] = {x.shape[dim]}, got shape {list(b.shape)}"
            )
        if b.dtype != x.dtype:
            raise TypeError(f"b must have the same dtype as x ({x.dtype}), got {b.dtype}")
        if b.device != x.device:
            raise ValueError(f"b must be on the same device as x ({x.device}), got {b.device}")
    spec = ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else check_scalar(alpha, "alpha")
    gain = spec.def_gain if gain is None else check_scalar(gain, "gain")
    clamp = check_scalar(clamp, "clamp", allow_none=True, minimum=0)
    name, ext = _dispatch.resolve(impl, x)
    if name == "ref":
        return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
    if x.ndim == 0:  # the kernels take rank >= 1 (b is None here: a 0-d x has no axis for it)
        return bias_act(x.reshape(1), None, 0, act, alpha, gain, clamp, impl=name).reshape(())
    if x.dtype in (torch.float16, torch.bfloat16) and not x.is_cuda:
        bf = b.float() if b is not None else None
        y = _BiasActCompiled.apply(
            x.float(), bf, ext, dim, spec, alpha, gain, -1.0 if clamp is None else clamp
        )
        return y.to(x.dtype)
    return _BiasActCompiled.apply(x, b, ext, dim, spec, alpha, gain, -1.0 if clamp is None else clamp)
