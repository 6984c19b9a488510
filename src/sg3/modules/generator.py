"""Mapping network and the StyleGAN3 generator (spec §1.1, §1.3)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sg3.modules.layers import FullyConnectedLayer, normalize_2nd_moment
from sg3.modules.synthesis import SynthesisNetwork


def check_latents(z: torch.Tensor | None, c: torch.Tensor | None, z_dim: int, c_dim: int) -> None:
    """Raise ValueError unless `z` is `[N, z_dim]` and `c` is `[N, c_dim]` (c may be None if c_dim == 0)."""
    if z_dim > 0 and (z is None or z.ndim != 2 or z.shape[1] != z_dim):
        raise ValueError(f"z must be [N, {z_dim}], got {None if z is None else list(z.shape)}")
    if c_dim > 0:
        if c is None or c.ndim != 2 or c.shape[1] != c_dim:
            raise ValueError(
                f"c must be [N, {c_dim}] for a conditional network, got "
                f"{None if c is None else list(c.shape)}"
            )
        if z_dim > 0 and c.shape[0] != z.shape[0]:
            raise ValueError(f"z and c batch sizes differ: {z.shape[0]} vs {c.shape[0]}")


class MappingNetwork(nn.Module):
    """z (+ c) -> w mapping with w_avg tracking and truncation (spec §1.3; SG2 and D variants §1.10, §3).

    Args:
        z_dim: Latent z size; 0 means no z (the discriminator's label mapping).
        c_dim: Conditioning label size; 0 means unconditional.
        w_dim: Output latent size.
        num_ws: Number of copies of w to broadcast to; None returns `[N, w_dim]`.
        num_layers: Number of fully connected layers.
        lr_multiplier: Learning-rate multiplier of the fully connected layers.
        w_avg_beta: Decay of the tracked average w; None disables tracking (no `w_avg` buffer).
        embed_features: Width of the label embedding; None means w_dim.
        layer_features: Width of the hidden layers; None means w_dim.
        activation: Activation of the fully connected layers.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        if z_dim < 0 or c_dim < 0 or (z_dim == 0 and c_dim == 0):
            raise ValueError(f"need z_dim > 0 or c_dim > 0 (both >= 0), got z_dim={z_dim}, c_dim={c_dim}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if embed_features is None else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        if c_dim == 0:
            embed_features = 0
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Map latents to w.

        Args:
            z: Latents `[N, z_dim]` (None if z_dim == 0).
            c: Labels `[N, c_dim]`; None or `[N, 0]` for unconditional networks.
            truncation_psi: Truncation strength; 1 disables truncation.
            truncation_cutoff: Truncate only the first this many ws; None truncates all.
            update_emas: Update `w_avg` from this batch.

        Returns:
            `[N, num_ws, w_dim]` (or `[N, w_dim]` when num_ws is None), float32.
        """
        check_latents(z, c, self.z_dim, self.c_dim)
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and hasattr(self, "w_avg"):
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if not hasattr(self, "w_avg") or self.num_ws is None:
                raise ValueError("truncation needs a mapping with num_ws and w_avg tracking")
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}"


class Generator(nn.Module):
    """StyleGAN3 generator, configs T and R (spec §1.1).

    Subclasses swap the synthesis network via `synthesis_class` and the mapping depth via
    `default_mapping_layers` (the StyleGAN2 generator does).

    Args:
        z_dim: Input latent size.
        c_dim: Conditioning label size; 0 means unconditional.
        w_dim: Intermediate latent size.
        img_resolution: Output resolution (power of two, 16..1024).
        img_channels: Output channels (1, 3 or 4).
        mapping_kwargs: Extra MappingNetwork kwargs (num_layers, lr_multiplier, w_avg_beta).
        **synthesis_kwargs: SynthesisNetwork/SynthesisLayer kwargs (channel_base, channel_max, num_fp16_res,
            conv_kernel, use_radial_filters, conv_clamp, magnitude_ema_beta, ...).
    """

    synthesis_class: type[nn.Module] = SynthesisNetwork
    default_mapping_layers: int = 2

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs,
    ) -> None:
        super().__init__()
        if z_dim <= 0:
            raise ValueError(f"z_dim must be > 0 for the StyleGAN3 generator, got {z_dim}")
        if img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {img_channels}")
        mapping_kwargs = dict(mapping_kwargs or {})
        self.init_kwargs = copy.deepcopy(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs,
                **synthesis_kwargs,
            )
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        # Synthesis first, then mapping: fixes parameter order and RNG consumption at init.
        self.synthesis = self.synthesis_class(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        mapping_kwargs.setdefault("num_layers", self.default_mapping_layers)
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs,
    ) -> torch.Tensor:
        """Generate images.

        Args:
            z: Latents `[N, z_dim]`.
            c: Labels `[N, c_dim]` (None or `[N, 0]` if unconditional).
            truncation_psi: Truncation strength; 1 disables truncation.
            truncation_cutoff: Truncate only the first this many ws; None truncates all.
            update_emas: Update `w_avg` and every layer's `magnitude_ema` (training).
            **synthesis_kwargs: noise_mode (ignored by StyleGAN3), force_fp32 and network-specific extras.

        Returns:
            Images `[N, img_channels, img_resolution, img_resolution]`, float32.
        """
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
