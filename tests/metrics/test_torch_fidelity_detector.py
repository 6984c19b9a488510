"""The real torch-fidelity InceptionV3 wiring, with a randomly initialised, correctly keyed weights file."""

from __future__ import annotations

import torch
from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

from sg3.metrics.features import WEIGHT_FILES, load_detector


def test_inception_detector_loads_local_weights_and_gives_pool_features_and_probs(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    # Write a weights file with the right keys (random values) without any download.
    def no_download(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_download)
    original_load = tf_inception.FeatureExtractorInceptionV3.load_state_dict
    monkeypatch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    monkeypatch.setattr(tf_inception.torch, "load", lambda *a, **k: {})
    torch.manual_seed(0)
    fake = tf_inception.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path="x"
    )
    monkeypatch.undo()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_download)
    assert tf_inception.FeatureExtractorInceptionV3.load_state_dict is original_load
    weights = tmp_path / "w" / WEIGHT_FILES["inception"].filename
    weights.parent.mkdir()
    torch.save(fake.state_dict(), weights)

    det = load_detector("inception", weights_dir=tmp_path / "w", download=False)
    probs = load_detector("inception_probs", weights_dir=tmp_path / "w", download=False)
    img = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    feat = det(img)
    assert feat.shape == (1, 2048) and feat.dtype == torch.float32 and torch.isfinite(feat).all()
    assert det.name == "inception-2048"
    p = probs(img)
    assert p.shape == (1, 1008) and torch.allclose(p.sum(1), torch.ones(1), atol=1e-5)
