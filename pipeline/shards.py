"""WebDataset shards of kept clips, written atomically (temporary name, then rename).

One sample per clip: ``<clip_id>.mp4`` (the clip), ``<clip_id>.json`` (its manifest row),
``<clip_id>.txt`` (its dense caption, once captioned).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.manifest import CLIP_SCHEMA
from pipeline.records import ClipRecord


@dataclass
class ShardConfig:
    """A shard is closed at the first video boundary (or boundary between two parts of a long
    video: ``extract.part_bytes``) after it reaches either limit."""

    max_bytes: int = 512 * 2**20
    max_samples: int = 1000

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_samples < 1:
            raise ValueError("max_bytes and max_samples must be >= 1")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def row_json(row: dict) -> bytes:
    """The clip's full manifest row (every contract column, nulls included) as JSON."""
    full = {name: row.get(name) for name in CLIP_SCHEMA.names}
    return json.dumps(full, default=_json_default, ensure_ascii=False).encode("utf-8")


class ShardWriter:
    """Writes ``shard-NNNNNN.tar`` under a hidden temporary name until :meth:`commit`."""

    def __init__(self, folder: str | Path, index: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index = index
        self.name = shard_name(index)
        self.path = self.folder / self.name
        self.tmp_path = self.folder / f".{self.name}.tmp-{os.getpid()}"
        import webdataset as wds  # here, not at module level: it imports torch, which CPU workers never need

        self._file = open(self.tmp_path, "wb")
        self._tar = wds.TarWriter(self._file, mtime=0)  # reproducible tars
        self.count = 0

    @property
    def size(self) -> int:
        return self._file.tell()

    def add(self, clip: ClipRecord) -> None:
        if clip.mp4 is None:
            raise ValueError(f"clip {clip.clip_id} has no extracted mp4")
        clip.row["shard"] = self.name
        sample = {"__key__": clip.clip_id, "mp4": clip.mp4, "json": row_json(clip.row)}
        if clip.row.get("caption"):
            sample["txt"] = clip.row["caption"].encode("utf-8")
        self._tar.write(sample)
        self.count += 1

    def commit(self) -> None:
        """Flush, fsync and rename into place: a shard is either complete or invisible."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        """Drop the shard: its temporary file is removed, also when closing it fails (a full disk)."""
        for close in (self._tar.close, self._file.close):
            try:
                close()
            except (OSError, ValueError):
                pass
        self.tmp_path.unlink(missing_ok=True)
