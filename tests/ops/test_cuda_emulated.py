"""Tier `cpp`: the CUDA kernels' own source, compiled as host C++ and run by a thread emulator, against ref.

No GPU and no nvcc needed: src/sg3/csrc/*.cu are compiled with g++ against the stub headers in
tests/ops/cuda_emu/ (each block runs as 256 host threads meeting at real barriers; shared memory and
outputs are poisoned with NaN first). This checks the kernels' index arithmetic, tiling, barrier placement
and sign bookkeeping, forward and backward, for the specialised instances and the generic one. The host
preparation mirrors bind_cuda.cpp (filter orientation and gain, output sizes, the transposed backward call).
It cannot check float16 rounding, the GPU memory model or speed: that is the `gpu` tier's job.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import subprocess
from pathlib import Path

import pytest
import torch

import sg3.ops as ops
from sg3.modules.filters import design_lowpass_filter
from sg3.ops import _build

pytestmark = pytest.mark.cpp
flrelu_mod = importlib.import_module("sg3.ops.filtered_lrelu")  # the module (sg3.ops exports the function)

EMU = Path(__file__).resolve().parent / "cuda_emu"
DTYPE_CODE = {torch.float32: 2, torch.float64: 3}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda_emu") / "libsg3emu.so"
    sources = [str(p) for p in sorted(_build.CSRC.glob("*.cu"))]
    cmd = [
        "g++",
        "-std=c++20",
        "-O1",
        "-shared",
        "-fPIC",
        f"-I{EMU}",
        f"-I{_build.CSRC}",
        "-x",
        "c++",
        *sources,
    ]
    cmd += [str(EMU / "emu_api.cpp"), "-o", str(out), "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return ctypes.CDLL(str(out))


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None and t.numel() else 0)


def _arr(ctype, values):
    return (ctype * len(values))(*values)


def _oriented(f: torch.Tensor, flip: bool, gain_1d: float, gain_2d: float, dtype) -> torch.Tensor:
    g = f if flip else f.flip(list(range(f.ndim)))
    return (g * (gain_1d if f.ndim == 1 else gain_2d)).to(dtype).contiguous()


def _out_len(n, up, down, p0, p1, taps):
    length = n * up + p0 + p1 - (taps - 1)
    return 0 if length < 1 else (length + down - 1) // down


KERNELS = {"tiled": 0, "blocked": 1}  # FlreluKernel (cuda_launch.cuh)


def _blocked_covers(up: int, down: int, gu: torch.Tensor, gd: torch.Tensor) -> bool:
    """Which calls the blocked kernel runs (docs/gpu.md): separable, or one 2-D filter of config R."""
    tu, td = gu.shape[-1], gd.shape[-1]
    if gu.ndim == 2 and gd.ndim == 2:
        return False
    if gd.ndim == 2:  # R forward: 2-D down filter
        return down == 2 and td <= 12 and ((up == 2 and tu <= 12) or (up == 4 and tu <= 24))
    if gu.ndim == 2:  # R backward: 2-D up filter
        return up == 2 and tu <= 12 and ((down == 2 and td <= 12) or (down == 4 and td <= 24))
    return up in (1, 2, 4) and down in (1, 2, 4) and tu <= 8 * up and td <= 8 * down


def _fused(lib, x, gu, gd, b, out_hw, up, down, px0, py0, reals, mode, signs, sign_geom, kernel):
    """One fused call; asserts that the blocked kernel ran when it should (`kernel` 'blocked' and covered)."""
    y = torch.full([x.shape[0], x.shape[1], *out_hw], float("nan"), dtype=x.dtype)
    ints = [
        int(gu.ndim == 2),
        int(gd.ndim == 2),
        gu.shape[-1],
        gu.shape[0],
        gd.shape[-1],
        gd.shape[0],
        *x.shape,
        *out_hw,
        up,
        down,
        px0,
        py0,
        mode,
        *sign_geom,
        DTYPE_CODE[x.dtype],
        KERNELS[kernel],
    ]
    covered = bool(lib.emu_filtered_lrelu_blocked_covers(_arr(ctypes.c_int, ints)))
    assert covered == _blocked_covers(up, down, gu, gd)
    rc = lib.emu_filtered_lrelu(
        _ptr(x),
        _ptr(b),
        _ptr(y),
        _ptr(gu),
        _ptr(gd),
        _arr(ctypes.c_int, ints),
        _arr(ctypes.c_int64, x.stride()),
        _arr(ctypes.c_double, reals),
        _ptr(signs),
    )
    assert rc == 0, f"launcher returned {rc}"
    return y


def _flrelu_fwd(lib, x, fu, fd, b, up, down, pad, gain, slope, clamp, flip, write, kernel="tiled"):
    """Mirror of bind_cuda.cpp filtered_lrelu_fwd."""
    px0, px1, py0, py1 = pad
    acc = x.dtype
    gu, gd = _oriented(fu, flip, up, up * up, acc), _oriented(fd, flip, 1, 1, acc)
    oh = _out_len(x.shape[2], up, down, py0, py1, gu.shape[0] + gd.shape[0] - 1)
    ow = _out_len(x.shape[3], up, down, px0, px1, gu.shape[-1] + gd.shape[-1] - 1)
    hz, wz = (oh - 1) * down + gd.shape[0], (ow - 1) * down + gd.shape[-1]
    row = (wz + 15) // 16 * 4
    signs = torch.full([x.shape[0], x.shape[1], hz, row], 0xEE, dtype=torch.uint8) if write else None
    reals = [gain, slope, -1.0 if clamp is None else clamp]
    geom = [hz, wz, row, 0, 0]
    y = _fused(lib, x, gu, gd, b, [oh, ow], up, down, px0, py0, reals, 1 if write else 0, signs, geom, kernel)
    return y, signs


def _flrelu_bwd(lib, dy, fu, fd, signs, up, down, pad, in_hw, gain, slope, flip, kernel="tiled"):
    """Mirror of bind_cuda.cpp filtered_lrelu_bwd: the transposed fused call reading the signs."""
    px0, _, py0, _ = pad
    gu, gd = _oriented(fd, not flip, 1, 1, dy.dtype), _oriented(fu, not flip, up, up * up, dy.dtype)
    fuw, fuh, fdw, fdh = gd.shape[-1], gd.shape[0], gu.shape[-1], gu.shape[0]
    hz, wz = (dy.shape[2] - 1) * down + fdh, (dy.shape[3] - 1) * down + fdw
    geom = [hz, wz, (wz + 15) // 16 * 4, px0 - (fuw - 1), py0 - (fuh - 1)]
    pad0 = (fdw - 1 + fuw - 1 - px0, fdh - 1 + fuh - 1 - py0)
    reals = [gain, slope, -1.0]
    return _fused(lib, dy, gu, gd, None, in_hw, down, up, *pad0, reals, 2, signs, geom, kernel)


def _lowpass(taps: int, radial: bool = False) -> torch.Tensor:
    if taps == 1:
        return torch.ones([1], dtype=torch.float64)
    return torch.as_tensor(design_lowpass_filter(taps, 2.0, 6.0, 16.0, radial=radial)).double()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert torch.isfinite(a).all(), "unwritten (NaN) outputs"
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


S2 = math.sqrt(2)
FLRELU = [
    # shape, up, down, padding, up taps, down taps, radial, clamp, slope, gain, flip, 2-D fu, layout
    ([1, 2, 20, 20], 2, 2, [9, 8, 9, 8], 12, 12, False, 256.0, 0.2, S2, False, False, "nchw"),
    ([1, 2, 20, 18], 4, 2, [-6, -9, -6, -9], 24, 12, False, 0.5, 0.2, S2, False, False, "channels_last"),
    ([1, 1, 18, 18], 2, 2, [11, 10, 11, 10], 12, 12, True, 1.0, 0.2, S2, False, False, "nchw"),
    ([2, 2, 16, 16], 1, 1, [0, 0, 0, 0], 1, 1, False, 0.3, 1.0, 1.0, False, False, "nchw"),
    ([1, 2, 13, 17], 2, 2, [3, 4, 5, 2], 6, 8, False, None, 0.1, 2.0, True, False, "nchw"),
    ([1, 2, 11, 9], 3, 1, [4, 4, 4, 4], 9, 3, False, 0.8, 0.3, 1.0, False, False, "nchw"),
    ([1, 1, 24, 12], 1, 4, [5, 6, 7, 8], 4, 16, False, None, 0.2, S2, False, False, "nchw"),
    ([1, 1, 9, 9], 2, 2, [3, 2, 1, 4], 4, 4, False, 0.5, 0.2, 1.5, True, True, "nchw"),
    ([1, 1, 40, 36], 2, 2, [9, 8, 9, 8], 12, 12, False, 0.7, 0.2, S2, False, False, "nchw"),
    # several tiles with partial edge tiles (forward 32x32 tiles, backward up 2 / down 4 at 16x16)
    ([1, 1, 34, 30], 4, 2, [-6, -9, -6, -9], 24, 12, False, 0.6, 0.2, S2, False, False, "nchw"),
    # odd sizes, asymmetric padding, short filters padded to the (2, 2, 12, 12) instance, 6 planes
    ([2, 3, 15, 21], 2, 2, [5, 2, 7, 3], 10, 6, False, 0.9, 0.2, S2, True, False, "channels_last"),
    # the general instances (taps padded to 8 * factor), forward and transposed
    ([1, 2, 19, 23], 4, 4, [8, 7, 6, 9], 16, 20, False, None, 0.2, S2, False, False, "nchw"),
    ([1, 1, 21, 17], 2, 1, [4, 3, 4, 3], 8, 4, False, 0.5, 0.3, 1.0, False, False, "nchw"),
    ([1, 1, 10, 11], 4, 1, [5, 6, 5, 6], 12, 3, False, None, 0.2, S2, True, False, "nchw"),
    # config R: radial 2-D down filter (the backward has the 2-D filter as up filter), several tiles
    ([2, 2, 21, 19], 4, 2, [-2, -5, -2, -5], 24, 12, True, 0.6, 0.2, S2, False, False, "nchw"),
    ([1, 1, 37, 35], 2, 2, [11, 10, 11, 10], 12, 12, True, None, 0.2, S2, True, False, "channels_last"),
]


def _flrelu_case(case: int):
    """Inputs of FLRELU[case] and the reference forward and gradients (float64)."""
    shape, up, down, pad, tu, td, radial, clamp, slope, gain, flip, fu_2d, layout = FLRELU[case]
    g = torch.Generator().manual_seed(case)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    b = torch.randn([shape[1]], generator=g, dtype=torch.float64)
    fu, fd = _lowpass(tu), _lowpass(td, radial)
    fu = fu.ger(fu) if fu_2d else fu
    kw = dict(up=up, down=down, padding=pad, gain=gain, slope=slope, clamp=clamp, flip_filter=flip)
    xr, br = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
    y_ref = ops.filtered_lrelu(xr, fu, fd, br, impl="ref", **kw)
    dy = torch.randn(y_ref.shape, generator=g, dtype=torch.float64)
    dx_ref, db_ref = torch.autograd.grad(y_ref, [xr, br], dy)
    x = x.to(memory_format=torch.channels_last) if layout == "channels_last" else x
    return x, b, dy, fu, fd, (up, down, pad, gain, slope, clamp, flip), (y_ref, dx_ref, db_ref)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(FLRELU)), ids=lambda i: f"flrelu{i}")
def test_filtered_lrelu_kernel_forward_and_backward(lib, case, dtype, kernel):
    x, b, dy, fu, fd, args, (y_ref, dx_ref, db_ref) = _flrelu_case(case)
    up, down, pad, gain, slope, clamp, flip = args
    xk, bk, dyk = x.to(dtype), b.to(dtype), dy.to(dtype)  # kept alive across the calls
    y, signs = _flrelu_fwd(lib, xk, fu, fd, bk, up, down, pad, gain, slope, clamp, flip, True, kernel)
    y_plain, _ = _flrelu_fwd(lib, xk, fu, fd, bk, up, down, pad, gain, slope, clamp, flip, False, kernel)
    assert torch.equal(y, y_plain), "recording signs changed the forward result"
    dx = _flrelu_bwd(lib, dyk, fu, fd, signs, up, down, pad, x.shape[2:], gain, slope, flip, kernel)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _rel(y, y_ref) < tol
    assert _rel(dx, dx_ref) < tol
    assert _rel(dx.sum([0, 2, 3]), db_ref) < tol


def _codes(signs: torch.Tensor, wz: int) -> torch.Tensor:
    """The 2-bit codes of the first wz samples of every row (the recorded region)."""
    v = torch.arange(wz)
    return (signs[..., v // 4].long() >> (2 * (v % 4))) & 3


@pytest.mark.parametrize("case", [0, 1, 2, 4, 9, 10, 12, 14], ids=lambda i: f"flrelu{i}")
def test_filtered_lrelu_sign_bytes_interchangeable_between_kernels(lib, case):
    # The variants record the same codes, and each one's backward reads the other's signs.
    x, b, dy, fu, fd, (up, down, pad, gain, slope, clamp, flip), (_, dx_ref, _) = _flrelu_case(case)
    args = (up, down, pad, gain, slope, clamp, flip, True)
    fwd = {k: _flrelu_fwd(lib, x, fu, fd, b, *args, k) for k in KERNELS}
    wz = (fwd["tiled"][0].shape[3] - 1) * down + fd.shape[-1]
    assert torch.equal(_codes(fwd["tiled"][1], wz), _codes(fwd["blocked"][1], wz))
    for k_fwd, k_bwd in (("tiled", "blocked"), ("blocked", "tiled")):
        dx = _flrelu_bwd(lib, dy, fu, fd, fwd[k_fwd][1], up, down, pad, x.shape[2:], gain, slope, flip, k_bwd)
        assert _rel(dx, dx_ref) < 1e-12, f"forward {k_fwd}, backward {k_bwd}"


class _RecordingExt:
    """Stand-in for sg3_ops_cuda: records the entry point and kernel code of each call, computes on CPU."""

    def __init__(self):
        self.cpu = _build.load_extension("cpp")
        self.calls: list[tuple[str, int | None]] = []

    def filtered_lrelu_fwd(self, *args):
        self.calls.append(("fwd", None))
        return self.cpu.filtered_lrelu_fwd(*args)

    def filtered_lrelu_bwd(self, *args):
        self.calls.append(("bwd", None))
        return self.cpu.filtered_lrelu_bwd(*args)

    def filtered_lrelu_fwd_variant(self, *args):
        self.calls.append(("fwd", args[-1]))
        return self.cpu.filtered_lrelu_fwd(*args[:-1])

    def filtered_lrelu_bwd_variant(self, *args):
        self.calls.append(("bwd", args[-1]))
        return self.cpu.filtered_lrelu_bwd(*args[:-1])


@pytest.mark.parametrize(
    ("env", "setting", "code"),
    [
        (None, None, None),
        ("tiled", None, None),
        ("blocked", None, 1),
        ("blocked", "tiled", None),
        ("tiled", "blocked", 1),
    ],
)
def test_filtered_lrelu_kernel_selection_reaches_the_extension(monkeypatch, env, setting, code):
    # $SG3_FLRELU_KERNEL, overridden by set_cuda_kernel, picks the entry point and kernel code of both passes.
    ext = _RecordingExt()
    monkeypatch.setattr(flrelu_mod._dispatch, "resolve", lambda impl, x: ("cuda", ext))
    if env is None:
        monkeypatch.delenv(flrelu_mod.KERNEL_ENV, raising=False)
    else:
        monkeypatch.setenv(flrelu_mod.KERNEL_ENV, env)
    flrelu_mod.set_cuda_kernel(setting)
    try:
        x = torch.randn([1, 2, 8, 8], requires_grad=True)
        f = _lowpass(12).float()
        y = ops.filtered_lrelu(x, f, f, up=2, down=2, padding=[9, 8, 9, 8], clamp=256.0)
        y.sum().backward()
    finally:
        flrelu_mod.set_cuda_kernel(None)
    assert ext.calls == [("fwd", code), ("bwd", code)]
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_filtered_lrelu_kernel_setting_is_validated(monkeypatch):
    monkeypatch.setenv(flrelu_mod.KERNEL_ENV, "fast")
    with pytest.raises(ValueError, match=r"SG3_FLRELU_KERNEL must be one of tiled, blocked, got 'fast'"):
        flrelu_mod.get_cuda_kernel()
    with pytest.raises(ValueError, match=r"set_cuda_kernel\(name\) must be one of .*, got 'Blocked'"):
        flrelu_mod.set_cuda_kernel("Blocked")
    flrelu_mod.set_cuda_kernel("blocked")
    try:
        assert flrelu_mod.get_cuda_kernel() == "blocked"  # the explicit setting wins over the environment
    finally:
        flrelu_mod.set_cuda_kernel(None)
    monkeypatch.delenv(flrelu_mod.KERNEL_ENV)
    assert flrelu_mod.get_cuda_kernel() == "tiled"


UPFIRDN = [
    # shape, up, down, padding [x0, x1, y0, y1], filter [fh, fw]
    ([2, 3, 9, 11], (2, 1), (1, 2), (2, 1, -1, 3), (4, 5)),
    ([1, 2, 13, 7], (4, 4), (1, 1), (3, 2, 1, 4), (12, 12)),
    ([1, 1, 17, 9], (1, 1), (4, 2), (-1, 2, 3, -2), (7, 3)),
    ([2, 1, 6, 6], (3, 2), (2, 3), (2, 2, 1, 1), (5, 4)),
    ([1, 1, 40, 90], (1, 1), (2, 2), (1, 1, 1, 1), (4, 4)),
    ([1, 2, 6, 7], (2, 1), (1, 1), (50, 40, 45, 41), (82, 81)),  # no tile fits: direct kernel (float64)
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("case", range(len(UPFIRDN)), ids=lambda i: f"upfirdn{i}")
def test_upfirdn2d_kernels(lib, case, flip, dtype):
    shape, (upx, upy), (downx, downy), pad, fshape = UPFIRDN[case]
    g = torch.Generator().manual_seed(100 + case)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    f = torch.randn(fshape, generator=g, dtype=torch.float64)
    ref = ops.upfirdn2d(
        x, f, up=[upx, upy], down=[downx, downy], padding=list(pad), flip_filter=flip, gain=1.7, impl="ref"
    )
    xk = x.to(dtype)
    xk = xk.to(memory_format=torch.channels_last) if flip else xk[:, :, :, :]
    gk = _oriented(f, flip, 1.7, 1.7, dtype)  # bind_cuda.cpp: flip unless flip_filter, gain folded in
    y = torch.full(list(ref.shape), float("nan"), dtype=dtype)
    ints = [
        *shape,
        ref.shape[2],
        ref.shape[3],
        upx,
        upy,
        downx,
        downy,
        pad[0],
        pad[2],
        *fshape,
        DTYPE_CODE[dtype],
        DTYPE_CODE[dtype],
    ]
    rc = lib.emu_upfirdn2d(
        _ptr(xk), _ptr(y), _ptr(gk), _arr(ctypes.c_int, ints), _arr(ctypes.c_int64, xk.stride())
    )
    assert rc == 0
    assert _rel(y, ref) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("clamp", [None, 0.7])
@pytest.mark.parametrize("act", list(ops.ACTIVATIONS))
def test_bias_act_kernel_value_and_derivatives(lib, act, clamp):
    g = torch.Generator().manual_seed(7)
    x = torch.randn([3, 5, 4, 6], generator=g, dtype=torch.float64) * 3
    b = torch.randn([5], generator=g, dtype=torch.float64)
    x[0, :, 0, 0] = -b  # x + b exactly 0: the kinks (elu/selu act''(0) is the linear branch's 0)
    dy, v = torch.randn_like(x), torch.randn_like(x)
    xr = x.clone().requires_grad_(True)
    y_ref = ops.bias_act(xr, b, act=act, clamp=clamp, impl="ref")
    (dx_ref,) = torch.autograd.grad(y_ref, xr, dy, create_graph=True)
    d2_ref = torch.autograd.grad((dx_ref * v).sum(), xr)[0] if dx_ref.requires_grad else torch.zeros_like(x)
    spec = ops.ACTIVATIONS[act]
    reals = _arr(ctypes.c_double, [spec.def_alpha, spec.def_gain, -1.0 if clamp is None else clamp])
    cases = [(0, x, b, None, y_ref), (1, x, b, dy, dx_ref), (2, x, b, dy * v, d2_ref)]
    if spec.code <= ops.ACTIVATIONS["lrelu"].code:  # grad 3: the first derivative read off the output
        cases.append((3, y_ref.detach(), None, dy, dx_ref))
    for grad, xin, bin_, d, want in cases:
        for dtype in (torch.float32, torch.float64):
            out = torch.full_like(x, float("nan"), dtype=dtype)
            xk = xin.to(dtype)  # kept alive across the call
            bk = bin_.to(dtype) if bin_ is not None else None
            dk = d.to(dtype) if d is not None else None
            rc = lib.emu_bias_act(
                _ptr(xk),
                _ptr(bk),
                _ptr(dk),
                _ptr(out),
                _arr(ctypes.c_int64, [x.numel(), 24, 5]),
                _arr(ctypes.c_int, [grad, spec.code, DTYPE_CODE[dtype]]),
                reals,
            )
            assert rc == 0
            if want.abs().max() == 0:
                assert out.abs().max() == 0, f"grad={grad} should vanish"
            else:
                assert _rel(out, want) < (1e-12 if dtype == torch.float64 else 1e-5), f"grad={grad} {dtype}"
    if spec.code > ops.ACTIVATIONS["lrelu"].code:  # the output does not determine act' here: refused
        out = torch.zeros_like(x)
        ints = _arr(ctypes.c_int, [3, spec.code, DTYPE_CODE[torch.float64]])
        rc = lib.emu_bias_act(
            _ptr(x), _ptr(None), _ptr(dy), _ptr(out), _arr(ctypes.c_int64, [x.numel(), 24, 5]), ints, reals
        )
        assert rc != 0
