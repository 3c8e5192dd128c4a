"""Plan clips from scenes: trim a margin at both ends, split long scenes into windows.

Every scene (a shot between transitions, as found by the scan) yields candidate clips; scenes
too short after trimming stay in the manifest as clips rejected ``too_short``. clip_id is
``<source content hash>-<start frame>-<end frame>``: stable across reruns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.records import ClipRecord, VideoRecord
from pipeline.stage import Stage


@dataclass
class PlanConfig:
    """How scenes become clips. Defaults suit CogVideoX training (49 frames at 8 fps ≈ 6 s)."""

    margin_s: float = 0.25  # trimmed from both ends of every scene (absorbs boundary uncertainty)
    min_duration_s: float = 2.0  # shorter clips are rejected as too_short
    max_duration_s: float = 10.0  # longer scenes are split into non-overlapping windows
    split: Literal["even", "fixed"] = "even"  # even: equal windows <= max; fixed: max-long windows + remainder

    def __post_init__(self) -> None:
        if self.margin_s < 0:
            raise ValueError("margin_s must be >= 0")
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ValueError(
                f"need 0 < min_duration_s <= max_duration_s, got {self.min_duration_s} and {self.max_duration_s}"
            )


def clip_id_for(source_hash: str, start: int, end: int) -> str:
    """Stable id of frames [start, end) of a source (no dots: WebDataset splits keys at dots)."""
    return f"{source_hash}-{start:07d}-{end:07d}"


def split_scene(start: int, end: int, fps: float, config: PlanConfig) -> list[tuple[int, int]]:
    """Frame windows of one scene after trimming the margin (may be one too-short window)."""
    margin = int(round(config.margin_s * fps))
    s, e = start + margin, end - margin
    if e - s < 1:
        return []
    max_frames = max(1, int(math.floor(config.max_duration_s * fps)))
    length = e - s
    if length <= max_frames:
        return [(s, e)]
    if config.split == "fixed":
        bounds = list(range(s, e, max_frames)) + [e]
    else:
        n = math.ceil(length / max_frames)
        bounds = [s + (length * i) // n for i in range(n + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def frame_time(scan, index: int) -> float:
    """Presentation time (s) of frame ``index``; one past the last frame extrapolates by 1/fps."""
    times = scan.frame_times
    if index < len(times):
        return float(times[index])
    return float(times[-1]) + (index - len(times) + 1) / scan.fps


def transition_rows(transitions) -> list[dict]:
    """The scan's transitions (:class:`pipeline.transitions.Transition`) as ``videos.parquet``'s
    ``transitions`` entries (:data:`pipeline.manifest.TRANSITION_TYPE`), in frame order: the scan's
    frame numbering, a cut ``start_frame == end_frame`` (the new shot's first frame), a gradual one
    ``[start_frame, end_frame)``."""
    rows = [{"kind": str(t.kind), "start_frame": int(t.start), "end_frame": int(t.end)} for t in transitions]
    return sorted(rows, key=lambda r: (r["start_frame"], r["end_frame"]))


def plan_clips(record: VideoRecord, config: PlanConfig) -> list[ClipRecord]:
    scan = record.scan
    video = record.video
    clips = []
    for scene_index, (start, end) in enumerate(scan.shots):
        for a, b in split_scene(start, end, scan.fps, config):
            start_s, end_s = frame_time(scan, a), frame_time(scan, b)
            row = {
                "clip_id": clip_id_for(video["content_hash"], a, b),
                "source": record.path,
                "source_hash": video["content_hash"],
                "scene_index": scene_index,
                "start_frame": a,
                "end_frame": b,
                "start_s": start_s,
                "end_s": end_s,
                "duration_s": end_s - start_s,
                "source_fps": scan.fps,
                "source_width": scan.width,
                "source_height": scan.height,
                "kept": True,
                "reject_reason": None,
                "keyframe_times": [],
            }
            if row["duration_s"] < config.min_duration_s - 1e-6:
                row["kept"] = False
                row["reject_reason"] = "too_short"
            clip = ClipRecord(row=row)
            clip.keyframes = [k for k in record.keyframes if a <= k.frame_index < b]
            row["keyframe_times"] = [k.time_s for k in clip.keyframes]
            clips.append(clip)
    return clips


class PlanStage(Stage):
    """Scenes → candidate clips (with their keyframes from the scan)."""

    name = "plan"

    def process_record(self, record: VideoRecord) -> VideoRecord:
        record.clips = plan_clips(record, self.config)
        record.video["num_scenes"] = len(record.scan.shots)
        record.video["transitions"] = transition_rows(record.scan.transitions)
        record.video["num_transitions"] = len(record.video["transitions"])
        record.video["num_clips"] = len(record.clips)
        return record

