"""Hydra configs: every experiment composes and builds; the spec 5.2 table; bad configs fail early."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from training_helpers import build_in_process, compose_plain

from sg3.modules.registry import build_network
from sg3.train import CONF_DIR, override_quoting_hint, short_value, sweep_subdir
from sg3.training.derive import ConfigError

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
GAMMA = {128: 0.5, 256: 2, 512: 8, 1024: 32}  # spec 5.2, T and R, batch 32


def spec_batch_gpu(cfg: str, res: int, gpus: int) -> int:
    """batch_gpu of the spec's table (batch / gpus unless the table lowers it)."""
    small = {
        (128, "stylegan3-t"): (1, 16), (128, "stylegan3-r"): (1, 16),
        (256, "stylegan3-t"): (1, 16), (256, "stylegan3-r"): (2, 8),
        (512, "stylegan3-t"): (2, 8), (512, "stylegan3-r"): (4, 4),
        (1024, "stylegan3-t"): (4, 4), (1024, "stylegan3-r"): (4, 4),
    }  # fmt: skip
    max_gpus, value = small[(res, cfg)]
    return value if gpus <= max_gpus else 32 // gpus


def overrides_for(name: str) -> list[str]:
    extra = ["data.urls=unused", "logger=none"]
    if name.startswith("finetune"):
        extra += (
            ["init_from=/pretrained.pkl", "loss.r1_gamma=2"] if name == "finetune" else ["init_from=/p.pkl"]
        )
    return [f"experiment={name}", *extra]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_derives_and_builds(name):
    raw = yaml.safe_load((Path(CONF_DIR) / "experiment" / f"{name}.yaml").read_text())
    res = (raw.get("model") or {}).get("resolution") or 32
    plain = compose_plain(overrides_for(name), resolution=res, num_gpus=plain_gpus(raw))
    d = plain["derived"]
    G = build_network(d["G_kind"], d["G_kwargs"])  # every kwarg accepted by the constructors
    D = build_network("discriminator", d["D_kwargs"])
    if d["augment_kwargs"] is not None:
        build_network("augment_pipe", d["augment_kwargs"])
    assert G.img_resolution == res and D.img_resolution == res
    assert plain["name"].startswith(name)


def plain_gpus(raw: dict) -> int:
    return int((raw.get("trainer") or {}).get("devices", 1))


@pytest.mark.parametrize("cfg", ["stylegan3-t", "stylegan3-r"])
@pytest.mark.parametrize("res", [128, 256, 512, 1024])
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_recommended_table_by_name(cfg, res, gpus):
    raw = yaml.safe_load((Path(CONF_DIR) / "experiment" / f"{cfg}-{res}-{gpus}gpu.yaml").read_text())
    assert raw["batch"] == 32 and raw["loss"]["r1_gamma"] == GAMMA[res]
    assert (raw["batch_gpu"] or 32 // gpus) == spec_batch_gpu(cfg, res, gpus)
    snap = {(128, 1): 10, (128, 2): 20, (1024, 1): 5, (1024, 2): 10, (1024, 4): 20}.get((res, gpus), 50)
    assert raw["snap"] == snap and raw["data"]["mirror"] is True and raw["trainer"]["devices"] == gpus
    assert raw["model"]["resolution"] == res and raw["defaults"][0] == {"override /model": cfg}


def test_finetune_and_paper_presets():
    p = compose_plain(overrides_for("finetune-stylegan3-t-metfacesu-1024"), resolution=1024, num_gpus=8)
    assert p["loss"]["r1_gamma"] == 16.4 and p["total_kimg"] == 5000 and p["snap"] == 10
    assert p["derived"]["ada"]["kimg"] == 100 and p["derived"]["ema_rampup"] is None
    assert (
        compose_plain(overrides_for("finetune-stylegan3-r-metfaces-1024"), 1024, num_gpus=8)["loss"][
            "r1_gamma"
        ]
        == 3.3
    )
    a = compose_plain(overrides_for("stylegan3-t-256-ablation"), resolution=256, num_gpus=8)
    assert (a["batch"], a["model"]["cbase"], a["optim"]["dlr"], a["augment"]["mode"]) == (
        64,
        16384,
        0.0025,
        "none",
    )
    s = compose_plain(overrides_for("stylegan2-ffhq-1024"), resolution=1024, num_gpus=8)
    assert s["derived"]["G_kind"] == "stylegan2" and s["loss"]["r1_gamma"] == 10


def sg3_train(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, "-m", "sg3.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data=demo", "batch=8"], "loss.r1_gamma: the R1 weight"),
        (["model=tiny", "data.urls=/nowhere/dataset.json", "batch=8", "loss.r1_gamma=1"], "data:"),
        (["experiment=demo", "model.resolution=48"], "48"),
        (["experiment=demo", "loss.r1_gamma=-1"], "loss.r1_gamma=-1 is not valid"),
        (["experiment=demo", "model.resolution=64"], "64x64"),
        (["experiment=demo", "batch=6"], "batch_gpu=6"),
    ],
)
def test_bad_config_fails_before_training_with_a_clear_message(tmp_path, args, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_in_process(args, tmp_path)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("override", "message"), [("logger.timeout=0", "logger.timeout=0"), ("logger.mode=ofline", "'ofline'")]
)
def test_a_bad_logger_setting_is_a_configuration_error(tmp_path, override, message):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sg3.train import build

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        overrides = ["experiment=demo", "threads=null", f"runs_dir={tmp_path}", override]
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(cfg)


