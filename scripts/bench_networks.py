"""Networks benchmark: generator and discriminator forward+backward time per image on the CPU,
compiled C++ ops versus the pure-PyTorch reference ops, side by side in one run.

Configs: 64x64 StyleGAN3-T and -R generators and the discriminator with small channel counts.
Besides the whole-network times, every step also measures the time spent inside the switchable sg3
ops (upfirdn2d, bias_act, filtered_lrelu; forward and backward), so the table shows the speed-up of
the op part alone and the Amdahl bound ``ref_total / (ref_total - ref_ops)`` on the network speed-up
that any op implementation can reach while the convolutions and the rest stay as they are.
Times are process CPU seconds (one intra-op thread), which a loaded shared machine disturbs less than
wall-clock time. Writes a Markdown section ``## networks``.

Usage: python scripts/bench_networks.py --out docs/bench/networks.md [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

import sg3.ops
from sg3.modules.discriminator import Discriminator
from sg3.modules.generator import Generator
from sg3.modules.modconv import set_modconv_impl

TARGET = 8.0
RES = 64
CONFIGS = {
    "T": dict(channel_base=4096, channel_max=64),
    "R": dict(channel_base=8192, channel_max=128, conv_kernel=1, use_radial_filters=True),
}
D_KWARGS = dict(c_dim=0, img_resolution=RES, img_channels=3, channel_base=4096, channel_max=64)


class _Meter:
    """Accumulated CPU seconds spent inside the wrapped ops."""

    def __init__(self) -> None:
        self.seconds = 0.0


class _TimedOp(torch.autograd.Function):
    """Runs an op on detached leaves, timing its forward and (through autograd.grad) its backward."""

    @staticmethod
    def forward(ctx, call, meter, *tensors):  # noqa: D102
        start = time.process_time()
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.requires_grad) for t in tensors]
            out = call(*leaves)
        meter.seconds += time.process_time() - start
        ctx.leaves, ctx.out, ctx.meter = leaves, out, meter
        return out.detach()

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        start = time.process_time()
        need = [t for t in ctx.leaves if t.requires_grad]
        grads = iter(torch.autograd.grad(ctx.out, need, dy, allow_unused=True))
        result = [next(grads) if t.requires_grad else None for t in ctx.leaves]
        ctx.meter.seconds += time.process_time() - start
        return (None, None, *result)


def _timed(fn: Callable, meter: _Meter) -> Callable:
    """`fn` with its forward and backward CPU time added to `meter` (tensor args may be positional or kw)."""

    def wrapper(*args, **kwargs):
        slots = [(i, a) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        slots += [(k, v) for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
        if not torch.is_grad_enabled() or not any(t.requires_grad for _, t in slots):
            start = time.process_time()
            out = fn(*args, **kwargs)
            meter.seconds += time.process_time() - start
            return out

        def call(*tensors):
            pos, kw = list(args), dict(kwargs)
            for (key, _), t in zip(slots, tensors):
                if isinstance(key, int):
                    pos[key] = t
                else:
                    kw[key] = t
            return fn(*pos, **kw)

        return _TimedOp.apply(call, meter, *(t for _, t in slots))

    return wrapper


@contextlib.contextmanager
def _op_timer(meter: _Meter) -> Iterator[None]:
    """Route the networks' calls of the switchable ops through `_timed` (the call sites the modules use)."""
    targets = [
        (sg3.ops, "bias_act"),
        (sg3.ops, "filtered_lrelu"),
        (sys.modules["sg3.ops.conv2d_resample"], "upfirdn2d"),
    ]
    saved = [(mod, name, getattr(mod, name)) for mod, name in targets]
    try:
        for mod, name, fn in saved:
            setattr(mod, name, _timed(fn, meter))
        yield
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def _measure(step: Callable[[], None], batch: int, repeats: int) -> tuple[float, float]:
    """(total, op) CPU seconds per image of `step()`.

    total: median over `repeats` plain steps after one warm-up. op: the share of the time spent inside
    the ops during one more step with every op call timed, applied to that total (so the timing
    wrapper's own cost, a fraction of a millisecond per call, does not inflate either number).
    """
    step()
    totals = []
    for _ in range(repeats):
        start = time.process_time()
        step()
        totals.append(time.process_time() - start)
    meter = _Meter()
    with _op_timer(meter):
        start = time.process_time()
        step()
        timed_total = time.process_time() - start
    total = statistics.median(totals)
    return total / batch, total * min(1.0, meter.seconds / timed_total) / batch


def _g_step(G: Generator, batch: int) -> Callable[[], None]:
    z = torch.randn(batch, G.z_dim)

    def step():
        G.zero_grad(set_to_none=True)
        G(z, None).square().mean().backward()

    return step


def _d_step(D: Discriminator, batch: int) -> Callable[[], None]:
    img = torch.randn(batch, 3, RES, RES)

    def step():
        D.zero_grad(set_to_none=True)
        D(img, None).sum().backward()

    return step


