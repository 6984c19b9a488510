"""Every metric end to end on tiny networks, with stand-in detectors and data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from metrics_testkit import FakeData, PatternGenerator, tiny_generator

from sg3.metrics.feature_metrics import compute_pr
from sg3.metrics.options import MetricOptions
from sg3.metrics.ppl import compute_ppl
from sg3.metrics.registry import compute
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator


def test_eqt_int_is_high_for_stylegan3_and_low_for_a_pixel_locked_net():
    G = tiny_generator()
    eq = compute("eqt8_int", G, progress=False)["eqt8_int"]
    assert eq > 40
    bad = compute("eqt8_int", PatternGenerator(G), progress=False)["eqt8_int"]
    assert bad < eq - 20
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))  # restored afterwards


def test_eqt_frac_and_eqr_are_finite_and_deterministic():
    G = tiny_generator(1)
    a = compute("eqt4_frac", G, seed=3, progress=False)
    b = compute("eqt4_frac", G, seed=3, progress=False)
    assert a == b and 20 < a["eqt4_frac"] < 200
    r = compute("eqr4", G, seed=3, progress=False)["eqr4"]
    assert 10 < r < 200 and math.isfinite(r)
    assert compute("eqr4", G, seed=4, progress=False)["eqr4"] != r


def test_eq_metrics_need_an_input_transform():
    torch.manual_seed(0)
    G2 = StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                            channel_base=64, channel_max=8).eval()  # fmt: skip
    with pytest.raises(TypeError, match=r"G.synthesis.input.transform"):
        compute("eqt8_int", G2, progress=False)


def test_feature_metrics_end_to_end_with_cached_dataset_statistics(tmp_path, detectors):
    G, data = tiny_generator(), FakeData()
    kw = dict(data=data, detectors=detectors, cache_dir=tmp_path, progress=False, batch_size=8)
    fid = compute("fid24_full", G, **kw)["fid24_full"]
    assert fid > 0 and data.loads == 1
    assert compute("fid24_full", G, **kw)["fid24_full"] == pytest.approx(fid, rel=1e-12)
    assert data.loads == 1  # dataset statistics came from the cache
    assert len(list(tmp_path.glob("fake48-0-tiny-detector-*.npz"))) == 1
    kid = compute("kid16_full", G, **kw)["kid16_full"]
    assert math.isfinite(kid) and data.loads == 2  # features (not moments) are a second cache entry
    res = compute("is10", G, **kw)
    assert set(res) == {"is10_mean", "is10_std"} and res["is10_mean"] >= 1.0
    p, r = compute_pr(16, None, 3, MetricOptions(G=G, **{k: v for k, v in kw.items() if k != "detectors"},
                                                 detectors=detectors))  # fmt: skip
    assert 0 <= p <= 1 and 0 <= r <= 1


def test_fid_ranks_a_closer_image_set_lower(tmp_path, detectors):
    G = tiny_generator()
    kw = dict(detectors=detectors, cache_dir=tmp_path, progress=False, batch_size=8)
    fid_a = compute("fid16_full", G, data=FakeData(seed=0), **kw)["fid16_full"]
    G.synthesis.input.transform.copy_(torch.eye(3))
    real = FakeData(count=16, seed=1)
    # A data set made of the generator's own images is much closer than the random blocks.
    with torch.no_grad():
        z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(5))
        real.images = (G(z, None) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    real.name = "own"
    fid_b = compute("fid16_full", G, data=real, **kw)["fid16_full"]
    assert fid_b < 0.5 * fid_a


def test_bad_inputs_give_clear_errors(tmp_path, detectors):
    G = tiny_generator()
    with pytest.raises(ValueError, match="compares with real images"):
        compute("fid1k_full", G, progress=False)
    with pytest.raises(
        ValueError, match="data resolution 32 does not match the generator's img_resolution 16"
    ):
        compute(
            "fid8_full", G, data=FakeData(res=32), detectors=detectors, cache_dir=tmp_path, progress=False
        )
    with pytest.raises(ValueError, match="unknown metric 'fid_full'"):
        compute("fid_full", G)


def test_ppl_is_positive_and_grows_with_a_rougher_generator(detectors):
    G = tiny_generator()
    opts = MetricOptions(G=G, detectors=detectors, progress=False)
    smooth = compute_ppl(4, "w", "end", opts)
    assert smooth > 0 and np.isfinite(smooth)
    assert compute_ppl(4, "w", "end", opts) == smooth
    assert compute_ppl(4, "z", "full", opts) > 0


def test_fid_on_a_real_shard_dataset_reads_it_once_and_caches_by_index(tmp_path, detectors):
    from sg3.data.datamodule import ShardDataModule
    from sg3.data.demo import ensure_demo_dataset

    path = ensure_demo_dataset(root=str(tmp_path / "demo"), resolution=16, count=12)
    dm = ShardDataModule(urls=path, batch_size=4, num_workers=0, resolution=16)
    G = tiny_generator()
    kw = dict(data=dm, detectors=detectors, cache_dir=tmp_path / "c", progress=False, batch_size=4)
    fid = compute("fid8_full", G, **kw)["fid8_full"]
    assert fid > 0 and math.isfinite(fid)
    (cached,) = (tmp_path / "c").glob("*.npz")
    with np.load(cached) as f:
        assert f["mu"].shape == (16,) and f["sigma"].shape == (16, 16)
    assert compute("fid8_full", G, **kw)["fid8_full"] == pytest.approx(fid, rel=1e-12)


def test_feature_metrics_run_the_generator_in_sub_batches_of_4(detectors):
    """Spec §6: generated images come in batches of 64 made of G calls on 4 images each. G's style
    pre-normalization is batch-global (spec §10.6), so an image depends on the other images of its G call:
    G on 32 images at once gave other pixels than G on groups of 4 (3 of 196608 uint8 values, 32 px net)."""
    from sg3.metrics.feature_metrics import generated_features
    from sg3.metrics.sampling import batch_generator, quantize, sample_latents

    G = tiny_generator(img_resolution=32, channel_base=256, channel_max=32)
    calls = []
    G.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    seen = []

    class Recorder(torch.nn.Module):  # detector that keeps the uint8 images it is given
        def forward(self, x):
            seen.append(x.clone())
            return x.flatten(1)[:, :4].float()

    opts = MetricOptions(G=G, batch_size=12, progress=False)
    generated_features(Recorder(), 20, opts, "fid")
    assert calls == [4] * 6  # two batches of 12: G calls of 4 images each
    assert [len(x) for x in seen] == [12, 12]  # the detector still sees whole batches
    z, c = sample_latents(G, 12, batch_generator(0, "fid", 1))
    calls.clear()
    with torch.no_grad():
        want = torch.cat([quantize(G(z[i : i + 4], c[i : i + 4])) for i in range(0, 12, 4)])
    assert torch.equal(seen[1], want)
