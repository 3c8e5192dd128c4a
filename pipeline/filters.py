"""Clip scores from the scan's per-frame signals, and the thresholds that reject clips.

Units (all computed at the scan's analysis resolution, so they do not depend on the source size):

- ``motion``: mean optical-flow magnitude over the clip, in frame lengths per second (the long
  side: the width of landscape video; 0.1 = content moves a tenth of it each second).
  ``motion_p95``: its 95th percentile over frames.
- ``shake``: mean magnitude of the high-frequency part of the global (median) flow vector, i.e.
  the camera's frame-to-frame jitter around its smoothed path, in frame lengths per second.
- ``sharpness``: median variance of the Laplacian of the grey analysis frames.
- ``brightness``: mean luma, 0..255.

Every rejected clip stays in ``clips.parquet`` with ``kept=false`` and the first failing
``reject_reason``: ``too_short`` (planning), ``too_small``, ``wrong_aspect``, ``static``,
``too_fast``, ``shaky``, ``too_dark``, ``too_bright``, ``blurry``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.records import ClipRecord, VideoRecord
from pipeline.stage import Stage


@dataclass
class FilterConfig:
    """Thresholds; set one to null to switch that check off."""

    min_width: int | None = 256  # source frame size
    min_height: int | None = 144
    min_aspect: float | None = 0.5  # width / height
    max_aspect: float | None = 2.5
    min_motion: float | None = 0.01  # below: static (a still held on screen)
    max_motion: float | None = 1.5  # motion_p95 above: too fast
    max_shake: float | None = 0.25  # above: shaky
    min_sharpness: float | None = 15.0  # below: blurry
    min_brightness: float | None = 32.0  # below: too dark (mean luma; 32 = 12.5% grey)
    max_brightness: float | None = 224.0  # above: too bright
    shake_window_s: float = 0.5  # smoothing window of the camera path for ``shake``


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < 3:
        return x
    window = min(window, len(x))
    kernel = np.ones(window) / window
    padded = np.pad(x, ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(x.shape[1])], axis=1)


def clip_scores(scan, start: int, end: int, shake_window_s: float = 0.5) -> dict[str, float]:
    """Scores of frames [start, end) (flow into ``start`` crosses the clip's edge and is left out)."""
    inner = slice(start + 1, end) if end - start > 1 else slice(start, end)
    motion = np.asarray(scan.motion[inner], dtype=np.float64)
    gm = np.asarray(scan.global_motion[inner], dtype=np.float64).reshape(-1, 2)
    window = max(1, int(round(shake_window_s * scan.fps)))
    jitter = gm - _moving_average(gm, window) if len(gm) else gm
    return {
        "motion": float(motion.mean()) if len(motion) else 0.0,
        "motion_p95": float(np.percentile(motion, 95)) if len(motion) else 0.0,
        "shake": float(np.linalg.norm(jitter, axis=1).mean()) if len(jitter) else 0.0,
        "sharpness": float(np.median(scan.sharpness[start:end])),
        "brightness": float(np.mean(scan.luma[start:end])),
    }


def reject_reason(row: dict, config: FilterConfig) -> str | None:
    """The first threshold the clip fails, or None when it passes them all."""
    c = config
    w, h = row["source_width"], row["source_height"]
    checks = [
        ("too_small", (c.min_width is not None and w < c.min_width) or (c.min_height is not None and h < c.min_height)),
        ("wrong_aspect", (c.min_aspect is not None and w / h < c.min_aspect) or (c.max_aspect is not None and w / h > c.max_aspect)),
        ("static", c.min_motion is not None and row["motion"] < c.min_motion),
        ("too_fast", c.max_motion is not None and row["motion_p95"] > c.max_motion),
        ("shaky", c.max_shake is not None and row["shake"] > c.max_shake),
        # exposure before blur: a dark frame has little contrast, so it also reads as blurry
        ("too_dark", c.min_brightness is not None and row["brightness"] < c.min_brightness),
        ("too_bright", c.max_brightness is not None and row["brightness"] > c.max_brightness),
        ("blurry", c.min_sharpness is not None and row["sharpness"] < c.min_sharpness),
    ]
    return next((reason for reason, failed in checks if failed), None)


def score_and_filter(clip: ClipRecord, scan, config: FilterConfig) -> None:
    clip.row.update(clip_scores(scan, clip.row["start_frame"], clip.row["end_frame"], config.shake_window_s))
    if clip.kept:
        reason = reject_reason(clip.row, config)
        if reason:
            clip.reject(reason)


class FilterStage(Stage):
    """Score every candidate clip from the scan and reject those outside the thresholds."""

    name = "filter"

    def process_record(self, record: VideoRecord) -> VideoRecord:
        for clip in record.clips:
            score_and_filter(clip, record.scan, self.config)
        record.video["num_kept"] = len(record.kept_clips())
        return record
