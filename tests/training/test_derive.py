"""Derived training values against the spec's numbers (sections 4, 5.1, 5.2, 5.4)."""

from __future__ import annotations

import copy

import pytest

from sg3.training.derive import (
    ConfigError,
    ada_adjust,
    derive,
    ema_beta,
    kimg_to_steps,
    lazy_regularization,
    magnitude_ema_beta,
    training_phases,
)

SPECS = {"bgc": {"xflip": 1, "rotate90": 1}}
BASE = {
    "model": {"cfg": "stylegan3-t", "resolution": None, "z_dim": 512, "w_dim": 512, "map_depth": 2,
              "cbase": 32768, "cmax": 512, "mbstd_group": 4, "fp32": False, "G_kwargs": {}, "D_kwargs": {}},
    "loss": {"r1_gamma": 2.0},
    "optim": {"glr": None, "dlr": 0.002, "betas": [0.0, 0.99], "eps": 1e-8, "G_reg_interval": "auto",
              "D_reg_interval": 16},
    "augment": {"mode": "ada", "preset": "bgc", "p": 0.0, "target": 0.6, "interval": 4, "kimg": None,
                "kwargs": {}},
    "batch": 32, "batch_gpu": None, "total_kimg": 25000, "kimg_per_tick": 4, "snap": 50,
    "image_snap": None, "checkpoint_kimg": None, "init_from": None, "freeze_d": 0, "ema_kimg": None,
    "ema_rampup": 0.05, "seed": 0,
}  # fmt: skip


def make(cfg_name="stylegan3-t", gpus=1, res=256, **top):
    cfg = copy.deepcopy(BASE)
    cfg["model"]["cfg"] = cfg_name
    cfg["model"]["map_depth"] = 8 if cfg_name == "stylegan2" else 2
    for key, value in top.items():
        section, _, sub = key.partition("__")
        if sub:
            cfg[section][sub] = value
        else:
            cfg[key] = value
    return derive(cfg, resolution=res, img_channels=3, c_dim=0, num_gpus=gpus, augment_specs=SPECS)


def test_lazy_regularization_numbers_from_spec():
    lr, betas = lazy_regularization(0.002, [0, 0.99], 16)
    assert lr == pytest.approx(0.00188235, abs=1e-8)
    assert betas[1] == pytest.approx(0.990585, abs=1e-6) and betas[0] == 0
    lr, betas = lazy_regularization(0.002, [0, 0.99], 4)
    assert lr == pytest.approx(0.0016) and betas[1] == pytest.approx(0.991992, abs=1e-6)
    assert lazy_regularization(0.0025, [0, 0.99], None) == (0.0025, [0.0, 0.99])


def test_per_config_optimizers_and_phases():
    t = make("stylegan3-t")
    assert t["G_opt"]["lr"] == 0.0025 and t["G_opt"]["betas"] == [0.0, 0.99]
    assert t["D_opt"]["lr"] == pytest.approx(0.00188235, abs=1e-8)
    assert t["phases"] == [["Gmain", 1], ["Dmain", 1], ["Dreg", 16]]
    s = make("stylegan2")
    assert s["G_opt"]["lr"] == pytest.approx(0.0016) and s["G_opt"]["betas"][1] == pytest.approx(
        0.991992, abs=1e-6
    )
    assert s["phases"] == [["Gmain", 1], ["Greg", 4], ["Dmain", 1], ["Dreg", 16]]
    assert s["loss_kwargs"]["style_mixing_prob"] == 0.9 and s["loss_kwargs"]["pl_weight"] == 2
    assert s["G_kwargs"]["mapping_kwargs"] == {"num_layers": 8}
    assert t["loss_kwargs"]["style_mixing_prob"] == 0 and t["loss_kwargs"]["pl_weight"] == 0


def test_phase_remapping():
    assert training_phases(None, 16, 0, 0) == [("Gmain", 1), ("Dmain", 1)]
    assert training_phases(None, None, 0, 10) == [("Gmain", 1), ("Dboth", 1)]
    assert training_phases(4, 16, 0, 10) == [("Gmain", 1), ("Dmain", 1), ("Dreg", 16)]


def test_ema_and_magnitude_values():
    assert magnitude_ema_beta(32) == pytest.approx(0.998892, abs=1e-6)
    assert magnitude_ema_beta(64) == pytest.approx(0.997784, abs=1e-6)
    d = make("stylegan3-t", batch=64)
    assert d["ema_kimg"] == 20 and d["ema_rampup"] == 0.05
    assert d["G_kwargs"]["magnitude_ema_beta"] == pytest.approx(0.997784, abs=1e-6)
    assert "magnitude_ema_beta" not in make("stylegan2")["G_kwargs"]


