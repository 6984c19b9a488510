"""StyleGAN2 generator (config `stylegan2`, spec §1.10): constant input, noise, skip architecture.

Kept as the baseline that shows texture sticking next to StyleGAN3. The label mapping of the
discriminator also uses this module's `MappingNetwork` (8 layers, no w_avg).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sg3 import ops
from sg3.modules import generator as sg3_generator
from sg3.modules.layers import FullyConnectedLayer


class MappingNetwork(sg3_generator.MappingNetwork):
    """StyleGAN2 mapping network: the shared mapping with 8 layers by default (spec §1.10)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8, **kwargs):
        super().__init__(z_dim, c_dim, w_dim, num_ws, num_layers=num_layers, **kwargs)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution (spec §1.10 step 3).

    Args:
        x: Input `[N, I, H, W]`.
        weight: Base weight `[O, I, k, k]`.
        styles: Styles `[N, I]`.
        noise: Optional noise added after demodulation, broadcastable to the output.
        up: Upsampling factor (1 or 2).
        padding: Conv padding in pixels.
        resample_filter: FIR filter for upsampling (from `sg3.ops.setup_filter`).
        demodulate: Normalize each output channel's modulated weight.
        flip_weight: False = true convolution (used by the up-2 conv), True = cross-correlation.
        fused_modconv: One grouped conv with per-sample weights (True) or scale-conv-scale (False).

    Returns:
        `[N, O, H', W']` in the dtype of `x`.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_channels or styles.shape != (batch, in_channels):
        raise ValueError(
            f"x must be [N, {in_channels}, H, W] and styles [N, {in_channels}], "
            f"got {list(x.shape)} and {list(styles.shape)}"
        )
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalize against fp16 overflow; cancelled by demodulation.
        weight = weight * (
            1 / np.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [NOIkk]
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # [NO]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = ops.conv2d_resample(
            x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight
        )
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)

    if dcoefs is not None:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])  # [1, N*I, H, W]
    w = w.reshape(-1, in_channels, kh, kw)  # [N*O, I, k, k]
    x = ops.conv2d_resample(
        x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=batch, flip_weight=flip_weight
    )
    x = x.reshape(batch, -1, *x.shape[2:])  # [NOHW]
    return x if noise is None else x + noise.to(x.dtype)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias/lrelu of StyleGAN2 (conv0 with up=2, conv1 with up=1).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        w_dim: Intermediate latent size.
        resolution: Output resolution of the layer (noise map size).
        kernel_size: Convolution kernel size.
        up: Upsampling factor (1 or 2).
        use_noise: Whether to add per-pixel noise.
        activation: Activation name for `sg3.ops.bias_act`.
        resample_filter: Low-pass taps for upsampling.
        conv_clamp: Clamp activations to +-conv_clamp; None disables clamping.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: list[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = float(np.sqrt(2)) if activation in ("lrelu", "relu", "swish") else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1,
    ) -> torch.Tensor:
        """Run the layer on `x` `[N, in_channels, H, W]` with latent `w` `[N, w_dim]`."""
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            res = self.resolution
            noise = torch.randn([x.shape[0], 1, res, res], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(
            x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp
        )


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation (spec §1.10).

    Args:
        in_channels: Input channels.
        out_channels: Image channels.
        w_dim: Intermediate latent size.
        kernel_size: Convolution kernel size.
        conv_clamp: Clamp the output to +-conv_clamp; None disables clamping.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        """Map features `[N, in_channels, H, W]` to an image `[N, out_channels, H, W]`."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the StyleGAN2 'skip' synthesis network.

    Args:
        in_channels: Input channels; 0 for the first (4x4, constant input) block.
        out_channels: Output channels.
        w_dim: Intermediate latent size.
        resolution: Output resolution of this block.
        img_channels: Image channels.
        is_last: Whether this is the last block.
        architecture: Only 'skip' (every block has a torgb) is supported.
        resample_filter: Low-pass taps for up/downsampling.
        conv_clamp: Clamp activations to +-conv_clamp; None disables clamping.
        use_fp16: Run in float16 on CUDA.
        fp16_channels_last: Use channels-last memory format for fp16 activations.
        fused_modconv_default: True, False or 'inference_only' (fused only in eval mode).
        **layer_kwargs: Extra SynthesisLayer kwargs (kernel_size, use_noise, activation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: list[float] = (1, 3, 3, 1),
        conv_clamp: float | None = 256,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str = True,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"architecture must be 'skip' for the StyleGAN2 generator, got {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim,
            resolution,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
            **layer_kwargs,
        )
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        update_emas: bool = False,
        **layer_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the block: ws `[N, num_conv + num_torgb, w_dim]`; returns (features, image so far)."""
        w_iter = iter(ws.unbind(dim=1))
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        memory_format = torch.channels_last if self.channels_last and use_fp16 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training

        if self.in_channels == 0:
            x = (
                self.const.to(dtype=dtype, memory_format=memory_format)
                .unsqueeze(0)
                .repeat([ws.shape[0], 1, 1, 1])
            )
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """StyleGAN2 synthesis network, 'skip' architecture (spec §1.10).

    Args:
        w_dim: Intermediate latent size.
        img_resolution: Output resolution (power of two >= 4).
        img_channels: Image channels.
        channel_base: Channels at resolution r are min(channel_base // r, channel_max).
        channel_max: Maximum channels.
        num_fp16_res: Number of highest resolutions that use fp16 on CUDA (never below 8x8).
        **block_kwargs: SynthesisBlock kwargs (architecture, conv_clamp, fused_modconv_default, ...).
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if not isinstance(img_resolution, int) or img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution!r}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        if min(channels.values()) < 1:
            raise ValueError(
                f"channel_base={channel_base} gives 0 channels at {img_resolution}x{img_resolution}; "
                f"use channel_base >= {img_resolution}"
            )
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=(res == img_resolution),
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        """Synthesize images from ws `[N, num_ws, w_dim]` (noise_mode defaults to 'random')."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)  # shares w with the next conv0
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img


class Generator(sg3_generator.Generator):
    """StyleGAN2 generator (config `stylegan2`): same wrapper, kwargs and call signature as StyleGAN3's.

    Args:
        z_dim: Input latent size.
        c_dim: Conditioning label size; 0 means unconditional.
        w_dim: Intermediate latent size.
        img_resolution: Output resolution (power of two >= 4).
        img_channels: Image channels.
        mapping_kwargs: Extra MappingNetwork kwargs (num_layers defaults to 8).
        **synthesis_kwargs: SynthesisNetwork/block kwargs (channel_base, channel_max, num_fp16_res,
            conv_clamp, fused_modconv_default, architecture='skip', ...).
    """

    synthesis_class = SynthesisNetwork
    default_mapping_layers = 8
