"""The deinterlacer keeps the frames' number, order and timing, touches only interlaced frames, and
a top field is the even lines of every plane."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.deinterlace import deinterlaced, is_interlaced, top_field
from pipeline.filtergraph import filter_chain


def frames_of(format: str, count: int, size=(64, 36), interlaced: bool = False) -> list[av.VideoFrame]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        frame = av.VideoFrame(*size, format)
        for plane in frame.planes:
            data = np.frombuffer(plane, np.uint8)
            data[:] = rng.integers(0, 256, data.size, dtype=np.uint8)
        frame.pts, frame.time_base = 1000 + 40 * i, Fraction(1, 1000)
        frames.append(frame)
    if interlaced:  # flag them as a camera's interlaced frames are (setfield)
        graph = filter_chain(*size, format, ("setfield", "tff"))
        flagged = []
        for frame in frames:
            graph.push(frame)
            flagged.append(graph.pull())
        frames = flagged
    return frames


def test_progressive_frames_pass_unchanged():
    frames = frames_of("yuv420p", 5)
    out = list(deinterlaced(iter(frames)))
    assert [f.pts for f in out] == [f.pts for f in frames]
    for a, b in zip(frames, out):
        assert np.array_equal(a.to_ndarray(), b.to_ndarray())


def test_interlaced_frames_come_out_one_each_with_their_timestamps():
    frames = frames_of("yuv420p", 7, interlaced=True)
    assert all(is_interlaced(None, f) for f in frames) and not is_interlaced(1, frames_of("yuv420p", 1)[0])
    out = list(deinterlaced(iter(frames)))
    assert [(f.pts, f.time_base) for f in out] == [(f.pts, f.time_base) for f in frames]
    assert not any(f.interlaced_frame for f in out)
    # the top field is kept, the bottom one interpolated: even lines as they were, odd ones changed
    for a, b in zip(frames, out):
        luma_in, luma_out = a.to_ndarray()[: a.height], b.to_ndarray()[: b.height]
        assert np.array_equal(luma_in[::2], luma_out[::2]) and not np.array_equal(luma_in[1::2], luma_out[1::2])


@pytest.mark.parametrize("format, size", [("yuv420p", (64, 36)), ("yuv420p10le", (66, 38)), ("yuv422p", (64, 35))])
def test_top_field_is_the_even_lines(format, size):
    [frame] = frames_of(format, 1, size)
    frame.colorspace = 1
    field = top_field(frame)
    assert (field.width, field.height, field.format.name, field.colorspace) == (size[0], (size[1] + 1) // 2, format, 1)
    for source, target in zip(frame.planes, field.planes):
        width = min(source.line_size, target.line_size)
        rows = np.frombuffer(source, np.uint8).reshape(source.height, source.line_size)[::2][: target.height, :width]
        assert np.array_equal(np.frombuffer(target, np.uint8).reshape(target.height, target.line_size)[:, :width], rows)