def _compiled_status() -> str | None:
    """None if the compiled CPU ops work, else the reason they do not."""
    x = torch.randn(1, 1, 8, 8)
    try:
        with sg3.ops.use_impl("cpp"):
            sg3.ops.filtered_lrelu(x, torch.ones(4) / 4, torch.ones(4) / 4, up=2, down=2, padding=1)
    except Exception as err:  # the build or load failure is reported in the table
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return None


def _table(rows: list[tuple], compiled_error: str | None) -> list[str]:
    lines = [
        "| network | ref total | ref in ops | compiled total | compiled in ops | network speed-up "
        "| ops-only speed-up | Amdahl bound |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, (ref, ref_ops), cpp in rows:
        bound = ref / (ref - ref_ops) if ref > ref_ops else float("inf")
        if cpp is None:
            cells = ["unavailable", "–", "–", "–"]
        else:
            total, ops_t = cpp
            cells = [f"{total * 1e3:.1f}", f"{ops_t * 1e3:.1f}"]
            cells += [f"{ref / total:.2f}x", f"{ref_ops / ops_t:.1f}x"]
        lines.append(
            f"| {label} | {ref * 1e3:.1f} | {ref_ops * 1e3:.1f} ({ref_ops / ref:.0%}) | {cells[0]} "
            f"| {cells[1]} | {cells[2]} | {cells[3]} | {bound:.2f}x |"
        )
    lines.append("")
    if compiled_error is not None:
        lines.append(f"Compiled CPU ops were not available ({compiled_error}); target not measured.")
        return lines
    worst = min(ref / cpp[0] for _, (ref, _), cpp in rows)
    verdict = "MET" if worst >= TARGET else "NOT met"
    bounds = ", ".join(f"{label} {ref / (ref - ref_ops):.2f}x" for label, (ref, ref_ops), _ in rows)
    lines.append(
        f"Target (compiled >= {TARGET:g}x faster than ref for every network): **{verdict}** in this run "
        f"(smallest network speed-up {worst:.2f}x). Even infinitely fast ops could not meet it where the "
        f"Amdahl bound is below {TARGET:g}x ({bounds}): the convolutions, matrix products and the rest of "
        "the graph are the same PyTorch code in both columns."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/bench/networks.md", help="Markdown file to write")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per cell (median)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared CPU)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    nets = {f"G {name}": Generator(64, 0, 64, RES, 3, **kw) for name, kw in CONFIGS.items()}
    nets["D"] = Discriminator(**D_KWARGS)
    compiled_error = _compiled_status()
    load_before = os.getloadavg()[0]
    rows = []
    for label, net in nets.items():
        step = _d_step(net, args.batch) if label == "D" else _g_step(net, args.batch)
        with sg3.ops.use_impl("ref"):
            ref = _measure(step, args.batch, args.repeats)
        cpp = None
        if compiled_error is None:
            with sg3.ops.use_impl("cpp"):
                cpp = _measure(step, args.batch, args.repeats)
        rows.append((label, ref, cpp))
        cpp_txt = "n/a" if cpp is None else f"{cpp[0] * 1e3:.1f} (ops {cpp[1] * 1e3:.1f})"
        print(f"{label}: ref {ref[0] * 1e3:.1f} (ops {ref[1] * 1e3:.1f}) ms/img, cpp {cpp_txt} ms/img")
    dense = None
    if compiled_error is None:  # the other execution of the 3x3 modulated convolutions, same ops
        set_modconv_impl("dense")
        try:
            with sg3.ops.use_impl("cpp"):
                dense = _measure(_g_step(nets["G T"], args.batch), args.batch, args.repeats)
        finally:
            set_modconv_impl(None)
    load_after = os.getloadavg()[0]

    lines = [
        "## networks",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPU cores "
        f"(shared with other jobs, 1-minute load average {load_before:.1f} at the start, {load_after:.1f} at "
        f"the end), torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), "
        f"Python {platform.python_version()}.",
        "",
        f"Forward + backward CPU time per image in ms (process CPU time, batch {args.batch}, median of "
        f"{args.repeats} steps after a warm-up), {RES}x{RES}: StyleGAN3-T G (channel_base 4096, channel_max "
        "64), StyleGAN3-R G (8192/128, 1x1 convs, radial filters), discriminator (4096/64). Same networks "
        "and inputs; only the implementation of upfirdn2d, bias_act and filtered_lrelu differs. "
        "'in ops' is the time inside those ops, forward and backward: their share of one more step of "
        "the same run with each op call timed, times the total. The rest (modulated/plain "
        "convolutions, matrix products, elementwise glue, autograd) is identical PyTorch code in both "
        "columns. Amdahl bound = ref total / (ref total - ref in ops): the network "
        "speed-up that free ops would give.",
        "",
        *_table(rows, compiled_error),
    ]
    if dense is not None:
        grouped = rows[0][2][0]
        lines += [
            "",
            f"Modulated convolution executions (G T, compiled ops, same run): 'grouped' (the default, "
            f"one grouped conv with per-sample weights) {grouped * 1e3:.1f} ms/img, 'dense' "
            f"(`SG3_MODCONV=dense`: one ordinary conv over the batch, one more in the backward pass) "
            f"{dense[0] * 1e3:.1f} ms/img, i.e. dense takes {dense[0] / grouped:.2f}x the time of grouped "
            "on this CPU.",
        ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
