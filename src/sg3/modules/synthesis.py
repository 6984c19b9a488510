"""StyleGAN3 synthesis network: Fourier-feature input, alias-free layers, ToRGB (spec §1.4-§1.9)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sg3 import ops
from sg3.modules.filters import design_lowpass_filter, layer_resampling, synthesis_schedule
from sg3.modules.layers import FullyConnectedLayer, modulated_conv2d


def _as_buffer(f: np.ndarray | None) -> torch.Tensor | None:
    return None if f is None else torch.from_numpy(f)


class SynthesisInput(nn.Module):
    """Fourier features with a learned per-sample rotation/translation (spec §1.5).

    Args:
        w_dim: Dimensionality of the intermediate latent w.
        channels: Number of Fourier features (output channels).
        size: Output size in pixels: an int or `[width, height]`.
        sampling_rate: Sampling rate of the output grid (pixels per image unit).
        bandwidth: Radius of the disc the frequencies are drawn from (cycles per image unit).
    """

    def __init__(
        self, w_dim: int, channels: int, size: int | list[int], sampling_rate: float, bandwidth: float
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # RNG order: frequencies, phases, mixing weight, then the affine layer.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth  # uniform on the disc
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))  # user-specified inverse transform
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Evaluate the features for `w` `[N, w_dim]`; returns `[N, channels, height, width]` float32."""
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"w must be [N, {self.w_dim}], got {list(w.shape)}")
        batch = w.shape[0]
        transforms = self.transform.unsqueeze(0)  # [1, 3, 3]
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0)  # [1, C]

        t = self.affine(w)  # [N, 4] = (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])  # [N, 3, 3]
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])  # [N, 3, 3]
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms  # [N, 3, 3]: output coords -> feature coords

        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ transforms[:, :2, :2]  # [N, C, 2]
        amps = 1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        amps = amps.clamp(0, 1)  # [N, C]

        width, height = int(self.size[0]), int(self.size[1])
        theta = torch.eye(2, 3, device=w.device)  # scaled by Python numbers: no host-to-device copy
        theta[0].mul_(0.5 * width / self.sampling_rate)
        theta[1].mul_(0.5 * height / self.sampling_rate)
        grids = torch.nn.functional.affine_grid(
            theta.unsqueeze(0), [1, 1, height, width], align_corners=False
        )  # [1, H, W, 2]

        x = grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)  # [N, H, W, 1, C]
        x = x.squeeze(3) + phases.unsqueeze(1).unsqueeze(2)  # [N, H, W, C]
        x = torch.sin(x * (np.pi * 2)) * amps.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()  # [N, H, W, C]
        return x.permute(0, 3, 1, 2)  # [NCHW]

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim:d}, channels={self.channels:d}, size={list(self.size)}, "
            f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"
        )


