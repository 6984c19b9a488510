"""The tools on bad arguments and paths: one 'prog: error:' line naming the argument or file, exit code 2."""

from __future__ import annotations

import numpy as np

from sg3.tools import spectra


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