def test_unknown_key_is_rejected_by_hydra():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="no_such_key"):
            compose("train", overrides=["experiment=demo", "no_such_key=1"])


@pytest.mark.slow
def test_cli_reports_config_errors_and_exits_2(tmp_path):
    proc = sg3_train(["data=demo", "batch=8", f"runs_dir={tmp_path}", "logger=none"], tmp_path)
    assert proc.returncode == 2
    assert "sg3-train: configuration error: missing required value(s):" in proc.stderr
    assert "loss.r1_gamma: the R1 weight" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_multirun_sweep_names_runs_after_swept_values_and_shares_a_group(tmp_path):
    # Two datasets x two gammas: the dataset paths must not turn into nested folders of the sweep dir.
    from sg3.data.demo import ensure_demo_dataset

    data = [ensure_demo_dataset(str(tmp_path / "data" / "deep" / "tree"), 16, n) for n in (8, 16)]
    args = ["--multirun", "model=tiny", "batch=4", f"data.urls={data[0]},{data[1]}", "loss.r1_gamma=1,2"]
    proc = sg3_train([*args, "dry_run=true", f"runs_dir={tmp_path}/runs", "name=sw"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "runs" / "sw-sweep"
    configs = sorted(p for p in sweep.rglob("config.yaml") if p.parent.name != ".hydra")
    assert [p.parent.parent for p in configs] == [sweep] * 4  # one level: no path pieces in the names
    # Hydra's override_dirname: every override (sorted) but the excluded paths and plumbing (dry_run, name...)
    assert [p.parent.name for p in configs] == [
        f"{i}-batch=4,loss.r1_gamma={g},model=tiny" for i, g in enumerate((1, 2, 1, 2))
    ]
    runs = [yaml.safe_load(p.read_text()) for p in configs]
    short = [Path(d).parent.name + "/dataset.json" for d in data]  # e.g. skimage-r16-n8-v1/dataset.json
    assert [r["run"]["name"] for r in runs] == [
        f"data.urls={short[i]},loss.r1_gamma={g}" for i in (0, 1) for g in (1, 2)
    ]
    assert [r["data"]["urls"] for r in runs] == [data[0], data[0], data[1], data[1]]
    assert len({r["run"]["group"] for r in runs}) == 1 and runs[0]["run"]["group"] == "sw-sweep"
    assert len({r["run"]["wandb_run_id"] for r in runs}) == 4


@pytest.mark.slow
def test_a_sweep_point_with_a_config_error_does_not_stop_the_other_points(tmp_path):
    from sg3.data.demo import ensure_demo_dataset

    good = ensure_demo_dataset(str(tmp_path / "data"), 16, 8)
    args = [
        "--multirun",
        "model=tiny",
        "batch=4",
        "loss.r1_gamma=1",
        f"data.urls={tmp_path}/missing.json,{good}",
    ]
    proc = sg3_train([*args, "dry_run=true", f"runs_dir={tmp_path}/runs", "name=sw"], tmp_path)
    sweep = tmp_path / "runs" / "sw-sweep"
    assert (sweep / "1-batch=4,loss.r1_gamma=1,model=tiny" / "config.yaml").is_file(), proc.stderr[-3000:]
    assert proc.returncode != 0  # the sweep as a whole reports the failed point
    assert "sg3-train: configuration error: data:" in proc.stderr and "missing.json" in proc.stderr
    assert "job #0" in proc.stderr.splitlines()[-1], proc.stderr[-2000:]


def test_only_rank_zero_writes_hydras_record_and_train_log(monkeypatch, tmp_path):
    # Under srun (or torchrun) every rank runs the Hydra job in the same run dir: rank > 0 must neither
    # rewrite .hydra/ nor append to rank 0's train.log (concurrent appends from two nodes corrupt it on NFS).
    import logging

    from sg3.train import separate_rank_log

    def output_subdir():
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=["experiment=demo"], return_hydra_config=True)
        return cfg.hydra.output_subdir

    def log_files_after_a_record(rank_env: dict) -> list[str]:
        for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
            monkeypatch.delenv(key, raising=False)
        for key, value in rank_env.items():
            monkeypatch.setenv(key, value)
        folder = tmp_path / "-".join(rank_env.values() or ["none"])
        folder.mkdir()
        root, handler = logging.getLogger(), logging.FileHandler(folder / "train.log", delay=True)
        root.addHandler(handler)
        try:
            separate_rank_log()
            logging.getLogger("sg3.train").warning("a record")
        finally:
            for h in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
                if str(folder) in h.baseFilename:
                    root.removeHandler(h)
                    h.close()
        return sorted(p.name for p in folder.iterdir() if p.stat().st_size)

    assert log_files_after_a_record({}) == ["train.log"] and output_subdir() == ".hydra"
    assert log_files_after_a_record({"SLURM_PROCID": "0"}) == ["train.log"] and output_subdir() == ".hydra"
    assert log_files_after_a_record({"SLURM_PROCID": "3"}) == ["train_rank3.log"] and output_subdir() is None
    # torchrun's global rank comes first
    assert log_files_after_a_record({"SLURM_PROCID": "3", "RANK": "2"}) == ["train_rank2.log"]


def test_the_local_ddp_sweep_override_of_docs_slurm_md_composes():
    text = (Path(CONF_DIR).parent / "docs" / "slurm.md").read_text()
    (override,) = re.findall(r"`([^`]*strategy\.start_method=spawn)`", text)
    for trainer in ("ddp_sim", "ddp"):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=["experiment=demo", f"trainer={trainer}", override])
        assert cfg.trainer.strategy.start_method == "spawn"