def test_ema_rampup_schedule():
    assert ema_beta(32, 0, 10, 0.05) == 0.0  # G_ema = G at step 0
    assert ema_beta(32, 1000, 10, 0.05) == pytest.approx(0.5 ** (32 / 50))
    assert ema_beta(32, 10**6, 10, 0.05) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_beta(32, 0, 10, None) == pytest.approx(0.5 ** (32 / 10000))


def test_config_r_blur_and_channels():
    r = make("stylegan3-r")
    assert r["loss_kwargs"]["blur_init_sigma"] == 10 and r["loss_kwargs"]["blur_fade_kimg"] == 200
    assert r["G_kwargs"]["channel_base"] == 65536 and r["G_kwargs"]["channel_max"] == 1024
    assert r["D_kwargs"]["channel_base"] == 32768 and r["D_kwargs"]["channel_max"] == 512
    assert r["G_kwargs"]["conv_kernel"] == 1 and r["G_kwargs"]["use_radial_filters"] is True
    assert make("stylegan3-r", batch=64)["loss_kwargs"]["blur_fade_kimg"] == 400


def test_batch_split_and_gpus():
    d = make("stylegan3-t", gpus=4, batch=32, batch_gpu=4)
    assert (d["batch_per_gpu"], d["batch_gpu"], d["num_accum"]) == (8, 4, 2)
    assert make(gpus=8)["batch_gpu"] == 4


def test_ada_schedule_and_transfer_defaults():
    d = make()
    assert d["ada"]["kimg"] == 500 and d["ada"]["adjust"] == pytest.approx(32 * 4 / 500000)
    assert ada_adjust(32, 4, 100) == pytest.approx(0.00128)
    t = make("stylegan3-r", init_from="x.pkl")
    assert t["ada"]["kimg"] == 100 and t["ema_rampup"] is None and t["loss_kwargs"]["blur_init_sigma"] == 0
    assert make(augment__mode="fixed", augment__p=0.2)["ada"] == {
        "mode": "fixed", "p": 0.2, "target": 0.6, "interval": 4, "kimg": 500.0, "adjust": 0.0}  # fmt: skip
    assert make(augment__mode="none")["augment_kwargs"] is None


def test_schedule_counts():
    assert kimg_to_steps(25000, 32) == 781250 and kimg_to_steps(0.1, 32) == 4
    d = make()
    assert d["snapshot_kimg"] == 200 and d["image_kimg"] == 200 and d["checkpoint_kimg"] is None
    assert make(checkpoint_kimg=50)["checkpoint_kimg"] == 50.0


def test_fp32_and_freeze_d():
    d = make(freeze_d=3, model__fp32=True)
    assert d["G_kwargs"]["num_fp16_res"] == 0 and d["G_kwargs"]["conv_clamp"] is None
    assert d["D_kwargs"]["block_kwargs"] == {"freeze_layers": 3}
    assert d["D_kwargs"]["epilogue_kwargs"] == {"mbstd_group_size": 4}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"res": 48}, "resolution=48"),
        ({"loss__r1_gamma": -1.0}, "loss.r1_gamma=-1.0"),
        ({"model__resolution": 512}, "model.resolution=512 does not match the dataset resolution 256"),
        ({"batch": 30, "gpus": 4}, "batch=30"),
        ({"batch_gpu": 2}, "batch_gpu=2"),
        ({"batch_gpu": 6}, "batch_gpu=6"),
        ({"augment__mode": "always"}, "augment.mode='always'"),
        ({"augment__preset": "xyz"}, "augment.preset='xyz'"),
        ({"model__cfg": "stylegan4"}, "model.cfg='stylegan4'"),
        ({"tf32": "yes"}, "tf32='yes'"),
        ({"trainer": {"precision": "64-true"}}, "trainer.precision='64-true' is not valid: 32-true"),
        ({"trainer": {"precision": "16-mixed"}}, "trainer.precision='16-mixed'"),
        ({"trainer": {"precision": "bf16-true"}}, "trainer.precision='bf16-true'"),
    ],
)
def test_bad_values_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make(**kwargs)


@pytest.mark.parametrize("precision", ["32-true", "32", 32, "bf16-mixed"])
def test_supported_trainer_precisions_are_accepted(precision):
    assert make(trainer={"precision": precision})["batch"] == 32
