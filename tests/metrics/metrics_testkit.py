"""Tiny networks, stand-in detectors and a stand-in data module shared by the metric tests."""

from __future__ import annotations

import numpy as np
import torch

from sg3.modules.generator import Generator

TINY = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)


def tiny_generator(seed: int = 0, **overrides) -> Generator:
    torch.manual_seed(seed)
    return Generator(**{**TINY, **overrides}).eval()


class PatternSynthesis(torch.nn.Module):
    """Wraps a synthesis network and adds a fixed pixel-locked pattern (breaks equivariance)."""

    def __init__(self, synthesis: torch.nn.Module, res: int) -> None:
        super().__init__()
        self.inner = synthesis
        self.input = synthesis.input
        yy, xx = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
        self.register_buffer("pattern", ((xx + yy) % 2).float() * 0.8 - 0.4)

    def forward(self, ws, **kwargs):
        return self.inner(ws, **kwargs) + self.pattern


class PatternGenerator(torch.nn.Module):
    """A StyleGAN3 generator whose output carries a fixed checkerboard: not translation equivariant."""

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = G.z_dim, G.c_dim, G.w_dim
        self.img_resolution, self.img_channels = G.img_resolution, G.img_channels
        self.mapping = G.mapping
        self.synthesis = PatternSynthesis(G.synthesis, G.img_resolution)

    def forward(self, z, c, **kwargs):
        return self.synthesis(self.mapping(z, c), **kwargs)


class TinyDetector(torch.nn.Module):
    """Stand-in feature detector with the detector interface (uint8 [N,3,H,W] -> [N, 16])."""

    name = "tiny-detector"
    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(16, 3, 3, 3, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        y = torch.nn.functional.conv2d(x.float() / 127.5 - 1, self.weight, stride=2)
        return torch.nn.functional.adaptive_avg_pool2d(torch.tanh(y), 1).flatten(1)


class TinyProbs(TinyDetector):
    name = "tiny-probs"

    def forward(self, x):
        return torch.softmax(super().forward(x) * 4, dim=1)


class TinyLpips(torch.nn.Module):
    name = "tiny-lpips"

    def forward(self, a, b):
        return ((a - b) / 255).square().mean(dim=(1, 2, 3))


class FakeData:
    """Stand-in for ShardDataModule: random smooth uint8 images, exactly once across ranks."""

    def __init__(self, count: int = 48, res: int = 16, seed: int = 0) -> None:
        rng = np.random.RandomState(seed)
        base = rng.rand(count, 3, res // 4, res // 4)
        imgs = np.kron(base, np.ones((1, 1, 4, 4))) * 255
        self.images = torch.from_numpy(imgs.astype(np.uint8))  # [count, 3, res, res]
        self.resolution, self.num_channels, self.c_dim = res, 3, 0
        self.name = f"fake{count}-{seed}"
        self.index = {"format": "sg3-shards", "count": count, "resolution": res, "seed": seed}
        self.loads = 0

    def exactly_once_loader(self, batch_size, rank=0, world_size=1):
        self.loads += 1
        mine = self.images[rank::world_size]
        return [
            (mine[i : i + batch_size], torch.zeros(len(mine[i : i + batch_size]), 0))
            for i in range(0, len(mine), batch_size)
        ]

    def sample_labels(self, n, generator):
        return torch.zeros(n, 0)
