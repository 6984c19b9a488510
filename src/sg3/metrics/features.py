"""Feature detectors for FID/KID/PR/IS/PPL, built from torch-fidelity's networks, offline-first.

A *detector* is any callable module that maps uint8 RGB images `[N, 3, H, W]` to float features
`[N, D]` and has a string attribute `name` (used in cache keys). The metrics ask for a detector by
kind:

| kind | network (torch-fidelity) | output |
|---|---|---|
| `inception` | InceptionV3 (TF FID port), pool features | `[N, 2048]` |
| `inception_probs` | InceptionV3, softmax of the unbiased logits | `[N, 1008]` |
| `vgg16` | VGG16 (torchvision ImageNet weights), fc2 after ReLU | `[N, 4096]` |
| `lpips` | VGG16 LPIPS distance (a pair function, see `LpipsDistance`) | `[N]` |

Weights are looked up, in order, in the configured weights folder (argument, else
`$SG3_METRICS_WEIGHTS`, else `~/.cache/sg3/metrics`), its `checkpoints/` subfolder and torch hub's
checkpoint folder (`$TORCH_HOME/hub/checkpoints`). A missing file is downloaded only after a
connection check that gives up within seconds; with no file and no network a `DetectorWeightsError`
names the file, the folder to put it in and the URL it comes from. Tests and users can inject their
own detectors (any module with the interface above) instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

__all__ = [
    "NEEDS",
    "WEIGHT_FILES",
    "DetectorWeightsError",
    "check_weights",
    "LpipsDistance",
    "default_weights_dir",
    "find_weights",
    "load_detector",
]


@dataclass(frozen=True)
class WeightFile:
    """A detector weights file: its name and where it is downloaded from."""

    filename: str
    url: str


WEIGHT_FILES: dict[str, WeightFile] = {
    "inception": WeightFile(
        "weights-inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
    ),
    "vgg16": WeightFile("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "lpips": WeightFile(
        "weights-vgg16-lpips.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-vgg16-lpips.pth",
    ),
}
# The weights files (keys of WEIGHT_FILES) each detector kind loads.
NEEDS: dict[str, tuple[str, ...]] = {
    "inception": ("inception",),
    "inception_probs": ("inception",),
    "vgg16": ("vgg16",),
    "lpips": ("lpips", "vgg16"),
}
CONNECT_TIMEOUT_S = 5.0


class DetectorWeightsError(FileNotFoundError):
    """A detector's weights file is missing and could not be downloaded."""


