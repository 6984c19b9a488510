"""Lightning loggers for a run: W&B first (offline when there are no credentials), CSV, TensorBoard."""

from __future__ import annotations

import logging
import netrc
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

log = logging.getLogger(__name__)
LOGGER_KINDS = ("wandb", "csv", "tensorboard", "none")
WANDB_MODES = ("auto", "online", "offline", "disabled")


def new_run_id() -> str:
    """A fresh W&B-style run id (8 lowercase alphanumerics)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def wandb_has_credentials() -> bool:
    """True if an API key is available (WANDB_API_KEY or a ~/.netrc entry for the W&B host)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode(requested: str) -> str:
    """Resolve the W&B mode: an explicit WANDB_MODE wins; 'auto' means online only with credentials."""
    if requested not in WANDB_MODES:
        raise ValueError(f"logger.mode={requested!r} is not valid: one of {', '.join(WANDB_MODES)}")
    env = os.environ.get("WANDB_MODE")
    if env in ("offline", "disabled", "online"):
        return env
    if requested == "auto":
        return "online" if wandb_has_credentials() else "offline"
    return requested


def build_loggers(
    cfg: dict, run_dir: str | os.PathLike, *, name: str, run_id: str, group: str | None, config: dict
) -> list[Logger]:
    """Create the loggers selected by `cfg` (the `logger` config group).

    Args:
        cfg: The logger config: `kind` (wandb | csv | tensorboard | none) and its options.
        run_dir: The run directory; loggers write below it.
        name: Run name shown in the dashboard (for sweeps: the swept values).
        run_id: W&B run id (kept across resumes so the curves continue).
        group: W&B group (the sweep name) or None.
        config: The resolved run configuration, recorded with the run.

    Returns:
        A list with zero or one logger.
    """
    kind = cfg.get("kind", "wandb")
    if kind not in LOGGER_KINDS:
        raise ValueError(f"logger.kind={kind!r} is not valid: one of {', '.join(LOGGER_KINDS)}")
    run_dir = str(run_dir)
    if kind == "none":
        return []
    if kind == "csv":
        return [CSVLogger(run_dir, name="csv", version="")]
    if kind == "tensorboard":
        return [TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False)]
    mode = wandb_mode(cfg.get("mode", "auto"))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    log.info("W&B mode: %s (run id %s)", mode, run_id)
    return [
        WandbLogger(
            name=name,
            save_dir=run_dir,
            project=cfg.get("project", "sg3"),
            entity=cfg.get("entity"),
            group=group,
            tags=list(cfg.get("tags") or []),
            id=run_id,
            resume="allow",
            mode=mode,
            log_model=False,
            config=config,
            job_type="train",
            settings={"init_timeout": 60, "console": "off"},
        )
    ]


def log_image(loggers: list[Logger], key: str, image: np.ndarray, step: int, caption: str) -> None:
    """Log one uint8 HWC image to every logger that supports images."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=None, caption=[caption])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, step, dataformats="HWC")


def log_artifact(loggers: list[Logger], path: str | os.PathLike, name: str, metadata: dict[str, Any]) -> None:
    """Upload a file (an exported generator) as a W&B model artifact."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            art = wandb.Artifact(name=name, type="model", metadata=metadata)
            art.add_file(str(path))
            logger.experiment.log_artifact(art)
