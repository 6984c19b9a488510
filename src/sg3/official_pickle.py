"""Safe import of official StyleGAN2/3 network pickles (spec §8.2).

Official snapshots embed Python source (`torch_utils.persistence`). They are read with a restricted
unpickler that maps the persistence reconstruct call to a `PersistentRecord`, allows only the globals of
spec §8.2 (each through a stand-in that checks its arguments), and never executes anything from the file.
`sg3.io` re-exports the public names.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections import OrderedDict
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from sg3.modules.registry import build_network

NETWORK_NAMES = ("G", "D", "G_ema", "augment_pipe")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list; nothing from it was executed."""


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict`: a dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class PersistentRecord:
    """What the official loader would rebuild from `_reconstruct_persistent_obj(meta)`, kept as data.

    Attributes:
        class_name: Name of the persistent class (e.g. 'Generator').
        module_src: Source text of the defining module; stored, never executed.
        state: The object's instance `__dict__` (for modules: `_parameters`, `_buffers`, `_modules`, ...).
        version: Persistence format version.
    """

    def __init__(self, meta: Any) -> None:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise UnsafePickleError(
                f"persistent object meta must be a dict with type 'class', got {meta!r:.200}"
            )
        for key, kind in (("class_name", str), ("module_src", str), ("state", dict)):
            if not isinstance(meta.get(key), kind):
                raise UnsafePickleError(f"persistent object meta[{key!r}] must be a {kind.__name__}")
        self.class_name: str = meta["class_name"]
        self.module_src: str = meta["module_src"]
        self.state: dict = meta["state"]
        self.version = meta.get("version")

    def __repr__(self) -> str:
        return f"PersistentRecord(class_name={self.class_name!r}, version={self.version!r})"


def _check_hooks(hooks: Any) -> None:
    if hooks not in (None, {}) and not (isinstance(hooks, OrderedDict) and not hooks):
        raise UnsafePickleError("tensors with backward hooks are not accepted")


def _load_storage(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"_load_from_bytes expects bytes, got {type(data).__name__}")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f"embedded tensor data decoded to {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f"_rebuild_tensor_v2 expects a storage, got {type(storage).__name__}")
    if not all(isinstance(v, int) for v in (storage_offset, *size, *stride)):
        raise UnsafePickleError("_rebuild_tensor_v2 expects integer offset, size and stride")
    _check_hooks(backward_hooks)
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, tuple(size), tuple(stride), False, OrderedDict()
    )


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
    _check_hooks(backward_hooks)
    return data  # plain tensor: only the values are needed


_NP_RECONSTRUCT = np.empty(0).__reduce__()[0]
_NP_SCALAR = np.float64(0).__reduce__()[0]


def _np_reconstruct(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"only plain numpy arrays are accepted, got {subtype!r}")
    return _NP_RECONSTRUCT(subtype, shape, dtype_code)


def _np_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object arrays are not accepted")
    return dtype


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("only numeric numpy scalars are accepted")
    return _NP_SCALAR(dtype, data)


def _np_frombuffer(buf, dtype, shape, order):
    """numpy's protocol-5 reduction of contiguous arrays, with every argument checked first."""
    if not isinstance(buf, (bytes, bytearray)):
        raise UnsafePickleError(f"_frombuffer expects a bytes buffer, got {type(buf).__name__}")
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.itemsize == 0:
        raise UnsafePickleError(f"_frombuffer expects a numeric numpy dtype, got {dtype!r:.80}")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise UnsafePickleError(f"_frombuffer expects a shape of non-negative ints, got {shape!r:.80}")
    if math.prod(shape) * dtype.itemsize != len(buf):
        raise UnsafePickleError(f"_frombuffer: {len(buf)} bytes do not hold a {dtype} array of shape {shape}")
    if order not in ("C", "F"):
        raise UnsafePickleError(f"_frombuffer expects order 'C' or 'F', got {order!r:.20}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError("only latin1-encoded bytes are accepted from _codecs.encode")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocol < 3 spelling
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
}
for _numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 names
    _ALLOWED_GLOBALS[(_numpy_core, "_reconstruct")] = _np_reconstruct
    _ALLOWED_GLOBALS[(_numpy_core, "scalar")] = _np_scalar
for _numpy_core in ("numpy.core.numeric", "numpy._core.numeric"):  # protocol 5: contiguous arrays
    _ALLOWED_GLOBALS[(_numpy_core, "_frombuffer")] = _np_frombuffer


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module.startswith("dnnlib.tflib"):
            raise UnsafePickleError(
                f"{self.source}: '{module}.{name}' marks a TensorFlow StyleGAN pickle; only the PyTorch "
                "StyleGAN2-ADA/StyleGAN3 pickles are supported (nothing was executed)"
            )
        raise UnsafePickleError(
            f"{self.source}: refusing global '{module}.{name}': it is not on the allow-list of official "
            "StyleGAN pickle contents (nothing from the file was executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self.source}: persistent ids are not used by official pickles, got {pid!r:.80}"
        )


def read_official_pickle(path: str | os.PathLike) -> Any:
    """Unpickle an official snapshot into plain data and `PersistentRecord`s, executing nothing.

    Args:
        path: Path of the `.pkl` file.

    Returns:
        The unpickled object (for snapshots: a dict with G, D, G_ema, augment_pipe, training_set_kwargs).

    Raises:
        UnsafePickleError: the file asks for a global outside the allow-list (nothing was executed).
        ValueError: the file is empty, truncated, damaged or not a pickle (the message names it).
    """
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, os.fspath(path)).load()
        except UnsafePickleError as err:
            if os.fspath(path) in str(err):
                raise
            raise UnsafePickleError(f"{path}: {err}") from err
        except (EOFError, pickle.UnpicklingError) as err:  # empty, truncated or not a pickle at all
            raise ValueError(f"{path}: not a complete pickle (truncated or corrupt file?): {err}") from err
        except (
            Exception
        ) as err:  # a damaged file fails anywhere in decoding (bad UTF-8, sizes, opcodes' args)
            kind = type(err).__name__
            raise ValueError(f"{path}: not a valid pickle (corrupt file?): {kind}: {err}") from err


def _plain(obj: Any) -> Any:
    """Convert EasyDicts, OrderedDicts, tuples and numpy scalars into JSON-able builtins."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise UnsafePickleError(f"unexpected {type(obj).__name__} in recorded kwargs: {obj!r:.100}")


def record_state_dict(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a module record into state_dict order: own parameters, own buffers, then children."""
    state = record.state
    out: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is not None and not (group == "_buffers" and name in skip):
                out[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise UnsafePickleError(f"submodule {prefix + name!r} is a {type(child).__name__}, not a record")
        out.update(record_state_dict(child, prefix + name + "."))
    return out


def _record_kind(record: PersistentRecord, state_dict: dict) -> str:
    if record.class_name == "Generator":
        if "synthesis.input.freqs" in state_dict:
            return "stylegan3"
        if "synthesis.b4.const" in state_dict:
            return "stylegan2"
    kinds = {"Discriminator": "discriminator", "AugmentPipe": "augment_pipe"}
    if record.class_name in kinds:
        return kinds[record.class_name]
    raise ValueError(f"unsupported network class {record.class_name!r} (keys start {list(state_dict)[:3]})")


def network_from_record(record: PersistentRecord, source: str = "<record>") -> nn.Module:
    """Build our module from an official network record and load its weights (strict).

    Args:
        record: A `PersistentRecord` of a top-level network (Generator, Discriminator, AugmentPipe).
        source: Name used in error messages (file and key).

    Returns:
        The module in eval mode with `requires_grad=False`, on the CPU.
    """
    if not isinstance(record, PersistentRecord):
        raise TypeError(f"{source}: expected a network record, got {type(record).__name__}")
    if record.state.get("_init_args"):
        raise ValueError(f"{source}: positional init args {record.state['_init_args']!r} are not supported")
    state_dict = record_state_dict(record)
    kind = _record_kind(record, state_dict)
    init_kwargs = _plain(record.state.get("_init_kwargs") or {})
    if kind == "stylegan2" and isinstance(init_kwargs.get("synthesis_kwargs"), dict):
        init_kwargs.update(init_kwargs.pop("synthesis_kwargs"))  # StyleGAN2-ADA nests them
    module = build_network(kind, init_kwargs)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{source}: weights do not match a {kind} built from {init_kwargs}: {err}") from err
    return module.eval().requires_grad_(False)


def load_official_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Import an official StyleGAN3 / StyleGAN2(-ADA) PyTorch snapshot without executing it.

    Args:
        path: Path of `network-snapshot-*.pkl` (or a pretrained pickle of the same layout).

    Returns:
        {'G', 'D', 'G_ema', 'augment_pipe': our modules (None when absent),
        'training_set_kwargs': dict or None}.
    """
    data = read_official_pickle(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a snapshot dict, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for name in NETWORK_NAMES:
        record = data.get(name)
        out[name] = None if record is None else network_from_record(record, f"{path}[{name!r}]")
    tsk = data.get("training_set_kwargs")
    out["training_set_kwargs"] = None if tsk is None else _plain(tsk)
    return out