def default_weights_dir() -> Path:
    """The weights folder: `$SG3_METRICS_WEIGHTS`, else `~/.cache/sg3/metrics`."""
    env = os.environ.get("SG3_METRICS_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sg3" / "metrics"


def _candidates(filename: str, weights_dir: Path) -> list[Path]:
    return [
        weights_dir / filename,
        weights_dir / "checkpoints" / filename,
        Path(torch.hub.get_dir()) / "checkpoints" / filename,
    ]


def _reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds (DNS included)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection((parts.hostname, port), timeout=timeout):
            ok.append(True)

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    t.start()
    t.join(timeout)
    return bool(ok)


def _download(wf: WeightFile, dest: Path, url: str, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    log.info("downloading %s to %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def find_weights(
    key: str,
    weights_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    url: str | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Path:
    """Locate (or fetch) one detector weights file.

    Args:
        key: Which file: 'inception', 'vgg16' or 'lpips'.
        weights_dir: Folder searched first and downloaded into; None = `default_weights_dir()`.
        download: Try to download a missing file; None = yes unless `$SG3_METRICS_OFFLINE` is set.
        url: Override of the download URL (tests); None = the official one.
        timeout: Seconds allowed for the connection check and each read of the download.

    Returns:
        Path of the existing file.

    Raises:
        DetectorWeightsError: missing and not downloadable; the message says what to put where.
    """
    path = _resolve_weights(key, weights_dir, download, url, timeout, fetch=True)
    assert path is not None  # fetch=True returns a file or raises
    return path


def check_weights(
    key: str,
    weights_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    url: str | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Path | None:
    """`find_weights` without the download: whether the file will be there when a detector needs it.

    Args: as for `find_weights`.

    Returns:
        Path of the existing file, or None when it is missing but `find_weights` would download it (downloads
        allowed and the host answers the connection check).

    Raises:
        DetectorWeightsError: the error `find_weights` would raise (missing and not downloadable).
    """
    return _resolve_weights(key, weights_dir, download, url, timeout, fetch=False)


def _resolve_weights(
    key: str,
    weights_dir: str | os.PathLike | None,
    download: bool | None,
    url: str | None,
    timeout: float,
    fetch: bool,
) -> Path | None:
    """`find_weights` (`fetch=True`) and `check_weights` (`fetch=False`: a download is only probed)."""
    if key not in WEIGHT_FILES:
        raise ValueError(f"unknown weights key {key!r}; accepted: {sorted(WEIGHT_FILES)}")
    wf = WEIGHT_FILES[key]
    wdir = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    for p in _candidates(wf.filename, wdir):
        if p.is_file():
            return p
    if download is None:
        download = not os.environ.get("SG3_METRICS_OFFLINE")
    src = url or wf.url
    why = "downloads are disabled ($SG3_METRICS_OFFLINE or download=False)"
    if download:
        if _reachable(src, timeout):
            if not fetch:
                return None
            try:
                _download(wf, wdir / wf.filename, src, timeout)
                return wdir / wf.filename
            except OSError as e:
                why = f"the download failed: {e}"
        else:
            why = f"{urllib.parse.urlsplit(src).hostname} is not reachable (no internet?)"
    raise DetectorWeightsError(
        f"detector weights file {str(wdir / wf.filename)!r} not found and {why}. Download it from {src} on a "
        f"machine with internet and put it in {wdir} (or name the folder holding it: $SG3_METRICS_WEIGHTS, "
        "weights_dir=DIR for sg3-metrics, metrics.weights_dir=DIR for sg3-train; "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'} is searched too)."
    )


@contextlib.contextmanager
def _hub_dir_with(files: dict[str, Path]) -> Iterator[None]:
    """Point torch.hub at a temporary folder whose `checkpoints/` links the given files (no downloads)."""
    old = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="sg3-hub-") as tmp:
        ck = Path(tmp) / "checkpoints"
        ck.mkdir()
        for name, path in files.items():
            (ck / name).symlink_to(path.resolve())
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(old)


class _FidelityDetector(torch.nn.Module):
    """Wraps a torch-fidelity feature extractor as `uint8 [N,3,H,W] -> float [N, D]`."""

    def __init__(self, name: str, extractor: torch.nn.Module, softmax: bool = False) -> None:
        super().__init__()
        self.name = name
        self.extractor = extractor
        self.softmax = softmax

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        (feat,) = self.extractor(images)
        feat = feat.float()
        return torch.softmax(feat, dim=1) if self.softmax else feat


class LpipsDistance(torch.nn.Module):
    """LPIPS (VGG16) distance between two uint8 image batches: `(a, b) -> [N]`."""

    def __init__(self, similarity: torch.nn.Module) -> None:
        super().__init__()
        self.name = "lpips-vgg16"
        self.similarity = similarity

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.similarity(a, b).reshape(a.shape[0]).float()


def load_detector(
    kind: str,
    device: torch.device | str = "cpu",
    weights_dir: str | os.PathLike | None = None,
    download: bool | None = None,
) -> torch.nn.Module:
    """Build a detector of the given kind from torch-fidelity with locally found weights.

    Args:
        kind: 'inception', 'inception_probs', 'vgg16' or 'lpips' (see the module docstring).
        device: Device the detector runs on.
        weights_dir: Folder holding the weights files; None = `default_weights_dir()`.
        download: Allow downloading missing files; None = yes unless `$SG3_METRICS_OFFLINE` is set.

    Returns:
        The detector module in eval mode.
    """
    if kind not in NEEDS:
        raise ValueError(f"unknown detector kind {kind!r}; accepted: {sorted(NEEDS)}")
    paths = {WEIGHT_FILES[k].filename: find_weights(k, weights_dir, download) for k in NEEDS[kind]}
    with _hub_dir_with(paths):
        if kind in ("inception", "inception_probs"):
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            feature = "2048" if kind == "inception" else "logits_unbiased"
            path = paths[WEIGHT_FILES["inception"].filename]
            fe = FeatureExtractorInceptionV3(
                "inception-v3-compat", [feature], feature_extractor_weights_path=str(path)
            )
            det: torch.nn.Module = _FidelityDetector(
                f"inception-{feature}", fe, softmax=kind == "inception_probs"
            )
        elif kind == "vgg16":
            from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

            path = paths[WEIGHT_FILES["vgg16"].filename]
            fe = FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(path))
            det = _FidelityDetector("vgg16-fc2_relu", fe)
        else:
            from torch_fidelity.sample_similarity_lpips import SampleSimilarityLPIPS

            det = LpipsDistance(SampleSimilarityLPIPS("lpips-vgg16", sample_similarity_resize=None))
    return det.to(device).eval()
