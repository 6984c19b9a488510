"""Our own files: exported generators, training checkpoints, atomic writes, sg3-import, lazy sg3 import."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys

import pytest
import torch

import sg3
import sg3.io
from sg3.io import atomic_write, import_main, load_generator, load_networks, save_generator
from sg3.modules.discriminator import Discriminator
from sg3.modules.generator import Generator
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator

G_KWARGS = dict(
    z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=512, channel_max=16
)


def _trained(module):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return module.eval()


def test_save_and_load_generator_weights_only(tmp_path):
    G = _trained(Generator(**G_KWARGS))
    path = tmp_path / "g.pt"
    save_generator(path, G, meta={"kimg": 12})
    obj = torch.load(path, weights_only=True)
    assert (obj["format"], obj["version"], obj["kind"]) == ("sg3-generator", 1, "stylegan3")
    assert obj["init_kwargs"] == G.init_kwargs and obj["meta"] == {"kimg": 12}
    assert list(obj["state_dict"]) == list(G.state_dict())
    loaded = sg3.load_generator(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z, None), G(z, None))
    assert list(tmp_path.iterdir()) == [path], "no temporary files left behind"
    with pytest.raises(TypeError, match="JSON-able"):
        save_generator(tmp_path / "bad.pt", G, meta={"x": object()})
    with pytest.raises(TypeError, match="generator"):
        save_generator(tmp_path / "d.pt", Discriminator(c_dim=0, img_resolution=16, img_channels=3))


def test_load_from_training_checkpoint(tmp_path):
    G = _trained(StyleGAN2Generator(**G_KWARGS))
    G_ema = _trained(StyleGAN2Generator(**G_KWARGS))
    D = _trained(Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=16))
    state_dict = {}
    for name, net in (("G", G), ("D", D), ("G_ema", G_ema)):
        state_dict.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    ckpt = {
        "epoch": 0,
        "state_dict": state_dict,
        "sg3": {
            "format": "sg3-checkpoint",
            "version": 1,
            "networks": {
                "G": {"kind": "stylegan2", "init_kwargs": G.init_kwargs},
                "D": {"kind": "discriminator", "init_kwargs": D.init_kwargs},
                "G_ema": {"kind": "stylegan2", "init_kwargs": G_ema.init_kwargs},
                "augment_pipe": None,
            },
            "config": {"seed": 0},
            "counters": {"cur_nimg": 64, "cur_tick": 1, "batch_idx": 2},
        },
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    nets = load_networks(path)
    assert nets["augment_pipe"] is None and nets["meta"]["counters"]["cur_nimg"] == 64
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(
            nets["D"](G(z, None, noise_mode="const"), None), D(G(z, None, noise_mode="const"), None)
        )
        assert torch.equal(
            load_generator(path)(z, None, noise_mode="const"), G_ema(z, None, noise_mode="const")
        )

    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an sg3 generator"):
        load_networks(tmp_path / "other.pt")
    del state_dict["G_ema.mapping.w_avg"]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="G_ema.*do not match"):
        load_networks(path)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"


def test_import_cli(tmp_path, official_pickler, capsys):
    G = _trained(Generator(**G_KWARGS)).requires_grad_(False)
    src, dst = tmp_path / "net.pkl", tmp_path / "net.pt"
    official_pickler(src, {"G": G, "G_ema": G, "D": None, "augment_pipe": None, "training_set_kwargs": None})
    assert import_main([str(src), str(dst)]) == 0
    assert "stylegan3 generator 16x16x3" in capsys.readouterr().out
    obj = torch.load(dst, weights_only=True)
    assert obj["meta"]["source"] == "net.pkl" and len(obj["meta"]["source_sha256"]) == 64
    z = torch.randn(1, 8)
    assert torch.equal(load_generator(dst)(z, None), G(z, None))
    with pytest.raises(SystemExit):
        import_main([str(src), str(dst)])
    assert "--force" in capsys.readouterr().err
    assert import_main([str(src), str(dst), "--force"]) == 0

    with open(src, "wb") as f:
        pickle.dump({"G_ema": print}, f)
    assert import_main([str(src), str(tmp_path / "x.pt")]) == 2  # like the other tools: stderr, exit code 2
    err = capsys.readouterr().err
    assert "sg3-import: error:" in err and "refusing global 'builtins.print'" in err
    assert not (tmp_path / "x.pt").exists()


def test_import_sg3_is_cheap_and_load_generator_is_lazy():
    code = "import sys, sg3; assert 'torch' not in sys.modules, 'import sg3 must not import torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert sg3.load_generator is sg3.io.load_generator
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sg3.nope  # noqa: B018


def test_truncated_or_empty_files_fail_with_the_path(tmp_path, capsys):
    """A half-copied snapshot gives a ValueError naming the file (the tools print it), not a bare
    'OSError: [Errno 22] Invalid argument' / 'EOFError: Ran out of input' traceback."""
    good = tmp_path / "g.pt"
    save_generator(good, Generator(**G_KWARGS))
    data = good.read_bytes()
    cases = {
        "empty.pkl": b"",
        "half.pt": data[: len(data) // 2],
        "head.pt": data[:100],
        "half.pkl": pickle.dumps({"G_ema": None, "pad": list(range(100))}, protocol=4)[:30],
    }
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=rf"{name}.*(truncated|corrupt)"):
            load_generator(path)
    assert import_main([str(tmp_path / "empty.pkl"), str(tmp_path / "out.pt")]) == 2
    assert "empty.pkl" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()


def test_damaged_generator_files_fail_with_the_path(tmp_path):
    """Random byte changes in an exported generator: it loads (the change hit tensor bytes, which the zip
    format does not check) or fails with a ValueError naming the file; before, the pickle part's damage
    escaped as torch's UnpicklingError ('Weights only load failed ...') or a UnicodeDecodeError."""
    good = tmp_path / "g.pt"
    save_generator(good, Generator(**G_KWARGS))
    data = good.read_bytes()
    start = data.index(b"data.pkl") + 8  # damage the pickled structure (and what follows it)
    rng = random.Random(1)
    failed = 0
    for i in range(60):
        buf = bytearray(data)
        buf[rng.randrange(start, start + 3000)] = rng.randrange(256)
        bad = tmp_path / f"bad{i}.pt"
        bad.write_bytes(bytes(buf))
        try:
            load_generator(bad)
        except ValueError as err:
            assert str(bad) in str(err), str(err)
            failed += 1
    assert failed >= 10


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_fails_with_the_path_and_the_free_space(tmp_path, monkeypatch):
    """A full disk: 'No space left on device' or torch's 'unexpected pos 704 vs 598', naming no file."""
    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        return real_open("/dev/full" if ".tmp-" in str(path) else path, mode, *args, **kwargs)

    monkeypatch.setattr(sg3.io, "open", full_disk_open, raising=False)
    path = tmp_path / "ckpt-000000004.ckpt"
    path.write_bytes(b"old")
    with pytest.raises(
        (OSError, RuntimeError), match=r"could not write .*ckpt-000000004\.ckpt: .*MiB free"
    ) as err:
        with atomic_write(path) as f:
            torch.save({"w": torch.zeros(100_000)}, f)
    assert err.value.__cause__ is not None and path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_import_of_an_sg3_file_says_no_import_is_needed(tmp_path, capsys):
    """`sg3-import net.pt out.pt` on sg3's own export (a torch zip) said 'not a complete pickle (truncated or
    corrupt file?): persistent IDs in protocol 0 must be ASCII strings' about a perfectly good file."""
    src = tmp_path / "network-snapshot-000000.pt"
    save_generator(src, Generator(**G_KWARGS))
    assert import_main([str(src), str(tmp_path / "out.pt")]) == 2
    out = capsys.readouterr().err
    assert "network-snapshot-000000.pt" in out and "corrupt" not in out and "no import needed" in out
    assert not (tmp_path / "out.pt").exists()