def test_sweep_subdir_and_run_name_helpers():
    assert sweep_subdir(3, "loss.r1_gamma=2,optim.glr=0.002") == "3-loss.r1_gamma=2,optim.glr=0.002"
    assert sweep_subdir(0, "") == "0"
    assert short_value("/data/sets/ffhq256/dataset.json") == "ffhq256/dataset.json"
    assert short_value("shards/x.tar") == "shards/x.tar" and short_value("2") == "2"


def test_metrics_group_adds_the_metrics_callback_by_target(tmp_path, monkeypatch):
    # The build checks that FID's weights file is there (tests/training/test_preflight.py): a stand-in.
    from sg3.metrics.features import WEIGHT_FILES

    for folder in (tmp_path / "default", tmp_path / "w"):
        folder.mkdir()
        (folder / WEIGHT_FILES["inception"].filename).write_bytes(b"x")
    monkeypatch.setenv("SG3_METRICS_WEIGHTS", str(tmp_path / "default"))
    parts = build_in_process(["experiment=demo", "metrics=fid50k_full"], tmp_path)
    found = [cb for cb in parts["trainer"].callbacks if type(cb).__name__ == "MetricsCallback"]
    assert len(found) == 1 and found[0].weights_dir is None and found[0].cache_dir is None
    assert parts["model"].derived["snapshot_kimg"] == pytest.approx(1.0)  # demo: snap 5 x 0.2 kimg
    # The folders the metric errors name can be set without Hydra's '+', in every metrics group file.
    for group in ("fid50k_full", "eq", "fid_eq"):
        over = [f"metrics.weights_dir={tmp_path}/w", f"metrics.cache_dir={tmp_path}/c"]
        parts = build_in_process(["experiment=demo", f"metrics={group}", *over], tmp_path / group)
        (cb,) = [cb for cb in parts["trainer"].callbacks if type(cb).__name__ == "MetricsCallback"]
        assert (cb.weights_dir, cb.cache_dir) == (f"{tmp_path}/w", f"{tmp_path}/c")


