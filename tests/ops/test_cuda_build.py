"""Tier `cuda_build`: the CUDA extension compiles for sm_80 and sm_90 on a machine without a GPU.

One fresh build (nothing reused from the user's cache) through the same `_build.build_extension` the ops
use; any compiler error fails the test with the compiler's output. Nothing runs on a GPU: the checks look
at the built module's exported names, the machine code embedded for each architecture, and the host-side
argument checks (which reject CPU tensors before any kernel is launched).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sg3.ops import _build

pytestmark = pytest.mark.cuda_build

ARCHS = "8.0;9.0"
EXPORTS = ("upfirdn2d", "bias_act", "filtered_lrelu_fwd", "filtered_lrelu_bwd")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build sg3_ops_cuda once for this module into a fresh cache; returns (module, .so path)."""
    cache = tmp_path_factory.mktemp("sg3_cuda_cache")
    module = _build.build_extension("cuda", arch_list=ARCHS, cache_dir=cache)
    so_files = list(Path(cache).glob("sg3_ops_cuda_*/build/sg3_ops_cuda_*.so"))
    assert len(so_files) == 1, f"expected one built library under {cache}, found {so_files}"
    return module, so_files[0]


def test_every_cuda_source_is_compiled():
    names = {p.name for p in _build.sources("cuda")}
    on_disk = {p.name for p in _build.CSRC.glob("*.cu")} | {"bind_cuda.cpp"}
    assert names == on_disk
    assert {"upfirdn2d.cu", "bias_act.cu", "filtered_lrelu.cu"} <= names


def test_extension_exports_the_ops_h_functions(built):
    module, _ = built
    for name in EXPORTS:
        assert callable(getattr(module, name)), name


def _embedded_archs(so: Path) -> set[str]:
    cuobjdump = Path(_build.cuda_home() or "/usr/local/cuda") / "bin" / "cuobjdump"
    tool = str(cuobjdump) if cuobjdump.exists() else shutil.which("cuobjdump")
    assert tool, "cuobjdump not found next to nvcc"
    out = subprocess.run([tool, "--list-elf", str(so)], capture_output=True, text=True, check=True).stdout
    return {token for token in out.replace(".", " ").split() if token.startswith("sm_")}


def test_machine_code_for_sm80_and_sm90(built):
    _, so = built
    archs = _embedded_archs(so)
    assert {"sm_80", "sm_90"} <= archs, f"embedded cubins: {sorted(archs)}"


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, f: m.upfirdn2d(x, f, 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0),
        lambda m, x, f: m.bias_act(x, torch.empty(0), torch.empty(0), 0, 1, 1, 0.0, 1.0, -1.0),
        lambda m, x, f: m.filtered_lrelu_fwd(
            x, f, f, torch.empty(0), 1, 1, 0, 0, 0, 0, 1.0, 0.2, -1.0, False, False
        ),
    ],
    ids=["upfirdn2d", "bias_act", "filtered_lrelu_fwd"],
)
def test_cpu_tensors_are_rejected_by_name(built, call):
    module, _ = built
    x = torch.ones([1, 2, 4, 4])
    f = torch.ones([1, 1])
    with pytest.raises(RuntimeError, match=r"argument 'x' must be a CUDA tensor"):
        call(module, x, f)
