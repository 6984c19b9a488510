"""The tools on bad arguments and paths: one 'prog: error:' line naming the argument or file, exit code 2."""

from __future__ import annotations

import numpy as np
import pytest

from sg3.tools import generate, spectra, sticking, video
from sg3.tools.cli_common import CliError, parse_seeds


def test_output_under_an_existing_file_is_a_clear_error(sg3_file, tmp_path, capsys):
    blocker = tmp_path / "file.png"
    blocker.write_bytes(b"x")
    code = generate.main(["--network", str(sg3_file), "--seeds", "0", "--outdir", str(blocker)])
    err = capsys.readouterr().err
    assert code == 2 and "sg3-generate: error:" in err and "file.png" in err
    code = video.main(["--network", str(sg3_file), "--seeds", "0-1", "--w-frames", "1",
                       "--output", str(blocker / "v.gif")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "sg3-video: error:" in err and "file.png" in err


def test_seeds_outside_the_random_state_range_name_the_flag():
    assert parse_seeds("4294967295") == [2**32 - 1]
    with pytest.raises(CliError, match="--seeds: seed 4294967296 .* 0..4294967295"):
        parse_seeds("4294967290-4294967296")


def test_video_fps_and_truncation_cutoff_are_checked(sg3_file, tmp_path, capsys):
    code = video.main(["--network", str(sg3_file), "--seeds", "0", "--w-frames", "1", "--fps", "0",
                       "--output", str(tmp_path / "v.gif")])  # fmt: skip
    assert code == 2 and "--fps" in capsys.readouterr().err
    code = generate.main(["--network", str(sg3_file), "--seeds", "0", "--trunc-cutoff", "-1",
                          "--outdir", str(tmp_path / "o")])  # fmt: skip
    assert code == 2 and "--trunc-cutoff" in capsys.readouterr().err


def test_spectra_sources_with_the_same_name_are_kept_apart(sg3_file, tmp_path, capsys):
    # runs/a/network-snapshot.pt and runs/b/network-snapshot.pt must not overwrite each other.
    other = tmp_path / "b" / sg3_file.name
    other.parent.mkdir()
    other.write_bytes(sg3_file.read_bytes())
    out = tmp_path / "spec"
    args = ["--source", str(sg3_file), "--source", str(other), "--num", "1", "--interp", "1"]
    assert spectra.main([*args, "--outdir", str(out)]) == 0
    assert len(list(out.glob("*-spectrum.npz"))) == 2 and len(list(out.glob("*-heatmap.png"))) == 2
    names = sorted(p.name for p in out.glob("*-spectrum.npz"))
    with np.load(out / names[0]) as a, np.load(out / names[1]) as b:
        np.testing.assert_array_equal(a["spectrum"], b["spectrum"])


def test_spectra_names_a_missing_dataset_source_and_shows_progress(sg3_file, tmp_path, capsys):
    """docs/tools.md: bad arguments give one line naming the argument and the value (it printed only
    "[Errno 2] No such file or directory: 'data/dataset.json'"), and every tool shows progress: a
    --num 1000 spectrum of a large generator ran for minutes without a sign of life."""
    missing = str(tmp_path / "data" / "dataset.json")
    code = spectra.main(["--source", missing, "--num", "2", "--outdir", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("sg3-spectra: error: --source") and missing in err
    assert len(err.strip().splitlines()) == 1
    args = ["--source", str(sg3_file), "--num", "3", "--interp", "1", "--outdir", str(tmp_path / "s")]
    assert spectra.main(args) == 0
    assert "/3" in capsys.readouterr().err  # one bar over the 3 images (one pass)


def test_a_failed_run_leaves_no_empty_output_folder_behind(sg3_file, tmp_path, capsys):
    """Every tool stopped on an error (here a missing network, or an output name PIL cannot write) left
    the output folder it had just made, empty. A folder that existed before stays, even when empty."""
    from sg3.metrics.cli import main as metrics_main

    missing = str(tmp_path / "missing.pt")
    runs = {
        "generate": lambda d: generate.main(["--network", missing, "--seeds", "0", "--outdir", str(d / "o")]),
        "grid": lambda d: generate.main(
            ["--network", missing, "--seeds", "0", "--grid", "1x1", "--output", str(d / "g.png")]
        ),  # fmt: skip
        "video": lambda d: video.main(["--network", missing, "--seeds", "0-1", "--output", str(d / "v.gif")]),
        "spectra": lambda d: spectra.main(["--source", missing, "--num", "1", "--outdir", str(d / "s")]),
        "sticking": lambda d: sticking.main(
            ["--network", str(sg3_file), "--paths", "1", "--steps", "2", "--output", str(d / "s.nope")]
        ),  # fmt: skip
        "metrics": lambda d: metrics_main(
            [f"network={sg3_file}", "metrics=[fid4]", f"data={missing}", f"out_dir={d / 'm'}"]
        ),  # fmt: skip
    }
    for name, run in runs.items():
        made = tmp_path / "new" / name / "deep"  # two folders that do not exist yet
        assert run(made) == 2, name
        assert not (tmp_path / "new" / name).exists(), f"{name} left {sorted(made.parent.rglob('*'))}"
        kept = tmp_path / "old" / name
        kept.mkdir(parents=True)
        assert run(kept) == 2, name
        assert kept.is_dir() and list(kept.iterdir()) == [], name
    capsys.readouterr()


def test_generate_grid_needs_one_seed_per_cell(sg3_file, tmp_path, capsys):
    """`--grid 3x3` with 4 seeds wrote a grid with 5 black cells, and extra seeds were dropped silently."""
    for seeds, count in (("0-3", 4), ("0-9", 10)):
        out = tmp_path / "g" / "grid.png"
        code = generate.main(
            ["--network", str(sg3_file), "--seeds", seeds, "--grid", "3x3", "--output", str(out)]
        )
        err = capsys.readouterr().err
        assert code == 2 and "--grid 3x3" in err and "9 cells" in err and f"{count} seeds" in err, err
        assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match="4 images .* 3x3"):
        generate.make_grid(np.zeros((4, 2, 2, 3), np.uint8), 3, 3)


TOOLS = {  # tool module -> (required arguments, the flag that names the network file)
    "generate": (["--seeds", "0", "--outdir", "o"], "--network"),
    "video": (["--seeds", "0-1", "--output", "o.gif"], "--network"),  # 2 keyframes: a walk that moves
    "spectra": (["--outdir", "o"], "--source"),
    "sticking": ([], "--network"),
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_each_tool_answers_bad_arguments_in_one_line_naming_them(tool, tmp_path, capsys, monkeypatch):
    """docs/tools.md promises one line naming the argument and what is accepted, exit code 2; an unknown
    option printed argparse's whole usage block (and main() raised SystemExit), and a missing network file
    did not name the flag it came from."""
    monkeypatch.chdir(tmp_path)
    mod = {"generate": generate, "video": video, "spectra": spectra, "sticking": sticking}[tool]
    required, flag = TOOLS[tool]
    parser = mod.build_parser()
    assert all(a.help for a in parser._actions), [a.dest for a in parser._actions if not a.help]
    assert mod.main(["--help"]) == 0 and "--device" in capsys.readouterr().out

    def error(args):
        code = mod.main(args)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"sg3-{tool}: error: "), err
        return err

    err = error([flag, "net.pt", *required, "--bogus", "1"])
    assert "--bogus" in err and flag in err and "--device" in err  # the accepted options
    err = error([flag, "missing.pt", *required])
    assert f"{flag} 'missing.pt'" in err and "network file not found" in err and ".pkl" in err
    assert not (tmp_path / "o").exists()


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_with_a_disallowed_global_is_one_error_line(tmp_path, capsys):
    import pickle

    bad = tmp_path / "evil.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"G_ema": _RunsCode()}, f)
    code = generate.main(["--network", str(bad), "--seeds", "0", "--outdir", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 2 and "this must never run" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sg3-generate: error:")
    assert "evil.pkl" in err and "builtins.print" in err and "allow-list" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("shard.pkl", "tar", "tar archive"),
        ("images.pt", "zip", "zip archive"),
        ("empty.ckpt", b"", "empty"),
    ],
)
def test_a_file_of_the_wrong_kind_is_named_as_such(tmp_path, capsys, name, content, says):
    import io
    import tarfile
    import zipfile

    path = tmp_path / name
    if content == "tar":  # a dataset shard given as --network
        with tarfile.open(path, "w") as t:
            info = tarfile.TarInfo("000000.png")
            info.size = 4
            t.addfile(info, io.BytesIO(b"\x89PNG"))
    elif content == "zip":  # a zip of images, not torch.save's zip
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("img000.png", b"\x89PNG")
    else:
        path.write_bytes(content)
    code = generate.main(["--network", str(path), "--seeds", "0", "--outdir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert name in err and says in err
    assert content == b"" or "truncated" not in err  # an empty file may well be an interrupted copy
    assert ".ckpt" in err and ".pt" in err and ".pkl" in err  # says what is accepted


def test_moving_a_stylegan2_names_the_flag_and_a_bad_class_names_the_value(sg2_file, tmp_path, capsys):
    out = ["--outdir", str(tmp_path / "o")]
    code = generate.main(["--network", str(sg2_file), "--seeds", "0", "--translate", "0.1,0", *out])
    err = capsys.readouterr().err
    assert code == 2 and "--translate 0.1,0" in err and "StyleGAN2" in err
    code = video.main(["--network", str(sg2_file), "--seeds", "0", "--mode", "rotate", "--frames", "2",
                       "--output", str(tmp_path / "v.gif")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--mode rotate" in err and "StyleGAN2" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "v.gif").exists()

    import torch

    from sg3.io import save_generator
    from sg3.modules.generator import Generator

    torch.manual_seed(0)
    cond = tmp_path / "cond.pt"
    save_generator(cond, Generator(z_dim=8, c_dim=4, w_dim=8, img_resolution=16, img_channels=3,
                                   channel_base=128, channel_max=16))  # fmt: skip
    code = generate.main(["--network", str(cond), "--seeds", "0", "--class", "4", *out])
    err = capsys.readouterr().err
    assert code == 2 and "--class 4:" in err and "0..3" in err
    assert generate.main(["--network", str(cond), "--seeds", "0", "--class", "3", *out]) == 0


def test_video_output_must_be_a_video_suffix(sg3_file, tmp_path, capsys):
    out = tmp_path / "new" / "spin.png"  # ffmpeg would write one PNG frame and the tool reported success
    code = video.main(["--network", str(sg3_file), "--seeds", "0", "--mode", "rotate", "--frames", "2",
                       "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--output" in err and "spin.png" in err and ".mp4" in err and ".gif" in err
    assert not (tmp_path / "new").exists()


def test_a_latent_walk_with_one_keyframe_per_cell_is_refused(sg3_file, tmp_path, capsys):
    # 2 seeds for 2 cells: each cell would show the same still image in every frame.
    out = tmp_path / "walk.gif"
    code = video.main(["--network", str(sg3_file), "--seeds", "0-1", "--grid", "2x1", "--w-frames", "2",
                       "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "1 keyframe per cell" in err and "--num-keyframes" in err and not out.exists()
    code = video.main(["--network", str(sg3_file), "--seeds", "0-1", "--grid", "2x1", "--w-frames", "2",
                       "--num-keyframes", "1", "--output", str(out)])  # fmt: skip
    assert code == 2 and "1 keyframe per cell" in capsys.readouterr().err
    assert video.main(["--network", str(sg3_file), "--seeds", "0-1", "--grid", "2x1", "--w-frames", "2",
                       "--num-keyframes", "2", "--output", str(out)]) == 0  # fmt: skip


@pytest.mark.parametrize(
    "tool, args, says",
    [
        (generate, ["--seeds", "0", "--outdir", "o", "--noise-mode", "bogus"], "--noise-mode"),
        (generate, ["--seeds", "0", "--outdir", "o", "--trunc-cutoff", "-1"], "--trunc-cutoff"),
        (generate, ["--seeds", "0", "--outdir", "o", "--device", "banana"], "--device 'banana'"),
        (video, ["--seeds", "0-3", "--output", "v.gif", "--kind", "bogus"], "--kind"),
        (video, ["--seeds", "0-4", "--grid", "2x2", "--output", "v.gif"], "2x2 grid's 4 cells"),
        (video, ["--seeds", "0-1", "--num-keyframes", "0", "--output", "v.gif"], "--num-keyframes"),
        (video, ["--seeds", "0-3", "--output", "v.gif", "--device", "banana"], "--device 'banana'"),
        (sticking, ["--paths", "0", "--output", "s.png"], "--paths"),
        (sticking, ["--output", "s.png", "--device", "banana"], "--device 'banana'"),
        (spectra, ["--outdir", "o", "--device", "banana"], "--device 'banana'"),
    ],
)
def test_flags_are_checked_before_the_network_is_read(tool, args, says, tmp_path, monkeypatch, capsys):
    """--noise-mode, --kind, --paths, the keyframe count, ... were checked only after the network had been
    loaded (minutes for a large pickle); a bad --device was a RuntimeError traceback. The network here
    does not exist, so only a check made before reading it can name the flag."""
    monkeypatch.chdir(tmp_path)
    flag = "--source" if tool is spectra else "--network"
    code = tool.main([flag, str(tmp_path / "missing.pt"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert "network file not found" not in err and list(tmp_path.iterdir()) == []


def test_generate_grid_goes_into_outdir(sg3_file, tmp_path, capsys):
    """`--grid 1x1 --outdir d --output g.png` wrote g.png and ignored --outdir without a word."""
    base = ["--network", str(sg3_file), "--seeds", "0", "--grid", "1x1"]
    assert generate.main([*base, "--outdir", str(tmp_path / "d")]) == 0
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["grid.png"]
    capsys.readouterr()
    code = generate.main([*base, "--outdir", str(tmp_path / "e"), "--output", str(tmp_path / "g.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--outdir" in err and "--output" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "e").exists()
    code = generate.main([*base[:4], "--outdir", str(tmp_path / "f"), "--output", str(tmp_path / "g.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--output" in err and "without --grid" in err, err  # was ignored too
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "f").exists()
