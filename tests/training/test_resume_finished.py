"""Resuming a run that has already reached total_kimg says so and how to train further (it said nothing)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from training_helpers import tiny_module


def test_resuming_a_finished_run_stops_with_a_message_naming_total_kimg(caplog):
    module = tiny_module(["total_kimg=0.008"])
    module.cur_nimg = 8
    module._trainer = SimpleNamespace(should_stop=False)
    with caplog.at_level(logging.WARNING, logger="sg3.train"):
        module.on_train_start()
    assert module._trainer.should_stop
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "total_kimg=0.008" in text and "0.008 kimg" in text and "nothing to train" in text


def test_an_unfinished_run_starts_without_that_message(caplog):
    module = tiny_module(["total_kimg=0.008"])
    module.cur_nimg = 4
    module._trainer = SimpleNamespace(should_stop=False)
    with caplog.at_level(logging.WARNING, logger="sg3.train"):
        module.on_train_start()
    assert not module._trainer.should_stop and "nothing to train" not in caplog.text
