"""Helpers the extraction and frame-cache tests share: the CPU stages as a Ray task runs them, on the
320x180 sample videos, and a clip's frames read back."""

from __future__ import annotations

import io

import av
import numpy as np

from pipeline.curate import CurateConfig, cpu_stages
from pipeline.records import VideoRecord


def gray_frames(source) -> list[np.ndarray]:
    """Every frame of a file or bytes, in presentation order, as float grey images."""
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
        return [f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(video=0)]


def run_on(record: VideoRecord, stages) -> VideoRecord:
    """``record`` through ``stages`` (``(stage class, config)`` pairs), in order."""
    for stage_cls, stage_config in stages:
        [record] = stage_cls(stage_config).process([record])
    return record


def sample_stages(**extract):
    """The CPU stages with the default config, the too-small minimums lowered to the 320x180 sample
    videos and ``extract`` settings overridden."""
    config = CurateConfig()
    config.filter.min_width, config.filter.min_height = 128, 72
    for key, value in extract.items():
        setattr(config.extract, key, value)
    return cpu_stages(config)
