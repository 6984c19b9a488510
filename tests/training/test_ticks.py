"""Tick accounting and stats.jsonl contents (spec 5.3), driven without a Trainer and with a fake clock."""

from __future__ import annotations

import json
import shlex
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from training_helpers import reals, tiny_module

import sg3.training.module as module_mod
from sg3.io import atomic_write
from sg3.training.callbacks import ImageGrids, TickLogger, grid_shape, to_grid


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(module_mod, "time", fake)
    return fake


def step(module, clock, train_sec: float, maintenance_sec: float = 0.0) -> dict:
    """One training step taking `train_sec`, then the callbacks' work taking `maintenance_sec`."""
    clock.t += train_sec  # the clock only moves where we say so
    module.training_step(reals(), module.batch_idx)
    info = module.tick_info
    clock.t += maintenance_sec
    module.on_train_batch_end(None, None, module.batch_idx)
    return info


def test_tick_timing_excludes_maintenance_like_the_official_loop(clock):
    """sec_per_tick/sec_per_kimg measure training only; the previous tick's snapshot/grid/metric work is
    reported as Timing/maintenance_sec (spec 5.3)."""
    module = tiny_module(["kimg_per_tick=0.008"])  # batch 4: a tick every 2 steps
    module._start_time = module._tick_start_time = clock.t
    first = step(module, clock, 1.0, maintenance_sec=30.0)  # tick 0, followed by 30 s of snapshots/metrics
    assert first["scalars"]["Timing/sec_per_tick"] == pytest.approx(1.0)
    assert step(module, clock, 2.0) is None  # not a tick
    second = step(module, clock, 3.0)
    s = second["scalars"]
    assert second["tick"] == 1
    assert s["Timing/sec_per_tick"] == pytest.approx(5.0)  # 2 + 3 s of training, not the 30 s of maintenance
    assert s["Timing/sec_per_kimg"] == pytest.approx(5.0 / 0.008)
    assert s["Timing/maintenance_sec"] == pytest.approx(30.0)
    assert s["Timing/total_sec"] == pytest.approx(36.0)
    assert s["Timing/total_hours"] == pytest.approx(36.0 / 3600)
    assert s["Timing/total_days"] == pytest.approx(36.0 / 86400)


def test_checkpoint_between_ticks_is_not_training_time(clock):
    module = tiny_module(["kimg_per_tick=0.012", "checkpoint_kimg=0.008"])
    module._start_time = module._tick_start_time = clock.t
    step(module, clock, 1.0)  # tick 0
    assert step(module, clock, 1.0, maintenance_sec=10.0)["tick"] is None  # 0.008 kimg: a checkpoint only
    assert step(module, clock, 1.0) is None
    info = step(module, clock, 1.0)  # 0.016 kimg = tick 0's 0.004 + 0.012: tick 1
    assert info["tick"] == 1
    assert info["scalars"]["Timing/sec_per_tick"] == pytest.approx(3.0)
    assert info["scalars"]["Timing/maintenance_sec"] == pytest.approx(10.0)


def test_default_checkpoints_are_written_at_the_snapshots_only(clock):
    """checkpoint_kimg null means "at every network snapshot": one checkpoint per snapshot, at its tick,
    not a second one at the step that crosses the next multiple of snap * kimg_per_tick."""
    module = tiny_module(["kimg_per_tick=0.008", "snap=2"])  # batch 4; ticks at 0.004, 0.012, 0.020 kimg
    module._start_time = module._tick_start_time = clock.t
    infos = [step(module, clock, 1.0) for _ in range(6)]
    saved = [i for i, info in enumerate(infos) if info is not None and info["checkpoint"]]
    snapshots = [i for i, info in enumerate(infos) if info is not None and info["snapshot"]]
    assert snapshots == [0, 4]  # tick 0 and tick 2 (0.020 kimg)
    assert saved == snapshots  # not also at step 3 (0.016 kimg = the snapshot interval)


