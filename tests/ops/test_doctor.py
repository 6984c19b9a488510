"""sg3-doctor: passes on a healthy build and exits non-zero when a compiled kernel disagrees with ref."""

from __future__ import annotations

import importlib

import pytest

from sg3.ops import doctor

pytestmark = pytest.mark.cpp


def test_doctor_passes_and_fails_on_a_wrong_kernel(monkeypatch, capsys):
    assert doctor.main(["--no-cuda"]) == 0
    out = capsys.readouterr().out
    assert "All checks passed." in out and "[ok] cpp" in out and "FAIL" not in out

    bias_act_module = importlib.import_module("sg3.ops.bias_act")
    original = bias_act_module._call_kernel

    def off_by_a_bit(*args, **kwargs):
        out = original(*args, **kwargs)
        return (out[0] + 1e-2, out[1]) if isinstance(out, tuple) else out + 1e-2

    monkeypatch.setattr(bias_act_module, "_call_kernel", off_by_a_bit)
    assert doctor.main(["--no-cuda"]) == 1
    lines = capsys.readouterr().out.splitlines()
    failed = [line for line in lines if line.strip().startswith("[FAIL]")]
    assert failed and all("bias_act" in line for line in failed)
    assert "Some checks FAILED (see above)." in lines[-1]
