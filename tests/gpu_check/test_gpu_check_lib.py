"""Default tier: the parts of scripts/gpu_check.py that need no GPU (tables, parsing, report)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import gpu_check  # noqa: E402
import gpu_check_lib as lib  # noqa: E402


def _out_len(n, up, down, p0, p1, taps):
    return (n * up + p0 + p1 - (taps - 1) + down - 1) // down


@pytest.mark.parametrize("gen", sorted(lib.GENERATORS))
def test_layer_tables_produce_each_layers_output_size(gen):
    layers = lib.filtered_lrelu_layers(lib.GENERATORS[gen])
    assert len(layers) == 15
    for layer in layers:
        _, _, h, w = layer["x_shape"]
        px0, px1, py0, py1 = layer["padding"]
        taps = layer["up_filter"]["numtaps"] + layer["down_filter"]["numtaps"] - 1
        assert _out_len(w, layer["up"], layer["down"], px0, px1, taps) == layer["out_size"], layer["name"]
        assert _out_len(h, layer["up"], layer["down"], py0, py1, taps) == layer["out_size"], layer["name"]


def test_t256_table_matches_the_spec():
    layers = lib.filtered_lrelu_layers(lib.GENERATORS["T256"])
    names = [layer["name"] for layer in layers]
    assert (
        names
        == (
            "L0_36_512 L1_36_512 L2_36_512 L3_52_512 L4_52_512 L5_84_512 L6_84_512 L7_148_512 "
            "L8_148_512 L9_148_362 L10_276_256 L11_276_181 L12_276_128 L13_256_128 L14_256_3"
        ).split()
    )
    assert layers[0]["x_shape"] == [32, 512, 38, 38]  # 36 + conv_kernel - 1
    assert layers[0]["padding"] == [9, 8, 9, 8]
    assert (layers[3]["up"], layers[3]["down"], layers[3]["padding"]) == (4, 2, [-6, -9, -6, -9])
    assert [layer["fp16"] for layer in layers] == [False] * 3 + [True] * 12
    torgb = layers[-1]
    assert (torgb["up"], torgb["down"], torgb["gain"], torgb["slope"]) == (1, 1, 1.0, 1.0)


def test_r256_table_uses_radial_filters_until_the_critical_layers():
    layers = lib.filtered_lrelu_layers(lib.GENERATORS["R256"])
    assert layers[0]["x_shape"] == [32, 1024, 36, 36]  # 1x1 convs
    assert layers[0]["padding"] == [11, 10, 11, 10]
    assert [layer["down_filter"]["radial"] for layer in layers] == [True] * 12 + [False] * 3
    assert layers[9]["name"] == "L9_148_724"  # channel_base 65536 (R doubles the default 32768)


def test_t1024_table_matches_the_spec():
    layers = lib.filtered_lrelu_layers(lib.GENERATORS["T1024"])
    assert layers[10]["name"] == "L10_1044_81"
    assert layers[10]["x_shape"] == [4, 81, 534, 534]
    assert layers[13]["padding"] == [-11, -12, -11, -12]


def test_polyphase_flops_scale_with_batch_and_count_radial_taps():
    layer = lib.filtered_lrelu_layers(lib.GENERATORS["T256"])[0]
    doubled = {**layer, "x_shape": [64, *layer["x_shape"][1:]]}
    assert lib.polyphase_flops(doubled) == pytest.approx(2 * lib.polyphase_flops(layer))
    radial = {**layer, "down_filter": {**layer["down_filter"], "radial": True}}
    assert lib.polyphase_flops(radial) > lib.polyphase_flops(layer)


def test_child_env_puts_paths_before_the_existing_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    env = lib.child_env(Path("/r/src"), "/r/scripts", WANDB_MODE="offline")
    assert env["PYTHONPATH"] == os.pathsep.join(["/r/src", "/r/scripts", "/tmp/site"])
    assert env["WANDB_MODE"] == "offline" and env["PATH"] == os.environ["PATH"]
    monkeypatch.delenv("PYTHONPATH")
    assert lib.child_env("/r/src")["PYTHONPATH"] == "/r/src" + os.pathsep


def test_run_stage_records_ok_failed_and_skipped():
    report = lib.new_report(["x"])
    assert lib.run_stage(report, "a", lambda: {"value": 1})
    assert not lib.run_stage(report, "b", lambda: 1 / 0)
    assert not lib.run_stage(report, "c", lambda: {"ok": False})
    assert not lib.run_stage(report, "d", lambda: {}, skip="no GPU")
    stages = report["stages"]
    assert stages["a"]["status"] == "ok" and stages["a"]["result"] == {"value": 1}
    assert stages["b"]["status"] == "failed" and "ZeroDivisionError" in stages["b"]["error"]
    assert stages["c"]["status"] == "failed"
    assert stages["d"] == {"status": "skipped", "started": stages["d"]["started"], "reason": "no GPU"}


def test_report_records_and_renders_the_sg3_settings(monkeypatch):
    """The SG3_* variables that choose kernels and executions travel with the report into its header."""
    import gpu_report

    monkeypatch.setenv("SG3_MODCONV", "dense")
    monkeypatch.setenv("SG3_FLRELU_KERNEL", "blocked")
    monkeypatch.setenv("SG3_OPS_CACHE", "/tmp/cache")
    report = lib.new_report(["gpu_check.py"])
    assert report["settings"] == {
        "SG3_FLRELU_KERNEL": "blocked",
        "SG3_MODCONV": "dense",
        "SG3_OPS_CACHE": "/tmp/cache",
    }
    text = gpu_report.render({**report, "wall_s": 1.0}, "run")
    assert "command `gpu_check.py`; SG3_FLRELU_KERNEL=blocked; SG3_MODCONV=dense; 1.0 s." in text


def test_parse_junit(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="t.m" name="ok"/><testcase classname="t.m" name="bad"><failure/></testcase>'
        '<testcase classname="t.m" name="s"><skipped/></testcase><testcase classname="t.m" name="ok2"/>'
        "</testsuite></testsuites>"
    )
    counts = lib.parse_junit(xml)
    assert (counts["tests"], counts["passed"], counts["failures"], counts["skipped"]) == (4, 2, 1, 1)
    assert counts["failing"] == ["t.m::bad"]


def test_ticks_memory_and_judgement(tmp_path):
    rows = [(0.64, 90.0, 7.1), (1.28, 18.0, 35.5), (1.92, 19.0, 33.7), (2.56, 22.0, 29.1)]
    with open(tmp_path / "stats.jsonl", "w") as f:
        for kimg, spk, ips in rows:
            rec = {
                "Progress/kimg": {"mean": kimg},
                "Timing/sec_per_kimg": {"mean": spk},
                "Timing/img_per_sec": {"mean": ips},
            }
            f.write(json.dumps(rec) + "\n")
        f.write('{"cut off')  # a line a timeout interrupted
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "step,Resources/peak_gpu_mem_gb,x\n1,7.5,1\n2,8.25,2\n3,,3\n"
    )
    summary = lib.summarize_ticks(lib.read_ticks(tmp_path))
    assert summary["ticks"] == 4 and summary["steady_ticks"] == 3
    assert summary["sec_per_kimg"] == 19.0 and summary["img_per_sec"] == 33.7
    assert summary["first_tick_sec_per_kimg"] == 90.0
    summary["peak_gpu_mem_gb"] = lib.read_peak_memory_gb(tmp_path)
    assert summary["peak_gpu_mem_gb"] == 8.25
    verdict = lib.judge_training("stylegan3-t", summary)
    assert verdict["meets_speed"] is True and verdict["meets_memory"] is True
    assert verdict["speedup_vs_official_a100"] == pytest.approx(49.81 / 19.0)
    # stats.jsonl's own Resources/peak_gpu_mem_gb (a run stopped before the CSV logger flushed) counts too.
    with open(tmp_path / "stats.jsonl", "a") as f:
        rec = {"Progress/kimg": {"mean": 3.2}, "Resources/peak_gpu_mem_gb": {"mean": 9.75}}
        f.write("\n" + json.dumps(rec))
    assert lib.read_peak_memory_gb(tmp_path) == 9.75
    assert lib.judge_training("stylegan3-r", {"sec_per_kimg": 30.0})["meets_speed"] is False


def test_gpu_test_files_finds_the_gpu_tier(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test_x.py").write_text("import pytest\npytestmark = pytest.mark.gpu\n")
    (tmp_path / "a" / "test_y.py").write_text("def test_y():\n    pass\n")
    (tmp_path / "helper_gpu.py").write_text("pytest.mark.gpu\n")
    assert lib.gpu_test_files(tmp_path) == [str(tmp_path / "a" / "test_x.py")]
    repo_files = lib.gpu_test_files(SCRIPTS.parent / "tests")
    assert str(SCRIPTS.parent / "tests" / "gpu" / "test_ops_cuda.py") in repo_files


def test_deadline_budget():
    d = lib.Deadline(100)
    assert 0 < d.budget(30, reserve=50) <= 30
    assert d.budget(30, reserve=200) == 0


def test_main_without_gpu_writes_a_report_of_skipped_stages(tmp_path, monkeypatch):
    from sg3.ops import _build

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    # main() points an unset SG3_OPS_CACHE at its scratch folder for its stages: keep the process's cache
    # (and restore the variable afterwards), or every later test would rebuild the CPU extension there.
    monkeypatch.setenv("SG3_OPS_CACHE", str(_build.cache_root()))
    rc = gpu_check.main(["--out", str(tmp_path), "--work", str(tmp_path / "work"), "--budget", "60"])
    assert rc == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["format"] == "sg3-gpu-check" and report["version"] == 1
    expected = ["env", "build", "gpu_tests", "kernels", "ncu", "data", "profile", "train_t", "train_r"]
    assert list(report["stages"]) == expected == list(gpu_check.STAGES)
    assert {s["status"] for s in report["stages"].values()} == {"skipped"}
    assert "no CUDA device" in report["stages"]["build"]["reason"]
    text = (tmp_path / "gpu_check.txt").read_text()
    assert "train_r" in text and "skipped" in text


@pytest.mark.parametrize(
    "option,value,accepted",
    [
        ("--profile-variants", "default,dense", "dense_modconv"),
        ("--profile-variants", "default,blocked+tf32,blocked+fast", "or several joined by '+'"),
        ("--kernel-impls", "cuda,fast", "blocked"),
        ("--generators", "T256,T512", "R1024"),
        ("--skip", "gpu_test", "gpu_tests"),
        ("--ncu-layers", "T256/L8,T256/L99", "T256/L8"),
    ],
)
def test_unknown_names_are_refused_before_anything_runs(tmp_path, capsys, option, value, accepted):
    with pytest.raises(SystemExit) as info:
        gpu_check.main(["--out", str(tmp_path), option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{option}: unknown {value.split(',')[-1]}; accepted: " in err and accepted in err
    assert not list(tmp_path.iterdir())  # no report: nothing ran


def test_gpu_report_renders_a_kept_run(tmp_path):
    import gpu_report

    runs = sorted((SCRIPTS.parent / "docs" / "gpu_runs").glob("*.json"))
    assert runs, "docs/gpu_runs holds the reports of the GPU runs"
    out = tmp_path / "gpu.md"
    assert gpu_report.main([str(p) for p in runs] + ["--out", str(out), "--intro", "intro"]) == 0
    text = out.read_text()
    assert text.startswith("## gpu\n\nintro\n")
    assert text.count("\n### ") == len(runs)
    # The 2026-11-27 H100 run 2: the training row of stylegan3-t, and a kernel row with its numbers.
    assert "| stylegan3-t | 41.20 | 24.3 | 1 x 0.83 kimg | 10.50 | 67.89 | 20.0 s/kimg, 9.5 GB | 49.81 |" in (
        text
    )
    row = "| R256 L0_36_1024 | [32, 1024, 36, 36] | 2/2 | no | 4.25 | 11.98 | - | - | 3771 | 2.1e-07 |"
    assert row in text
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(SystemExit, match="not a gpu_check report"):
        gpu_report.main([str(bad), "--out", str(out)])


@pytest.mark.timeout(func_only=True)  # the cpu_ops fixture builds the ops under its own limit
def test_profile_run_times_each_variant_and_restores_the_settings(tmp_path, cpu_ops):
    """gpu_profile on the CPU with a tiny config: every variant timed, the first fills the top level."""
    import importlib

    from omegaconf import OmegaConf

    import gpu_profile

    flrelu = importlib.import_module("sg3.ops.filtered_lrelu")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from training_helpers import TINY, compose_plain

    config = tmp_path / "config.yaml"
    OmegaConf.save(OmegaConf.create(compose_plain([*TINY, "augment=none", "batch=8", "batch_gpu=4"])), config)
    from sg3.modules import modconv

    variants = ("default", "blocked", "d_channels_last", "dense_modconv", "tf32+dense_modconv", "one_chunk")
    res = gpu_profile.profile_run(config, steps=1, device="cpu", variants=variants)
    assert tuple(res["variants"]) == variants
    for name, timed in res["variants"].items():
        assert {"Gmain", "Dmain", "Dreg", "Gema"} <= set(timed["phase_ms"]), name
        assert timed["step_ms"] > 0 and timed["sec_per_kimg_phases"] > 0, name
    assert res["phase_ms"] == res["variants"]["default"]["phase_ms"]
    assert res["variants"]["default"]["batch_gpu"] == 4 and res["variants"]["one_chunk"]["batch_gpu"] == 8
    assert res["phase_intervals"]["Dreg"] == 16
    assert flrelu.get_cuda_kernel() == "tiled"
    assert modconv.get_modconv_impl() == "grouped"
    import gpu_report

    res.pop("profile_table", None)
    rows = gpu_report.profile_rows({"stages": {"profile": {"result": {"stylegan3-t": res, "ok": True}}}})
    assert [r.split(" | ")[1] for r in rows] == list(variants)
    assert " | 1.00x | " in rows[0] and "Gmain " in rows[0]
    with pytest.raises(ValueError, match="unknown profile variant 'fast'"):
        gpu_profile.profile_run(config, steps=1, device="cpu", variants=("default", "fast"))
    with pytest.raises(ValueError, match="unknown profile variant 'tf32\\+fast'"):
        gpu_profile.profile_run(config, steps=1, device="cpu", variants=("tf32+fast",))


def test_combined_variant_applies_every_part_and_restore_undoes_them():
    import importlib

    import torch

    import gpu_profile
    from sg3.modules import modconv

    flrelu = importlib.import_module("sg3.ops.filtered_lrelu")  # the package attribute is the op
    tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    derived = {"D_kwargs": {}, "batch_per_gpu": 32, "batch_gpu": 8, "num_accum": 4}
    plain = {"tf32": False, "derived": derived}
    variant = "blocked+tf32+d_channels_last+dense_modconv+one_chunk"
    cfg, restore = gpu_profile._variant_settings(variant, plain)
    try:
        assert flrelu.get_cuda_kernel() == "blocked" and modconv.get_modconv_impl() == "dense"
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert cfg["derived"]["D_kwargs"]["block_kwargs"]["fp16_channels_last"] is True
        assert (cfg["derived"]["batch_gpu"], cfg["derived"]["num_accum"]) == (32, 1)
        # the caller's config is left alone
        assert plain == {"tf32": False, "derived": {**derived, "D_kwargs": {}}} and derived["batch_gpu"] == 8
    finally:
        restore()
    assert flrelu.get_cuda_kernel() == "tiled" and modconv.get_modconv_impl() == "grouped"
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32_before


def _ncu_csv() -> str:
    """ncu's `--csv --page details` layout: one row per metric, kernel columns repeated."""
    header = (
        "ID,Process ID,Process Name,Host Name,Kernel Name,Context,Stream,Block Size,Grid Size,Device,CC,"
        "Section Name,Metric Name,Metric Unit,Metric Value"
    ).split(",")
    tiled = "void sg3cuda::filtered_lrelu_fused_kernel<__half, 2, 2, 12, 12>(sg3cuda::FusedParams<float>)"
    blocked = "void sg3cuda::filtered_lrelu_blocked_kernel<__half, 2, 2>(sg3cuda::BlockedParams<float>)"
    metrics = [
        ("0", tiled, "GPU Speed Of Light Throughput", "Duration", "msecond", "1.50"),
        ("0", tiled, "GPU Speed Of Light Throughput", "Compute (SM) Throughput", "%", "41.20"),
        ("0", tiled, "Launch Statistics", "Dynamic Shared Memory Per Block", "Kbyte/block", "42.10"),
        ("0", tiled, "Occupancy", "Achieved Occupancy", "%", "48.5"),
        ("1", blocked, "GPU Speed Of Light Throughput", "Duration", "usecond", "1,250.00"),
        ("1", blocked, "Occupancy", "Theoretical Occupancy", "%", "50"),
    ]
    lines = ["==PROF== Disconnected from process 1", ",".join(f'"{h}"' for h in header)]
    for kid, kernel, section, name, unit, value in metrics:
        row = [kid, "1", "python3", "h", kernel, "1", "7", "(256, 1, 1)", "(5, 5, 16384)", "0", "9.0"]
        lines.append(",".join(f'"{c}"' for c in [*row, section, name, unit, value]))
    return "\n".join(lines) + "\n"


