"""The frame cache: extraction's frames made during the scan, so short videos are decoded once.

Extraction encodes each kept clip from its frames at the output size; without the cache it decodes
the kept spans again (:func:`pipeline.extract.iter_extracted`). With it, the scan hands every frame
it decodes to :class:`FrameCache`, which keeps it ready for the encoder (SDR, upright, at the
output size: :class:`pipeline.extract.FramePreparer`, the same code extraction runs on decoded
frames, so the clips are the same) until the cache holds ``extract.frame_cache_mb`` (on machines with
little memory per CPU, a quarter of each CPU's share: :func:`cache_budget`). Extraction then encodes
the clips that lie in it straight from memory and decodes only the spans after it.

Which frames the clips need is known only once the whole video is scanned and filtered, so the
cache holds a prefix of the video: all of a short one (a 20 s 720p video at 24 fps: ~300 MiB at
the default 854x480), the first seconds of a long one. It costs an area downscale of each cached
frame (less than decoding it again, which it saves for the kept ones) and the memory, held from the
scan until the clips are encoded. Not cached: interlaced sources that extraction deinterlaces (their
clips come from ``bwdif``, fed from each seek), and HDR or wide-gamut frames converted to SDR (~9 ms a
854x480 frame: several times the decode it would save, paid for every frame rather than the kept ones).
The cache is an optimisation only: a frame it fails to prepare ends caching there (extraction decodes
from there on), and a cache that is pickled (a record leaving its worker) arrives empty.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from pipeline.colour import needs_sdr_conversion
from pipeline.extract import ExtractConfig, FramePreparer, output_size

log = logging.getLogger(__name__)

SHARE_OF_CPU_MEMORY = 0.25
"""At most this share of the machine's memory per CPU goes to one video task's cache: with a task per
CPU, the caches together take at most a quarter of the memory (Ray's object store takes 30% by
default, and the worker processes and their decoders the rest)."""

CGROUP_LIMITS = ("memory.max", "memory/memory.limit_in_bytes")  # cgroup v2, v1: a container's memory


def machine_memory(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Bytes of memory this process's machine has: the container's limit where one is set, else the
    host's total."""
    import psutil

    total = psutil.virtual_memory().total
    for name in CGROUP_LIMITS:
        try:
            text = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))  # "max" or a huge number: no limit
    return total


def cache_budget(config: ExtractConfig) -> int:
    """Bytes one video's cache may hold: ``frame_cache_mb``, but at most :data:`SHARE_OF_CPU_MEMORY`
    of the memory per CPU, so many-core machines with little memory (laptops) are not overcommitted."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(min(config.frame_cache_mb * 2**20, SHARE_OF_CPU_MEMORY * machine_memory() / cpus))


class FrameCache:
    """Encoder-ready frames ``[0, len)`` of one video, numbered as the scan numbers them, within a
    byte budget. The scan calls :meth:`begin` once it knows the picture's geometry, then :meth:`add`
    for every frame in order; extraction asks :meth:`holds` and :meth:`take`."""

    def __init__(self, config: ExtractConfig, rotation: int = 0) -> None:
        self.budget = cache_budget(config) if config.frame_cache_mb else 0
        self.config = config
        self.rotation = rotation
        self.size: tuple[int, int] | None = None
        self._prepare: FramePreparer | None = None
        self._frames: list[av.VideoFrame | None] = []
        self.nbytes = 0
        self.closed = self.budget == 0  # no more frames are taken (budget reached, or a frame failed)

    def begin(self, display_width: int, display_height: int) -> None:
        """The source's display size (square pixels, upright): the clips' size follows from it."""
        self.size = output_size(display_width, display_height, self.config.max_short_side)
        self._prepare = FramePreparer.for_config(self.config, self.size, self.rotation)

    def add(self, index: int, frame: av.VideoFrame) -> None:
        """Keep frame ``index`` (the next one) ready for the encoder, while the budget lasts."""
        if self.closed:
            return
        if self._prepare is None or index != len(self._frames):
            self._close(f"frame {index} out of order (expected {len(self._frames)})")
            return
        if self._prepare.to_sdr is not None and needs_sdr_conversion(frame):
            self._close("HDR or wide-gamut frames: converting every one costs more than decoding the kept ones again")
            return
        try:
            ready = self._prepare(frame)
        except Exception as exc:  # extraction will decode these frames again, and say what is wrong
            self._close(f"frame {index}: {type(exc).__name__}: {exc}")
            return
        size = _frame_bytes(ready)
        if self.nbytes + size > self.budget:
            self._close(None)
            return
        self._frames.append(ready)
        self.nbytes += size

    def _close(self, why: str | None) -> None:
        if why:
            log.debug("frame cache closed: %s", why)
        self.closed = True

    def __len__(self) -> int:
        return len(self._frames)

    def holds(self, start: int, end: int) -> bool:
        """Are frames ``[start, end)`` all here?"""
        return 0 <= start < end <= len(self._frames) and all(f is not None for f in self._frames[start:end])

    def keep_only(self, spans: list[tuple[int, int]]) -> None:
        """Free every frame outside ``spans`` (``[start, end)`` ranges); take no more."""
        self.closed = True
        needed = np.zeros(len(self._frames), bool)
        for start, end in spans:
            needed[start:end] = True
        for index in np.flatnonzero(~needed):
            self._free(int(index))

    def take(self, spans: list[tuple[int, int]], frame_times: np.ndarray) -> Iterator[tuple[int, av.VideoFrame, float]]:
        """(span index, frame, time from the first frame) for the frames of each span, freed as they go
        (the encoder holds the ones it still needs), as :func:`pipeline.extract._decode_spans` yields them."""
        for index, (start, end) in enumerate(spans):
            for number in range(start, end):
                frame = self._frames[number]
                if frame is None:
                    raise ValueError(f"frame {number} is not in the frame cache")
                self._free(number)
                yield index, frame, float(frame_times[number])

    def _free(self, index: int) -> None:
        frame = self._frames[index]
        if frame is not None:
            self.nbytes -= _frame_bytes(frame)
            self._frames[index] = None

    def __getstate__(self) -> dict:
        """Frames do not travel: a pickled cache (a record leaving its worker) arrives empty and closed."""
        return dict(self.__dict__, _frames=[], nbytes=0, closed=True, _prepare=None)


def _frame_bytes(frame: av.VideoFrame) -> int:
    return sum(plane.buffer_size for plane in frame.planes)
