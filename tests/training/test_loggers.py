"""Loggers: W&B mode resolution and offline fallback, artifacts offline, CSV and TensorBoard files."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from wandb_reader import read_artifacts, read_run

from sg3.training.loggers import (
    FallbackWandbLogger,
    build_loggers,
    log_artifact,
    log_image,
    wandb_has_credentials,
    wandb_mode,
)


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


@pytest.fixture
def wandb_sandbox(monkeypatch, tmp_path):
    """W&B's own folders under tmp_path; no WANDB_MODE from the environment."""
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(key, raising=False)
    for key in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home" / key.lower()))
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    return tmp_path


def finish(logger) -> None:
    """End the W&B run and its service process, so the offline run file is complete (sg3-train: at exit)."""
    import wandb

    logger.experiment.finish()
    wandb.teardown()


def offline_runs(run_dir) -> list:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("mode", ["online", "auto"])
def test_online_without_a_reachable_server_falls_back_offline_quickly(
    wandb_sandbox, monkeypatch, caplog, mode
):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    run_dir = wandb_sandbox / "run"
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="sg3.training.loggers"):
        (logger,) = build_loggers(
            {"kind": "wandb", "mode": mode, "timeout": 2},
            run_dir,
            name="r",
            run_id="fallbk01",
            group=None,
            config={},
        )
    assert time.perf_counter() - start < 10  # wandb.init's own retries took 22 s at init_timeout=10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "127.0.0.1:9" in warnings[0] and "offline" in warnings[0], warnings
    logger.log_metrics({"Loss/G/loss": 0.25}, step=1)
    finish(logger)
    (run,) = offline_runs(run_dir)
    history, _, run_id = read_run(run)
    assert run_id == "fallbk01" and any(h.get("Loss/G/loss") == 0.25 for h in history)


def test_a_failing_online_start_is_retried_offline(wandb_sandbox, monkeypatch, caplog):
    # The reachability probe passed (or the network broke after it): wandb.init fails, the run goes offline.
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    run_dir = wandb_sandbox / "run"
    logger = FallbackWandbLogger(
        name="r", save_dir=str(run_dir), project="sg3", id="fallbk02", mode="online",
        settings={"init_timeout": 2, "console": "off"},
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="sg3.training.loggers"):
        logger.log_metrics({"Loss/D/loss": 0.5}, step=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "going online failed" in warnings[0], warnings
    finish(logger)
    (run,) = offline_runs(run_dir)
    history, _, run_id = read_run(run)
    assert run_id == "fallbk02" and any(h.get("Loss/D/loss") == 0.5 for h in history)


def test_exported_generator_is_recorded_as_an_artifact_offline(wandb_sandbox):
    run_dir = wandb_sandbox / "run"
    (logger,) = build_loggers(
        {"kind": "wandb", "mode": "offline"}, run_dir, name="r", run_id="artif001", group=None, config={}
    )
    export = wandb_sandbox / "network-snapshot-000004.pt"
    export.write_bytes(b"generator bytes")
    log_artifact([logger], export, "generator-artif001", {"cur_nimg": 4000})
    finish(logger)
    (run,) = offline_runs(run_dir)
    (art,) = read_artifacts(run)
    assert (art["name"], art["type"]) == ("generator-artif001", "model")
    assert art["metadata"] == {"cur_nimg": 4000}
    assert art["files"] == ["network-snapshot-000004.pt"]


def test_logger_timeout_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="logger.timeout=0"):
        build_loggers({"kind": "wandb", "timeout": 0}, tmp_path, name="r", run_id="a", group=None, config={})


def train_in_process(runs_dir, name: str, extra: list[str] = ()) -> dict:
    """One tiny sg3 training run (1 step) in this process, as a point of a local --multirun sweep runs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sg3.train import CONF_DIR, run

    overrides = [
        "model=tiny", "data.urls=demo:16:32", "data.num_workers=0", "batch=8", "loss.r1_gamma=1",
        "total_kimg=0.008", "kimg_per_tick=0.008", "grid.gw=2", "grid.gh=2", "threads=null",
        "logger=wandb", "logger.mode=offline", f"runs_dir={runs_dir}", f"name={name}", *extra,
    ]  # fmt: skip
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(runs_dir / name)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return run(cfg)


@pytest.mark.slow
def test_each_run_of_a_process_logs_into_its_own_wandb_run(wandb_sandbox, monkeypatch):
    # A local --multirun sweep trains its points one after another in one process: the second point must not
    # log into the first point's W&B run (Lightning reuses any wandb run still open).
    import yaml

    import sg3.ops

    monkeypatch.setenv("SG3_DEMO_CACHE", str(wandb_sandbox / "demo"))
    runs = wandb_sandbox / "runs"
    before = sg3.ops.get_default_impl()
    sg3.ops.set_default_impl("ref")  # never waits for a compiled-ops build (they have their own tier)
    try:
        for name in ("a", "b"):
            train_in_process(runs, name)
    finally:
        sg3.ops.set_default_impl(before)
    for name in ("a", "b"):
        run_id = yaml.safe_load((runs / name / "config.yaml").read_text())["run"]["wandb_run_id"]
        (run,) = offline_runs(runs / name)
        history, config, logged_id = read_run(run)
        assert logged_id == run_id and config["name"] == name
        assert [h["Progress/kimg"] for h in history if "Progress/kimg" in h] == [0.008]


def test_csv_logger_of_a_resumed_run_keeps_the_earlier_rows(tmp_path):
    """docs/training.md: a resumed run continues its curves. Lightning's CSV writer deleted
    <run dir>/csv/metrics.csv when it found it ('Previous log files ... will be deleted'), so after
    `resume=auto` with logger=csv only the ticks after the resume were left."""
    for kimg, extra in ((0.0, {}), (0.1, {}), (0.2, {"Metrics/eqt": 50.0})):  # the third: a resumed process
        (logger,) = build_loggers({"kind": "csv"}, tmp_path, name="r", run_id="a", group=None, config={})
        logger.log_metrics({"Loss/G/loss": 1.0 + kimg, "Progress/kimg": kimg, **extra}, step=int(kimg * 10))
        logger.save()
        logger.finalize("success")
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].split(",") == ["Loss/G/loss", "Metrics/eqt", "Progress/kimg", "step"]
    assert rows[1].startswith("1.0,,0.0,0") and rows[3] == "1.2,50.0,0.2,2"
