"""Logger selection: W&B mode resolution (never online without credentials), CSV and TensorBoard files."""

from __future__ import annotations

import numpy as np
import pytest

from sg3.training.loggers import build_loggers, log_image, wandb_has_credentials, wandb_mode


def test_wandb_goes_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not wandb_has_credentials()
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit environment setting wins
    assert wandb_mode("online") == "disabled"
    with pytest.raises(ValueError, match="logger.mode='sometimes'"):
        wandb_mode("sometimes")


@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_csv_and_tensorboard_loggers_write_files(tmp_path, kind):
    (logger,) = build_loggers({"kind": kind}, tmp_path, name="r", run_id="abc", group=None, config={})
    logger.log_metrics({"Loss/G/loss": 0.5, "Progress/kimg": 1.0}, step=3)
    log_image([logger], "fakes", np.zeros([8, 8, 3], dtype=np.uint8), 3, "kimg 1")
    logger.finalize("success")
    folder = tmp_path / kind
    if kind == "csv":
        text = (folder / "metrics.csv").read_text()
        assert "Loss/G/loss" in text and "0.5" in text
    else:
        assert list(folder.glob("events.out.tfevents.*"))


def test_no_logger_and_unknown_kind(tmp_path):
    assert build_loggers({"kind": "none"}, tmp_path, name="r", run_id="a", group=None, config={}) == []
    with pytest.raises(ValueError, match="logger.kind='mlflow'"):
        build_loggers({"kind": "mlflow"}, tmp_path, name="r", run_id="a", group=None, config={})
