"""Tier `cuda_build`: the CUDA extension compiles for sm_80 and sm_90 on a machine without a GPU.

One fresh build (nothing reused from the user's cache) through the same `_build.build_extension` the ops
use; any compiler error fails the test with the compiler's output. Nothing runs on a GPU: the checks look
at the built module's exported names, the nvcc targets of every object (machine code for sm_80 and
sm_90, no PTX-only fallback), and the host-side argument checks (which reject CPU tensors before any
kernel is launched).
"""

from __future__ import annotations

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


def test_every_source_compiled_for_sm80_and_sm90(built):
    _, so = built
    build_dir = so.parent
    ninja = (build_dir / "build.ninja").read_text()
    for arch in ("80", "90"):
        assert f"arch=compute_{arch},code=sm_{arch}" in ninja, f"sm_{arch} missing from the nvcc flags"
    for src in _build.CSRC.glob("*.cu"):
        obj = build_dir / f"{src.stem}.cuda.o"
        assert obj.is_file() and obj.stat().st_size > 0, f"no object for {src.name}"


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
