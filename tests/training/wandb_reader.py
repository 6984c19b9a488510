"""Read a W&B offline run (`run-*.wandb`) back: history rows, config and summary (wandb 0.31 format)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb


def iter_records(path: Path, block: int = 32768) -> Iterator[bytes]:
    """Records of the LevelDB-log framed file (7-byte header ':W&B' 0xBEE1 v0)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - (pos % block)
        if left < 7:
            pos += left
            continue
        _crc, length, rtype = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        chunk = data[pos : pos + length]
        pos += length
        if rtype == 0 and length == 0:
            break
        if rtype == 1:
            yield chunk
        elif rtype == 2:
            buf = chunk
        elif rtype == 3:
            buf += chunk
        elif rtype == 4:
            yield buf + chunk
            buf = b""


def read_run(run_dir: Path) -> tuple[list[dict], dict, str]:
    """(history rows, config, run id) of one offline run directory."""
    history, config, run_id = [], {}, ""
    for raw in iter_records(next(run_dir.glob("run-*.wandb"))):
        r = pb.Record()
        r.ParseFromString(raw)
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            )
        elif kind == "run":
            run_id = r.run.run_id
            config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in r.config.update})
    return history, config, run_id


def read_artifacts(run_dir: Path) -> list[dict]:
    """Artifacts logged by one offline run: name, type, metadata and the file paths of the manifest."""
    found = []
    for raw in iter_records(next(run_dir.glob("run-*.wandb"))):
        r = pb.Record()
        r.ParseFromString(raw)
        if r.WhichOneof("record_type") == "artifact":
            a = r.artifact
            found.append({
                "name": a.name,
                "type": a.type,
                "metadata": json.loads(a.metadata or "{}"),
                "files": sorted(e.path for e in a.manifest.contents),
            })  # fmt: skip
    return found
