"""sg3-train checks what its metrics need (detector weights, a StyleGAN3 G) when the run is built, dry runs
included, and the init_from log line of the run it builds."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import build_in_process, compose_plain

import sg3.metrics.features as features
from sg3.io import save_generator
from sg3.metrics.features import WEIGHT_FILES
from sg3.training.derive import ConfigError
from sg3.training.module import StyleGAN3Module

INCEPTION = WEIGHT_FILES["inception"]


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty weights folder, torch hub's folder too, downloads off: every detector file is missing."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("SG3_METRICS_OFFLINE", "1")
    monkeypatch.setenv("SG3_METRICS_WEIGHTS", str(tmp_path / "w"))
    return tmp_path / "w"


def metrics_callbacks(parts: dict) -> list:
    return [cb for cb in parts["trainer"].callbacks if type(cb).__name__ == "MetricsCallback"]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_missing_detector_weights_file_stops_the_build(tmp_path, no_weights, dry_run):
    wdir = tmp_path / "mine"
    args = ["experiment=demo", "metrics=fid_eq", f"metrics.weights_dir={wdir}", f"dry_run={dry_run}"]
    with pytest.raises(ConfigError) as e:
        build_in_process(args, tmp_path)
    msg = str(e.value)
    assert msg.startswith("metric 'fid50k_full' cannot run: detector weights file ") and "\n" not in msg
    assert (
        repr(str(wdir / INCEPTION.filename)) in msg
        and INCEPTION.url in msg
        and "downloads are disabled" in msg
    )
    assert "metrics.weights_dir=DIR" in msg and "eqt50k" not in msg and "eqr50k" not in msg  # EQ: no weights
    # $SG3_METRICS_WEIGHTS when metrics.weights_dir is null, as the metrics resolve it.
    with pytest.raises(ConfigError, match=re.escape(repr(str(no_weights / INCEPTION.filename)))):
        build_in_process(["experiment=demo", "metrics=fid50k_full"], tmp_path / "b")


def test_ppl_names_both_of_its_files_and_kid_shares_fids(tmp_path, no_weights):
    over = "metrics.metrics=[fid1k_full,kid1k_full,ppl2_wend,eqt50k_int]"
    with pytest.raises(ConfigError) as e:
        build_in_process(["experiment=demo", "metrics=fid_eq", over], tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.count("cannot run") == 3 and "eqt50k_int" not in msg
    for names, key in [("metrics 'fid1k_full', 'kid1k_full'", "inception"), ("metric 'ppl2_wend'", "lpips"),
                       ("metric 'ppl2_wend'", "vgg16")]:  # fmt: skip
        assert (
            f"{names} cannot run: detector weights file {str(no_weights / WEIGHT_FILES[key].filename)!r}"
            in msg
        )


def test_metrics_without_weights_or_with_their_files_build(tmp_path, no_weights, monkeypatch):
    parts = build_in_process(["experiment=demo", "metrics=eq"], tmp_path / "eq")  # EQ: no weights needed
    assert metrics_callbacks(parts)[0].metrics == ["eqt50k_int", "eqr50k"]
    # The file in the hub's checkpoints/ folder (searched after the weights folder) is found.
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / INCEPTION.filename).write_bytes(b"x")
    parts = build_in_process(["experiment=demo", "metrics=fid_eq"], tmp_path / "fid")
    assert len(metrics_callbacks(parts)) == 1
    # Missing, but downloads allowed and the host answers: fetched at first use, not by the build.
    (tmp_path / "hub" / "checkpoints" / INCEPTION.filename).unlink()
    monkeypatch.delenv("SG3_METRICS_OFFLINE")
    probed: list[str] = []
    monkeypatch.setattr(features, "_reachable", lambda url, timeout: probed.append(url) or True)
    parts = build_in_process(["experiment=demo", "metrics=fid50k_full"], tmp_path / "online")
    assert probed == [INCEPTION.url] and not no_weights.exists() and len(metrics_callbacks(parts)) == 1


def test_eq_metrics_on_a_stylegan2_and_unknown_metric_names_are_configuration_errors(tmp_path, no_weights):
    sg2 = [
        "data=demo",
        "trainer=cpu",
        "batch=8",
        "loss.r1_gamma=0.1",
        "model=stylegan2",
        "model.z_dim=32",
        "model.w_dim=32",
        "model.map_depth=2",
        "model.cbase=512",
        "model.cmax=16",
        "metrics=eq",
    ]
    with pytest.raises(ConfigError, match=r"^metrics 'eqt50k_int', 'eqr50k' cannot run: .*StyleGAN3"):
        build_in_process(sg2, tmp_path / "sg2")
    with pytest.raises(ConfigError, match=r"^metrics: unknown metric 'fid'; accepted: fid50k_full"):
        build_in_process(["experiment=demo", "metrics=eq", "metrics.metrics=[fid]"], tmp_path / "name")


def sg3_train(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **env}
    cmd = [sys.executable, "-m", "sg3.train", "threads=null", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_dry_run_logs_init_from_to_the_run_log(tmp_path):
    """`sg3-train ... init_from=<tiny exported generator> dry_run=true`: the line saying how many tensors were
    copied reaches the console and the run's train.log (train.py's logger, Hydra's handlers)."""
    torch.manual_seed(3)
    src = StyleGAN3Module(compose_plain(["experiment=demo", "logger=none"], resolution=32)).G_ema
    save_generator(str(tmp_path / "g.pt"), src)
    args = [
        "experiment=demo",
        "logger=none",
        "dry_run=true",
        f"init_from={tmp_path}/g.pt",
        f"hydra.run.dir={tmp_path}/b",
    ]
    proc = sg3_train(args, tmp_path, {"TORCH_HOME": str(tmp_path / "torch")})
    assert proc.returncode == 0, proc.stderr
    n_g = len(src.state_dict())
    line = f"init_from {tmp_path}/g.pt: copied {2 * n_g} tensors (G {n_g}/{n_g}, D 0/"
    assert line in (tmp_path / "b" / "train.log").read_text() and line in proc.stdout + proc.stderr


