"""Metric-name parsing and the offline behaviour of the detector weights lookup."""

from __future__ import annotations

import time

import pytest
import torch

from sg3.metrics import features
from sg3.metrics.features import WEIGHT_FILES, DetectorWeightsError, find_weights
from sg3.metrics.registry import parse_metric


@pytest.mark.parametrize(
    ("name", "family", "num", "full", "extra"),
    [
        ("fid50k_full", "fid", 50000, True, {}),
        ("fid10k", "fid", 10000, False, {}),
        ("kid1k_full", "kid", 1000, True, {}),
        ("pr50k3_full", "pr", 50000, True, {"k": 3}),
        ("pr2k5", "pr", 2000, False, {"k": 5}),
        ("is50k", "is", 50000, False, {}),
        ("ppl2_wend", "ppl", 50000, False, {"space": "w", "sampling": "end"}),
        ("ppl1k_zfull", "ppl", 1000, False, {"space": "z", "sampling": "full"}),
        ("eqt50k_int", "eqt_int", 50000, False, {}),
        ("eqt2k_frac", "eqt_frac", 2000, False, {}),
        ("eqr1k", "eqr", 1000, False, {}),
        ("eqt64_int", "eqt_int", 64, False, {}),
        ("fid100_full", "fid", 100, True, {}),
    ],
)
def test_parse_official_families_with_any_count(name, family, num, full, extra):
    spec = parse_metric(name)
    assert (spec.family, spec.num, spec.full) == (family, num, full)
    for key, value in extra.items():
        assert getattr(spec, key) == value
    assert spec.needs_data == (family in ("fid", "kid", "pr"))


@pytest.mark.parametrize(
    "bad", ["fid", "pr50_full", "eqt1k", "eqr1k_int", "kid1k_fulll", "FID50k_full", "ppl_wend"]
)
def test_unknown_metric_names_list_the_accepted_ones(bad):
    with pytest.raises(ValueError, match=r"unknown metric .*accepted: fid50k_full"):
        parse_metric(bad)


def test_missing_weights_fail_fast_offline_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    t0 = time.perf_counter()
    with pytest.raises(DetectorWeightsError) as e:
        find_weights("inception", weights_dir=tmp_path / "w", download=False)
    msg = str(e.value)
    assert WEIGHT_FILES["inception"].filename in msg
    assert str(tmp_path / "w") in msg and WEIGHT_FILES["inception"].url in msg
    # With downloads allowed but the host unreachable: still an error within seconds, never a hang.
    with pytest.raises(DetectorWeightsError, match="not reachable") as e:
        find_weights(
            "vgg16", weights_dir=tmp_path / "w", download=True, url="http://127.0.0.1:9/vgg.pth", timeout=2
        )
    assert WEIGHT_FILES["vgg16"].filename in str(e.value)
    assert time.perf_counter() - t0 < 10


def test_weights_found_in_configured_folder_then_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    name = WEIGHT_FILES["lpips"].filename
    hub_file = tmp_path / "hub" / "checkpoints" / name
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"x")
    assert find_weights("lpips", weights_dir=tmp_path / "w", download=False) == hub_file
    own = tmp_path / "w" / name
    own.parent.mkdir()
    own.write_bytes(b"y")
    assert find_weights("lpips", weights_dir=tmp_path / "w", download=False) == own
    monkeypatch.setenv("SG3_METRICS_WEIGHTS", str(tmp_path / "w"))
    assert features.default_weights_dir() == tmp_path / "w"
    with pytest.raises(ValueError, match="unknown detector kind 'resnet'"):
        features.load_detector("resnet")
