"""Network files: exported generators, training checkpoints, and the safe import of official pickles.

Our own files are data, not code: `torch.save` of plain containers, tensors, numbers and strings,
readable with `torch.load(weights_only=True)` (docs/internals.md). Official StyleGAN2/3 pickles embed
Python source; they are read with the restricted unpickler of `sg3.official_pickle` (re-exported here),
which executes nothing from the file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import sys
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import torch
from torch import nn

from sg3.modules.registry import build_network, network_kind
from sg3.official_pickle import (  # re-exported: sg3.io is the one place for network files
    NETWORK_NAMES,
    EasyDict,
    PersistentRecord,
    UnsafePickleError,
    load_official_pickle,
    network_from_record,
    read_official_pickle,
    record_state_dict,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "GENERATOR_FORMAT",
    "NETWORK_NAMES",
    "EasyDict",
    "PersistentRecord",
    "UnsafePickleError",
    "atomic_write",
    "import_main",
    "inference_generator",
    "load_generator",
    "load_networks",
    "load_official_pickle",
    "network_from_record",
    "read_official_pickle",
    "record_state_dict",
    "save_generator",
]

GENERATOR_FORMAT = "sg3-generator"
CHECKPOINT_FORMAT = "sg3-checkpoint"
_ACCEPTED = (
    "an sg3 checkpoint .ckpt, an exported generator .pt or an official StyleGAN2/3 PyTorch pickle .pkl"
)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write a file atomically: yields a binary file `path.tmp-<pid>`, then fsyncs and renames it.

    Args:
        path: Destination path; its folder must exist. Readers see the old file or the complete new one.

    Yields:
        The open temporary file (binary, write mode).
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    f = open(tmp, "wb")  # closed below on every path
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # a full disk can fail the close's flush too
            f.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(err, (OSError, RuntimeError)):  # torch.save reports a full disk as a RuntimeError
            kind = OSError if isinstance(err, OSError) else RuntimeError
            raise kind(f"could not write {path}: {err} ({_free_space(path)})") from err
        raise
    with contextlib.suppress(OSError):  # persist the rename itself (best effort; not on every filesystem)
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _free_space(path: str) -> str:
    """'N MiB free on its filesystem' for the folder of `path`, with a hint when it is nearly full."""
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return "free space unknown"
    return f"{free / 2**20:.0f} MiB free on its filesystem" + ("; is the disk full?" if free < 2**30 else "")


# ---------------------------------------------------------------------------------------------------
# Our own formats


def save_generator(path: str | os.PathLike, G: nn.Module, meta: dict | None = None) -> None:
    """Export a generator (usually G_ema) as an `sg3-generator` file (atomic write).

    Args:
        path: Destination `.pt` path.
        G: A registered generator with `init_kwargs`.
        meta: Optional JSON-able extra information (source, kimg, ...).
    """
    kind = network_kind(G)
    if kind not in ("stylegan3", "stylegan2"):
        raise TypeError(f"save_generator needs a generator, got a {kind}")
    meta = dict(meta or {})
    try:
        json.dumps(meta)
        json.dumps(G.init_kwargs)
    except TypeError as err:
        raise TypeError(f"meta and init_kwargs must be JSON-able plain data: {err}") from err
    state_dict = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
    obj = dict(
        format=GENERATOR_FORMAT,
        version=1,
        kind=kind,
        init_kwargs=G.init_kwargs,
        state_dict=state_dict,
        meta=meta,
    )
    with atomic_write(path) as f:
        torch.save(obj, f)


def _build(entry: dict, state_dict: dict, source: str) -> nn.Module:
    try:
        module = build_network(entry["kind"], entry["init_kwargs"])
    except (KeyError, TypeError, ValueError) as err:  # a damaged or foreign file's network description
        why = f"{type(err).__name__}: {err}"
        raise ValueError(f"{source}: cannot build the network it describes: {why}") from err
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{source}: weights do not match its init_kwargs: {err}") from err
    return module


def load_networks(path: str | os.PathLike) -> dict[str, Any]:
    """Load every network a file holds: sg3 generator (`.pt`), sg3 checkpoint (`.ckpt`) or official `.pkl`.

    Args:
        path: The file.

    Returns:
        Dict with 'G_ema' and, where the file has them, 'G', 'D', 'augment_pipe' (modules on the CPU,
        eval mode) and 'training_set_kwargs'/'meta'.

    Raises:
        ValueError: the file is truncated or corrupt, or holds none of these formats (message names it).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise ValueError(
            f"{path}: the file is empty (0 bytes; truncated by an interrupted copy?); expected {_ACCEPTED}"
        )
    wrong = _wrong_kind(path, head)
    if wrong:
        raise ValueError(f"{path}: {wrong}, not a network file; expected {_ACCEPTED}")
    if head[:4] != b"PK\x03\x04":  # not a torch zip archive: an official pickle
        return load_official_pickle(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch names neither the file nor the cause (zip, unpickling, UTF-8 errors ...)
        why = f"{type(err).__name__}: {err}"
        raise ValueError(f"{path}: cannot read this torch file (truncated or corrupt?): {why}") from err
    if isinstance(obj, dict) and obj.get("format") == GENERATOR_FORMAT:
        G = _build(obj, obj["state_dict"], path).eval().requires_grad_(False)
        return {"G_ema": G, "meta": obj.get("meta", {})}
    info = obj.get("sg3") if isinstance(obj, dict) else None
    if isinstance(info, dict) and info.get("format") == CHECKPOINT_FORMAT:
        out: dict[str, Any] = {"meta": {"counters": info.get("counters"), "config": info.get("config")}}
        for name, entry in info["networks"].items():
            if entry is None:
                out[name] = None
                continue
            prefix = name + "."
            sd = {k[len(prefix) :]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
            out[name] = _build(entry, sd, f"{path}[{name!r}]").eval()
        return out
    raise ValueError(f"{path}: not an sg3 generator, sg3 checkpoint or official pickle")


def _wrong_kind(path: str, head: bytes) -> str | None:
    """What the file is when its first bytes show it cannot be a network file (None = it may be one)."""
    if head[257:262] == b"ustar":
        return "a tar archive (a dataset shard?)"
    if head[:2] == b"\x1f\x8b":
        return "a gzip-compressed file"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None  # a damaged zip: torch.load names the damage
        if not any(n.endswith("/data.pkl") for n in names):  # torch.save writes <folder>/data.pkl
            return "a zip archive without torch.save's layout (a zipped dataset?)"
    return None


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load the generator for inference (G_ema, eval mode, no gradients) from any supported file.

    Args:
        path: `.pt` exported generator, `.ckpt` training checkpoint or official `.pkl`.
        device: Where to put the module.

    Returns:
        The generator: `G(z, c, truncation_psi=1, ...)` gives images in [-1, 1].
    """
    return inference_generator(load_networks(path), path, device)


def inference_generator(
    networks: dict[str, Any], path: str | os.PathLike, device: str | torch.device = "cpu"
) -> nn.Module:
    """`networks['G_ema']` (from `load_networks(path)`) in eval mode, without gradients, on `device`."""
    G = networks.get("G_ema")
    if G is None:
        raise ValueError(f"{path}: the file holds no G_ema")
    return G.eval().requires_grad_(False).to(device)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_main(argv: list[str] | None = None) -> int:
    """`sg3-import SRC.pkl DST.pt`: convert an official pickle's G_ema into an sg3-generator file."""
    parser = argparse.ArgumentParser(
        prog="sg3-import",
        description="Convert an official StyleGAN3/StyleGAN2(-ADA) PyTorch pickle into an sg3 generator file "
        "without executing anything from the pickle.",
    )
    parser.add_argument("src", help="official network pickle (.pkl)")
    parser.add_argument("dst", help="output sg3 generator file (.pt)")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    args = parser.parse_args(argv)
    if os.path.exists(args.dst) and not args.force:
        parser.error(f"{args.dst} exists; pass --force to overwrite it")
    if os.path.isfile(args.src) and zipfile.is_zipfile(args.src):  # torch.save's format, not a pickle
        print(
            f"sg3-import: error: {args.src} is a torch zip file (an sg3 generator .pt or training .ckpt), "
            "not an official pickle: sg3's tools and sg3.load_generator read it directly, no import needed",
            file=sys.stderr,
        )
        return 2
    try:
        nets = load_official_pickle(args.src)
    except (OSError, pickle.UnpicklingError, ValueError, TypeError) as err:
        print(f"sg3-import: error: {err}", file=sys.stderr)
        return 2
    G = nets["G_ema"]
    if G is None:
        print(f"sg3-import: error: {args.src} has no G_ema", file=sys.stderr)
        return 2
    meta = {
        "source": os.path.basename(args.src),
        "source_sha256": _sha256(args.src),
        "training_set_kwargs": nets["training_set_kwargs"],
        "imported_by": "sg3-import",
    }
    save_generator(args.dst, G, meta=meta)
    params = sum(p.numel() for p in G.parameters())
    print(
        f"sg3-import: {network_kind(G)} generator {G.img_resolution}x{G.img_resolution}x{G.img_channels}, "
        f"c_dim {G.c_dim}, {params / 1e6:.2f} M parameters -> {args.dst}"
    )
    return 0
