"""Interlaced video (broadcast and DVD, DV and HDV tapes, AVCHD camcorders' 1080i) made progressive.

An interlaced frame holds two fields shot 1/50 or 1/60 s apart, on alternate lines: anything that
moves is combed, and a model trained on such clips learns the comb. Extraction runs FFmpeg's
``bwdif`` (motion-adaptive, from each field and its neighbours) in ``send_frame`` mode: one
progressive frame per interlaced frame, so the frame numbers and timestamps stay the source's (the
scan's numbering); frames not flagged interlaced pass through unchanged (``deint=interlaced``).
Cost: ~2 ms a 1920x1080 frame, ~0.4 ms a 720x576 one (one thread).

The scan analyses interlaced frames, and takes their keyframes, from their top field
(:func:`top_field`): one instant, as the deinterlaced clips show it. The woven frame, even at the
scan's 160 pixels, holds two instants a field apart: a double image, or a comb where motion is fast.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

import av
import av.filter

from pipeline.colour import COLOUR_DESCRIPTION, copy_colour_tags
from pipeline.decoding import plane_rows
from pipeline.filtergraph import filter_chain

INTERLACED_FIELD_ORDERS = {2, 3, 4, 5}
"""AVFieldOrder values of interlaced streams: TT, BB, TB, BT (0: unknown, 1: progressive)."""


def is_interlaced(stream_field_order: int | None, frame: av.VideoFrame) -> bool:
    """Is a stream interlaced, from its declared field order or its first frame's flag?"""
    return bool(frame.interlaced_frame) or stream_field_order in INTERLACED_FIELD_ORDERS


def deinterlaced(frames: Iterator[av.VideoFrame], threads: int = 1) -> Iterator[av.VideoFrame]:
    """``frames`` in order, those flagged interlaced deinterlaced by ``bwdif``. A frame comes out once
    the next one is in (the last at the end); timestamps are the input frame's."""
    graph = None
    geometry = None
    waiting: deque[av.VideoFrame] = deque()  # frames in the graph, in order: one comes out per frame in

    def drained():
        while waiting:
            try:
                out = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            source = waiting.popleft()
            out.pts = source.pts
            if source.time_base is not None:
                out.time_base = source.time_base
            yield out

    for frame in frames:
        if (frame.width, frame.height, frame.format.name) != geometry:
            if graph is not None:  # the picture changed size mid-stream: finish the old graph first
                graph.push(None)
                yield from drained()
            graph, geometry = _bwdif(frame, threads), (frame.width, frame.height, frame.format.name)
        waiting.append(frame)
        graph.push(frame)
        yield from drained()
    if graph is not None:
        graph.push(None)
        yield from drained()


def _bwdif(frame: av.VideoFrame, threads: int) -> av.filter.Graph:
    bwdif = ("bwdif", f"mode=send_frame:parity=auto:deint=interlaced:threads={threads}")
    return filter_chain(frame.width, frame.height, frame.format.name, bwdif, time_base=frame.time_base)


def top_field(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame's top field (its even lines, chroma included) as a frame of half the height, with
    the frame's colour description: a still picture of one instant, for the scan's analysis and keyframes."""
    field = av.VideoFrame(frame.width, (frame.height + 1) // 2, frame.format.name)
    for source, target in zip(frame.planes, field.planes):
        rows, out = plane_rows(source), plane_rows(target)
        width = min(source.line_size, target.line_size)  # bytes: both hold the visible samples
        out[:, :width] = rows[::2][: target.height, :width]
    copy_colour_tags(field, frame, COLOUR_DESCRIPTION)
    field.pts = frame.pts
    if frame.time_base is not None:
        field.time_base = frame.time_base
    return field
