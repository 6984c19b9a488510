"""`sg3-train` plus a probe that records, on every rank, checksums of the training state and the samples seen.

Usage: ``SG3_PROBE_DIR=OUT python ddp_probe.py [Hydra overrides ...]``. Each rank writes ``OUT/rank<r>.json``
at the end of training with sha256 digests of G, D, G_ema and the augment pipe (parameters and buffers),
the counters, the augment probability, the hash of every real image its training steps received and of its
torch RNG state when the last checkpoint was saved.

Run it as its own process (Lightning's DDP re-executes this command line for rank 1), never inside pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import torch
from lightning.pytorch import Callback

import sg3.ops
from sg3 import train

PROBE_DIR_ENV = "SG3_PROBE_DIR"


# Running statistics of the data each rank sees (mapping.w_avg, the layers' magnitude_ema): every rank tracks
# its own, as in the official code (whose DDP consistency check skips the same names).
TRACKING = re.compile(r".*\.[^.]+_(avg|ema)$")


def module_digests(module: torch.nn.Module | None) -> dict[str, str] | None:
    """name -> sha256 of the bytes of every parameter and buffer of `module` (None -> None).

    Data-tracking statistics (names ending in ``_avg`` / ``_ema``) are left out; see TRACKING.
    """
    if module is None:
        return None
    return {
        name: hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for name, tensor in module.state_dict().items()
        if not TRACKING.match(name)
    }


class Probe(Callback):
    """Hashes the reals of each step and, at the end, writes this rank's record to `out_dir`."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.samples: list[str] = []
        self.rng_at_save: str | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # Every rank takes part in saving; the last save is the final checkpoint's.
        self.rng_at_save = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        img = batch[0]  # [N, C, H, W] uint8
        self.samples.extend(hashlib.sha1(x.cpu().numpy().tobytes()).hexdigest() for x in img)

    def on_train_end(self, trainer, pl_module) -> None:
        pipe = pl_module.augment_pipe
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "pid": os.getpid(),
            "digests": {
                "G": module_digests(pl_module.G),
                "D": module_digests(pl_module.D),
                "G_ema": module_digests(pl_module.G_ema),
                "augment_pipe": module_digests(pipe),
            },
            "counters": {
                "cur_nimg": pl_module.cur_nimg,
                "cur_tick": pl_module.cur_tick,
                "batch_idx": pl_module.batch_idx,
            },
            "augment_p": float(pipe.p) if pipe is not None else None,
            "batch_per_gpu": pl_module.derived["batch_per_gpu"],
            "samples": self.samples,
            "torch_rng_at_last_save": self.rng_at_save,
        }
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump(record, f)


def main() -> None:
    out_dir = os.environ.get(PROBE_DIR_ENV)
    if not out_dir:
        raise SystemExit(f"set {PROBE_DIR_ENV} to the folder that receives rank<r>.json")
    build = train.build

    def build_with_probe(cfg):
        parts = build(cfg)
        parts["trainer"].callbacks.append(Probe(out_dir))
        return parts

    train.build = build_with_probe
    # DDP semantics do not depend on the op implementation; the compiled ops have their own tier, so this run
    # uses the reference ops and never waits for a C++ build.
    sg3.ops.set_default_impl("ref")
    train.main()


if __name__ == "__main__":
    main()