class SynthesisLayer(nn.Module):
    """One alias-free layer: modulated conv, then upsample -> leaky ReLU -> downsample (spec §1.6).

    Args:
        w_dim: Dimensionality of the intermediate latent w.
        is_torgb: Whether this is the final ToRGB layer (1x1, no demodulation, linear).
        is_critically_sampled: Whether the layer is critically sampled (disables radial filters).
        use_fp16: Run in float16 on CUDA (ignored on other devices or with force_fp32).
        in_channels: Input channels.
        out_channels: Output channels.
        in_size: Input size in pixels: an int or `[width, height]`.
        out_size: Output size in pixels: an int or `[width, height]`.
        in_sampling_rate: Input sampling rate.
        out_sampling_rate: Output sampling rate.
        in_cutoff: Input cutoff frequency (designs the up filter).
        out_cutoff: Output cutoff frequency (designs the down filter).
        in_half_width: Input transition half-width.
        out_half_width: Output transition half-width.
        conv_kernel: Convolution kernel size (non-ToRGB layers).
        filter_size: Taps per resampling factor.
        lrelu_upsampling: Upsampling factor around the nonlinearity.
        use_radial_filters: Use radial (jinc) down filters unless critically sampled.
        conv_clamp: Clamp activations to +-conv_clamp; None disables clamping.
        magnitude_ema_beta: Decay of the input-magnitude EMA.
    """

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size: int | list[int],
        out_size: int | list[int],
        in_sampling_rate: float,
        out_sampling_rate: float,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta
        if self.in_size[0] != self.in_size[1] or self.out_size[0] != self.out_size[1]:
            raise ValueError(
                f"only square layers are supported, got {list(self.in_size)}->{list(self.out_size)}"
            )

        plan = layer_resampling(
            is_torgb=is_torgb,
            is_critically_sampled=is_critically_sampled,
            in_size=int(self.in_size[0]),
            out_size=int(self.out_size[0]),
            in_sampling_rate=in_sampling_rate,
            out_sampling_rate=out_sampling_rate,
            conv_kernel=conv_kernel,
            filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling,
            use_radial_filters=use_radial_filters,
        )
        self.tmp_sampling_rate = plan.tmp_sampling_rate
        self.up_factor, self.up_taps, self.up_radial = plan.up_factor, plan.up_taps, False
        self.down_factor, self.down_taps, self.down_radial = (
            plan.down_factor,
            plan.down_taps,
            plan.down_radial,
        )
        self.padding = list(plan.padding)

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        k = self.conv_kernel
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        tmp_sr = self.tmp_sampling_rate
        up = design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2, tmp_sr)
        down = design_lowpass_filter(self.down_taps, out_cutoff, out_half_width * 2, tmp_sr, self.down_radial)
        self.register_buffer("up_filter", _as_buffer(up))
        self.register_buffer("down_filter", _as_buffer(down))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Run the layer.

        Args:
            x: Input `[N, in_channels, in_size, in_size]`.
            w: Latent `[N, w_dim]` for this layer.
            noise_mode: 'random', 'const' or 'none'; accepted for API compatibility and ignored.
            force_fp32: Never use float16, even where `use_fp16` is set.
            update_emas: Update `magnitude_ema` from this batch.

        Returns:
            `[N, out_channels, out_size, out_size]`, float16 or float32.
        """
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        expected = [self.in_channels, int(self.in_size[1]), int(self.in_size[0])]
        if x.ndim != 4 or list(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be [N, {expected[0]}, {expected[1]}, {expected[2]}], got {list(x.shape)}"
            )
        if update_emas:
            with torch.autograd.profiler.record_function("update_magnitude_ema"):
                magnitude_cur = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel**2)))

        use_fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        x = modulated_conv2d(
            x.to(dtype),
            self.weight,
            styles,
            padding=self.conv_kernel - 1,
            demodulate=not self.is_torgb,
            input_gain=input_gain,
        )
        x = ops.filtered_lrelu(
            x,
            fu=self.up_filter,
            fd=self.down_filter,
            b=self.bias.to(x.dtype),
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1 if self.is_torgb else np.sqrt(2),
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )
        return x

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, use_fp16={self.use_fp16}, "
            f"in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, "
            f"in_size={list(self.in_size)}, out_size={list(self.out_size)}, "
            f"in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, "
            f"up={self.up_factor}, down={self.down_factor}, padding={self.padding}"
        )


class SynthesisNetwork(nn.Module):
    """StyleGAN3 synthesis network (spec §1.4, §1.8).

    Args:
        w_dim: Dimensionality of the intermediate latent w.
        img_resolution: Output resolution, a power of two (16..1024 tested).
        img_channels: Output channels (1, 3 or 4).
        channel_base: Channel budget (channels = min((channel_base / 2) / cutoff, channel_max)).
        channel_max: Maximum channels per layer.
        num_layers: Number of layers excluding ToRGB.
        num_critical: Number of critically sampled layers at the end.
        first_cutoff: Cutoff of the first layer (cycles per image unit).
        first_stopband: Minimum stopband of the first layer.
        last_stopband_rel: Minimum stopband of the last layer relative to its cutoff.
        margin_size: Extra pixels around the internal feature maps.
        output_scale: Factor applied to the ToRGB output.
        num_fp16_res: Layers with out sampling rate above img_resolution / 2**num_fp16_res use fp16 (CUDA).
        **layer_kwargs: Passed to every `SynthesisLayer` (conv_kernel, filter_size, lrelu_upsampling,
            use_radial_filters, conv_clamp, magnitude_ema_beta).
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        design_keys = ("conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters")
        design = {k: layer_kwargs[k] for k in design_keys if k in layer_kwargs}
        sched = synthesis_schedule(
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            num_layers=num_layers,
            num_critical=num_critical,
            first_cutoff=first_cutoff,
            first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel,
            margin_size=margin_size,
            num_fp16_res=num_fp16_res,
            **design,
        )
        self.input = SynthesisInput(
            w_dim=w_dim,
            channels=int(sched["channels"][0]),
            size=int(sched["sizes"][0]),
            sampling_rate=sched["sampling_rates"][0],
            bandwidth=sched["cutoffs"][0],
        )
        self.layer_names = []
        for spec in sched["layers"]:
            layer = SynthesisLayer(
                w_dim=w_dim,
                is_torgb=spec.is_torgb,
                is_critically_sampled=spec.is_critically_sampled,
                use_fp16=spec.use_fp16,
                in_channels=spec.in_channels,
                out_channels=spec.out_channels,
                in_size=spec.in_size,
                out_size=spec.out_size,
                in_sampling_rate=spec.in_sampling_rate,
                out_sampling_rate=spec.out_sampling_rate,
                in_cutoff=spec.in_cutoff,
                out_cutoff=spec.out_cutoff,
                in_half_width=spec.in_half_width,
                out_half_width=spec.out_half_width,
                **layer_kwargs,
            )
            setattr(self, spec.name, layer)
            self.layer_names.append(spec.name)

    def forward(self, ws: torch.Tensor, **layer_kwargs) -> torch.Tensor:
        """Synthesize images from `ws` `[N, num_ws, w_dim]`.

        Args:
            ws: Per-layer latents `[N, num_ws, w_dim]`.
            **layer_kwargs: noise_mode (ignored), force_fp32, update_emas; passed to every layer.

        Returns:
            Images `[N, img_channels, img_resolution, img_resolution]`, float32, nominal range [-1, 1].
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, "
            f"img_channels={self.img_channels:d}, num_layers={self.num_layers:d}, "
            f"num_critical={self.num_critical:d}, margin_size={self.margin_size:d}, "
            f"num_fp16_res={self.num_fp16_res:d}"
        )
