"""One op implementation for every rank.

`impl='auto'` falls back to the pure-PyTorch ops in a process whose compiled extension fails to
build. Under DDP that would let ranks run different kernels: the numbers drift apart, and the
gradients that exist differ (an unconnected parameter gets a zero gradient from one implementation
and none from the other), which breaks the all-reduce. So before training every rank builds (or
loads) its extension once, the ranks count the failures together, and if any rank failed, all of
them use 'ref', with one warning that says which ranks could not build and where the log is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from sg3 import ops
from sg3.ops import _dispatch

_log = logging.getLogger(__name__)


def _local_build_error(device: torch.device) -> str | None:
    """None if this process's compiled extension for `device` loads, else the build error."""
    kind = "cuda" if device.type == "cuda" else "cpp"
    try:
        _dispatch.load_extension(kind)
    except Exception as exc:  # noqa: BLE001 - any build problem counts; the message is reported
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def agree_on_ops(
    device: torch.device, rank: int, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor]
) -> str:
    """Make `impl='auto'` mean the same implementation on every rank.

    Args:
        device: This rank's training device (selects the C++ or the CUDA extension).
        rank: This process's global rank (for the message).
        all_reduce_sum: Sums a tensor over all ranks (identity with one process).

    Returns:
        'auto' when every rank has its compiled extension (or the default is not 'auto'), 'ref' when
        at least one rank could not build it; in that case the process default is set to 'ref'.
    """
    if ops.get_default_impl() != "auto":
        return ops.get_default_impl()
    error = _local_build_error(device)
    failed = torch.tensor([1.0 if error else 0.0], device=device)
    failed_total = int(all_reduce_sum(failed).item())
    if failed_total == 0:
        return "auto"
    ops.set_default_impl("ref")
    here = f"rank {rank}: {error}" if error else f"rank {rank} built fine"
    _log.warning(
        "sg3.ops: %d rank(s) could not build the compiled ops, so every rank uses the pure-PyTorch 'ref' "
        "ops (mixed kernels would desynchronise DDP). %s. `sg3-doctor` shows the compiler error and log.",
        failed_total,
        here,
    )
    return "ref"
