"""The in-flight records that pipeline stages pass to each other (one per input video).

A :class:`VideoRecord` travels through Ray Data as one row (column ``record``); stages fill in
its ``video`` manifest row, its candidate clips (each a :class:`ClipRecord` holding its
``clips.parquet`` row, and once extracted its mp4 bytes) and keyframes. The sink turns records
into shards and manifest rows (see :mod:`pipeline.manifest`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class KeyframeSpool:
    """One scan's keyframe JPEGs in an anonymous temporary file on the worker's disk (gone once
    closed or collected): a long video's keyframes (~45 KiB per second of footage) wait there, not in
    memory, until the clips holding them leave the worker."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="vidforge-keyframes-")

    def put(self, data: bytes) -> tuple[int, int]:
        """Append ``data``; returns where it lies (offset, length)."""
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(data)
        return offset, len(data)

    def get(self, where: tuple[int, int]) -> bytes:
        self._file.seek(where[0])
        return self._file.read(where[1])


class Keyframe:
    """One keyframe kept by the scan for the model stages: RGB JPEG at ``scan.keyframe_short_side``.

    With a ``spool`` the JPEG waits in it (:attr:`spooled`) and is read back when used or pickled:
    a keyframe always leaves its process with its bytes.
    """

    __slots__ = ("frame_index", "time_s", "_jpeg", "_spool", "_where")

    def __init__(self, frame_index: int, time_s: float, jpeg: bytes, spool: KeyframeSpool | None = None) -> None:
        self.frame_index = frame_index
        self.time_s = time_s
        self._spool = spool
        self._where = spool.put(jpeg) if spool is not None else None
        self._jpeg = None if spool is not None else jpeg

    @property
    def jpeg(self) -> bytes:
        return self._jpeg if self._spool is None else self._spool.get(self._where)

    @property
    def spooled(self) -> bool:
        return self._spool is not None

    @property
    def nbytes(self) -> int:
        """The JPEG's size (without reading it back)."""
        return self._where[1] if self._spool is not None else len(self._jpeg)

    def __getstate__(self) -> tuple[int, float, bytes]:
        return self.frame_index, self.time_s, self.jpeg

    def __setstate__(self, state: tuple[int, float, bytes]) -> None:
        self.frame_index, self.time_s, self._jpeg = state
        self._spool = self._where = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyframe):
            return NotImplemented
        return (self.frame_index, self.time_s, self.jpeg) == (other.frame_index, other.time_s, other.jpeg)

    def __repr__(self) -> str:
        return f"Keyframe(frame_index={self.frame_index}, time_s={self.time_s:.3f}, {'spooled' if self.spooled else 'in memory'})"

    def image(self) -> np.ndarray:
        """Decode to an RGB ``uint8`` array of shape (H, W, 3)."""
        import cv2

        bgr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        return bgr[:, :, ::-1].copy()


@dataclass
class ClipRecord:
    """A candidate clip: its ``clips.parquet`` row, its mp4 once extracted, its keyframes."""

    row: dict[str, Any]
    mp4: bytes | None = None
    keyframes: list[Keyframe] = field(default_factory=list)
    # stage-to-stage data never written to the manifest (e.g. CLIP keyframe embeddings)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def clip_id(self) -> str:
        return self.row["clip_id"]

    @property
    def kept(self) -> bool:
        return bool(self.row.get("kept"))

    def reject(self, reason: str) -> None:
        """Mark the clip rejected (the first reason wins) and drop its payload."""
        if self.row.get("kept", True):
            self.row["kept"] = False
            self.row["reject_reason"] = reason
        self.mp4 = None


@dataclass
class VideoRecord:
    """One input video on its way through the pipeline."""

    path: str
    video: dict[str, Any] = field(default_factory=dict)
    clips: list[ClipRecord] = field(default_factory=list)
    keyframes: list[Keyframe] = field(default_factory=list)
    scan: Any = None  # pipeline.scan.ScanResult while the CPU stages need it; dropped before the sink
    probe: Any = None  # pipeline.probe.ProbeResult
    frame_cache: Any = None  # pipeline.framecache.FrameCache from the scan until extraction (arrives empty if pickled)
    final: bool = True
    """False: a part of a long video's clips, sent on ahead so that memory stays bounded
    (:meth:`pipeline.extract.ExtractStage.process_parts`); the video's last record is final and
    carries its ``videos.parquet`` row and the clips not sent before."""

    @property
    def ok(self) -> bool:
        return self.video.get("status", "ok") == "ok"

    def fail(self, reason: str) -> None:
        """Mark the whole video failed with a one-line reason; its clips are dropped."""
        self.video["status"] = "failed"
        self.video["error"] = " ".join(str(reason).split())[:500]
        self.clips = []
        self.keyframes = []
        self.scan = None
        self.frame_cache = None

    def kept_clips(self) -> list[ClipRecord]:
        return [c for c in self.clips if c.kept]

    def part(self, clips: list[ClipRecord]) -> "VideoRecord":
        """A non-final record of this video holding ``clips`` (see :attr:`final`)."""
        return VideoRecord(path=self.path, video=dict(self.video), clips=clips, final=False)
