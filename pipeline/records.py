"""The in-flight records that pipeline stages pass to each other (one per input video).

A :class:`VideoRecord` travels through Ray Data as one row (column ``record``); stages fill in
its ``video`` manifest row, its candidate clips (each a :class:`ClipRecord` holding its
``clips.parquet`` row, and once extracted its mp4 bytes) and keyframes. The sink turns records
into shards and manifest rows (see :mod:`pipeline.manifest`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Keyframe:
    """One keyframe kept by the scan for the model stages: RGB JPEG at ``scan.keyframe_short_side``."""

    frame_index: int
    time_s: float
    jpeg: bytes

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

    def kept_clips(self) -> list[ClipRecord]:
        return [c for c in self.clips if c.kept]

    def part(self, clips: list[ClipRecord]) -> "VideoRecord":
        """A non-final record of this video holding ``clips`` (see :attr:`final`)."""
        return VideoRecord(path=self.path, video=dict(self.video), clips=clips, final=False)
