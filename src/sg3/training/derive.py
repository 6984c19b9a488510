"""Every derived training value, computed in one place (spec §4, §5.1, §5.2, §5.4).

`derive()` turns the composed run configuration (a plain dict) plus the facts known only at run time
(dataset resolution, channels, label count, number of processes) into the plain, JSON-able dict that
the LightningModule and the callbacks read. Nothing else in the package recomputes these numbers.
"""

from __future__ import annotations

import math
from typing import Any

MODEL_CFGS = ("stylegan3-t", "stylegan3-r", "stylegan2")
# trainer.precision values the training step supports (`32` and `"32"` are Lightning's names of 32-true).
# 16-mixed is not one: its GradScaler would see the gradients after the step has replaced their non-finite
# values (spec's NaN/inf cleanup), so overflow would go undetected; 64-true and bf16-true change the
# networks' parameter dtype, which the ops (float32 filters and buffers) do not take.
PRECISIONS = ("32-true", "bf16-mixed")
_PRECISION_ALIASES = {"32": "32-true"}
AUGMENT_MODES = ("ada", "fixed", "none")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or inconsistent (raised before training starts)."""


def _fail(key: str, value: Any, accepted: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not valid: {accepted}")


def _number(
    key: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    above: bool = False,
    integer: bool = False,
    optional: bool = False,
    accepted: str | None = None,
) -> Any:
    """`value` if it is a number (an int when `integer`) in the range, else a ConfigError naming the key.

    Args:
        key: The dotted config key, for the message.
        value: The configured value (Hydra gives a str for a non-numeric override, a bool for true/false).
        low: Smallest allowed value (excluded when `above`); None = no lower bound.
        high: Largest allowed value (included); None = no upper bound.
        above: The value must be strictly greater than `low`.
        integer: Only integers are accepted.
        optional: None (null) is accepted and returned as it is.
        accepted: The description of the accepted values in the message (default: built from the bounds).
    """
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    if accepted is None:
        accepted = kind
        if low is not None and high is not None:
            accepted += f" in [{low:g}, {high:g}]"
        elif low is not None:
            accepted += f" {'>' if above else '>='} {low:g}"
        if optional:
            accepted += ", or null"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and not math.isfinite(value):
        ok = False
    if ok and low is not None:
        ok = value > low if above else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise _fail(key, value, accepted)
    return value


def _check_run_values(cfg: dict) -> None:
    """The run-level numbers that `derive` passes on or the callbacks read (each named in its error)."""
    _number("total_kimg", cfg.get("total_kimg"), low=0, above=True)
    _number("kimg_per_tick", cfg.get("kimg_per_tick", 4), low=0, above=True)
    _number("snap", cfg.get("snap", 50), low=1, integer=True)
    _number("image_snap", cfg.get("image_snap"), low=1, integer=True, optional=True)
    _number("checkpoint_kimg", cfg.get("checkpoint_kimg"), low=0, above=True, optional=True)
    keep = "an integer >= 0 (the newest checkpoints kept; 0 keeps all)"
    _number("keep_checkpoints", cfg.get("keep_checkpoints", 3), low=0, integer=True, accepted=keep)
    _number("ema_kimg", cfg.get("ema_kimg"), low=0, optional=True, accepted="a number >= 0, or null")
    rampup = "a number > 0, or null for no ramp-up"
    _number("ema_rampup", cfg.get("ema_rampup", 0.05), low=0, above=True, optional=True, accepted=rampup)
    _number("seed", cfg.get("seed", 0), low=0, integer=True)
    _number("freeze_d", cfg.get("freeze_d") or 0, low=0, integer=True)
    for key in ("gw", "gh"):
        _number(f"grid.{key}", (cfg.get("grid") or {}).get(key), low=1, integer=True, optional=True)
    optim = cfg["optim"]
    for key in ("glr", "dlr"):
        _number(f"optim.{key}", optim.get(key), low=0, above=True, optional=key == "glr")
    _number("optim.eps", optim.get("eps", 1e-8), low=0, above=True)
    betas = optim.get("betas", [0, 0.99])
    if (
        not isinstance(betas, (list, tuple))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    ):
        raise _fail("optim.betas", betas, "two numbers in [0, 1), e.g. [0, 0.99]")
    aug = cfg["augment"]
    _number("augment.p", aug.get("p", 0.0), low=0, high=1, accepted="a probability in [0, 1]")
    signs = "a number in [-1, 1] (the wanted E[sign(D(real))])"
    _number("augment.target", aug.get("target", 0.6), low=-1, high=1, accepted=signs)
    _number("augment.interval", aug.get("interval", 4), low=1, integer=True)
    _number("augment.kimg", aug.get("kimg"), low=0, above=True, optional=True)
    probability = "a probability in [0, 1]"
    mixing = cfg["loss"].get("style_mixing_prob")
    _number("loss.style_mixing_prob", mixing, low=0, high=1, optional=True, accepted=probability)


def _augment_overrides(kwargs: dict) -> dict:
    """`augment.kwargs` checked against AugmentPipe's settings (names and values), as a ConfigError."""
    from sg3.modules.augment import check_augment_kwargs

    try:
        check_augment_kwargs(kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return dict(kwargs)


def lazy_regularization(lr: float, betas: list[float], interval: int | None) -> tuple[float, list[float]]:
    """Adam hyper-parameters corrected for lazy regularization (spec §5.1).

    Args:
        lr: Base learning rate.
        betas: Base Adam betas `[beta1, beta2]`.
        interval: Regularization interval in steps; None means no lazy regularization (unchanged values).

    Returns:
        `(lr * r, [b ** r for b in betas])` with `r = interval / (interval + 1)`.
    """
    if interval is None:
        return float(lr), [float(b) for b in betas]
    ratio = interval / (interval + 1)
    return float(lr) * ratio, [float(b) ** ratio for b in betas]


def magnitude_ema_beta(batch: int) -> float:
    """SG3 per-layer magnitude EMA decay for a global batch size: `0.5 ** (batch / 20000)`."""
    return 0.5 ** (batch / 20000)


def ema_kimg(batch: int) -> float:
    """G_ema half-life in kimg: 10 kimg at batch 32, proportional to the batch."""
    return batch * 10 / 32


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """G_ema decay for one step (spec §5.1).

    Args:
        batch: Global batch size (images per step).
        cur_nimg: Images seen before this step.
        ema_kimg: Half-life of the average in thousands of images.
        ema_rampup: Ramp-up factor (half-life at most `cur_nimg * ema_rampup`); None disables the ramp-up.
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def blur_sigma(cur_nimg: int, blur_init_sigma: float, blur_fade_kimg: float) -> float:
    """Std (pixels) of the Gaussian-like blur applied to D's inputs at `cur_nimg` (spec §4)."""
    if blur_fade_kimg <= 0:
        return 0.0
    return max(1 - cur_nimg / (blur_fade_kimg * 1e3), 0) * blur_init_sigma


def ada_adjust(batch: int, interval: int, ada_kimg: float) -> float:
    """Size of one ADA p step: p moves by this amount every `interval` steps (spec §5.4)."""
    return batch * interval / (ada_kimg * 1000)


def kimg_to_steps(kimg: float, batch: int) -> int:
    """Number of training steps needed to show `kimg` thousand images at `batch` images per step."""
    return math.ceil(kimg * 1000 / batch)


def training_phases(
    G_reg_interval: int | None, D_reg_interval: int | None, pl_weight: float, r1_gamma: float
) -> list[tuple[str, int]]:
    """Phase names and intervals in execution order, with the spec's remapping (§4, §5.1).

    Returns:
        e.g. `[('Gmain', 1), ('Dmain', 1), ('Dreg', 16)]` for StyleGAN3.
    """
    phases: list[tuple[str, int]] = []
    for prefix, interval, reg_on in (
        ("G", G_reg_interval, pl_weight != 0),
        ("D", D_reg_interval, r1_gamma != 0),
    ):
        if interval is None:
            phases.append((f"{prefix}both" if reg_on else f"{prefix}main", 1))
        else:
            phases.append((f"{prefix}main", 1))
            if reg_on:
                phases.append((f"{prefix}reg", int(interval)))
    return phases


def _is_pow2(x: int) -> bool:
    return isinstance(x, int) and x >= 4 and (x & (x - 1)) == 0


def _check_batch(batch: Any, batch_gpu: Any, num_gpus: int, mbstd_group: int) -> tuple[int, int]:
    if not isinstance(batch, int) or batch <= 0:
        raise _fail("batch", batch, "a positive integer (total images per step over all GPUs)")
    if batch % num_gpus:
        raise _fail(
            "batch",
            batch,
            f"a positive multiple of the {num_gpus} processes (trainer.devices x trainer.num_nodes)",
        )
    batch_per_gpu = batch // num_gpus
    if batch_gpu is None:
        batch_gpu = batch_per_gpu
    if not isinstance(batch_gpu, int) or batch_gpu <= 0 or batch_per_gpu % batch_gpu:
        raise _fail("batch_gpu", batch_gpu, f"a positive divisor of batch/processes = {batch_per_gpu}")
    if batch_gpu < mbstd_group:
        raise _fail("batch_gpu", batch_gpu, f"at least model.mbstd_group={mbstd_group}")
    if mbstd_group > 1 and batch_gpu % mbstd_group:
        raise _fail("batch_gpu", batch_gpu, f"a multiple of model.mbstd_group={mbstd_group}")
    return batch_per_gpu, batch_gpu


def _network_kwargs(model: dict, resolution: int, img_channels: int, c_dim: int, batch: int, freeze_d: int):
    cfg = model["cfg"]
    fp16_res = 0 if model.get("fp32") else 4
    conv_clamp = None if model.get("fp32") else 256
    g_scale = (
        2 if cfg == "stylegan3-r" else 1
    )  # R doubles G's (not D's) channel budget (spec §1.1, pitfall 10)
    G = dict(
        z_dim=int(model["z_dim"]),
        c_dim=c_dim,
        w_dim=int(model["w_dim"]),
        img_resolution=resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": int(model["map_depth"])},
        channel_base=int(model["cbase"]) * g_scale,
        channel_max=int(model["cmax"]) * g_scale,
        num_fp16_res=fp16_res,
        conv_clamp=conv_clamp,
    )
    if cfg != "stylegan2":
        G["magnitude_ema_beta"] = magnitude_ema_beta(batch)
        if cfg == "stylegan3-r":
            G.update(conv_kernel=1, use_radial_filters=True)
    else:
        G["fused_modconv_default"] = "inference_only"
    G.update(model.get("G_kwargs") or {})
    D = dict(
        c_dim=c_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        channel_base=int(model["cbase"]),
        channel_max=int(model["cmax"]),
        num_fp16_res=fp16_res,
        conv_clamp=conv_clamp,
        block_kwargs={"freeze_layers": int(freeze_d)},
        mapping_kwargs={},
        epilogue_kwargs={"mbstd_group_size": int(model["mbstd_group"])},
    )
    D.update(model.get("D_kwargs") or {})
    return G, D


def derive(
    cfg: dict,
    *,
    resolution: int,
    img_channels: int,
    c_dim: int,
    num_gpus: int = 1,
    augment_specs: dict | None = None,
) -> dict:
    """Compute all derived training values from the composed configuration.

    Args:
        cfg: The composed run configuration as a plain dict (keys `model`, `loss`, `optim`, `augment`,
            `batch`, `batch_gpu`, `total_kimg`, `kimg_per_tick`, `snap`, ...).
        resolution: Dataset image resolution in pixels (must match `model.resolution` when that is set).
        img_channels: Dataset image channels (1 or 3).
        c_dim: Label dimension given to G and D (0 = unconditional).
        num_gpus: Number of training processes (devices x nodes).
        augment_specs: Preset name -> AugmentPipe kwargs (`sg3.modules.augment.AUGPIPE_SPECS`); only needed
            when `augment.mode` is not 'none'.

    Returns:
        A plain dict of derived values (see the keys below); JSON-able.

    Raises:
        ConfigError: naming the key, the value and what would be accepted.
    """
    model, loss, optim, aug = cfg["model"], cfg["loss"], cfg["optim"], cfg["augment"]
    _check_run_values(cfg)
    name = model.get("cfg")
    if name not in MODEL_CFGS:
        raise _fail("model.cfg", name, f"one of {', '.join(MODEL_CFGS)}")
    if model.get("resolution") is not None and model["resolution"] != resolution:
        raise ConfigError(
            f"model.resolution={model['resolution']} does not match the dataset resolution {resolution}; "
            "use a dataset of that resolution (sg3-dataset --resolution) or set model.resolution=null"
        )
    if not _is_pow2(resolution):
        raise _fail("resolution", resolution, "a power of two >= 4 (resize the dataset with sg3-dataset)")
    if img_channels not in (1, 3):
        raise _fail("img_channels", img_channels, "1 or 3")
    r1_gamma = loss.get("r1_gamma")
    if not isinstance(r1_gamma, (int, float)) or r1_gamma < 0:
        raise _fail(
            "loss.r1_gamma", r1_gamma, "a number >= 0 (see docs/configs.md for per-resolution values)"
        )
    batch = cfg["batch"]
    mbstd_group = int(model["mbstd_group"])
    batch_per_gpu, batch_gpu = _check_batch(batch, cfg.get("batch_gpu"), num_gpus, mbstd_group)
    if not isinstance(cfg.get("tf32", False), bool):
        raise _fail("tf32", cfg["tf32"], "true or false")
    precision = (cfg.get("trainer") or {}).get("precision", "32-true")
    if _PRECISION_ALIASES.get(str(precision), str(precision)) not in PRECISIONS:
        raise _fail(
            "trainer.precision",
            precision,
            "32-true (default) or bf16-mixed (bf16 autocast, on the GPU and the CPU); the per-layer fp16 "
            "on CUDA is set by model.fp32",
        )
    freeze_d = int(cfg.get("freeze_d") or 0)
    transfer = cfg.get("init_from") is not None
    sg2 = name == "stylegan2"
    is_r = name == "stylegan3-r"

    G_kwargs, D_kwargs = _network_kwargs(model, resolution, img_channels, c_dim, batch, freeze_d)

    def pick(value, default):
        return default if value is None else value

    blur_init = pick(loss.get("blur_init_sigma"), 10 if is_r else 0)
    loss_kwargs = dict(
        r1_gamma=float(r1_gamma),
        style_mixing_prob=float(pick(loss.get("style_mixing_prob"), 0.9 if sg2 else 0)),
        pl_weight=float(pick(loss.get("pl_weight"), 2 if sg2 else 0)),
        pl_batch_shrink=int(loss.get("pl_batch_shrink", 2)),
        pl_decay=float(loss.get("pl_decay", 0.01)),
        pl_no_weight_grad=bool(pick(loss.get("pl_no_weight_grad"), sg2)),
        blur_init_sigma=0.0 if transfer else float(blur_init),
        blur_fade_kimg=float(pick(loss.get("blur_fade_kimg"), batch * 200 / 32 if is_r else 0)),
    )
    for key in ("pl_weight", "blur_init_sigma", "blur_fade_kimg"):  # style_mixing_prob: _check_run_values
        if loss_kwargs[key] < 0:
            raise _fail(f"loss.{key}", loss_kwargs[key], "a number >= 0")

    G_reg = optim.get("G_reg_interval", "auto")
    G_reg = (4 if sg2 else None) if G_reg == "auto" else G_reg
    D_reg = optim.get("D_reg_interval", 16)
    for key, val in (("optim.G_reg_interval", G_reg), ("optim.D_reg_interval", D_reg)):
        if val is not None and (not isinstance(val, int) or val < 1):
            raise _fail(key, val, "a positive integer, or null for no lazy regularization")
    betas = list(optim.get("betas", [0, 0.99]))
    eps = float(optim.get("eps", 1e-8))
    glr = pick(optim.get("glr"), 0.002 if sg2 else 0.0025)
    dlr = float(optim.get("dlr", 0.002))
    g_lr, g_betas = lazy_regularization(glr, betas, G_reg)  # corrected even when the reg phase is skipped
    d_lr, d_betas = lazy_regularization(dlr, betas, D_reg)

    mode = aug.get("mode", "ada")
    if mode not in AUGMENT_MODES:
        raise _fail("augment.mode", mode, f"one of {', '.join(AUGMENT_MODES)}")
    augment_kwargs = None
    if mode != "none":
        preset = aug.get("preset", "bgc")
        if augment_specs is None or preset not in augment_specs:
            known = ", ".join(sorted(augment_specs or {}))
            raise _fail("augment.preset", preset, f"one of {known}")
        augment_kwargs = {**augment_specs[preset], **_augment_overrides(aug.get("kwargs") or {})}
    ada_kimg = pick(aug.get("kimg"), 100 if transfer else 500)
    ada_interval = int(aug.get("interval", 4))
    ada = dict(
        mode=mode,
        p=float(aug.get("p", 0.0)) if mode != "none" else 0.0,
        target=float(aug.get("target", 0.6)),
        interval=ada_interval,
        kimg=float(ada_kimg),
        adjust=ada_adjust(batch, ada_interval, ada_kimg) if mode == "ada" else 0.0,
    )

    kimg_per_tick = float(cfg.get("kimg_per_tick", 4))
    snap = int(cfg.get("snap", 50))
    image_snap = int(pick(cfg.get("image_snap"), snap))
    snapshot_kimg = kimg_per_tick * snap
    total_kimg = float(cfg["total_kimg"])
    return dict(
        cfg=name,
        G_kind="stylegan2" if sg2 else "stylegan3",
        num_gpus=num_gpus,
        batch=batch,
        batch_per_gpu=batch_per_gpu,
        batch_gpu=batch_gpu,
        num_accum=batch_per_gpu // batch_gpu,
        resolution=resolution,
        img_channels=img_channels,
        c_dim=c_dim,
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        augment_kwargs=augment_kwargs,
        loss_kwargs=loss_kwargs,
        G_opt=dict(lr=g_lr, betas=g_betas, eps=eps),
        D_opt=dict(lr=d_lr, betas=d_betas, eps=eps),
        G_reg_interval=G_reg,
        D_reg_interval=D_reg,
        phases=[
            list(p) for p in training_phases(G_reg, D_reg, loss_kwargs["pl_weight"], loss_kwargs["r1_gamma"])
        ],
        ema_kimg=float(pick(cfg.get("ema_kimg"), ema_kimg(batch))),
        ema_rampup=None if transfer else cfg.get("ema_rampup", 0.05),
        ada=ada,
        total_kimg=total_kimg,
        total_steps=kimg_to_steps(total_kimg, batch),
        kimg_per_tick=kimg_per_tick,
        snapshot_kimg=snapshot_kimg,
        image_kimg=kimg_per_tick * image_snap,
        checkpoint_kimg=None if cfg.get("checkpoint_kimg") is None else float(cfg.get("checkpoint_kimg")),
        seed=int(cfg.get("seed", 0)),
    )
