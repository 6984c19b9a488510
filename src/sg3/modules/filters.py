"""Filter design and the per-layer frequency schedule of the StyleGAN3 synthesis network.

Pure numpy/scipy (no torch): everything here is float64 design math (spec §1.4, §1.6, §9). The
networks turn the results into float32 buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal
import scipy.special


def kaiser_beta_for(numtaps: int, width: float, fs: float) -> float:
    """Kaiser window beta for a transition band, exactly as `scipy.signal.firwin` chooses it.

    Args:
        numtaps: Number of filter taps (>= 1).
        width: Transition band width, in the same unit as `fs` (cycles per image unit).
        fs: Sampling rate the filter runs at.

    Returns:
        The Kaiser beta (0 when the attenuation is <= 21 dB).
    """
    atten = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    return float(scipy.signal.kaiser_beta(atten))


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> np.ndarray | None:
    """Design a Kaiser-windowed low-pass filter (separable sinc or radial jinc).

    Args:
        numtaps: Number of taps per axis; 1 means "no filter" and returns None.
        cutoff: Cutoff frequency (same unit as `fs`).
        width: Transition band width (same unit as `fs`).
        fs: Sampling rate of the signal being filtered.
        radial: If True, a 2-D jinc filter `[numtaps, numtaps]`; otherwise 1-D separable taps `[numtaps]`.

    Returns:
        float32 taps summing to 1, or None for numtaps == 1.
    """
    if not isinstance(numtaps, (int, np.integer)) or numtaps < 1:
        raise ValueError(f"numtaps must be a positive int, got {numtaps!r}")
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return taps.astype(np.float32)
    if numtaps % 2 != 0:
        raise ValueError(f"radial filters need an even numtaps (r would hit 0), got {numtaps}")
    u = (np.arange(numtaps) - (numtaps - 1) / 2) / fs  # [numtaps] sample positions
    r = np.hypot(*np.meshgrid(u, u))  # [numtaps, numtaps]
    f = scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * r)
    w = np.kaiser(numtaps, kaiser_beta_for(numtaps, width, fs))
    f = f * np.outer(w, w)
    f = f / np.sum(f)
    return f.astype(np.float32)


@dataclass(frozen=True)
class Resampling:
    """Up/down factors, filter lengths and padding of one synthesis layer (spec §1.6)."""

    tmp_sampling_rate: float
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]


@dataclass(frozen=True)
class LayerSpec(Resampling):
    """Everything the schedule fixes for one synthesis layer (spec §1.4/§1.6; sizes/rates per axis equal)."""

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    out_stopband: float


def layer_resampling(
    *,
    is_torgb: bool,
    is_critically_sampled: bool,
    in_size: int,
    out_size: int,
    in_sampling_rate: float,
    out_sampling_rate: float,
    conv_kernel: int,
    filter_size: int,
    lrelu_upsampling: int,
    use_radial_filters: bool,
) -> Resampling:
    """Derive a layer's resampling plan from its input/output specs (spec §1.6).

    Args:
        is_torgb: Whether this is the final ToRGB layer (1x1 conv, no resampling).
        is_critically_sampled: Whether the layer is one of the critically sampled last layers.
        in_size: Input spatial size in pixels (square).
        out_size: Output spatial size in pixels (square).
        in_sampling_rate: Input sampling rate.
        out_sampling_rate: Output sampling rate.
        conv_kernel: Convolution kernel size of non-ToRGB layers.
        filter_size: Taps per resampling factor.
        lrelu_upsampling: Extra upsampling factor around the nonlinearity.
        use_radial_filters: Use radial down filters where not critically sampled.

    Returns:
        The layer's `Resampling` plan.
    """
    tmp_sr = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
    up = int(np.rint(tmp_sr / in_sampling_rate))
    down = int(np.rint(tmp_sr / out_sampling_rate))
    if in_sampling_rate * up != tmp_sr or out_sampling_rate * down != tmp_sr:
        raise ValueError(
            f"sampling rates {in_sampling_rate}->{out_sampling_rate} are not integer ratios of {tmp_sr}"
        )
    up_taps = filter_size * up if up > 1 and not is_torgb else 1
    down_taps = filter_size * down if down > 1 and not is_torgb else 1
    k = 1 if is_torgb else conv_kernel
    pad_total = (out_size - 1) * down + 1 - (in_size + k - 1) * up + up_taps + down_taps - 2
    pad_lo = (pad_total + up) // 2  # floor division, also for negative totals
    pad_hi = pad_total - pad_lo
    return Resampling(
        tmp_sampling_rate=tmp_sr,
        up_factor=up,
        down_factor=down,
        up_taps=up_taps,
        down_taps=down_taps,
        down_radial=bool(use_radial_filters and not is_critically_sampled),
        padding=(int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)),
    )


def synthesis_schedule(
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
    num_fp16_res: int = 4,
    conv_kernel: int = 3,
    filter_size: int = 6,
    lrelu_upsampling: int = 2,
    use_radial_filters: bool = False,
) -> dict:
    """Per-entry cutoffs, stopbands, sampling rates, sizes and channels (spec §1.4), in float64.

    Args:
        img_resolution: Output resolution (power of two).
        img_channels: Output channels (ToRGB width).
        channel_base: Channel budget; channels = rint(min((channel_base / 2) / cutoff, channel_max)).
        channel_max: Upper bound on channels.
        num_layers: Number of synthesis layers excluding ToRGB.
        num_critical: Number of critically sampled layers at the end.
        first_cutoff: Cutoff of the first layer.
        first_stopband: Minimum stopband of the first layer.
        last_stopband_rel: Minimum stopband of the last layer relative to its cutoff.
        margin_size: Extra pixels on each side of the internal feature maps.
        num_fp16_res: Layers whose output rate exceeds img_resolution / 2**num_fp16_res use fp16 (CUDA).
        conv_kernel: Convolution kernel size.
        filter_size: Taps per resampling factor.
        lrelu_upsampling: Extra upsampling around the nonlinearity.
        use_radial_filters: Radial down filters for layers that are not critically sampled.

    Returns:
        dict with numpy arrays `cutoffs, stopbands, sampling_rates, half_widths, sizes, channels`
        (num_layers + 1 entries each) and `layers`: a list of `LayerSpec`.
    """
    if not isinstance(img_resolution, int) or img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution!r}")
    if num_layers <= num_critical:
        raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    if channels.min() < 1:
        raise ValueError(
            f"channel_base={channel_base} gives 0 channels at {img_resolution}x{img_resolution}; "
            f"use channel_base >= {img_resolution}"
        )

    layers = []
    for idx in range(num_layers + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == num_layers
        is_crit = idx >= num_layers - num_critical
        plan = layer_resampling(
            is_torgb=is_torgb,
            is_critically_sampled=is_crit,
            in_size=int(sizes[prev]),
            out_size=int(sizes[idx]),
            in_sampling_rate=int(sampling_rates[prev]),
            out_sampling_rate=int(sampling_rates[idx]),
            conv_kernel=conv_kernel,
            filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling,
            use_radial_filters=use_radial_filters,
        )
        layers.append(
            LayerSpec(
                index=idx,
                name=f"L{idx}_{int(sizes[idx])}_{int(channels[idx])}",
                is_torgb=is_torgb,
                is_critically_sampled=is_crit,
                use_fp16=bool(sampling_rates[idx] * (2**num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]),
                out_channels=int(channels[idx]),
                in_size=int(sizes[prev]),
                out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]),
                out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=float(cutoffs[prev]),
                out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]),
                out_half_width=float(half_widths[idx]),
                out_stopband=float(stopbands[idx]),
                **vars(plan),
            )
        )
    return {
        "cutoffs": cutoffs,
        "stopbands": stopbands,
        "sampling_rates": sampling_rates,
        "half_widths": half_widths,
        "sizes": sizes,
        "channels": channels,
        "layers": layers,
    }