def test_stats_jsonl_has_every_official_progress_timing_and_resource_stat(tmp_path):
    module = tiny_module()
    module.training_step(reals(), 0)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[])
    TickLogger(str(tmp_path)).on_train_batch_end(trainer, module, None, None, 0)
    (line,) = (tmp_path / "stats.jsonl").read_text().splitlines()
    record = json.loads(line)
    names = (
        "Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/D/reg", "Loss/scores/real", "Loss/signs/real",
        "Loss/scores/fake", "Loss/signs/fake", "Progress/tick", "Progress/kimg", "Progress/augment",
        "Timing/total_sec", "Timing/sec_per_tick", "Timing/sec_per_kimg", "Timing/maintenance_sec",
        "Timing/total_hours", "Timing/total_days", "Resources/cpu_mem_gb",
    )  # fmt: skip
    for name in names:
        assert set(record[name]) == {"num", "mean", "std"}, name
    assert record["Progress/kimg"]["mean"] == pytest.approx(0.004)
    assert record["Loss/G/loss"]["num"] == 4  # the per-sample statistics keep their counts
    assert isinstance(record["timestamp"], float)


def test_grid_shape_and_quantization_follow_the_spec():
    assert [grid_shape(r) for r in (1024, 512, 256, 16)] == [(7, 4), (15, 8), (30, 16), (32, 32)]
    assert grid_shape(256, gw=8, gh=4) == (8, 4)
    x = torch.tensor([-1.5, -1.0, -0.2, 0.0, 0.5, 1.0, 1.2]).view(1, 1, 1, 7)
    expected = np.clip(np.rint((x.numpy() + 1) * 127.5), 0, 255).reshape(1, 7, 1)
    assert np.array_equal(to_grid(x, 1, 1), expected)


class LabelledData:
    """A stand-in data module: 12 images of 3 classes (class k's images are filled with 100 k + i)."""

    c_dim = 3
    index = {"class_counts": [4, 0, 8]}  # class 1 is absent from the dataset

    def __init__(self):
        self.labels = [2, 0, 2, 2, 0, 2, 2, 0, 2, 2, 0, 2]

    def exactly_once_loader(self, batch_size):
        imgs = torch.stack([torch.full([1, 2, 2], 100 * k + i) for i, k in enumerate(self.labels)])
        c = torch.nn.functional.one_hot(torch.tensor(self.labels), 3).float()
        return list(zip(imgs.to(torch.uint8).split(batch_size), c.split(batch_size)))

    def sample_labels(self, n, generator=None):
        raise AssertionError("grid labels are not random")


def test_labelled_grids_have_one_class_per_row_in_class_order():
    """Spec 5.3: one label per row for labelled data (sorted, cycled); the fakes use the same labels."""
    grids = ImageGrids("unused", gw=2, gh=3)
    pl_module = SimpleNamespace(derived={"resolution": 2, "c_dim": 3}, G=SimpleNamespace(z_dim=4))
    trainer = SimpleNamespace(datamodule=LabelledData())
    grids._setup_grid(trainer, pl_module)
    assert grids.c.argmax(1).tolist() == [0, 0, 2, 2, 0, 0]  # present classes 0 and 2, one per row
    reals = grids._reals(trainer)[:, :, 0]  # [gh*2, gw*2]
    rows = [[int(reals[2 * y, 2 * x]) for x in range(2)] for y in range(3)]
    # row 0: the first two class-0 images; row 1: class 2; row 2: class 0 again, the next two images
    assert rows == [[1, 4], [200, 202], [7, 10]]


class RecordingTB(TensorBoardLogger):
    def __init__(self, save_dir):
        super().__init__(save_dir)
        self.steps = []

    def log_metrics(self, metrics, step=None):
        self.steps.append(step)


class RecordingCSV(CSVLogger):
    def __init__(self, save_dir):
        super().__init__(save_dir)
        self.steps = []

    def log_metrics(self, metrics, step=None):
        self.steps.append(step)