def test_ncu_details_csv_is_condensed_per_launch_and_rendered():
    import gpu_ncu
    import gpu_report

    kernels, note = gpu_ncu.parse_details_csv(_ncu_csv(), ["T256/L8 tiled fwd", "T256/L8 blocked fwd"])
    assert note is None and [k["id"] for k in kernels] == [0, 1]
    first, second = kernels
    assert first["label"] == "T256/L8 tiled fwd" and first["grid"] == "(5, 5, 16384)"
    assert first["headline"] == {
        "duration": 1500.0,
        "sm_pct": 41.2,
        "smem_per_block": 42.1,
        "occupancy_pct": 48.5,
    }
    assert first["units"]["smem_per_block"] == "Kbyte/block" and first["units"]["duration"] == "us"
    assert first["metrics"]["Occupancy/Achieved Occupancy [%]"] == 48.5
    assert second["headline"] == {"duration": 1250.0, "theoretical_occupancy_pct": 50.0}
    _, note = gpu_ncu.parse_details_csv(_ncu_csv(), ["one label"])
    assert note == "2 kernels profiled for 1 labelled calls: labels left out"
    assert gpu_ncu.parse_details_csv("==PROF== nothing", []) == ([], "no CSV rows in ncu's output")
    report = {
        "started": "t",
        "stages": {"ncu": {"status": "ok", "result": {"ncu": "v1", "kernels": kernels}}},
    }
    text = gpu_report.render(report, "run")
    row = (
        "| T256/L8 tiled fwd | `filtered_lrelu_fused_kernel<__half, 2, 2, 12, 12>` | (5, 5, 16384) | "
        "1500.0 | 41.2 | - | 48.5 / - | - | 42.1 Kbyte/block | - | - |"
    )
    assert row in text and "Nsight Compute (v1;" in text


