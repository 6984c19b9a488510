"""Command-line plumbing shared by the sg3 tools and sg3-metrics: network loading, seeds, devices, latents."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CliError",
    "output_folder",
    "check_image_output",
    "load_network",
    "parse_seeds",
    "parse_pair",
    "resolve_device",
    "check_device",
    "seed_latent",
    "class_labels",
    "set_user_transform",
    "require_input_transform",
    "to_uint8",
    "console_main",
    "tool_main",
    "run_cli",
    "ToolParser",
]

_SEEDS = re.compile(r"^\d+(-\d+)?$")
_MAX_SEED = 2**32 - 1


class CliError(ValueError):
    """A bad command-line argument; the message names the argument, the value and what is accepted."""


def load_network(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    info: dict | None = None,
    arg: str = "--network",
) -> torch.nn.Module:
    """Load G_ema from an sg3 checkpoint (.ckpt), exported generator (.pt) or official pickle (.pkl).

    Args:
        path: The network file.
        device: Where to put the generator.
        info: If given, receives the file's training information from the same read: 'meta' (an sg3
            file's config and counters) and 'training_set_kwargs' (an official pickle's), None if absent.
        arg: The argument that named the file, for the error message ('--network', '--source', 'network=').

    Raises:
        CliError: the file does not exist.
    """
    import sg3.io

    p = Path(path).expanduser()
    if not p.is_file():
        named = f"{arg}{'' if arg.endswith('=') else ' '}{str(path)!r}"
        raise CliError(
            f"{named}: network file not found (expected an sg3 checkpoint .ckpt, an exported "
            f"generator .pt or an official StyleGAN2/3 pickle .pkl)"
        )
    networks = sg3.io.load_networks(p)
    if info is not None:
        info.update({k: networks.get(k) for k in ("meta", "training_set_kwargs")})
    return sg3.io.inference_generator(networks, p, device)


@contextlib.contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Create the folder `path` (and missing parents) now, so that a bad path fails before the work.

    If the body raises (a bad argument, a missing network, Ctrl-C, ...), the folders this created are
    removed again as long as they are still empty; a folder that existed before is never removed.
    """
    folder = Path(path).expanduser()
    created = []  # the missing folders, deepest first
    q = folder
    while not q.exists() and not q.is_symlink() and q != q.parent:
        created.append(q)
        q = q.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    except BaseException:
        for d in created:
            try:
                d.rmdir()  # only succeeds on an empty folder
            except FileNotFoundError:
                continue
            except OSError:
                break  # not empty: its parents are not empty either
        raise


def check_image_output(path: str | os.PathLike, flag: str) -> None:
    """Raise a CliError naming `flag` unless PIL can write an image file with `path`'s suffix."""
    import PIL.Image

    PIL.Image.init()
    suffix = Path(path).suffix.lower()
    fmt = PIL.Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in PIL.Image.SAVE:
        raise CliError(
            f"{flag} {str(path)!r}: cannot write an image file ending in {suffix or '(no suffix)'!r}; "
            f"use .png (or another image suffix such as .jpg, .webp)"
        )


def parse_seeds(text: str | int | list) -> list[int]:
    """Parse seeds like '0,1,4-6' (ranges inclusive) into `[0, 1, 4, 5, 6]`.

    Raises:
        CliError: malformed item or a descending range.
    """
    if isinstance(text, int):
        return [text]
    items = text if isinstance(text, list) else str(text).split(",")
    seeds: list[int] = []
    for item in (str(i).strip() for i in items):
        if not _SEEDS.match(item):
            raise CliError(
                f"--seeds: malformed item {item!r} in {text!r}; use numbers and ranges like 0,1,4-6"
            )
        lo, _, hi = item.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise CliError(f"--seeds: range {item!r} is descending; write it as {b}-{a}")
        if b > _MAX_SEED:  # numpy's RandomState takes 32-bit seeds
            raise CliError(f"--seeds: seed {b} in {item!r} is outside the range 0..{_MAX_SEED}")
        seeds.extend(range(a, b + 1))
    return seeds


def parse_pair(text: str, name: str) -> tuple[float, float]:
    """Parse 'a,b' into two floats (e.g. --translate 0.1,-0.2)."""
    parts = str(text).split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise CliError(f"{name}: expected two comma-separated numbers like 0.1,-0.2, got {text!r}") from None


