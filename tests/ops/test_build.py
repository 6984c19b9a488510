"""Build machinery without compiling: cache keys, cross-process lock, failure reports, 'auto' fallback."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
import torch

from sg3 import ops
from sg3.ops import _build, _dispatch


def test_build_key_covers_kind_and_arch_list():
    k_cpp = _build.build_key("cpp")
    assert k_cpp == _build.build_key("cpp")  # stable
    assert len(k_cpp) == 16
    k80 = _build.build_key("cuda", "8.0")
    assert k80 != _build.build_key("cuda", "8.0;9.0") != k_cpp
    with pytest.raises(ValueError, match="kind must be one of"):
        _build.build_key("rocm")


def test_resolve_arch_list(monkeypatch):
    assert _build.resolve_arch_list("7.5") == "7.5"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    assert _build.resolve_arch_list() == "8.6"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    if not torch.cuda.is_available():
        assert _build.resolve_arch_list() == "8.0;9.0"


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SG3_OPS_CACHE", str(tmp_path / "c"))
    assert _build.cache_root() == tmp_path / "c"
    monkeypatch.delenv("SG3_OPS_CACHE")
    assert _build.cache_root().parts[-3:] == (".cache", "sg3", "ops")


def test_stale_lock_is_cleared_with_a_message(tmp_path, caplog):
    lock = tmp_path / "lock"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "time": 0}))
    with caplog.at_level(logging.WARNING, logger="sg3.ops._build"):
        with _build.file_lock(lock, timeout=5):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    assert "stale build lock" in caplog.text and str(lock) in caplog.text


def test_live_lock_times_out_naming_the_file(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename, "time": 0}))
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="build lock .*lock held by"):
        with _build.file_lock(lock, timeout=0.6, poll=0.1):
            pass
    assert 0.5 < time.monotonic() - start < 5
    assert lock.exists()  # someone else's lock is left alone


def _hold_lock(lock, log):
    with _build.file_lock(lock, timeout=30, poll=0.02):
        with open(log, "a", buffering=1) as fh:
            fh.write("start\n")
            time.sleep(0.5)
            fh.write("end\n")


def test_lock_serializes_processes(tmp_path):
    """A second process waits for the first one's lock and then proceeds (no overlap, no deadlock)."""
    lock, log = tmp_path / "lock", tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hold_lock, args=(lock, log)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert log.read_text().split() == ["start", "end"] * 3
    assert not lock.exists()


def test_build_failure_names_the_log(monkeypatch, tmp_path):
    def failing_compile(kind, name, build_dir, arch, verbose):
        raise RuntimeError("Error building extension: foo.cpp:3:1: error: expected ';' before '}' token")

    monkeypatch.setattr(_build, "_compile", failing_compile)
    monkeypatch.setattr(_build, "_loaded", {})  # earlier tests in this process may have loaded the extension
    with pytest.raises(_build.ExtensionBuildError) as info:
        _build.build_extension("cpp", cache_dir=tmp_path)
    message = str(info.value)
    assert "full build log:" in message and "error: expected ';'" in message
    log_path = next(tmp_path.glob("sg3_ops_cpu_*/build.log"))
    assert str(log_path) in message
    assert "FAILED" in log_path.read_text()
    assert not list(tmp_path.glob("sg3_ops_cpu_*/lock"))  # released after the failure


def test_auto_warns_once_and_falls_back(monkeypatch):
    def broken(kind):
        raise _build.ExtensionBuildError(
            f"building the '{kind}' extension failed; full build log: /x/build.log"
        )

    monkeypatch.setattr(_dispatch, "load_extension", broken)
    monkeypatch.setattr(_dispatch, "_failed", {})
    x = torch.randn(1, 2, 6, 6)
    with pytest.warns(RuntimeWarning, match="/x/build.log"):
        y = ops.bias_act(x, act="lrelu")
    torch.testing.assert_close(y, ops.bias_act(x, act="lrelu", impl="ref"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.bias_act(x, act="lrelu")  # second call: no warning, still ref
    with pytest.raises(_build.ExtensionBuildError, match="build.log"):
        ops.bias_act(x, act="lrelu", impl="cpp")  # explicit impl fails loudly
