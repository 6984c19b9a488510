"""Fixtures of the gpu_check tests."""

from __future__ import annotations

import signal

import pytest

BUILD_TIMEOUT_S = 1800  # a cold build of the C++ CPU ops on a loaded 2-core machine takes minutes


def build_cpu_ops() -> None:
    """What the first op call with impl='auto' on a CPU tensor does: build/load the C++ ops or fall back."""
    import torch

    from sg3.ops import _dispatch

    _dispatch.resolve("auto", torch.zeros(1))


@pytest.fixture
def cpu_ops(request):
    """The C++ CPU ops built (or found in the cache) under their own time limit, before the test's starts.

    A test that runs the ops with impl='auto' builds them on first use; when that test is the first of the
    process to need them, a cold build ate into the test's own limit (and once exceeded it). Tests using this
    fixture mark themselves `pytest.mark.timeout(func_only=True)`, so their limit covers the call only; the
    build here runs under `BUILD_TIMEOUT_S`. A failed build is left to 'auto' (warns, falls back to 'ref');
    on a warm cache this is a load of the cached module that the test would do anyway.
    """
    hook = request.config.pluginmanager.hook
    timed = hasattr(hook, "pytest_timeout_set_timer")  # pytest-timeout is active
    marker = request.node.get_closest_marker("timeout")
    func_only = marker.kwargs.get("func_only") if marker is not None else None
    if timed and not (func_only or (func_only is None and request.config.getini("timeout_func_only"))):
        # Otherwise the test's limit is already running here, and cancelling the build's timer would end it.
        pytest.fail(f"{request.node.nodeid} uses cpu_ops: mark it pytest.mark.timeout(func_only=True)")
    if timed:
        from pytest_timeout import Settings

        method = "signal" if hasattr(signal, "SIGALRM") else "thread"
        settings = Settings(BUILD_TIMEOUT_S, method, True, False)
        hook.pytest_timeout_set_timer(item=request.node, settings=settings)
    try:
        build_cpu_ops()
    finally:
        if timed:
            hook.pytest_timeout_cancel_timer(item=request.node)