def resolve_device(name: str | None) -> torch.device:
    """'auto'/None -> cuda if available else cpu; otherwise the named device."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str | None, arg: str = "--device") -> torch.device:
    """`resolve_device`, with a bad name or a CUDA device on a machine without one as a CliError naming `arg`.

    Args:
        name: 'auto' (or None), 'cpu', 'cuda' or 'cuda:N'.
        arg: The argument that named it, for the message ('--device', 'device=').
    """
    named = f"{arg}{'' if arg.endswith('=') else ' '}{name!r}"
    try:
        device = resolve_device(name)
    except RuntimeError:
        raise CliError(f"{named}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        sep = "" if arg.endswith("=") else " "
        raise CliError(f"{named}: no CUDA GPU is available here; use {arg}{sep}cpu (or auto)")
    return device


def seed_latent(seed: int, z_dim: int) -> torch.Tensor:
    """The official per-seed latent: `RandomState(seed).randn(1, z_dim)` (float64 -> float32)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()


def class_labels(G: torch.nn.Module, class_idx: int | None, n: int = 1) -> torch.Tensor:
    """One-hot labels `[n, c_dim]` for a conditional net (class required), zeros `[n, 0]` otherwise."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise CliError(f"--class {class_idx}: the network is unconditional; leave --class out")
        return torch.zeros(n, 0)
    if class_idx is None or not 0 <= class_idx < G.c_dim:
        given = "--class" if class_idx is None else f"--class {class_idx}"
        raise CliError(
            f"{given}: the network is conditional with {G.c_dim} classes; pass --class 0..{G.c_dim - 1}"
        )
    c = torch.zeros(n, G.c_dim)
    c[:, class_idx] = 1
    return c


def set_user_transform(
    G: torch.nn.Module, translate: tuple[float, float] = (0, 0), rotate: float = 0
) -> None:
    """Write the inverse of `[[cos a, sin a, tx], [-sin a, cos a, ty], [0, 0, 1]]` into the input transform.

    Args:
        G: A StyleGAN3 generator (translate/rotate need `G.synthesis.input.transform`).
        translate: (tx, ty) in image units (the image spans [-0.5, 0.5]).
        rotate: Rotation in degrees.
    """
    from sg3.metrics.equivariance import input_transform

    if translate == (0, 0) and rotate == 0 and not hasattr(getattr(G, "synthesis", None), "input"):
        return  # nothing to do; StyleGAN2 is fine without a transform
    t = input_transform(G)
    a = math.radians(rotate)
    m = np.array(
        [[math.cos(a), math.sin(a), translate[0]], [-math.sin(a), math.cos(a), translate[1]], [0, 0, 1]]
    )
    t.copy_(torch.from_numpy(np.linalg.inv(m)).to(t))


def require_input_transform(G: torch.nn.Module, flag: str) -> None:
    """Raise a CliError naming `flag` (e.g. '--rotate 30') unless G is a StyleGAN3 with an input transform."""
    from sg3.metrics.equivariance import input_transform

    try:
        input_transform(G)
    except TypeError as e:
        raise CliError(f"{flag}: {e}") from None


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """`[N, C, H, W]` in [-1, 1] to HWC uint8 arrays `[N, H, W, C]` (`uint8(clamp(x*127.5 + 128))`)."""
    x = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def run_cli(fn: Callable[[], int | None], prog: str) -> int:
    """Run a CLI body; argument and file errors become one 'prog: error: ...' line and exit code 2.

    File errors are any OSError (missing file, an output folder that is a file, no permission, ...);
    their message names the path. A network pickle refused by the importer's allow-list
    (`sg3.io.UnsafePickleError`, an UnpicklingError) is one too.
    """
    try:
        return int(fn() or 0)
    except (CliError, OSError, ValueError, TypeError, pickle.UnpicklingError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


class ToolParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), naming the accepted options."""

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        if message.startswith("unrecognized arguments"):
            names = [max(a.option_strings, key=len) for a in self._actions if a.option_strings]
            message += f"; accepted: {', '.join(names)} (see {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def console_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int | None],
    prog: str,
    argv: list[str] | None,
) -> int:
    """A console script's body: parse `argv` with `build_parser()`, then `run(args)` under `run_cli`.

    Returns the exit code: 0 (also after --help), 2 for a bad argument (argparse's or the tool's own).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or an argparse error already printed
        return e.code if isinstance(e.code, int) else 2
    return run_cli(lambda: run(args), prog)


def tool_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], int | None],
    prog: str,
) -> Callable[[list[str] | None], int]:
    """A tool's console entry point `main(argv=None) -> exit code`: `console_main` bound to the tool."""

    def main(argv: list[str] | None = None) -> int:
        return console_main(build_parser, run, prog, argv)

    main.__doc__ = f"Console entry point of {prog}: parse `argv` (None = sys.argv), run; the exit code."
    return main
