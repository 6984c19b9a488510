"""Each tool's CLI on tiny network files: the promised files, the numbers, and clear errors."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from sg3.tools import generate, spectra, sticking, video
from sg3.tools.cli_common import CliError, parse_seeds


def test_parse_seeds_ranges_and_lists():
    assert parse_seeds("0,1,4-6") == [0, 1, 4, 5, 6]
    assert parse_seeds("7") == [7]
    for bad in ["1-", "a", "3-1", "1,,2", "-2"]:
        with pytest.raises(CliError, match="--seeds"):
            parse_seeds(bad)


def test_generate_outdir_grid_and_transform(sg3_file, tmp_path, capsys):
    assert (
        generate.main(["--network", str(sg3_file), "--seeds", "0-1,5", "--outdir", str(tmp_path / "o")]) == 0
    )
    files = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert files == ["seed0000.png", "seed0001.png", "seed0005.png"]
    a = np.asarray(PIL.Image.open(tmp_path / "o" / "seed0000.png"))
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8 and a.std() > 0
    # Deterministic per seed: the same seed in a grid gives the same pixels.
    out = tmp_path / "g.png"
    assert (
        generate.main(["--network", str(sg3_file), "--seeds", "0,1", "--grid", "2x1", "--output", str(out)])
        == 0
    )
    g = np.asarray(PIL.Image.open(out))
    assert g.shape == (16, 32, 3) and np.array_equal(g[:, :16], a)
    generate.main(
        ["--network", str(sg3_file), "--seeds", "0", "--translate", "0.25,0", "--outdir", str(tmp_path / "t")]
    )
    t = np.asarray(PIL.Image.open(tmp_path / "t" / "seed0000.png")).astype(int)
    a = a.astype(int)
    # Translating the input grid by a quarter image moves the content by 4 pixels along x.
    assert np.abs(t[:, 4:] - a[:, :-4]).mean() < 0.25 * np.abs(t - a).mean()
    generate.main(
        ["--network", str(sg3_file), "--seeds", "0", "--rotate", "90", "--outdir", str(tmp_path / "r")]
    )
    r = np.asarray(PIL.Image.open(tmp_path / "r" / "seed0000.png")).astype(int)
    assert np.abs(r - a).mean() > 3


def test_generate_errors_are_clear(sg3_file, sg2_file, tmp_path, capsys):
    assert (
        generate.main(["--network", str(tmp_path / "nope.pt"), "--seeds", "0", "--outdir", str(tmp_path)])
        == 2
    )
    assert "network file not found" in capsys.readouterr().err
    assert generate.main(["--network", str(sg3_file), "--seeds", "0-x", "--outdir", str(tmp_path)]) == 2
    assert "--seeds: malformed item '0-x'" in capsys.readouterr().err
    assert (
        generate.main(
            ["--network", str(sg2_file), "--seeds", "0", "--rotate", "5", "--outdir", str(tmp_path)]
        )
        == 2
    )
    assert "G.synthesis.input.transform" in capsys.readouterr().err
    assert generate.main(["--network", str(sg2_file), "--seeds", "0", "--noise-mode", "random",
                          "--outdir", str(tmp_path / "sg2")]) == 0  # fmt: skip


def test_video_latent_and_rotation(sg3_file, tmp_path):
    gif = tmp_path / "lerp.gif"
    assert video.main(["--network", str(sg3_file), "--seeds", "0-3", "--grid", "2x1", "--w-frames", "2",
                       "--output", str(gif)]) == 0  # fmt: skip
    frames = video.imageio.mimread(gif)
    assert len(frames) == 4 and frames[0].shape[:2] == (16, 32)  # K=2 keyframes x 2 frames, looping
    mp4 = tmp_path / "rot.mp4"
    assert video.main(["--network", str(sg3_file), "--seeds", "1", "--mode", "rotate", "--frames", "4",
                       "--output", str(mp4)]) == 0  # fmt: skip
    written = mp4 if mp4.exists() else mp4.with_suffix(".gif")
    assert written.stat().st_size > 0


def test_spectra_writes_arrays_heatmaps_and_slices(sg3_file, tmp_path):
    out = tmp_path / "spec"
    assert spectra.main(["--source", str(sg3_file), "--num", "3", "--interp", "2", "--outdir", str(out)]) == 0
    with np.load(out / "tiny-sg3t-spectrum.npz") as f:
        assert f["spectrum"].shape == (32, 32) and int(f["image_size"]) == 16
        assert np.all(f["spectrum"] >= 0) and f["spectrum"].sum() > 0
    assert (out / "tiny-sg3t-heatmap.png").stat().st_size > 0 and (out / "slices.png").stat().st_size > 0
    from sg3.data.demo import ensure_demo_dataset

    data = ensure_demo_dataset(root=str(tmp_path / "demo"), resolution=16, count=6)
    assert spectra.main(["--source", data, "--num", "4", "--interp", "2", "--outdir", str(out / "d")]) == 0
    (npz,) = (out / "d").glob("*-spectrum.npz")
    with np.load(npz) as f:
        assert f["spectrum"].shape == (32, 32) and f["spectrum"].sum() > 0
    sl = spectra.slices(np.ones((32, 32)), 16)
    assert np.allclose(sl["0deg"][1], 0) and sl["0deg"][0][0] == 0


def test_sticking_score_separates_positional_references_from_stylegan3(sg3_file, sg2_file, tmp_path, capsys):
    out = tmp_path / "stick.png"
    args = ["--network", str(sg2_file), "--network", str(sg3_file), "--label", "sg2", "--label", "sg3t"]
    assert sticking.main([*args, "--paths", "4", "--steps", "6", "--output", str(out)]) == 0
    scores = dict(
        line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith("wrote")
    )
    assert float(scores["sg2"]) > 0.4 and float(scores["sg3t"]) < 0.2
    img = PIL.Image.open(out)
    assert img.size[0] == 2 * 192 + 8 and img.size[1] > 2 * 192


def test_high_frequency_energy_is_zero_for_flat_images():
    import torch

    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(sticking.high_frequency_energy(flat), torch.zeros(2), atol=1e-12)
    checker = (torch.arange(64).reshape(8, 8) % 2).float().expand(1, 3, 8, 8)
    assert sticking.high_frequency_energy(checker).item() > 0.05
    with pytest.raises(ValueError, match="images"):
        sticking.high_frequency_energy(flat[0])
