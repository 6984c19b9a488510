"""The StyleGAN2/3 training loss: non-saturating logistic loss, lazy R1, path length, blur (spec §4).

`StyleGAN2Loss` keeps only hyper-parameters and its one piece of state (`pl_mean`, a buffer so that
it travels with the checkpoint). The networks are passed to each call, so the loss never owns them.
Each phase method runs one chunk of a phase: forward, loss, and `backward(loss.mean() * gain)`, and
returns the per-sample statistics under the official names.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sg3 import ops
from sg3.training.derive import blur_sigma

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")
Backward = Callable[[torch.Tensor], None]


def _default_backward(loss: torch.Tensor) -> None:
    loss.backward()


def blur_images(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur `img` `[N, C, H, W]` with separable taps `2^-(k/sigma)^2`, |k| <= floor(3 sigma), sum 1."""
    size = int(math.floor(sigma * 3))
    if size <= 0:
        return img
    taps = (
        torch.arange(-size, size + 1, device=img.device, dtype=torch.float32).div(sigma).square().neg().exp2()
    )
    return ops.filter2d(img, taps / taps.sum())


class StyleGAN2Loss(nn.Module):
    """Loss of the official `StyleGAN2Loss`, used by StyleGAN2 and StyleGAN3 alike.

    Args:
        r1_gamma: R1 regularization weight; 0 disables R1.
        style_mixing_prob: Probability of mixing two latents in one batch (0 = off).
        pl_weight: Path-length regularization weight (0 = off).
        pl_batch_shrink: The path-length phase uses `batch // pl_batch_shrink` samples.
        pl_decay: Decay of the running mean of path lengths.
        pl_no_weight_grad: Official flag; skipping conv weight gradients in the inner path-length gradient
            is a no-op on PyTorch >= 1.11 in the official code too, so it is accepted and recorded only.
        blur_init_sigma: Initial std (pixels) of the blur applied to D's inputs (0 = off).
        blur_fade_kimg: Length of the linear fade-out of that blur, in thousands of images.
    """

    def __init__(
        self,
        r1_gamma: float = 10,
        style_mixing_prob: float = 0,
        pl_weight: float = 0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        pl_no_weight_grad: bool = False,
        blur_init_sigma: float = 0,
        blur_fade_kimg: float = 0,
    ) -> None:
        super().__init__()
        if r1_gamma < 0:
            raise ValueError(f"r1_gamma={r1_gamma} is not valid: a weight >= 0")
        if pl_batch_shrink < 1:
            raise ValueError(f"pl_batch_shrink={pl_batch_shrink} is not valid: an integer >= 1")
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.pl_no_weight_grad = bool(pl_no_weight_grad)
        self.blur_init_sigma = float(blur_init_sigma)
        self.blur_fade_kimg = float(blur_fade_kimg)
        self.register_buffer("pl_mean", torch.zeros([]))

    def blur_sigma(self, cur_nimg: int) -> float:
        """Blur std in pixels at `cur_nimg` images seen."""
        return blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)

    def run_G(
        self, G: nn.Module, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images; returns `(img [N, C, H, W], ws [N, num_ws, w_dim])` (ws after style mixing).

        The mapping network always runs in float32, also under bf16 autocast (`trainer.precision=bf16-mixed`):
        its `w_avg` tracking stays exact, as the mapping network is never reduced-precision in the spec.
        """
        with torch.autocast(z.device.type, enabled=False):
            ws = G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            keep = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(keep, cutoff, torch.full_like(cutoff, num_ws))
            with torch.autocast(z.device.type, enabled=False):
                mixed = G.mapping(torch.randn_like(z), c, update_emas=False)
            take = (torch.arange(num_ws, device=ws.device) >= cutoff).view(1, num_ws, 1)  # [1, num_ws, 1]
            ws = torch.where(take, mixed, ws)
        img = G.synthesis(ws, update_emas=update_emas)
        return img, ws

    def run_D(
        self,
        D: nn.Module,
        img: torch.Tensor,
        c: torch.Tensor,
        sigma: float = 0,
        augment_pipe: nn.Module | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Blur, augment, then D; returns logits `[N, 1]`."""
        img = blur_images(img, sigma)
        if augment_pipe is not None:
            img = augment_pipe(img)
        return D(img, c, update_emas=update_emas)

    def gen_main(
        self, G, D, augment_pipe, z, c, gain: float, cur_nimg: int, backward: Backward = _default_backward
    ) -> dict[str, torch.Tensor]:
        """Gmain: non-saturating loss `softplus(-D(G(z)))`; no EMA updates."""
        img, _ = self.run_G(G, z, c)
        logits = self.run_D(D, img, c, self.blur_sigma(cur_nimg), augment_pipe)
        loss = F.softplus(-logits)
        backward(loss.mean().mul(gain))
        return {"Loss/scores/fake": logits, "Loss/signs/fake": logits.sign(), "Loss/G/loss": loss}

    def gen_pl(self, G, z, c, gain: float, backward: Backward = _default_backward) -> dict[str, torch.Tensor]:
        """Greg: path-length penalty on `batch // pl_batch_shrink` samples (StyleGAN2)."""
        n = max(z.shape[0] // self.pl_batch_shrink, 1)
        img, ws = self.run_G(G, z[:n], c[:n])
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad(outputs=[(img * noise).sum()], inputs=[ws], create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()  # [N]
        pl_mean = self.pl_mean.lerp(lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        loss = penalty * self.pl_weight
        backward(loss.mean().mul(gain))
        return {"Loss/pl_penalty": penalty, "Loss/G/reg": loss}

    def dis_fake(
        self, G, D, augment_pipe, z, c, gain: float, cur_nimg: int, backward: Backward = _default_backward
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Dmain fake part: `softplus(D(G(z)))`; the only pass that updates G's w_avg / magnitude EMAs."""
        img, _ = self.run_G(G, z, c, update_emas=True)
        logits = self.run_D(D, img, c, self.blur_sigma(cur_nimg), augment_pipe, update_emas=True)
        loss = F.softplus(logits)
        backward(loss.mean().mul(gain))
        return {"Loss/scores/fake": logits, "Loss/signs/fake": logits.sign()}, loss.detach()

    def dis_real(
        self,
        D,
        augment_pipe,
        real_img,
        real_c,
        gain: float,
        cur_nimg: int,
        main: bool,
        reg: bool,
        backward: Backward = _default_backward,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Dmain/Dreg real part: `softplus(-D(x))` if `main`; R1 `gamma/2 |dD/dx|^2` if `reg`."""
        x = real_img.detach().requires_grad_(reg)
        logits = self.run_D(D, x, real_c, self.blur_sigma(cur_nimg), augment_pipe)
        stats = {"Loss/scores/real": logits, "Loss/signs/real": logits.sign()}
        total = torch.zeros_like(logits)
        loss_real = None
        if main:
            loss_real = F.softplus(-logits)
            total = total + loss_real
        if reg:
            (grads,) = torch.autograd.grad(outputs=[logits.sum()], inputs=[x], create_graph=True)
            penalty = grads.square().sum([1, 2, 3])  # [N]
            loss_r1 = penalty * (self.r1_gamma / 2)
            total = total + loss_r1.unsqueeze(1)
            stats.update({"Loss/r1_penalty": penalty, "Loss/D/reg": loss_r1})
        backward(total.mean().mul(gain))
        return stats, None if loss_real is None else loss_real.detach()

    def accumulate_gradients(
        self,
        phase: str,
        G: nn.Module,
        D: nn.Module,
        augment_pipe: nn.Module | None,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float,
        cur_nimg: int,
        backward: Backward = _default_backward,
    ) -> dict[str, torch.Tensor]:
        """Run one chunk of `phase` (one of `PHASES`) and back-propagate `mean(loss) * gain`.

        Args:
            phase: Phase name; phases switched off by the weights (pl_weight or r1_gamma 0) do nothing.
            G: Generator (mapping + synthesis).
            D: Discriminator.
            augment_pipe: Augmentation applied to every image D sees, or None.
            real_img: Real images `[N, C, H, W]` in [-1, 1].
            real_c: Real labels `[N, c_dim]`.
            gen_z: Latents `[N, z_dim]` for generated images.
            gen_c: Labels `[N, c_dim]` for generated images.
            gain: Multiplier of the loss (the phase interval).
            cur_nimg: Images seen so far (blur schedule).
            backward: Called with the scalar loss (Lightning's `manual_backward` during training).

        Returns:
            Per-sample statistics, detached, under the official stat names.
        """
        if phase not in PHASES:
            raise ValueError(f"phase={phase!r} is not valid: one of {', '.join(PHASES)}")
        if self.pl_weight == 0 and phase == "Greg" or self.r1_gamma == 0 and phase == "Dreg":
            return {}
        phase = {"Gboth": "Gmain"}.get(phase, phase) if self.pl_weight == 0 else phase
        phase = {"Dboth": "Dmain"}.get(phase, phase) if self.r1_gamma == 0 else phase
        stats: dict[str, torch.Tensor] = {}
        if phase in ("Gmain", "Gboth"):
            stats.update(self.gen_main(G, D, augment_pipe, gen_z, gen_c, gain, cur_nimg, backward))
        if phase in ("Greg", "Gboth"):
            stats.update(self.gen_pl(G, gen_z, gen_c, gain, backward))
        loss_gen = None
        if phase in ("Dmain", "Dboth"):
            fake_stats, loss_gen = self.dis_fake(G, D, augment_pipe, gen_z, gen_c, gain, cur_nimg, backward)
            stats.update(fake_stats)
        if phase in ("Dmain", "Dreg", "Dboth"):
            main, reg = phase != "Dreg", phase != "Dmain"
            real_stats, loss_real = self.dis_real(
                D, augment_pipe, real_img, real_c, gain, cur_nimg, main, reg, backward
            )
            stats.update(real_stats)
            if loss_gen is not None and loss_real is not None:
                stats["Loss/D/loss"] = loss_gen + loss_real
        return {k: v.detach() for k, v in stats.items()}
