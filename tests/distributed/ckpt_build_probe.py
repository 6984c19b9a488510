"""Two gloo ranks save a checkpoint through `save_on_all_ranks` while rank 0 fails in building it.

Usage: ``python ckpt_build_probe.py RUN_DIR FAILURE``. FAILURE: ``callback_state_dict`` (a callback's
state_dict raises, before the datamodule's collective), ``datamodule_state_dict`` (the datamodule's
state_dict raises, so rank 0 skips its all_gather_object) or ``on_save_checkpoint`` (the LightningModule's
hook raises, after the datamodule's collective); anything else saves without a failure. Only rank 0 raises.
A tiny Lightning run (not sg3-train) keeps it fast; the datamodule gathers its state like ShardDataModule.
Prints ``SAVED rank <r>`` where a save returned, ``FAILED rank <r>: <error>`` where it raised. Run it as
its own process: Lightning re-executes this command for rank 1.
"""

from __future__ import annotations

import sys

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from sg3.training.checkpoint import AtomicCheckpointIO, save_on_all_ranks

RUN_DIR, FAILURE = sys.argv[1], sys.argv[2]
MESSAGE = f"injected {FAILURE} failure on rank 0"


def fail_on_rank_0(where: str, rank: int) -> None:
    if FAILURE == where and rank == 0:
        raise ValueError(MESSAGE)


class Module(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint) -> None:
        fail_on_rank_0("on_save_checkpoint", self.global_rank)
        checkpoint["rank_sum"] = self.all_gather(torch.ones(1)).sum()  # a collective, like sg3's RNG gather


class Data(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=2)

    def state_dict(self) -> dict:
        fail_on_rank_0("datamodule_state_dict", self.trainer.global_rank)
        ranks = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(ranks, {"rank": self.trainer.global_rank})  # as ShardDataModule
        return {"ranks": ranks}


class SaveAtStep2(L.Callback):
    def state_dict(self) -> dict:
        fail_on_rank_0("callback_state_dict", self.rank)
        return {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rank = trainer.global_rank
        if batch_idx != 1:
            return
        try:
            save_on_all_ranks(trainer, f"{RUN_DIR}/step2.ckpt")
        except Exception as e:
            print(f"FAILED rank {trainer.global_rank}: {type(e).__name__}: {e}", flush=True)
            raise
        print(f"SAVED rank {trainer.global_rank}", flush=True)


def main() -> None:
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=DDPStrategy(), plugins=[AtomicCheckpointIO()],
        max_steps=3, callbacks=[SaveAtStep2()], default_root_dir=RUN_DIR, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Module(), datamodule=Data())


if __name__ == "__main__":
    main()
