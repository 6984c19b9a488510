"""Run every benchmark (scripts/bench_*.py) and assemble docs/benchmarks.md.

Each bench_<area>.py writes its own Markdown section to docs/bench/<area>.md (machine and date included);
this driver runs them one after another (never in parallel: the numbers are ratios measured side by side
on a shared machine) and concatenates the sections.

Usage: python scripts/bench.py [--only ops,data] [--skip slurm]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "docs" / "bench"
OUTPUT = ROOT / "docs" / "benchmarks.md"


def _areas() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "scripts").glob("bench_*.py"))


def _assemble() -> None:
    sections = [p.read_text().strip() for p in sorted(BENCH_DIR.glob("*.md"))]
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (scripts/bench.py). Every section names the machine and date it was\n"
        "measured on; numbers are ratios measured side by side in one run unless stated otherwise.\n"
        f"Assembled {datetime.date.today().isoformat()} on {platform.platform()}.\n"
    )
    OUTPUT.write_text(header + "\n" + "\n\n".join(sections) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated areas to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated areas to leave out")
    parser.add_argument("--assemble-only", action="store_true", help="only rebuild docs/benchmarks.md")
    args = parser.parse_args(argv)
    areas = _areas()
    only = {a for a in args.only.split(",") if a}
    skip = {a for a in args.skip.split(",") if a}
    unknown = (only | skip) - set(areas)
    if unknown:
        parser.error(f"unknown area(s) {sorted(unknown)}; available: {areas}")
    failed = []
    if not args.assemble_only:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        for area in areas:
            if (only and area not in only) or area in skip:
                continue
            script = ROOT / "scripts" / f"bench_{area}.py"
            print(f"== bench {area} ({script.relative_to(ROOT)})", flush=True)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, str(script), "--out", str(BENCH_DIR / f"{area}.md")])
            print(
                f"== bench {area}: exit {proc.returncode} after {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            if proc.returncode != 0:
                failed.append(area)
    _assemble()
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    if failed:
        print(f"failed benchmarks: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