def test_tensorboard_gets_the_tick_stats_at_step_int_kimg(tmp_path):
    """Spec 5.3: TensorBoard plots each statistic at step int(kimg); the other loggers use the step count."""
    module = tiny_module()
    tb, csv = RecordingTB(tmp_path), RecordingCSV(tmp_path)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[tb, csv])
    module.cur_nimg, module.batch_idx = 2_996, 749  # the next step ends at 3.0 kimg
    module.training_step(reals(), module.batch_idx)
    TickLogger(str(tmp_path)).on_train_batch_end(trainer, module, None, None, 0)
    assert tb.steps == [3] and csv.steps == [750]


def test_stat_moments_round_trip_continues_the_statistics():
    from sg3.training.stats import StatCollector

    a = StatCollector()
    a.report("Loss/G/loss", torch.tensor([1.0, 2.0, 3.0]))
    a.report("Loss/D/loss", 4.0)
    saved = a.moments()
    assert saved["Loss/G/loss"].tolist() == [3.0, 6.0, 14.0] and saved["Loss/G/loss"].dtype == torch.float64
    b = StatCollector()
    b.load_moments(saved)
    a.report("Loss/G/loss", torch.tensor([5.0]))
    b.report("Loss/G/loss", torch.tensor([5.0]))
    assert a.summarize() == b.summarize()
    assert b.moments() == {}  # summarize starts afresh


def test_a_resume_drops_the_ticks_logged_after_its_checkpoint(tmp_path, caplog):
    """docs/training.md: a resumed run continues stats.jsonl. The ticks that the stopped process logged after
    its checkpoint are trained again: their old lines would repeat those kimg (Progress/kimg going back)."""
    path = tmp_path / "stats.jsonl"
    lines = [json.dumps({"Progress/kimg": {"num": 1, "mean": k, "std": 0.0}}) for k in (0.004, 0.008, 0.012)]
    path.write_text("\n".join(lines) + '\n{"Progress/kimg": {"nu')  # + a line cut by SIGKILL
    trainer = SimpleNamespace(is_global_zero=True)
    TickLogger(str(tmp_path)).on_train_start(trainer, SimpleNamespace(cur_nimg=8, kimg=0.008))
    assert path.read_text().splitlines() == lines[:2]
    assert (tmp_path / "stats-superseded.jsonl").read_text().splitlines()[0] == lines[2]
    # A fresh run (resume=auto before the first checkpoint): every old line belongs to the dead attempt.
    TickLogger(str(tmp_path)).on_train_start(trainer, SimpleNamespace(cur_nimg=0, kimg=0.0))
    assert path.read_text() == "" and len((tmp_path / "stats-superseded.jsonl").read_text().splitlines()) == 4


def _summary_info(run_dir: str) -> dict:
    return {"run_dir": run_dir, "kimg": 4.0, "done": False, "stopped_by": "SIGTERM", "seconds": 75.0,
            "train_img_per_sec": 60.1, "wall_img_per_sec": 53.3, "augment_p": 0.0, "checkpoint": None,
            "generator": None, "grids": [], "wandb": None}  # fmt: skip


def test_the_resume_command_of_the_summary_parses_and_leads_back_to_the_run_dir():
    """A sweep point's run dir is <runs_dir>/<name>-sweep/<n>-<overrides>: `name=` cannot lead back to it
    (and its commas made Hydra reject the line), so the hint names hydra.run.dir; list values are quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sg3.training.callbacks import format_summary

    overrides = ["metrics=[fid50k_full,eqt50k_int]", "loss.r1_gamma=2", "name=x", "resume=auto"]
    run_dir = "/data/runs/x-sweep/1-loss.r1_gamma=2,batch=8"
    sweep = format_summary(_summary_info(run_dir), overrides, by_dir=True).splitlines()[-1].split()
    line = shlex.split(" ".join(sweep))
    assert line[0] == "sg3-train" and "resume=auto" in line
    assert "metrics=[fid50k_full,eqt50k_int]" in line and not any(t.startswith("name=") for t in line)
    parsed = OverridesParser.create().parse_overrides([t for t in line[1:] if "<" not in t])
    values = {o.key_or_group: o.value() for o in parsed}
    assert values["hydra.run.dir"] == run_dir and values["loss.r1_gamma"] == 2
    assert set(values) == {"metrics", "loss.r1_gamma", "hydra.run.dir", "resume"}
    single = shlex.split(format_summary(_summary_info("/data/runs/x"), overrides).splitlines()[-1])
    assert "name=x" in single and not any(t.startswith("hydra.run.dir") for t in single)


def test_the_summary_is_written_to_the_run_dir_and_read_back_only_when_fresh(tmp_path):
    """The parent of spawned DDP processes has no callback state: it reads rank 0's summary.json."""
    from sg3.training.callbacks import Summary

    summary = Summary(str(tmp_path), SimpleNamespace(files=[]), SimpleNamespace())
    summary.info = _summary_info(str(tmp_path))
    before = time.time() - 1
    with atomic_write(tmp_path / "summary.json") as f:
        f.write(json.dumps(summary.info).encode())
    assert Summary.read(tmp_path, since=before) == summary.info
    assert Summary.read(tmp_path, since=time.time() + 60) == {}  # an earlier run's file
    assert Summary.read(tmp_path / "missing", since=before) == {}


