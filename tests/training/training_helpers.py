"""Helpers for the training tests: composed configs and a tiny module driven without a Trainer."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from sg3.modules.augment import AUGPIPE_SPECS
from sg3.train import CONF_DIR, build
from sg3.training.derive import derive
from sg3.training.module import StyleGAN3Module

TINY = ["model=tiny", "batch=4", "loss.r1_gamma=1", "data.urls=unused", "logger=none"]


def compose_plain(overrides: list[str], resolution: int = 16, c_dim: int = 0, num_gpus: int = 1) -> dict:
    """The composed, resolved config as a plain dict with cfg['derived'] filled in."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["derived"] = derive(
        plain,
        resolution=resolution,
        img_channels=3,
        c_dim=c_dim,
        num_gpus=num_gpus,
        augment_specs=AUGPIPE_SPECS,
    )
    return plain


def tiny_module(extra: list[str] = (), seed: int = 0) -> StyleGAN3Module:
    """A tiny StyleGAN3-T module (16 px) whose `optimizers()` works without a Trainer."""
    torch.manual_seed(seed)
    module = StyleGAN3Module(compose_plain(TINY + list(extra)))
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts
    return module


def reals(n: int = 4, res: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, [n, 3, res, res], dtype=torch.uint8, generator=g), torch.zeros(n, 0)


def build_in_process(overrides: list[str], tmp_path: Path):
    """Run sg3.train.build() on a composed config, as @hydra.main would (no training)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            # threads=null: leave the test process's torch threads alone
            overrides=["threads=null", *overrides, f"runs_dir={tmp_path}", "logger=none"],
            return_hydra_config=True,
        )
    cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # @hydra.main passes the job config without it
    return build(cfg)
