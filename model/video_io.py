"""MP4 in and out with PyAV: uint8 RGB frames (F, H, W, 3) <-> an H.264 file."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] -> uint8 (rounded, clipped); uint8 frames pass through."""
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8, crf: int = 18) -> Path:
    """Write (F, H, W, 3) RGB frames (uint8, or float in [0, 1]) as a yuv420p H.264 mp4."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_video: expected frames of shape (F, H, W, 3) with F >= 1, got {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"write_video: H.264 (yuv420p) needs even height and width, got {height}x{width}")
    if fps <= 0:
        raise ValueError(f"write_video: fps must be > 0, got {fps}")
    frames = to_uint8(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(str(fps)).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """All frames of the main video stream as uint8 (F, H, W, 3) RGB, and the stream's frame rate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video not found")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.best("video")  # FFmpeg's choice: not a cover picture listed first
        fps = float(stream.average_rate or stream.base_rate or 0)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: no decodable frames")
    return np.stack(frames), fps
