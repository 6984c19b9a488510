"""The cpu_ops fixture builds the ops outside the test's own time limit (conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

SLOW_BUILD = """
import time


def build_cpu_ops():  # a cold build: 2 s, longer than the tests' 1 s limit
    time.sleep(2)


BUILD_TIMEOUT_S = {build_timeout}
"""

TESTS = """
import pytest

from conftest import build_cpu_ops


@pytest.mark.timeout(func_only=True)
def test_after_the_build(cpu_ops):
    pass


def test_unmarked(cpu_ops):
    pass


@pytest.mark.timeout(func_only=True)
def test_building_in_the_test():
    build_cpu_ops()
"""


def _outcomes(tmp_path: Path, build_timeout: int) -> dict[str, str]:
    slow_build = SLOW_BUILD.format(build_timeout=build_timeout)
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text() + slow_build)
    (tmp_path / "test_inner.py").write_text(TESTS)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "pytest_timeout"]
    cmd += ["--timeout=1", "test_inner.py"]
    # Only pytest-timeout (the other installed plugins take seconds to import); whole reasons in the summary.
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COLUMNS": "1000"}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300).stdout
    outcomes = {}
    for line in out.splitlines():
        word, _, rest = line.partition(" test_inner.py::")
        if rest and word in ("PASSED", "FAILED", "ERROR"):
            name, _, why = rest.partition(" - ")
            outcomes[name] = f"{word} {why}".strip()
    return outcomes


def test_a_slow_build_does_not_count_against_the_tests_limit(tmp_path):
    """The profile test built the C++ ops inside its own 900 s limit when it was the first to need them, and
    a cold build under load once used it up. A 2 s build in the fixture leaves a 1 s test limit untouched;
    the same build inside the test times out; an unmarked test is told how to use the fixture."""
    outcomes = _outcomes(tmp_path, build_timeout=60)
    assert outcomes["test_after_the_build"] == "PASSED", outcomes
    assert outcomes["test_building_in_the_test"].startswith("FAILED Failed: Timeout"), outcomes
    assert outcomes["test_unmarked"].startswith("ERROR"), outcomes
    assert "timeout(func_only=True)" in outcomes["test_unmarked"], outcomes


def test_the_build_has_its_own_limit(tmp_path):
    outcomes = _outcomes(tmp_path, build_timeout=1)
    assert outcomes["test_after_the_build"].startswith("ERROR Failed: Timeout"), outcomes
