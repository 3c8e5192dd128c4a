"""Which moments of a clip to caption, and their RGB frames.

Times are source-video seconds, like ``ClipRecord.keyframes`` and the clip's
``row["start_s"]..row["end_s"]``. A wanted time is served by the nearest scan keyframe (taken on a
1 s grid by default) when one lies within ``max_offset_s``; otherwise the frame is decoded from the clip's
mp4 in memory with PyAV.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from pipeline.records import ClipRecord

from captioner.config import KeyframeConfig


@dataclass
class FrameSample:
    time_s: float  # source-video seconds
    image: np.ndarray  # RGB uint8 (H, W, 3)
    source: str  # "scan" (a scan keyframe) or "mp4" (decoded from the clip)


def keyframe_times(start_s: float, end_s: float, config: KeyframeConfig) -> list[float]:
    """Wanted times in ``[start_s, end_s)``: every ``interval_s`` at window middles, or ``num_frames`` uniform."""
    duration = max(end_s - start_s, 0.0)
    if config.mode == "uniform":
        k = config.num_frames
        return [start_s + duration * (i + 0.5) / k for i in range(k)]
    if duration <= config.interval_s:
        return [start_s + duration / 2]
    windows = int(duration // config.interval_s)
    times = [start_s + config.interval_s * (i + 0.5) for i in range(windows)]
    if len(times) > config.max_frames:
        idx = np.linspace(0, len(times) - 1, config.max_frames).round().astype(int)
        times = [times[i] for i in idx]
    return times


def _resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    if not short_side or min(h, w) <= short_side:
        return image
    scale = short_side / min(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def decode_frames(mp4: bytes, times_in_clip: list[float], short_side: int = 0) -> list[np.ndarray]:
    """RGB frames nearest to ``times_in_clip`` (seconds from the clip's start), decoded in one pass."""
    import av

    if not times_in_clip:
        return []
    best: list[tuple[float, av.VideoFrame | None]] = [(float("inf"), None)] * len(times_in_clip)
    last_needed = max(times_in_clip)
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            t = float(frame.time)
            for i, want in enumerate(times_in_clip):
                if abs(t - want) < best[i][0]:
                    best[i] = (abs(t - want), frame)
            if t > last_needed + 1.0:
                break
    if any(frame is None for _, frame in best):
        raise ValueError("the clip's mp4 has no decodable video frames")
    # converted once each, the chosen frames only; one scaler thread (PyAV's default is one per core)
    return [_resize_short_side(frame.to_ndarray(format="rgb24", threads=1), short_side) for _, frame in best]


def sample_frames(clip: ClipRecord, config: KeyframeConfig) -> list[FrameSample]:
    """The clip's frames to caption/embed, in time order (scan keyframes first, mp4 decode otherwise)."""
    start_s, end_s = float(clip.row["start_s"]), float(clip.row["end_s"])
    wanted = keyframe_times(start_s, end_s, config)
    samples: list[FrameSample | None] = [None] * len(wanted)
    missing: list[int] = []
    inside = [kf for kf in clip.keyframes if start_s - 1e-6 <= kf.time_s <= end_s + 1e-6]
    used: set[int] = set()
    for i, t in enumerate(wanted):
        nearest = min(inside, key=lambda kf: abs(kf.time_s - t), default=None)
        if nearest is not None and abs(nearest.time_s - t) <= config.max_offset_s and nearest.frame_index not in used:
            used.add(nearest.frame_index)
            samples[i] = FrameSample(nearest.time_s, nearest.image(), "scan")
        else:
            missing.append(i)
    if missing and clip.mp4 is not None:
        images = decode_frames(clip.mp4, [wanted[i] - start_s for i in missing], config.decode_short_side)
        for i, image in zip(missing, images):
            samples[i] = FrameSample(wanted[i], image, "mp4")
    elif missing:  # no payload (e.g. a rejected clip): the nearest unused scan keyframe, however far
        for i in missing:
            free = [kf for kf in inside if kf.frame_index not in used]
            nearest = min(free, key=lambda kf: abs(kf.time_s - wanted[i]), default=None)
            if nearest is not None:
                used.add(nearest.frame_index)
                samples[i] = FrameSample(nearest.time_s, nearest.image(), "scan")
    if all(s is None for s in samples):
        raise ValueError("no scan keyframes inside the clip and no mp4 to decode frames from")
    return sorted((s for s in samples if s is not None), key=lambda s: s.time_s)
