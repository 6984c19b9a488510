"""StyleGAN2/3 residual discriminator with minibatch-std and label projection (spec §3)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from sg3 import ops
from sg3.modules.layers import FullyConnectedLayer
from sg3.modules.stylegan2 import MappingNetwork

_ACT_GAIN = {"linear": 1.0, "lrelu": float(np.sqrt(2)), "relu": float(np.sqrt(2))}


def _check_architecture(architecture: str) -> None:
    if architecture != "resnet":
        raise ValueError(f"architecture must be 'resnet' for the discriminator, got {architecture!r}")


class Conv2dLayer(nn.Module):
    """Equalized-LR conv with optional FIR up/downsampling, bias, activation and clamp (spec §3).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        bias: Whether the layer has a bias.
        activation: 'linear', 'lrelu' or 'relu'.
        up: Upsampling factor.
        down: Downsampling factor.
        resample_filter: Low-pass taps for resampling.
        conv_clamp: Clamp the output to +-conv_clamp (times the call's gain); None disables it.
        trainable: False registers weight and bias as buffers (Freeze-D).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: list[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if activation not in _ACT_GAIN:
            raise ValueError(f"activation must be one of {sorted(_ACT_GAIN)}, got {activation!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))
        self.act_gain = _ACT_GAIN[activation]
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_value)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        """Convolve `x` `[N, in_channels, H, W]`; `gain` scales the activation gain and the clamp."""
        w = self.weight * self.weight_gain
        x = ops.conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),
        )
        b = self.bias.to(x.dtype) if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block: (fromrgb) -> conv0 -> conv1 (down 2), plus a 1x1 down-2 skip.

    Args:
        in_channels: Input channels; 0 for the first block (which starts from the image).
        tmp_channels: Channels inside the block.
        out_channels: Output channels.
        resolution: Input resolution of the block.
        img_channels: Image channels.
        first_layer_idx: Global index of the block's first layer (for Freeze-D).
        architecture: Only 'resnet'.
        activation: Activation of the convs.
        resample_filter: Low-pass taps for downsampling.
        conv_clamp: Clamp activations to +-conv_clamp; None disables it.
        use_fp16: Run in float16 on CUDA.
        fp16_channels_last: Use channels-last memory format for fp16 activations.
        freeze_layers: Layers with a global index below this are frozen (buffers, no gradient).
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: list[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        _check_architecture(architecture)
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_layers = 0

        def trainable() -> bool:
            idx = first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            down=2,
            resample_filter=resample_filter,
            trainable=trainable(),
            **common,
        )
        self.skip = Conv2dLayer(
            tmp_channels,
            out_channels,
            1,
            bias=False,
            down=2,
            resample_filter=resample_filter,
            trainable=trainable(),
        )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, None]:
        """Run the block on features `x` (None for the first block, which reads `img`)."""
        device = (x if x is not None else img).device
        use_fp16 = self.use_fp16 and not force_fp32 and device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        memory_format = torch.channels_last if self.channels_last and use_fp16 else torch.contiguous_format
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype=dtype, memory_format=memory_format))
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y + x, None


class MinibatchStdLayer(nn.Module):
    """Append the per-group standard deviation as extra feature maps (spec §3; strided groups).

    Args:
        group_size: Samples per group (capped at the batch size); None means the whole batch.
        num_channels: Number of extra feature maps (channels are split into this many groups).
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, C, H, W]` -> `[N, C + num_channels, H, W]`."""
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g != 0:
            raise ValueError(f"batch size {n} must be divisible by the minibatch-std group size {g}")
        if c % f != 0:
            raise ValueError(f"channels {c} must be divisible by mbstd num_channels {f}")
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, N/G, F, C/F, H, W]: sample n pairs with n + N/G
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [N/G, F, C/F, H, W]
        y = y.mean(dim=[2, 3, 4])  # [N/G, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels:d}"


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-std, conv, fc, output (or label projection); always float32.

    Args:
        in_channels: Input channels.
        cmap_dim: Label embedding size for the projection; 0 means unconditional (one logit).
        resolution: Spatial size of the input (4).
        img_channels: Image channels.
        architecture: Only 'resnet'.
        mbstd_group_size: Minibatch-std group size; None means the whole batch.
        mbstd_num_channels: Minibatch-std feature maps; 0 disables the layer.
        activation: Activation of conv and fc.
        conv_clamp: Clamp the conv output to +-conv_clamp; None disables it.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        _check_architecture(architecture)
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, 3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(
        self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None, force_fp32: bool = False
    ) -> torch.Tensor:
        """Features `[N, C, 4, 4]` (+ cmap `[N, cmap_dim]`) -> logits `[N, 1]` float32."""
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))  # [N, C*H*W] in (C, H, W) order
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Residual discriminator (spec §3).

    Args:
        c_dim: Conditioning label size; 0 means unconditional.
        img_resolution: Input resolution (power of two >= 8).
        img_channels: Image channels.
        architecture: Only 'resnet'.
        channel_base: Channels at resolution r are min(channel_base // r, channel_max).
        channel_max: Maximum channels.
        num_fp16_res: Number of highest resolutions that use fp16 on CUDA (never below 8x8).
        conv_clamp: Clamp conv activations to +-conv_clamp; None disables clamping.
        cmap_dim: Label embedding size; None means channels at 4x4 (ignored when c_dim == 0).
        block_kwargs: DiscriminatorBlock kwargs, e.g. {'freeze_layers': 2} (Freeze-D).
        mapping_kwargs: Label MappingNetwork kwargs (8 layers by default).
        epilogue_kwargs: DiscriminatorEpilogue kwargs, e.g. {'mbstd_group_size': 4}.
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        conv_clamp: float | None = 256,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(img_resolution, int) or img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution!r}")
        _check_architecture(architecture)
        block_kwargs, mapping_kwargs, epilogue_kwargs = (
            dict(k or {}) for k in (block_kwargs, mapping_kwargs, epilogue_kwargs)
        )
        self.init_kwargs = copy.deepcopy(
            dict(
                c_dim=c_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                architecture=architecture,
                channel_base=channel_base,
                channel_max=channel_max,
                num_fp16_res=num_fp16_res,
                conv_clamp=conv_clamp,
                cmap_dim=cmap_dim,
                block_kwargs=block_kwargs,
                mapping_kwargs=mapping_kwargs,
                epilogue_kwargs=epilogue_kwargs,
            )
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions + [4]}
        if min(channels.values()) < 1:
            raise ValueError(
                f"channel_base={channel_base} gives 0 channels at {img_resolution}x{img_resolution}; "
                f"use channel_base >= {img_resolution}"
            )
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=cur_layer_idx,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
                **common,
            )
            setattr(self, f"b{res}", block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common
        )

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False, **block_kwargs
    ) -> torch.Tensor:
        """Score images.

        Args:
            img: Images `[N, img_channels, img_resolution, img_resolution]`, nominal range [-1, 1].
            c: Labels `[N, c_dim]` (None or `[N, 0]` if unconditional).
            update_emas: Accepted for API compatibility; the discriminator has no EMAs.
            **block_kwargs: force_fp32.

        Returns:
            Logits `[N, 1]`, float32.
        """
        expected = [self.img_channels, self.img_resolution, self.img_resolution]
        if img.ndim != 4 or list(img.shape[1:]) != expected:
            raise ValueError(f"img must be [N, {', '.join(map(str, expected))}], got {list(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
