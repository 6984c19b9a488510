"""Lightning loggers for a run: W&B first (offline when it cannot go online), CSV, TensorBoard.

W&B never blocks a run: without credentials, when its server cannot be reached within `logger.timeout`
seconds, or when going online fails later, the run logs offline into `<run dir>/wandb` (one warning names
the reason; `wandb sync` uploads it later). It never asks for input.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)
LOGGER_KINDS = ("wandb", "csv", "tensorboard", "none")
WANDB_MODES = ("auto", "online", "offline", "disabled")
DEFAULT_WANDB_URL = "https://api.wandb.ai"


def new_run_id() -> str:
    """A fresh W&B-style run id (8 lowercase alphanumerics)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def wandb_has_credentials() -> bool:
    """True if an API key is available (WANDB_API_KEY or a ~/.netrc entry for the W&B host)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL).hostname
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


def wandb_server_problem(timeout: float) -> str | None:
    """Why the W&B server (WANDB_BASE_URL, or the HTTPS proxy) cannot be reached within `timeout`, or None.

    Opens a TCP connection in a daemon thread, so a hanging DNS lookup cannot block the caller either.

    Args:
        timeout: Seconds to wait for the connection (> 0).
    """
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL)
    proxy = os.environ.get(f"{url.scheme}_proxy") or os.environ.get(f"{url.scheme.upper()}_PROXY")
    target = urlsplit(proxy) if proxy else url
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    where = f"{'proxy ' if proxy else ''}{target.scheme}://{host}:{port}"
    result: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as e:
            result.append(f"cannot connect to the W&B server at {where} ({e})")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 1)
    return result[0] if result else f"no answer from the W&B server at {where} within {timeout:g} s"


def resolve_wandb_mode(requested: str, timeout: float) -> tuple[str, str | None]:
    """The mode to run W&B in, and why it fell back to offline (None when it did not).

    Args:
        requested: `logger.mode` (auto | online | offline | disabled); WANDB_MODE in the environment wins.
        timeout: Seconds allowed to reach the W&B server before going offline.
    """
    mode = wandb_mode(requested)
    if mode != "online":
        return mode, None
    if not wandb_has_credentials():
        return "offline", "no W&B credentials (set WANDB_API_KEY or run `wandb login`)"
    problem = wandb_server_problem(timeout)
    return ("offline", problem) if problem else ("online", None)


def _offline_warning(reason: str, run_dir: str) -> None:
    log.warning(
        "W&B offline: %s; logging to %s/wandb instead (upload later: wandb sync %s/wandb/offline-run-*)",
        reason, run_dir, run_dir,
    )  # fmt: skip


class FallbackWandbLogger(WandbLogger):
    """A WandbLogger whose online start, if it fails (server, network, key), falls back to offline."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Lightning always passes anonymous=None, which wandb >= 0.2x answers with a deprecation warning.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    @property
    @rank_zero_experiment
    def experiment(self):
        try:
            return WandbLogger.experiment.fget(self)
        except Exception as e:  # noqa: BLE001 - any failure to go online: keep training, log offline
            if self._wandb_init.get("mode") != "online":
                raise
            _offline_warning(f"going online failed ({type(e).__name__}: {e})", str(self.save_dir))
            import wandb

            wandb.teardown()  # the failed online run still holds the run id in W&B's service process
            self._wandb_init["mode"] = "offline"
            self._experiment = None
            return WandbLogger.experiment.fget(self)


class _AppendingCSVWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing metrics.csv (a resumed run's) is continued: Lightning
    deletes it, and the curves before the resume were lost. Its header seeds the known keys; a new key
    rewrites the file with the wider header, keeping the old rows (Lightning's own rewrite)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class _ResumableCSVLogger(CSVLogger):
    """`CSVLogger` writing through `_AppendingCSVWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingCSVWriter(log_dir=self.log_dir)
        return self._experiment


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
        return [_ResumableCSVLogger(run_dir, name="csv", version="")]
    if kind == "tensorboard":
        return [TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False)]
    timeout = cfg.get("timeout", 20)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"logger.timeout={timeout!r} is not valid: a number of seconds > 0")
    if getattr(rank_zero_only, "rank", 0) == 0:
        mode, reason = resolve_wandb_mode(cfg.get("mode", "auto"), timeout)
        if reason is not None:
            _offline_warning(reason, run_dir)
        log.info("W&B mode: %s (run id %s)", mode, run_id)
    else:  # only rank 0 talks to W&B (other ranks get Lightning's dummy experiment)
        mode = wandb_mode(cfg.get("mode", "auto"))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    return [
        FallbackWandbLogger(
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
            settings={"init_timeout": timeout, "console": "off"},
        )
    ]


def finish_loggers(loggers: list[Logger], failed: bool = False) -> None:
    """End the W&B run this process started for a run (rank 0; other ranks have none).

    Lightning never ends it, and a new WandbLogger in the same process reuses a W&B run that is still open:
    without this, every later point of a local --multirun sweep would log into the first point's run.

    Args:
        loggers: The run's loggers.
        failed: Whether the run ended with an error (recorded as the W&B run's exit code).
    """
    for logger in loggers:
        run = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is not None and callable(getattr(run, "finish", None)):
            run.finish(exit_code=1 if failed else 0)
            logger._experiment = None


def logger_step(logger: Logger, kimg: float, batch_idx: int) -> int:
    """The x value a logger plots the tick statistics at: int(kimg) on TensorBoard (official), else steps."""
    return int(kimg) if isinstance(logger, TensorBoardLogger) else batch_idx


def log_image(loggers: list[Logger], key: str, image: np.ndarray, step: int, caption: str) -> None:
    """Log one uint8 HWC image to every logger that supports images (`step`: TensorBoard's, int(kimg))."""
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
