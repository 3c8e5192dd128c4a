"""Decoding that goes on past damaged packets, as FFmpeg's command line does.

Scraped and archived video often holds a few damaged packets (a bad sector, a broken download
resumed, a lost transport-stream packet). PyAV's ``container.decode`` stops at the first packet the
decoder rejects (``avcodec_send_packet``: invalid data), losing the rest of the video. Here each
packet is decoded on its own: a rejected packet is skipped, and decoding goes on.

The frames that follow a skipped packet, up to the next keyframe, are predicted from a picture
that never decoded; the decoder conceals the hole, but they show smears and blocks. So do frames
the decoder itself flags corrupt (``AV_FRAME_FLAG_CORRUPT``, decode error flags), and those
predicted from them. :class:`DecodeReport` records these runs of damaged frames, numbered in the
order they come out, so the scan can leave them out of every clip.

:func:`plane_rows` gives a decoded frame's plane to numpy without a copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

import av
import numpy as np

log = logging.getLogger(__name__)

REJECTED_PACKET = (av.error.InvalidDataError, av.error.PatchWelcomeError)
"""What decoders raise for a packet they cannot decode (corrupt or unsupported bitstream)."""


@dataclass
class DecodeReport:
    """What went wrong while decoding: skipped packets and the damaged frames they left."""

    rejected_packets: int = 0
    first_rejection: str | None = None  # "packet at 6.60 s: Invalid data found when processing input"
    damaged: list[tuple[int, int]] = field(default_factory=list)  # [start, end) runs of frame numbers (output order)

    @property
    def damaged_frames(self) -> int:
        return sum(end - start for start, end in self.damaged)

    def summary(self) -> str | None:
        """One line for the manifest, or None when nothing went wrong."""
        if not self.rejected_packets and not self.damaged:
            return None
        runs = ", ".join(f"{s}-{e - 1}" if e - s > 1 else f"{s}" for s, e in self.damaged[:5])
        more = f" and {len(self.damaged) - 5} more runs" if len(self.damaged) > 5 else ""
        parts = []
        if self.rejected_packets:
            parts.append(f"{self.rejected_packets} packet(s) the decoder rejected were skipped (first: {self.first_rejection})")
        if self.damaged:
            parts.append(f"{self.damaged_frames} damaged frame(s) left out of clips (frames {runs}{more})")
        return "; ".join(parts)


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  report: DecodeReport | None = None) -> Iterator[av.VideoFrame]:
    """The frames of ``stream``, in presentation order, skipping packets the decoder rejects.

    With a ``report``, skipped packets and damaged frames are recorded in it. A damaged run starts at
    the first frame out after a rejected packet (frames still held for reordering may be clean: they
    are counted in, to be safe), after a packet the demuxer flags corrupt, or at a frame the decoder
    flags corrupt, and ends at the next clean keyframe. Errors of the demuxer (a broken container)
    are raised, as ``container.decode`` raises them.
    """
    damaged_since: int | None = None
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.is_corrupt and damaged_since is None:  # the demuxer saw it damaged (MPEG-TS continuity)
                damaged_since = count
            try:
                frames = stream.decode(packet)
            except REJECTED_PACKET as exc:
                if report is not None:
                    report.rejected_packets += 1
                    if report.first_rejection is None:
                        report.first_rejection = f"{_where(packet)}: {exc.strerror or exc}"
                log.debug("skipping a packet the decoder rejected: %s", exc)
                if damaged_since is None:
                    damaged_since = count
                continue
            for frame in frames:
                if frame.is_corrupt:
                    if damaged_since is None:
                        damaged_since = count
                elif frame.key_frame and damaged_since is not None:
                    if report is not None and count > damaged_since:
                        report.damaged.append((damaged_since, count))
                    damaged_since = None
                count += 1
                yield frame
    finally:  # also when the demuxer fails or the caller stops early: the open run ends at the last frame out
        if report is not None and damaged_since is not None and count > damaged_since:
            report.damaged.append((damaged_since, count))


def _where(packet: av.Packet) -> str:
    if packet.pts is None or packet.time_base is None:
        return "a packet"
    return f"packet at {float(packet.pts * packet.time_base):.2f} s"


def plane_rows(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A frame plane's memory as a ``(height, line_size)`` uint8 array, no copy (writable where the
    frame is). Rows are padded to ``line_size`` bytes: the visible samples are the first
    ``plane.width`` bytes of a row in 8-bit formats."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
