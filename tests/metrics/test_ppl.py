"""PPL details of spec §6: labels like the dataset's, and SG2 noise buffers re-randomized per batch."""

from __future__ import annotations

import torch
from metrics_testkit import tiny_generator

from sg3.metrics.options import MetricOptions
from sg3.metrics.ppl import compute_ppl
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator


class _Lpips(torch.nn.Module):
    name = "tiny-lpips"

    def forward(self, a, b):
        return ((a - b) / 255).square().mean(dim=(1, 2, 3))


class _OneClassData:
    """A conditional data set whose labels are all class 2 (of 3)."""

    def sample_labels(self, n, generator):
        return torch.nn.functional.one_hot(torch.full([n], 2), 3).float()


def test_ppl_draws_labels_like_the_dataset():
    G = tiny_generator(c_dim=3)
    seen = []
    G.mapping.register_forward_pre_hook(lambda mod, args: seen.append(args[1].clone()))
    opts = MetricOptions(G=G, data=_OneClassData(), detectors={"lpips": _Lpips()}, progress=False)
    compute_ppl(8, "w", "end", opts)
    labels = torch.cat(seen)
    assert labels.shape == (16, 3)  # both ends of 8 paths
    assert torch.equal(labels, torch.nn.functional.one_hot(torch.full([16], 2), 3).float())


def test_ppl_rerandomizes_stylegan2_noise_buffers_per_batch_and_restores_them():
    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                           channel_base=64, channel_max=8).eval()  # fmt: skip
    before = {k: v.clone() for k, v in G.named_buffers() if k.endswith("noise_const")}
    assert before
    name = next(iter(before))
    layer = G.get_submodule(name.rsplit(".", 1)[0])
    seen = []
    layer.register_forward_pre_hook(lambda mod, args: seen.append(mod.noise_const.clone()))
    opts = MetricOptions(G=G, detectors={"lpips": _Lpips()}, progress=False)
    a = compute_ppl(6, "w", "end", opts)
    assert len(seen) == 3  # one synthesis per batch of 2
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert not any(torch.equal(s, before[name]) for s in seen)
    for k, v in G.named_buffers():
        if k.endswith("noise_const"):
            assert torch.equal(v, before[k])  # the network is left unchanged
    assert compute_ppl(6, "w", "end", opts) == a  # the noise comes from the seeded batch streams