def test_the_resume_command_of_the_summary_pastes_into_a_shell_and_keeps_the_total_of_a_stopped_run():
    """A run stopped by SIGTERM at 0.1 of its total_kimg=1 continues to 1 kimg: its resume command keeps
    total_kimg=1. A finished run's command names a larger total. No placeholder: `total_kimg=<more>` pasted
    into a shell is a redirection from a file named 'more' ("No such file or directory")."""
    from sg3.training.callbacks import format_summary

    overrides = ["model=tiny", "batch=4", "total_kimg=1", "name=x"]
    stopped = format_summary({**_summary_info("/r/x"), "kimg": 0.1}, overrides).splitlines()[-1]
    assert not any(ch in stopped for ch in "<>|;&"), stopped
    assert shlex.split(stopped)[-1] == "total_kimg=1" and "resume=auto" in shlex.split(stopped)
    info = {**_summary_info("/r/x"), "kimg": 1.0, "done": True}
    finished = format_summary(info, overrides).split("\n")[-1].split("#")[0]
    assert not any(ch in finished for ch in "<>|;&"), finished
    total = [t for t in shlex.split(finished) if t.startswith("total_kimg=")]
    assert len(total) == 1 and float(total[0].split("=")[1]) > 1.0


def test_a_resume_knows_whether_its_checkpoint_step_drew_the_fake_grid():
    """`resumed_at_grid_step` (the resume redraws a grid the killed process did not save) follows the same
    rule as the steps themselves: every image_snap ticks, and the last step."""
    extra = ["kimg_per_tick=0.004", "image_snap=2", "total_kimg=0.016"]  # batch 4: a tick per step, 4 steps
    module, resumed = tiny_module(extra), tiny_module(extra, seed=1)
    drawn, flagged = [], []
    for _ in range(4):
        module.training_step(reals(), module.batch_idx)
        drawn.append(module.tick_info["images"])
        ckpt = {"state_dict": module.state_dict()}
        module.on_save_checkpoint(ckpt)
        resumed.on_load_checkpoint(ckpt)
        flagged.append(resumed.resumed_at_grid_step)
    assert drawn == [True, False, True, True]  # ticks 0 and 2, and the last step (tick 3)
    assert flagged == drawn


@pytest.mark.parametrize(
    ("grids", "line"),
    [
        ([], "  fake grids  -"),
        (["/r/x/images/fakes000000.png"], "  fake grids  /r/x/images/fakes000000.png"),
        (
            ["/r/x/images/fakes_init.png", "/r/x/images/fakes000004.png"],
            "  fake grids  /r/x/images/fakes_init.png ... /r/x/images/fakes000004.png",
        ),
    ],
)
def test_the_summary_names_a_single_fake_grid_once(grids, line):
    """A resumed run drawing one grid listed it twice: 'fakes000000.png ... fakes000000.png'."""
    from sg3.training.callbacks import format_summary

    lines = format_summary({**_summary_info("/r/x"), "grids": grids}, []).splitlines()
    assert [x for x in lines if x.startswith("  fake grids")] == [line]
