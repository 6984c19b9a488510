"""PPL details of spec §6: labels like the dataset's."""

from __future__ import annotations

import torch
from metrics_testkit import tiny_generator

from sg3.metrics.options import MetricOptions
from sg3.metrics.ppl import compute_ppl


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
