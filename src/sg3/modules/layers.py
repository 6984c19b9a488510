"""Building blocks shared by the networks: the equalized-LR fully connected layer and the SG3
modulated convolution (spec §1.2, §1.7)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sg3 import ops
from sg3.modules.modconv import modulated_conv


class FullyConnectedLayer(nn.Module):
    """Equalized-learning-rate linear layer (SG3 flavour, spec §1.2).

    Args:
        in_features: Number of input features.
        out_features: Number of output features.
        activation: Activation name understood by `sg3.ops.bias_act` ('linear', 'lrelu', ...).
        bias: Whether the layer has a bias parameter.
        lr_multiplier: Learning-rate multiplier; the stored weights are scaled by its inverse.
        weight_init: Standard deviation of the initial (effective) weight; 0 gives zero weights.
        bias_init: Initial effective bias: a scalar or one value per output feature.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        bias: bool = True,
        lr_multiplier: float = 1,
        weight_init: float = 1,
        bias_init: float | list[float] = 0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to `x` `[N, in_features]`; returns `[N, out_features]`."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.to(x.dtype).unsqueeze(0), x, w.t())
        x = x.matmul(w.t())  # may change dtype under autocast
        return ops.bias_act(x, b.to(x.dtype) if b is not None else None, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` so that the mean of its squares along `dim` is 1 (`x * rsqrt(mean(x^2) + eps)`)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    s: torch.Tensor,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Style-modulated convolution of StyleGAN3 (spec §1.7).

    The per-sample weight `weight[o,i] * s[n,i] * dcoefs[n,o] * input_gain[n,i]` is never kept for the
    backward pass (sg3.modules.modconv rebuilds it there); the convolution runs as one grouped conv over
    the batch, or as a batched matrix product for a 1x1 kernel without padding (same math, much faster
    on the CPU).

    Args:
        x: Input `[N, I, H, W]` (any float dtype; weights are cast to it at the end).
        w: Base weight `[O, I, k, k]` (float32).
        s: Styles `[N, I]` (float32).
        demodulate: Pre-normalize weight and styles and demodulate per output channel.
        padding: Zero padding on every side, in pixels.
        input_gain: Optional gain per input channel, a scalar or `[N, I]`, folded into the weights.

    Returns:
        `[N, O, H + 2*padding - k + 1, W + 2*padding - k + 1]` in the dtype of `x`.
    """
    batch = x.shape[0]
    out_channels, in_channels = w.shape[:2]
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"x must be [N, {in_channels}, H, W], got {list(x.shape)}")
    if s.shape != (batch, in_channels):
        raise ValueError(f"styles must be [{batch}, {in_channels}], got {list(s.shape)}")
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
        # sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 sum_k w[o,i,k]^2: no [N, O, I, k, k] tensor.
        energy = (s.square().unsqueeze(1) * w.square().sum([2, 3]).unsqueeze(0)).sum(2)  # [N, O]
        dcoefs = (energy + 1e-8).rsqrt()
    else:
        dcoefs = torch.ones([batch, out_channels], dtype=w.dtype, device=w.device)
    if input_gain is not None:
        s = s * input_gain.expand(batch, in_channels)  # [NI]
    return modulated_conv(x, w, s, dcoefs, padding)
