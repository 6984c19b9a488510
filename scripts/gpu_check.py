"""One-command GPU verification of sg3 on a lent GPU machine (issue 8); writes a JSON report.

Stages (each records its own status; a failing stage never stops the next one):
  env         device name, driver, torch / CUDA / cuDNN versions, SM count, memory
  build       builds sg3_ops_cuda for the visible GPU (timed)
  gpu_tests   `pytest -m gpu tests` (CUDA vs ref parity, gradients, double backward) -> junit counts
  kernels     filtered_lrelu fwd and fwd+bwd per layer of 256 and 1024 T/R generators: the tiled and the
              blocked CUDA kernels (speed-up, differences) and ref
  ncu         Nsight Compute counters of both filtered_lrelu kernels, fwd and bwd, on a few layers
              (gpu_ncu.py: throughput, occupancy, registers, shared memory, warp states); skipped without ncu
  data        synthetic 256x256 images -> webdataset shards (sg3.data.dataset_tool)
  profile     per-phase times (Gmain, Dmain, Dreg, Gema), host-device syncs and top kernels of both configs
              (gpu_profile.py), each in the --profile-variants side by side (blocked kernel, tf32, ...)
  train_t     `python -m sg3.train experiment=stylegan3-t-256-1gpu ...` for a few hundred steps -> s/kimg,
  train_r     img/s (median over ticks after the first), peak GPU memory; same for stylegan3-r
Everything finishes inside --budget seconds (default 540): stages get what is left, training runs are
stopped at their share and measured from the ticks they completed.

Usage (repository root, torch with CUDA installed):  python scripts/gpu_check.py --out "$OUT"
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_check_lib as lib  # noqa: E402
import gpu_ncu  # noqa: E402
import gpu_profile  # noqa: E402
from gpu_check_kernels import KERNEL_IMPLS, stage_kernels  # noqa: E402


def stage_env() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,name,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        driver = out.splitlines()[0].split(",")[0].strip() if out else None
    except (OSError, subprocess.SubprocessError):
        pass
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return {
        "device_name": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "sm_count": props.multi_processor_count,
        "memory_gb": round(props.total_memory / 2**30, 2),
        "driver": driver,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "git_commit": git.stdout.strip() or None,
    }


def stage_build() -> dict[str, Any]:
    from sg3.ops import _build

    start = time.monotonic()
    module = _build.build_extension("cuda")
    return {
        "seconds": round(time.monotonic() - start, 1),
        "module": module.__name__,
        "arch_list": _build.resolve_arch_list(),
        "toolchain": _build.toolchain_info(),
    }


def stage_gpu_tests(out_dir: Path, timeout: float) -> dict[str, Any]:
    junit = out_dir / "gpu_tests.xml"
    files = lib.gpu_test_files(REPO / "tests")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        *files,
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        *(["-n", "4"] if importlib.util.find_spec("xdist") else []),  # 4 workers share the GPU
        f"--junitxml={junit}",
    ]
    env = lib.child_env(REPO / "src")
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(timeout, 1))
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT after {timeout:.0f} s", None
    (out_dir / "gpu_tests.log").write_text(output if isinstance(output, str) else output.decode())
    result: dict[str, Any] = {"returncode": rc, "output_tail": str(output)[-3000:]}
    if junit.exists():
        result.update(lib.parse_junit(junit))
    result["files"] = [str(Path(f).relative_to(REPO)) for f in files]
    result["ok"] = rc == 0 and result.get("tests", 0) > 0
    return result


def stage_data(work: Path, count: int, resolution: int) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    src, dest = work / "images", work / "shards"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):  # smooth random colour fields: cheap, compressible, not constant
        low = rng.random((8, 8, 3)) * 255
        img = Image.fromarray(low.astype(np.uint8)).resize((resolution, resolution), Image.BICUBIC)
        img.save(src / f"img{i:05d}.png")
    cmd = [
        sys.executable,
        "-m",
        "sg3.data.dataset_tool",
        "--source",
        str(src),
        "--dest",
        str(dest),
        "--resolution",
        str(resolution),
        "--no-progress",
        "--overwrite",
        "--workers",
        "4",
    ]
    env = lib.child_env(REPO / "src")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    index = dest / "dataset.json"
    return {
        "ok": proc.returncode == 0 and index.exists(),
        "index": str(index),
        "images": count,
        "output_tail": (proc.stdout + proc.stderr)[-2000:],
    }


def train_command(cfg: str, index: str, runs: Path, name: str, steps: int, batch: int, extra: list[str]):
    """The `sg3.train` command line and environment of one timed run (`steps` steps of `batch` images)."""
    kimg = steps * batch / 1000
    tick = max(kimg / 16, batch * 10 / 1000)  # ~16 ticks: the first is warm-up, the rest are measured
    cmd = [
        sys.executable,
        "-m",
        "sg3.train",
        f"experiment={cfg}-256-1gpu",
        f"data.urls={index}",
        f"batch={batch}",
        f"total_kimg={kimg}",
        f"kimg_per_tick={tick}",
        "snap=1000000",
        "image_snap=1000000",
        "logger=csv",
        f"runs_dir={runs}",
        f"name={name}",
        "data.num_workers=4",
        "grid.gw=8",  # a small fixed-seed grid: the check times training, not rendering
        "grid.gh=4",
        *extra,
    ]
    env = lib.child_env(REPO / "src", WANDB_MODE="offline", HYDRA_FULL_ERROR="1")
    return cmd, env


def stage_train(
    cfg: str, index: str, work: Path, out_dir: Path, steps: int, timeout: float, batch: int, extra: list[str]
) -> dict[str, Any]:
    """Run sg3.train for `steps` steps (or until `timeout`), then read its per-tick statistics."""
    runs = work / "runs"
    name = f"gpu-check-{cfg}"
    cmd, env = train_command(cfg, index, runs, name, steps, batch, extra)
    log_path = out_dir / f"train_{cfg}.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=False
        )
        try:
            rc = proc.wait(timeout=max(timeout, 1))
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc, timed_out = None, True
    run_dir = runs / name
    ticks = lib.read_ticks(run_dir)
    result: dict[str, Any] = {
        "cfg": cfg,
        "command": " ".join(cmd),
        "returncode": rc,
        "timed_out": timed_out,
        "wall_s": round(time.monotonic() - start, 1),
        "steps_requested": steps,
        "per_tick": ticks,
    }
    result.update(lib.summarize_ticks(ticks))
    result["peak_gpu_mem_gb"] = lib.read_peak_memory_gb(run_dir, ticks)
    result.update(lib.judge_training(cfg, result))
    result["log_tail"] = log_path.read_text()[-2500:]
    result["ok"] = result.get("steady_ticks", 0) > 0 and (rc == 0 or timed_out)
    return result


def stage_profile(
    index: str,
    work: Path,
    out_dir: Path,
    cfgs: list[str],
    batch: int,
    extra: list[str],
    budget: float,
    variants: tuple[str, ...] = ("default",),
) -> dict[str, Any]:
    """Per-phase times and top kernels (scripts/gpu_profile.py) of each configuration's training step.

    The configurations come from `sg3-train ... dry_run=true` with the timed runs' overrides. Each
    configuration is timed in every variant of `variants` side by side (gpu_profile.VARIANTS), while the
    stage budget lasts; the first variant also gets the host-device sync count and the kernel table.
    """
    deadline = lib.Deadline(budget)
    result: dict[str, Any] = {}
    tables = []
    for cfg in cfgs:
        if deadline.left() < 20:
            result[cfg] = {"skipped": "stage budget spent"}
            continue
        name = f"gpu-profile-{cfg}"
        cmd, env = train_command(cfg, index, work / "runs", name, 1, batch, [*extra, "dry_run=true"])
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        config = work / "runs" / name / "config.yaml"
        try:
            if proc.returncode != 0 or not config.is_file():
                raise RuntimeError(f"dry run failed: {(proc.stdout + proc.stderr)[-1500:]}")
            res = gpu_profile.profile_run(
                config, steps=5, variants=variants, deadline=time.monotonic() + max(deadline.left() - 20, 0)
            )
        except Exception as exc:  # noqa: BLE001 - record and go on with the next configuration
            result[cfg] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        lines = [f"==== {cfg}: {res['phase_ms']} ms per phase; syncs per phase {res.get('syncs_per_phase')}"]
        for name, timed in res["variants"].items():
            lines.append(f"variant {name}: {timed}")
        tables.append("\n".join(lines) + f"\n{res.pop('profile_table', '')}")
        result[cfg] = res
        (out_dir / "profile.txt").write_text("\n\n".join(tables))
    result["ok"] = not any("error" in r for r in result.values())
    return result


STAGES = ("env", "build", "gpu_tests", "kernels", "ncu", "data", "profile", "train_t", "train_r")  # run order


def _ncu_layer_known(spec: str) -> bool:
    try:
        gpu_ncu.find_layer(spec)
    except ValueError:
        return False
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--out", default=os.environ.get("OUT", "gpu_check_out"), help="report folder (default: $OUT)"
    )
    p.add_argument("--work", default=None, help="scratch folder for data and runs (default: a temp dir)")
    p.add_argument("--budget", type=float, default=540, help="wall-clock budget of the whole check, seconds")
    p.add_argument("--steps", type=int, default=160, help="training steps per config (batch --batch)")
    p.add_argument("--batch", type=int, default=32, help="training batch size")
    p.add_argument("--images", type=int, default=512, help="synthetic training images")
    p.add_argument(
        "--generators", default="T256,R256,T1024,R1024", help="kernel-timing generators (comma list)"
    )
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per kernel measurement")
    p.add_argument(
        "--kernel-impls",
        default="cuda,blocked,ref",
        help="filtered_lrelu implementations to time: cuda (tiled kernel), blocked (blocked kernel), ref "
        "(the reference takes GBs and seconds at 1024)",
    )
    p.add_argument(
        "--profile-variants",
        default="default,blocked",
        help="training-step variants the profile stage times side by side: "
        + ", ".join(gpu_profile.VARIANTS)
        + "; join several with '+' to time their changes together (e.g. blocked+tf32)",
    )
    p.add_argument(
        "--ncu-layers",
        default=",".join(gpu_ncu.DEFAULT_LAYERS),
        help="layers whose filtered_lrelu kernels the ncu stage profiles (Nsight Compute), e.g. T256/L8",
    )
    p.add_argument("--skip", default="", help="comma list of stages to skip (e.g. gpu_tests,train_r)")
    p.add_argument(
        "--train-arg", action="append", default=[], help="extra Hydra override for both training runs"
    )
    args = p.parse_args(argv)

    # Names are checked before anything runs: a typo must not surface minutes into a lease.
    def known(accepted: tuple[str, ...]):
        return lambda name: name in accepted

    for option, given, is_known, accepted in [
        (
            "--profile-variants",
            args.profile_variants,
            lambda name: not gpu_profile.unknown_variant_parts(name),
            ", ".join(gpu_profile.VARIANTS) + ", or several joined by '+'",
        ),
        ("--kernel-impls", args.kernel_impls, known(KERNEL_IMPLS), ", ".join(KERNEL_IMPLS)),
        ("--generators", args.generators, known(tuple(lib.GENERATORS)), ", ".join(lib.GENERATORS)),
        ("--skip", args.skip, known(STAGES), ", ".join(STAGES)),
        ("--ncu-layers", args.ncu_layers, _ncu_layer_known, "GEN/Ln, e.g. T256/L8 (a layer of a generator)"),
    ]:
        unknown = [v for v in given.split(",") if v and not is_known(v)]
        if unknown:
            p.error(f"{option}: unknown {', '.join(unknown)}; accepted: {accepted}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tempfile

    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="sg3_gpu_check_"))
    os.environ.setdefault("SG3_OPS_CACHE", str(work / "ops_cache"))
    report = lib.new_report(sys.argv if argv is None else argv)
    deadline = lib.Deadline(args.budget)
    skip = {s for s in args.skip.split(",") if s}
    no_gpu = None if torch.cuda.is_available() else "no CUDA device visible to torch"

    def skip_reason(name: str, needs: tuple[str, ...] = ()) -> str | None:
        if name in skip:
            return "skipped by --skip"
        if no_gpu:
            return no_gpu
        for dep in needs:
            if report["stages"].get(dep, {}).get("status") != "ok":
                return f"stage '{dep}' did not succeed"
        return None

    def save() -> None:
        report["finished"] = lib.now_iso()
        report["wall_s"] = round(time.monotonic() - deadline.start, 1)
        lib.write_report(report, out)

    B = args.budget  # stage shares below are fractions of the whole budget
    lib.run_stage(report, "env", stage_env, skip=skip_reason("env"))
    lib.run_stage(report, "build", stage_build, skip=skip_reason("build"))
    save()
    lib.run_stage(
        report,
        "gpu_tests",
        lambda: stage_gpu_tests(out, deadline.budget(0.28 * B, reserve=0.55 * B)),
        skip=skip_reason("gpu_tests", ("build",)),
    )
    save()
    gens = [g for g in args.generators.split(",") if g]
    lib.run_stage(
        report,
        "kernels",
        lambda: stage_kernels(
            deadline.budget(0.1 * B, reserve=0.45 * B),
            gens,
            2,
            args.reps,
            tuple(args.kernel_impls.split(",")),
        ),
        skip=skip_reason("kernels", ("build",)),
    )
    save()
    lib.run_stage(
        report,
        "ncu",
        lambda: gpu_ncu.stage_ncu(
            work, deadline.budget(0.15 * B, reserve=0.4 * B), [v for v in args.ncu_layers.split(",") if v]
        ),
        skip=skip_reason("ncu", ("build",)) or (None if gpu_ncu.ncu_path() else "ncu not found"),
    )
    save()
    lib.run_stage(report, "data", lambda: stage_data(work, args.images, 256), skip=skip_reason("data"))
    lib.run_stage(
        report,
        "profile",
        lambda: stage_profile(
            report["stages"]["data"]["result"]["index"],
            work,
            out,
            ["stylegan3-t", "stylegan3-r"],
            args.batch,
            args.train_arg,
            deadline.budget(0.2 * B, reserve=0.3 * B),
            tuple(v for v in args.profile_variants.split(",") if v),
        ),
        skip=skip_reason("profile", ("data",)),
    )
    save()
    for key, cfg in (("train_t", "stylegan3-t"), ("train_r", "stylegan3-r")):
        share = deadline.budget(0.6 * B, reserve=0.02 * B) / (2 if key == "train_t" else 1)
        lib.run_stage(
            report,
            key,
            lambda c=cfg, s=share: stage_train(
                c,
                report["stages"]["data"]["result"]["index"],
                work,
                out,
                args.steps,
                s,
                args.batch,
                args.train_arg,
            ),
            skip=skip_reason(key, ("data",)),
        )
        save()
    print("\n".join(lib.summary_lines(report)))
    return 0 if all(s["status"] != "failed" for s in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
