"""Lazy builds of the compiled extensions `sg3_ops_cpu` and `sg3_ops_cuda` (ninja, torch.utils.cpp_extension).

Nothing is compiled at import time: the first op call that needs an extension builds it (or finds it
in the cache) and loads it. The cache lives in `$SG3_OPS_CACHE` (default `~/.cache/sg3/ops`), one
folder per build key; the key is a hash of the sources, the torch and CUDA versions, the compiler,
the flags, the CPU features (the CPU build uses -march=native) and the CUDA arch list.

Concurrent processes (e.g. DDP ranks) coordinate through a lock file in the key folder that records
the owner's host and PID: one process builds, the others wait (up to `$SG3_OPS_LOCK_TIMEOUT` seconds,
default 1800) and then load the finished module. A lock left behind by a killed build (owner PID no
longer alive on this host) is detected, reported and removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

_log = logging.getLogger(__name__)
CSRC = Path(__file__).resolve().parent.parent / "csrc"
KINDS = ("cpp", "cuda")
MODULE_BASENAMES = {"cpp": "sg3_ops_cpu", "cuda": "sg3_ops_cuda"}
DEFAULT_ARCH_LIST = "8.0;9.0"
CPU_CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-fno-math-errno"]
CUDA_CFLAGS = ["-O3", "--use_fast_math", "-lineinfo"]
_thread_lock = threading.Lock()
_loaded: dict[str, ModuleType] = {}


class ExtensionBuildError(RuntimeError):
    """The compiler (or the loader) failed; the message names the full build log and quotes its tail."""


def cache_root() -> Path:
    """Root folder of the build cache: `$SG3_OPS_CACHE`, default `~/.cache/sg3/ops`."""
    return Path(os.environ.get("SG3_OPS_CACHE") or Path.home() / ".cache" / "sg3" / "ops").expanduser()


def lock_timeout() -> float:
    """Seconds a process waits for another one's build (`$SG3_OPS_LOCK_TIMEOUT`, default 1800)."""
    value = os.environ.get("SG3_OPS_LOCK_TIMEOUT", "1800")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"SG3_OPS_LOCK_TIMEOUT must be a number of seconds, got {value!r}") from None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def sources(kind: str) -> list[Path]:
    """Sources of `kind`: 'cpp' = csrc/*_cpu.cpp + bind_cpu.cpp, 'cuda' = csrc/*.cu + bind_cuda.cpp."""
    _check_kind(kind)
    if kind == "cpp":
        files = sorted(f for f in CSRC.glob("*_cpu.cpp") if f.name != "bind_cpu.cpp") + [
            CSRC / "bind_cpu.cpp"
        ]
    else:
        files = sorted(CSRC.glob("*.cu")) + [CSRC / "bind_cuda.cpp"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ExtensionBuildError(f"sources of the '{kind}' extension are missing: {', '.join(missing)}")
    return files


def cuda_home() -> str | None:
    """The CUDA toolkit: `$CUDA_HOME`, else /usr/local/cuda if it has nvcc, else nvcc's folder on PATH."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        return home
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    return str(Path(nvcc).resolve().parent.parent) if nvcc else None


def resolve_arch_list(arch_list: str | None = None) -> str:
    """CUDA arch list: the argument, else `$TORCH_CUDA_ARCH_LIST`, else the visible GPUs, else '8.0;9.0'."""
    if arch_list:
        return arch_list
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        return env
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps)
    return DEFAULT_ARCH_LIST


def _version_lines(cmd: list[str]) -> list[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def compiler_version() -> str:
    """First line of `$CXX --version` (the C++ compiler torch uses), or 'unavailable'."""
    lines = _version_lines([os.environ.get("CXX", "c++"), "--version"])
    return lines[0] if lines else "unavailable"


def nvcc_version() -> str:
    """The 'release' line of `nvcc --version`, or 'unavailable'."""
    home = cuda_home()
    lines = _version_lines([str(Path(home) / "bin" / "nvcc"), "--version"]) if home else []
    release = [line for line in lines if "release" in line]
    return (release or lines or ["unavailable"])[-1]


def _cpu_features() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cuda_include_paths() -> list[str]:
    paths = []
    spec = importlib.util.find_spec("nvidia")
    for root in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "cu13" / "include"
        if candidate.is_dir():
            paths.append(str(candidate))
    return paths


def build_key(kind: str, arch_list: str | None = None) -> str:
    """Hash of what makes builds differ: sources, headers, torch/CUDA, compiler, flags, CPU, arch list."""
    _check_kind(kind)
    h = hashlib.sha256()
    headers = ["ops.h", *(f.name for f in CSRC.glob("*_cpu.h"))] if kind == "cpp" else ["ops.h"]
    headers += [f.name for f in CSRC.glob("*.cuh")] if kind == "cuda" else []
    files = sources(kind) + [CSRC / h for h in sorted(headers) if (CSRC / h).is_file()]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    parts = [
        kind,
        torch.__version__,
        str(torch.version.cuda),
        sys.implementation.cache_tag,
        compiler_version(),
    ]
    if kind == "cpp":
        parts += CPU_CFLAGS + [_cpu_features()]
    else:
        parts += CUDA_CFLAGS + [nvcc_version(), resolve_arch_list(arch_list)] + _cuda_include_paths()
    h.update("\0".join(parts).encode())
    return h.hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path, timeout: float | None = None, poll: float = 0.5) -> Iterator[None]:
    """Exclusive lock file recording host and PID; waits for other owners, clears stale locks.

    Args:
        path: The lock file.
        timeout: Seconds to wait for another owner (None = `lock_timeout()`).
        poll: Seconds between checks while waiting.
    """
    timeout = lock_timeout() if timeout is None else timeout
    host = socket.gethostname()
    deadline = time.monotonic() + timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is not None and owner.get("host") == host and not _pid_alive(int(owner.get("pid", -1))):
                _log.warning(
                    "sg3.ops: removing stale build lock %s (owner PID %s on %s is not running; "
                    "a previous build was killed)",
                    path,
                    owner.get("pid"),
                    host,
                )
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"sg3.ops: waited {timeout:.0f} s for the build lock {path} held by {owner}; if no build "
                    f"is running, delete the file (or raise SG3_OPS_LOCK_TIMEOUT)"
                ) from None
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": host, "time": time.time()}, fh)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None  # being written or removed right now


def _import_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExtensionBuildError(f"cannot load the compiled extension {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _compile(kind: str, name: str, build_dir: Path, arch_list: str, verbose: bool) -> None:
    """Run the ninja build via torch.utils.cpp_extension.load (raises with the compiler output)."""
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)  # its import warns "No CUDA runtime is found" on every GPU-less host
    try:
        from torch.utils import cpp_extension
    finally:
        cpp_log.setLevel(level)

    kwargs: dict = {"build_directory": str(build_dir), "verbose": verbose, "is_python_module": True}
    env_backup = {k: os.environ.get(k) for k in ("TORCH_CUDA_ARCH_LIST", "CUDA_HOME")}
    try:
        if kind == "cpp":
            kwargs.update(extra_cflags=CPU_CFLAGS, extra_ldflags=["-fopenmp"], with_cuda=False)
        else:
            home = cuda_home()
            if home is None:
                raise RuntimeError("nvcc not found: set CUDA_HOME to the CUDA toolkit (e.g. /usr/local/cuda)")
            os.environ["CUDA_HOME"] = home
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
            # torch guessed CUDA_HOME at import (from an nvcc on PATH, possibly a shim such as
            # /usr/local/bin/nvcc -> '/usr/local'); use the toolkit resolved here for nvcc and its headers.
            cpp_extension.CUDA_HOME = home
            kwargs.update(
                # Headers a minimal toolkit lacks (cusparse.h, cublas_v2.h for ATen/cuda) come from the pip
                # CUDA wheels, for the host compiler only and searched after the toolkit's own include dir
                # (as -I they would shadow the toolkit's cuda_runtime_api.h in nvcc and break the .cu build).
                extra_cflags=["-O3", *(arg for p in _cuda_include_paths() for arg in ("-isystem", p))],
                extra_cuda_cflags=CUDA_CFLAGS,
                with_cuda=True,
            )
        cpp_extension.load(name=name, sources=[str(s) for s in sources(kind)], **kwargs)
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_extension(
    kind: str, arch_list: str | None = None, verbose: bool = False, cache_dir: str | Path | None = None
) -> ModuleType:
    """Build (if not cached) and load extension `kind`; safe to call from many processes at once.

    Args:
        kind: 'cpp' (sg3_ops_cpu) or 'cuda' (sg3_ops_cuda; compiles without a GPU when nvcc is present).
        arch_list: CUDA arch list such as '8.0;9.0' (None = `resolve_arch_list()`); ignored for 'cpp'.
        verbose: Stream the compiler output.
        cache_dir: Cache root (None = `cache_root()`).

    Returns:
        The loaded extension module.

    Raises:
        ExtensionBuildError: The build failed; the message names the full log and quotes the compiler error.
    """
    _check_kind(kind)
    arch = resolve_arch_list(arch_list) if kind == "cuda" else ""
    key = build_key(kind, arch)
    name = f"{MODULE_BASENAMES[kind]}_{key}"
    if name in _loaded:
        return _loaded[name]
    folder = Path(cache_dir or cache_root()) / name
    build_dir = folder / "build"
    log_path = folder / "build.log"
    so_path = build_dir / f"{name}.so"
    done = folder / "done"
    with _thread_lock, file_lock(folder / "lock"):
        if not (done.exists() and so_path.exists()):
            build_dir.mkdir(parents=True, exist_ok=True)
            header = (
                f"sg3 {kind} extension {name}\nkey inputs: torch {torch.__version__}, {compiler_version()}"
            )
            if kind == "cuda":
                header += f", {nvcc_version()}, TORCH_CUDA_ARCH_LIST={arch}"
            _log.info("sg3.ops: building %s in %s (once; later runs reuse it)", name, folder)
            start = time.monotonic()
            try:
                _compile(kind, name, build_dir, arch, verbose)
            except Exception as exc:  # noqa: BLE001 - any failure becomes one error with the log path
                log_path.write_text(f"{header}\nFAILED\n{exc}\n")
                raise ExtensionBuildError(
                    f"building the '{kind}' extension failed; full build log: {log_path}\n{_tail(str(exc))}"
                ) from exc
            log_path.write_text(f"{header}\nbuilt in {time.monotonic() - start:.1f} s\n")
            done.write_text(name)
    try:
        module = _import_from(so_path, name)
    except ImportError as exc:
        raise ExtensionBuildError(f"loading {so_path} failed ({exc}); build log: {log_path}") from exc
    _loaded[name] = module
    return module


_default_modules: dict[str, ModuleType] = {}  # kind -> extension loaded with the defaults (per process)


def load_extension(kind: str) -> ModuleType:
    """The extension for `kind` with the default arch list and cache (built on first use).

    Every compiled op call goes through here, so after the first call this is a dict lookup: computing
    the build key again would hash the sources and run the compiler (`--version`) on every call. A
    loaded extension cannot be replaced within a process anyway.
    """
    module = _default_modules.get(kind)
    if module is None:
        module = _default_modules[kind] = build_extension(kind)
    return module


def toolchain_info() -> dict[str, str]:
    """Toolchain facts for `sg3-doctor` and bug reports."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "C++ compiler": compiler_version(),
        "CUDA_HOME": str(cuda_home()),
        "nvcc": nvcc_version(),
        "CUDA arch list": resolve_arch_list(),
        "GPUs": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none",
        "cache dir": str(cache_root()),
        "CPU flags": " ".join(CPU_CFLAGS),
    }


__all__ = [
    "ExtensionBuildError",
    "build_extension",
    "build_key",
    "cache_root",
    "file_lock",
    "load_extension",
    "resolve_arch_list",
    "toolchain_info",
]
