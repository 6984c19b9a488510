"""Every DDP rank uses the same op implementation: one rank's failed build moves all ranks to 'ref'."""

from __future__ import annotations

import logging

import pytest
import torch

from sg3 import ops
from sg3.ops import _dispatch
from sg3.ops._build import ExtensionBuildError
from sg3.training.ops_agreement import agree_on_ops

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _restore_default():
    before = ops.get_default_impl()
    yield
    ops.set_default_impl(before)


def _loads(monkeypatch, ok: bool):
    calls = []

    def fake_load(kind):
        calls.append(kind)
        if not ok:
            raise ExtensionBuildError("c++: fatal error: boom.h: No such file\nsee build.log")
        return object()

    monkeypatch.setattr(_dispatch, "load_extension", fake_load)
    return calls


def _others_failed(n: int):
    return lambda t: t + n  # the sum over this rank and n failing ones


def test_all_ranks_built_keeps_auto(monkeypatch):
    calls = _loads(monkeypatch, ok=True)
    assert agree_on_ops(CPU, 0, _others_failed(0)) == "auto"
    assert calls == ["cpp"]
    assert ops.get_default_impl() == "auto"


def test_another_rank_failed_moves_this_one_to_ref(monkeypatch, caplog):
    _loads(monkeypatch, ok=True)
    with caplog.at_level(logging.WARNING, logger="sg3.training.ops_agreement"):
        assert agree_on_ops(CPU, 0, _others_failed(1)) == "ref"
    assert ops.get_default_impl() == "ref"
    assert "1 rank(s) could not build" in caplog.text and "rank 0 built fine" in caplog.text


def test_own_failure_is_named(monkeypatch, caplog):
    _loads(monkeypatch, ok=False)
    with caplog.at_level(logging.WARNING, logger="sg3.training.ops_agreement"):
        assert agree_on_ops(CPU, 3, _others_failed(1)) == "ref"
    assert ops.get_default_impl() == "ref"
    assert "2 rank(s)" in caplog.text
    assert "rank 3: ExtensionBuildError: c++: fatal error: boom.h" in caplog.text


def test_explicit_choice_is_left_alone(monkeypatch):
    calls = _loads(monkeypatch, ok=False)
    with ops.use_impl("ref"):
        assert agree_on_ops(CPU, 0, _others_failed(1)) == "ref"
    assert calls == []  # nothing built, nothing reduced
    assert ops.get_default_impl() == "auto"
