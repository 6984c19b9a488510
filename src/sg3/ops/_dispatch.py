"""Which implementation an op call uses (`impl='auto'|'ref'|'cpp'|'cuda'`).

`'auto'` means the process default, which `set_default_impl` / `use_impl` change. The default
default is `'auto'` proper: the compiled CUDA extension for CUDA tensors and the compiled C++
extension for CPU tensors, falling back to `'ref'` (with one warning naming the build log) when
the extension cannot be built. An explicit `'cpp'` or `'cuda'` never falls back: a build failure
raises with the compiler's error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

import torch

IMPLS = ("auto", "ref", "cpp", "cuda")
CPU_MAX_TAPS = 256  # per filter axis: the most the C++ CPU kernels take (csrc/polyphase_cpu.h)
_log = logging.getLogger(__name__)
_state = threading.local()
_process_default = "auto"
_failed: dict[str, str] = {}  # kind -> message of the failed build ('auto' falls back to ref)


def _check_name(name: object, argname: str) -> str:
    if name not in IMPLS:
        raise ValueError(f"{argname} must be one of {', '.join(repr(i) for i in IMPLS)}, got {name!r}")
    return name  # type: ignore[return-value]


def set_default_impl(name: str) -> None:
    """Set what `impl='auto'` means in this process.

    Args:
        name: 'auto' (compiled for the tensor's device, falling back to ref), 'ref', 'cpp' or 'cuda'.
    """
    global _process_default
    _process_default = _check_name(name, "name")


def get_default_impl() -> str:
    """Return what `impl='auto'` currently means (thread-local override first, then the process default)."""
    return getattr(_state, "override", None) or _process_default


@contextlib.contextmanager
def use_impl(name: str) -> Iterator[None]:
    """Context manager: inside the block, `impl='auto'` means `name` (for the current thread).

    Args:
        name: 'auto', 'ref', 'cpp' or 'cuda'.
    """
    _check_name(name, "name")
    previous = getattr(_state, "override", None)
    _state.override = name
    try:
        yield
    finally:
        _state.override = previous


class ProcessChoice:
    """A process-wide choice among named variants: set in code, else an environment variable, else a default.

    Args:
        env: The environment variable read while nothing is set in code.
        choices: The accepted names; the first one is the default.
        setter: How the setter is called in error messages (e.g. 'set_cuda_kernel(name)').
    """

    def __init__(self, env: str, choices: tuple[str, ...], setter: str) -> None:
        self.env, self.choices, self.setter = env, choices, setter
        self._value: str | None = None

    def _check(self, name: object, source: str) -> str:
        if name not in self.choices:
            raise ValueError(f"{source} must be one of {', '.join(self.choices)}, got {name!r}")
        return name  # type: ignore[return-value]

    def set(self, name: str | None) -> None:
        """Choose `name` for this process; None = back to the environment variable (unset: the default)."""
        self._value = None if name is None else self._check(name, self.setter)

    def get(self) -> str:
        """The choice in effect: the one set in code, else the environment variable's, else the default."""
        if self._value is not None:
            return self._value
        return self._check(os.environ.get(self.env, self.choices[0]), f"the environment variable {self.env}")


def _extension_kind(x: torch.Tensor) -> str:
    return "cuda" if x.is_cuda else "cpp"


def load_extension(kind: str) -> ModuleType:
    """Build (on first use) and return the compiled extension `kind` ('cpp' or 'cuda'); raises on failure."""
    from sg3.ops import _build  # local import: building is never triggered at import time

    return _build.load_extension(kind)


def resolve(impl: str, x: torch.Tensor) -> tuple[str, ModuleType | None]:
    """Decide which implementation handles a call on tensor `x`.

    Args:
        impl: The op's `impl` argument.
        x: The main input tensor (its device selects the compiled extension).

    Returns:
        `(name, extension)` with name 'ref' (extension None), 'cpp' or 'cuda'.
    """
    _check_name(impl, "impl")
    name = get_default_impl() if impl == "auto" else impl
    if name == "ref":
        return "ref", None
    if name == "auto":
        kind = _extension_kind(x)
        if kind in _failed:
            return "ref", None
        try:
            return kind, load_extension(kind)
        except Exception as exc:  # noqa: BLE001 - 'auto' must degrade to ref on any build problem
            _failed[kind] = str(exc)
            warnings.warn(
                f"sg3.ops: the compiled '{kind}' ops are unavailable, using the slower pure-PyTorch 'ref' "
                f"implementation instead. {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            return "ref", None
    if name != _extension_kind(x):
        raise ValueError(f"impl={name!r} cannot run on a tensor on device {x.device}; use 'auto' or 'ref'")
    return name, load_extension(name)


def within_cpu_taps(
    name: str, ext: ModuleType | None, impl: str, filters: dict[str, torch.Tensor | None]
) -> tuple[str, ModuleType | None]:
    """`(name, ext)` unchanged unless the C++ CPU kernels cannot take one of the filters (> CPU_MAX_TAPS taps
    on an axis): then 'ref' when the choice came from 'auto' proper, else a ValueError naming the filter.

    Args:
        name: The implementation `resolve` chose.
        ext: Its extension.
        impl: The op's `impl` argument.
        filters: Argument name -> filter (None = identity).
    """
    if name != "cpp":
        return name, ext
    for argname, f in filters.items():
        taps = 1 if f is None else max(f.shape)
        if taps > CPU_MAX_TAPS:
            if impl == "auto" and get_default_impl() == "auto":
                return "ref", None
            raise ValueError(
                f"{argname} has {taps} taps on an axis; the C++ CPU kernels (impl='cpp') take at most "
                f"{CPU_MAX_TAPS}: use impl='ref' (or 'auto', which falls back to it)"
            )
    return name, ext
