"""sg3-metrics (Hydra) on a tiny exported generator: output lines, JSON lines, clear errors."""

from __future__ import annotations

import json
import time

import torch
from metrics_testkit import tiny_generator

from sg3.io import save_generator
from sg3.metrics.cli import main


def _net(tmp_path):
    path = tmp_path / "net.pt"
    save_generator(path, tiny_generator())
    return path


def test_cli_prints_and_appends_jsonl(tmp_path, capsys):
    net = _net(tmp_path)
    assert main([f"network={net}", "metrics=[eqt8_int]", "seed=1", "progress=false"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("eqt8_int ") and float(out[0].split()[1]) > 40
    line = json.loads((tmp_path / "metric-eqt8_int.jsonl").read_text())
    assert line["metric"] == "eqt8_int" and line["seed"] == 1 and line["network"] == str(net)
    assert line["results"]["eqt8_int"] == float(out[0].split()[1]) or abs(
        line["results"]["eqt8_int"] - float(out[0].split()[1])) < 1e-3  # fmt: skip


def test_cli_errors_name_the_problem(tmp_path, capsys, monkeypatch):
    net = _net(tmp_path)
    assert main([f"network={net}", "metrics=[eqt8_nope]"]) == 2
    assert "unknown metric 'eqt8_nope'" in capsys.readouterr().err
    assert main([f"network={tmp_path / 'missing.pt'}", "metrics=[eqr4]"]) == 2
    assert "network file not found" in capsys.readouterr().err
    assert main([f"network={net}", "metrics=[fid1k_full]"]) == 2
    assert "add data=" in capsys.readouterr().err
    # Real data but no detector weights and no internet: fails fast and says what to put where.
    from sg3.data.demo import ensure_demo_dataset

    data = ensure_demo_dataset(root=str(tmp_path / "demo"), resolution=16, count=8)
    monkeypatch.setenv("SG3_METRICS_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    t0 = time.perf_counter()
    code = main([f"network={net}", "metrics=[fid1k_full]", f"data={data}", f"weights_dir={tmp_path / 'w'}",
                 f"cache_dir={tmp_path / 'c'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - t0 < 30
    assert "weights-inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "w") in err
    assert "https://github.com/toshas/torch-fidelity/releases" in err


def test_cli_setting_errors_are_one_line_naming_the_key(tmp_path, capsys, monkeypatch):
    net = _net(tmp_path)

    def error(args):
        code = main(args)
        err = capsys.readouterr().err.strip()
        assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
        return err

    assert "network=" in error(["metrics=[eqr4]"]) and ".ckpt" in error(["metrics=[eqr4]"])
    assert "metrics=[]" in error([f"network={net}", "metrics=[]"])
    err = error([f"network={net}", "metrics=[eqr4]", "device=banana"])
    assert "device='banana'" in err and "cuda" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = error([f"network={net}", "metrics=[eqr4]", "device=cuda"])
    assert "device='cuda'" in err and "device=cpu" in err
    err = error([f"network={net}", "metrics=[eqr4]", "seed=abc"])
    assert "seed='abc'" in err
    missing = tmp_path / "nowhere" / "dataset.json"
    err = error([f"network={net}", "metrics=[fid4_full]", f"data={missing}"])
    assert f"data={str(missing)!r}" in err and "sg3-dataset" in err
    err = error([f"network={net}", "metrics=[fid4_full]", f"data={missing.parent}"])
    assert f"data={str(missing.parent)!r}: not found" in err and "sg3-dataset" in err
    # An out_dir that cannot be made fails before any metric runs (not after an hour of FID).
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = error([f"network={net}", "metrics=[eqr4]", f"out_dir={blocker / 'sub'}"])
    assert "out_dir=" in err and str(blocker / "sub") in err


def test_cli_checks_every_detector_file_before_the_first_metric_runs(tmp_path, capsys, monkeypatch):
    import sg3.metrics.cli as cli

    net = _net(tmp_path)
    ran = []
    real_compute = cli.compute
    monkeypatch.setattr(cli, "compute", lambda name, *a, **k: ran.append(name) or real_compute(name, *a, **k))
    monkeypatch.setenv("SG3_METRICS_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    code = main([f"network={net}", "metrics=[eqt4_int,ppl2_wend]", f"weights_dir={tmp_path / 'w'}",
                 "progress=false"])  # fmt: skip
    assert code == 2 and "weights-vgg16-lpips.pth" in capsys.readouterr().err
    assert ran == []  # eqt4_int did not run first


def test_help_names_the_tool_and_shows_an_example(capsys):
    """`sg3-metrics --help` said 'cli is powered by Hydra.', an empty 'Configuration groups' section and no
    example or explanation of the keys."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "cli is powered" not in out and "sg3-metrics network=" in out
    assert "weights_dir" in out and "docs/metrics.md" in out


def test_cli_reads_the_network_file_once_for_a_legacy_metric(tmp_path, monkeypatch):
    """With mirror= unset, a legacy fid/kid/pr read the network file a second time (load_network, then
    training_mirror -> load_networks): an official 1024 pickle is read and rebuilt twice."""
    import sg3.io
    import sg3.metrics.cli as cli
    from sg3.data.demo import ensure_demo_dataset

    net = tmp_path / "run" / "network-snapshot-000000.pt"
    net.parent.mkdir()
    save_generator(net, tiny_generator())
    (net.parent / "config.yaml").write_text("data:\n  mirror: true\n")  # the run's config (sg3-train)
    data = ensure_demo_dataset(root=str(tmp_path / "demo"), resolution=16, count=8)
    reads, seen = [], []
    real_load = sg3.io.load_networks
    monkeypatch.setattr(sg3.io, "load_networks", lambda path: reads.append(str(path)) or real_load(path))
    monkeypatch.setattr(
        cli, "compute", lambda name, G, *, data, **kw: seen.append(data.mirror) or {name: 1.0}
    )
    monkeypatch.setattr(cli, "get_detector", lambda kind, opts: None)  # no detector weights here
    assert cli.main([f"network={net}", f"data={data}", "metrics=[fid50k]", "progress=false"]) == 0
    assert reads == [str(net)] and seen == [True]


def test_cli_unknown_keys_and_unbracketed_lists_are_one_line_errors(tmp_path, capsys):
    """Hydra answered `bogus=1` with six lines, exit code 1 and the advice to write `+bogus=1` (which would
    then be ignored), and `metrics=a,b` with a four-line 'Ambiguous value' block."""
    net = _net(tmp_path)
    assert main([f"network={net}", "bogus=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'bogus'" in err and "network" in err and "out_dir" in err, err
    assert main([f"network={net}", "metrics=eqt4_int,eqr4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics=[eqt4_int,eqr4]" in err, err


def test_cli_eq_metric_on_stylegan2_names_the_metric_before_any_work(tmp_path, capsys, monkeypatch):
    """An EQ metric on a StyleGAN2 network stopped with the bare equivariance TypeError, which does not
    say which metric; sg3-train's preflight (`check_metrics`) names it. Nothing may run first."""
    import sg3.metrics.cli as cli
    from sg3.modules.stylegan2 import Generator as StyleGAN2Generator

    net = tmp_path / "sg2.pt"
    torch.manual_seed(0)
    save_generator(net, StyleGAN2Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                           channel_base=64, channel_max=16).eval())  # fmt: skip
    ran = []
    monkeypatch.setattr(cli, "compute", lambda name, *a, **k: ran.append(name) or {name: 1.0})
    monkeypatch.setattr(cli, "get_detector", lambda kind, opts: ran.append(kind))
    code = main([f"network={net}", "metrics=[is4,eqt4_int,eqr4]", "progress=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and ran == [], err
    assert "metrics 'eqt4_int', 'eqr4' cannot run:" in err and "StyleGAN3" in err
    assert not list(tmp_path.glob("metric-*.jsonl"))