def test_ncu_stage_drives_ncu_and_condenses_its_export(tmp_path, monkeypatch):
    """stage_ncu against a stand-in `ncu` (the real one needs a GPU): the sections it lists, the profiling
    command (target, kernel filter, clock control, report path), the export and the labels."""
    import gpu_ncu

    calls = tmp_path / "calls.jsonl"
    csv_file = tmp_path / "details.csv"
    csv_file.write_text(_ncu_csv())
    fake = tmp_path / "bin" / "ncu"
    fake.parent.mkdir()
    fake.write_text(
        f"""#!{sys.executable}
import json, sys
argv = sys.argv[1:]
import os
open({str(calls)!r}, "a").write(json.dumps(argv) + "\\n")
open({str(calls)!r} + ".env", "a").write(os.environ.get("PYTHONPATH", "") + "\\n")
if argv == ["--list-sections"]:
    print("Identifier  Display Name\\nSpeedOfLight  GPU Speed Of Light\\nOccupancy  Occupancy")
elif argv == ["--version"]:
    print("NVIDIA (R) Nsight Compute Command Line Profiler\\nVersion 2099.1.0.0 (build 1)")
elif "--import" in argv:
    print(open({str(csv_file)!r}).read())
else:
    print("==PROF== Connected")
    print({gpu_ncu.LABELS_MARK!r} + json.dumps(["T256/L8 tiled fwd", "T256/L8 blocked fwd"]))
"""
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")  # the carried wheels on the device must stay importable
    assert gpu_ncu.ncu_path() == str(fake)
    res = gpu_ncu.stage_ncu(tmp_path, 60, ["T256/L8"])
    assert res["ok"] and res["ncu"] == "Version 2099.1.0.0 (build 1)"
    assert res["sections"] == ["SpeedOfLight", "Occupancy"] and res["labels_note"] is None
    assert [k["label"] for k in res["kernels"]] == ["T256/L8 tiled fwd", "T256/L8 blocked fwd"]
    argvs = [json.loads(line) for line in calls.read_text().splitlines()]
    profile = next(a for a in argvs if "--target" in a)
    assert profile[:8] == ["--clock-control", "none", "--kernel-name", "regex:filtered_lrelu", "-f", "-o",
                           str(tmp_path / "ncu_report"), "--section"]  # fmt: skip
    assert profile[-4:] == [sys.executable, str(Path(gpu_ncu.__file__).resolve()), "--target", "T256/L8"]
    assert ["--import", f"{tmp_path / 'ncu_report'}.ncu-rep", "--csv", "--page", "details"] in argvs
    src, scripts = str(SCRIPTS.parent / "src"), str(SCRIPTS)
    envs = (tmp_path / "calls.jsonl.env").read_text().splitlines()
    assert envs[argvs.index(profile)] == os.pathsep.join([src, scripts, "/tmp/site"])
    with pytest.raises(ValueError, match="has no layer 'L99'"):
        gpu_ncu.stage_ncu(tmp_path, 60, ["T256/L99"])


def test_ncu_layers_are_looked_up_by_generator_and_short_name():
    import gpu_ncu

    gen, layer = gpu_ncu.find_layer("R256/L7")
    assert gen == "R256" and layer["name"] == "L7_148_1024" and layer["down_filter"]["radial"]
    assert [gpu_ncu.find_layer(s)[1]["name"] for s in gpu_ncu.DEFAULT_LAYERS] == [
        "L8_148_512",
        "L10_276_256",
        "L7_148_1024",
    ]
    with pytest.raises(ValueError, match="unknown generator 'X256'"):
        gpu_ncu.find_layer("X256/L1")
    with pytest.raises(ValueError, match="T256 has no layer 'L99'; accepted: L0, L1"):
        gpu_ncu.find_layer("T256/L99")


def test_gpu_report_renders_blocked_vs_tiled_rows():
    """The kernels stage's blocked-kernel fields become one comparison row; layers without them none."""
    import gpu_report

    row = {
        "layer": "L3_52_512", "x_shape": [32, 512, 38, 38], "up": 4, "down": 2, "fp16": True,
        "cuda_fwd_ms": 2.68, "cuda_fwd_bwd_ms": 10.24, "blocked_fwd_ms": 1.34, "blocked_fwd_bwd_ms": 4.0,
        "blocked_speedup_fwd": 2.0, "blocked_speedup_fwd_bwd": 2.56, "blocked_fwd_gflops": 5072.0,
        "blocked_fwd_max_abs_diff": 1e-3, "blocked_dx_max_abs_diff": 2e-3, "blocked_fwd_rel_diff": 3e-4,
        "blocked_dx_rel_diff": 4e-4,
    }  # fmt: skip
    plain = {k: v for k, v in row.items() if not k.startswith("blocked")}
    report = {"stages": {"kernels": {"result": {"generators": {"T256": [row, plain]}}}}}
    rows = gpu_report.blocked_rows(report)
    assert rows == [
        "| T256 L3_52_512 | 4/2 | yes | 2.68 | 1.34 | 2.00x | 10.24 | 4.00 | 2.56x | 5072 "
        "| 1.0e-03 / 2.0e-03 | 3.0e-04 / 4.0e-04 |"
    ]


def test_peak_breakdown_replays_the_allocator_trace():
    """The live blocks at the highest total are grouped by the allocating sg3 code and its layer; frees of
    blocks from before the trace lower the total; the report renders the groups."""
    import gpu_memory
    import gpu_report

    def frames(site, layer=None):
        out = [{"filename": "/x/torch/functional.py", "line": 1, "name": "conv"}]
        out.append({"filename": f"/r/src/sg3/{site}", "line": 10, "name": "forward"})
        if layer:
            out.append({"filename": f"/r/src/sg3/modules/{layer}", "line": 20, "name": "forward"})
        return out

    mib = 2**20
    flrelu = frames("ops/filtered_lrelu.py", "synthesis.py")
    trace = [
        {"action": "alloc", "addr": 1, "size": 100 * mib, "frames": flrelu},
        {"action": "alloc", "addr": 2, "size": 50 * mib, "frames": flrelu},
        {"action": "free_completed", "addr": 99, "size": 30 * mib, "frames": []},  # from before the trace
        {"action": "alloc", "addr": 3, "size": 40 * mib, "frames": frames("modules/modconv.py")},
        {"action": "free_completed", "addr": 3, "size": 40 * mib, "frames": []},
        {"action": "alloc", "addr": 4, "size": 10 * mib, "frames": [{"filename": "/lib/torch/x.py"}]},
        {"action": "segment_alloc", "addr": 5, "size": 500 * mib, "frames": []},
        {"action": "free_completed", "addr": 1, "size": 100 * mib, "frames": []},
        {"action": "alloc", "addr": 6, "size": 80 * mib, "frames": frames("modules/modconv.py")},
    ]  # fmt: skip
    res = gpu_memory.analyze_trace(trace, baseline_bytes=1024 * mib, top=2)
    # Totals after each alloc: 100, 150, (-30) 160, 130, 140 (addr 1 freed: 40), then 120: peak 160 MiB.
    assert res["traced_peak_gib"] == round(160 / 1024, 3)
    assert res["peak_gib"] == round((1024 + 160) / 1024, 3)
    assert res["sites"] == [
        {"site": "ops/filtered_lrelu.py:10 forward", "layer": "synthesis.py:20 forward", "mib": 150.0,
         "blocks": 2, "largest_mib": 100.0},
        {"site": "modules/modconv.py:10 forward", "layer": "modconv.py:10 forward", "mib": 40.0, "blocks": 1,
         "largest_mib": 40.0},
    ]  # fmt: skip
    assert res["other_mib"] == 0.0 and res["events"] == len(trace)
    result = {"stylegan3-r": {"peak_breakdown": {"phase": "Gmain", **res}}}
    report = {"started": "t", "stages": {"profile": {"status": "ok", "result": result}}}
    text = gpu_report.render(report, "run")
    assert "stylegan3-r: what holds the memory at the peak of Gmain (1.16 GiB: 1.00 allocated before" in text
    assert "| 150.0 | 2 | 100.0 | `ops/filtered_lrelu.py:10 forward` | `synthesis.py:20 forward` |" in text
