"""A misspelt key on the command line: sg3-train names the nearest known key (Hydra: 'not in struct')."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sg3.train import CONF_DIR
from sg3.training.config_hints import unknown_key_hint


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["model=tiny", "totl_kimg=1"], "totl_kimg is not a configuration key; did you mean total_kimg?"),
        (["--multirun", "loss.r1_gama=1,2"], "did you mean loss.r1_gamma?"),
        (["model=tiny", "model.cbse=1"], "did you mean model.cbase?"),
        (["augment.kwargs.rotate90=0"], "e.g. +augment.kwargs.rotate90=0"),
        (["foo=1"], "foo is not a configuration key (add a new one with +foo=...)"),
    ],
)
def test_the_hint_names_the_nearest_key(args, hint):
    assert hint in unknown_key_hint(args, CONF_DIR)


def test_known_keys_get_no_hint():
    assert unknown_key_hint(["model=tiny", "total_kimg=1", "+augment.kwargs.xflip=1"], CONF_DIR) is None


def test_sg3_train_prints_the_hint_after_hydras_error(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "sg3.train", "model=tiny", "totl_kimg=1", f"runs_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "sg3-train: hint: totl_kimg is not a configuration key; did you mean total_kimg?" in proc.stderr