def test_build_copies_and_logs_init_from(tmp_path, caplog):
    plain = compose_plain(["experiment=demo", "logger=none"], resolution=32)
    torch.manual_seed(3)
    src = StyleGAN3Module(plain).G_ema
    save_generator(str(tmp_path / "g.pt"), src)
    with caplog.at_level(logging.INFO, logger="sg3.train"):
        parts = build_in_process(["experiment=demo", f"init_from={tmp_path}/g.pt"], tmp_path)
    n_g = len(src.state_dict())
    (record,) = [r for r in caplog.records if r.name == "sg3.train" and "init_from" in r.getMessage()]
    assert record.getMessage().startswith(
        f"init_from {tmp_path}/g.pt: copied {2 * n_g} tensors (G {n_g}/{n_g}"
    )
    for k, v in src.state_dict().items():
        assert torch.equal(parts["model"].G_ema.state_dict()[k], v)


def test_network_kwargs_the_chosen_kind_refuses_are_a_configuration_error(tmp_path):
    # The demo's StyleGAN3-only G_kwargs (num_layers, margin_size) left in place for a StyleGAN2 generator:
    # a one-line configuration error naming the key group and the refused name (was a TypeError traceback).
    with pytest.raises(ConfigError) as e:
        build_in_process(["experiment=demo", "model=stylegan2"], tmp_path / "g")
    msg = str(e.value)
    assert msg.startswith("model.G_kwargs: cannot build 'stylegan2' from init_kwargs [") and "\n" not in msg
    assert "unexpected keyword argument 'num_layers'" in msg
    with pytest.raises(ConfigError, match=r"^model\.D_kwargs: cannot build 'discriminator' .*'bogus'"):
        build_in_process(["experiment=demo", "+model.D_kwargs.bogus=1"], tmp_path / "d")