def test_gpu_trainer_without_a_gpu_names_trainer_cpu(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu needs a CUDA GPU.*trainer=cpu"):
        build_in_process(["experiment=demo", "trainer=gpu"], tmp_path / "a")
    assert not (tmp_path / "a" / "run").exists()  # refused before anything was written
    # A dry run still checks everything else (config, data, networks) and says why no Trainer was built.
    parts = build_in_process(["experiment=demo", "trainer=gpu", "dry_run=true"], tmp_path / "b")
    assert parts["trainer"] is None and "trainer=cpu" in parts["no_gpu"]
    assert parts["model"].G.img_resolution == 32 and (tmp_path / "b" / "run" / "config.yaml").is_file()


@pytest.mark.parametrize("cfg", ["stylegan3-t", "stylegan3-r", "stylegan2"])
def test_composed_defaults_are_the_official_train_py_defaults(cfg):
    """Spec 5.2 defaults as the Hydra config maps them (only the required values given)."""
    p = compose_plain([f"model={cfg}", "batch=32", "loss.r1_gamma=2", "data.urls=unused", "logger=none"], 256)
    d, sg2 = p["derived"], cfg == "stylegan2"
    assert (p["total_kimg"], p["kimg_per_tick"], p["snap"], p["seed"], p["freeze_d"]) == (25000, 4, 50, 0, 0)
    assert d["snapshot_kimg"] == 200 and d["image_kimg"] == 200
    assert (p["model"]["cbase"], p["model"]["cmax"], p["model"]["mbstd_group"]) == (32768, 512, 4)
    assert p["model"]["map_depth"] == (8 if sg2 else 2) and p["model"]["fp32"] is False
    assert d["G_kwargs"]["num_fp16_res"] == 4 and d["G_kwargs"]["conv_clamp"] == 256
    assert d["D_kwargs"]["num_fp16_res"] == 4 and d["D_kwargs"]["conv_clamp"] == 256
    assert d["D_kwargs"]["epilogue_kwargs"] == {"mbstd_group_size": 4}
    assert d["G_opt"]["lr"] == pytest.approx(0.0016 if sg2 else 0.0025)
    assert d["D_opt"]["lr"] == pytest.approx(0.002 * 16 / 17) and d["D_opt"]["eps"] == 1e-8
    assert d["D_opt"]["betas"] == pytest.approx([0.0, 0.99 ** (16 / 17)])
    assert d["ada"] == {"mode": "ada", "p": 0.0, "target": 0.6, "interval": 4, "kimg": 500.0,
                        "adjust": pytest.approx(32 * 4 / 500_000)}  # fmt: skip
    assert d["augment_kwargs"] is not None  # --aug=ada is the default
    assert (d["ema_kimg"], d["ema_rampup"]) == (10, 0.05)
    fixed = compose_plain(
        [f"model={cfg}", "batch=32", "loss.r1_gamma=2", "data.urls=unused", "augment=fixed"], 256
    )
    assert fixed["derived"]["ada"]["p"] == 0.2 and fixed["derived"]["ada"]["adjust"] == 0


def test_override_quoting_hint_names_the_fix():
    assert "data.urls=$HOME/ffhq/dataset.json" in override_quoting_hint(["data.urls=~/ffhq/dataset.json"])
    hint = override_quoting_hint(["batch=8", "data.urls=/d/s-{000..009}.tar"])
    assert hint.startswith("data.urls=/d/s-{000..009}.tar:") and "\"data.urls='/d/s-{000..009}.tar'\"" in hint
    fine = [
        "data.urls='/d/s-{000..009}.tar'",  # quoted for Hydra
        "+model.D_kwargs.block_kwargs={freeze_layers: 0}",  # a dictionary
        "name=${now:%H}",  # an interpolation
        "--multirun",
        "loss.r1_gamma=2",
    ]
    assert override_quoting_hint(fine) is None


@pytest.mark.slow
def test_cli_adds_a_quoting_hint_to_hydras_override_error(tmp_path):
    proc = sg3_train(["experiment=demo", "data.urls=~/nowhere/dataset.json", "dry_run=true"], tmp_path)
    assert proc.returncode == 1 and "LexerNoViableAltException" in proc.stderr
    assert "sg3-train: hint: data.urls=~/nowhere/dataset.json: the shell leaves '~'" in proc.stderr


def test_sg3_train_does_not_join_an_inherited_wandb_service(monkeypatch):
    """A parent that used W&B exports WANDB_SERVICE; sharing its service, a resumed run whose killed
    predecessor (same run id) is still open there failed with "run ID ... is in use"."""
    import sg3.train

    monkeypatch.setenv("WANDB_SERVICE", "3-1234-unix-/tmp/wandb-1234/socket")
    monkeypatch.setattr(sg3.train, "hydra_main", lambda: {"service": os.environ.get("WANDB_SERVICE")})
    assert sg3.train.main() == {"service": None}


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            ["trainer.devices=3"],
            "batch=8 is not valid: a positive multiple of the 3 processes "
            "(trainer.devices=3 x trainer.num_nodes=1)",
        ),
        (
            ["trainer.devices=3", "trainer.num_nodes=2"],
            "batch=8 is not valid: a positive multiple of the 6 processes "
            "(trainer.devices=3 x trainer.num_nodes=2)",
        ),
    ],
)
def test_a_batch_not_divisible_by_the_processes_names_trainer_devices_and_num_nodes(tmp_path, over, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_in_process(["experiment=demo", "trainer=cpu", *over, "batch=8"], tmp_path)


def test_finetune_on_a_machine_without_a_gpu_is_refused_naming_trainer_cpu(tmp_path, monkeypatch):
    """docs/training.md: experiment=finetune selects trainer=gpu; with no GPU the refusal names trainer=cpu"""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    base = ["experiment=finetune", "init_from=unused.pt", "data=demo", "loss.r1_gamma=2"]
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu needs a CUDA GPU.*trainer=cpu"):
        build_in_process(base, tmp_path / "a")
    assert not (tmp_path / "a" / "run").exists()
