"""Bad values of run-level keys stop before training with one ConfigError naming the key, value and range.

Each of these used to pass `derive` silently (and failed later, mid-run, or trained with a nonsense value) or
escaped as a bare ValueError/TypeError/ZeroDivisionError traceback.
"""

from __future__ import annotations

import re

import pytest
from training_helpers import TINY, compose_plain

from sg3.training.derive import ConfigError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("total_kimg=abc", "total_kimg='abc' is not valid: a number > 0"),
        ("total_kimg=-1", "total_kimg=-1 is not valid: a number > 0"),
        ("total_kimg=true", "total_kimg=True is not valid: a number > 0"),
        ("kimg_per_tick=abc", "kimg_per_tick='abc' is not valid: a number > 0"),
        ("kimg_per_tick=0", "kimg_per_tick=0 is not valid: a number > 0"),
        ("snap=1.5", "snap=1.5 is not valid: an integer >= 1"),
        ("snap=0", "snap=0 is not valid: an integer >= 1"),
        ("image_snap=0", "image_snap=0 is not valid: an integer >= 1"),
        ("checkpoint_kimg=0", "checkpoint_kimg=0 is not valid: a number > 0"),
        ("checkpoint_kimg=-1", "checkpoint_kimg=-1 is not valid: a number > 0"),
        ("keep_checkpoints=abc", "keep_checkpoints='abc' is not valid: an integer >= 0"),
        ("keep_checkpoints=-1", "keep_checkpoints=-1 is not valid: an integer >= 0"),
        ("ema_kimg=-1", "ema_kimg=-1 is not valid: a number >= 0"),
        ("ema_rampup=-1", "ema_rampup=-1 is not valid: a number > 0"),
        ("seed=abc", "seed='abc' is not valid: an integer >= 0"),
        ("freeze_d=abc", "freeze_d='abc' is not valid: an integer >= 0"),
        ("optim.glr=abc", "optim.glr='abc' is not valid: a number > 0"),
        ("optim.dlr=0", "optim.dlr=0 is not valid: a number > 0"),
        ("optim.eps=-1", "optim.eps=-1 is not valid: a number > 0"),
        ("optim.betas=[0.5]", "optim.betas=[0.5] is not valid: two numbers in [0, 1)"),
        ("augment.p=abc", "augment.p='abc' is not valid: a probability in [0, 1]"),
        ("augment.p=-0.5", "augment.p=-0.5 is not valid: a probability in [0, 1]"),
        ("augment.p=1.5", "augment.p=1.5 is not valid: a probability in [0, 1]"),
        ("augment.target=abc", "augment.target='abc' is not valid: a number in [-1, 1]"),
        ("augment.target=2", "augment.target=2 is not valid: a number in [-1, 1]"),
        ("augment.interval=0", "augment.interval=0 is not valid: an integer >= 1"),
        ("augment.kimg=0", "augment.kimg=0 is not valid: a number > 0"),
        ("augment.kimg=-5", "augment.kimg=-5 is not valid: a number > 0"),
        ("+augment.kwargs.rotat=0", "augment.kwargs.rotat is not an AugmentPipe setting: one of "),
        ("+augment.kwargs.rotate90=-1", "augment.kwargs.rotate90=-1 is not valid"),
        ("loss.style_mixing_prob=2", "loss.style_mixing_prob=2 is not valid: a probability in [0, 1]"),
        ("grid.gw=abc", "grid.gw='abc' is not valid: an integer >= 1"),
        ("grid.gh=0", "grid.gh=0 is not valid: an integer >= 1"),
    ],
)
def test_a_bad_value_is_one_config_error_naming_key_value_and_range(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        compose_plain([*TINY, override])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override",
    [
        "augment.p=0", "augment.p=1", "augment.target=-1", "augment.target=1", "keep_checkpoints=0",
        "ema_kimg=0", "ema_rampup=null", "checkpoint_kimg=0.5", "snap=1", "image_snap=null",
        "total_kimg=0.01",
        "+augment.kwargs.rotate90=0", "grid.gw=3", "optim.betas=[0.5,0.9]",
    ],
)  # fmt: skip
def test_values_at_the_edges_of_the_ranges_are_accepted(override):
    plain = compose_plain([*TINY, override])
    if override == "+augment.kwargs.rotate90=0":
        assert plain["derived"]["augment_kwargs"]["rotate90"] == 0
    if override == "augment.p=1":
        assert plain["derived"]["ada"]["p"] == 1.0
