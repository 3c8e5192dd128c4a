"""HDR and wide-gamut pictures to SDR BT.709, with FFmpeg's colour management.

Phones record HDR (iPhones HLG by default, many Androids HDR10 PQ) in BT.2020 colours; some
cameras and editors deliver SDR in BT.2020 or P3. Every reader of the clips (decord into training,
the captioning models, browsers showing the report) treats pictures as SDR, so these are converted:
PQ and HLG tone-mapped, BT.2020 and P3 gamut-mapped to BT.709, by swscale's colour management
(FFmpeg's ``scale`` filter with ``out_transfer``/``out_primaries`` and a rendering ``intent``).

``relative_colorimetric`` (FFmpeg's default) maps HDR reference white (203 cd/m², HLG 75 %) to SDR
white and clips what is brighter: mid-tones as an SDR camera would show them. ``perceptual`` rolls
off the highlights (their detail kept) at the price of a darker picture.

The picture is first scaled down in its own colours (the cheap, usual area filter), then converted
at the small size: the conversion costs ~9 ms a frame at 854x480 and its set-up (look-up tables)
about a second, so a converter keeps its filter graphs, one per output size and colour description,
for the life of the process.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import av
import av.filter
from av.video.reformatter import VideoReformatter

from pipeline.filtergraph import filter_chain

HDR_TRANSFERS = {16: "PQ", 18: "HLG"}
"""AVCOL_TRC values of HDR transfer functions (SMPTE ST 2084, ARIB STD-B67)."""
WIDE_PRIMARIES = {9: "BT.2020", 11: "DCI-P3", 12: "Display P3"}
"""AVCOL_PRI values of gamuts wider than BT.709."""
INTENTS = ("relative_colorimetric", "perceptual")
"""Rendering intents offered (FFmpeg's names); see the module docstring."""

MATRIX_NAMES = {
    0: "RGB", 1: "BT.709", 2: "unspecified", 5: "BT.470BG", 6: "SMPTE 170M", 9: "BT.2020 NCL", 10: "BT.2020 CL", 14: "ICtCp"
}
"""Names of AVCOL_SPC values (YUV matrices), for messages."""

_GRAPHS_PER_THREAD = 8
COLOUR_TAGS = ("colorspace", "color_primaries", "color_trc")
"""A picture's colour description: the YUV matrix, the primaries and the transfer function."""
COLOUR_DESCRIPTION = ("color_range", *COLOUR_TAGS)
"""The same with the range of the values: everything a conversion reads."""


def copy_colour_tags(target, source, tags: tuple[str, ...] = COLOUR_TAGS) -> None:
    """Copy ``source``'s colour description (a frame) to ``target`` (a frame or an encoder's context).

    On an encoder this is the stream's colour description (H.264 VUI): a reader that finds none
    takes BT.601, so the colours of a BT.709 (HD) source shift (red 230 read back as 212) unless the
    clip says BT.709, as the source did. Untagged sources stay untagged: read as they were read.
    """
    for tag in tags:
        setattr(target, tag, getattr(source, tag))


def needs_sdr_conversion(frame: av.VideoFrame) -> bool:
    """Does the frame say it is HDR or wider-gamut than BT.709?"""
    return frame.color_trc in HDR_TRANSFERS or frame.color_primaries in WIDE_PRIMARIES


def describe(frame: av.VideoFrame) -> str:
    """The frame's dynamic range and, when wider than BT.709, gamut: ``"SDR"``, ``"HLG BT.2020"``,
    ``"PQ BT.2020"``, ``"SDR Display P3"``... (``videos.parquet`` column ``colour``)."""
    transfer = HDR_TRANSFERS.get(frame.color_trc, "SDR")
    gamut = WIDE_PRIMARIES.get(frame.color_primaries)
    return f"{transfer} {gamut}" if gamut else transfer


class UnsupportedColourError(ValueError):
    """FFmpeg's colour management cannot convert pictures of this description (e.g. the ICtCp or
    BT.2020 constant-luminance matrix) to SDR."""


class SdrConverter:
    """Scale frames to ``width x height`` in pixel format ``format`` (YUV or RGB) as SDR BT.709
    (limited range for YUV). Frames of any size, pixel format and colour description. The downscale
    (swscale's area filter, in the frame's own pixel format and colours) comes first; the conversion
    graphs are then keyed by the small size, so sources of every resolution share them. Graphs and
    scalers are built on first use and kept, per thread (each serves one caller at a time)."""

    def __init__(self, intent: str = "relative_colorimetric", threads: int = 1) -> None:
        if intent not in INTENTS:
            raise ValueError(f"intent: expected one of {', '.join(INTENTS)}, got {intent!r}")
        self.intent = intent
        self.threads = threads
        self._local = threading.local()
        self._unsupported: dict[tuple, str] = {}  # colour descriptions that failed, and why

    def __call__(self, frame: av.VideoFrame, width: int, height: int, format: str) -> av.VideoFrame:
        local = self._local.__dict__
        scalers: dict = local.setdefault("scalers", {})  # one per output: swscale keeps one context
        shrink = scalers.setdefault((width, height, None), VideoReformatter())
        small = shrink.reformat(frame, width, height, interpolation="AREA", threads=self.threads)
        copy_colour_tags(small, frame, COLOUR_DESCRIPTION)  # scaling alone keeps the colours
        # swscale's colour management into RGB formats came out green-tinted (a magenta picture: G +11
        # levels, R and B +3); into YUV it is right: RGB is converted from full-chroma BT.709 YUV
        rgb = format.startswith(("rgb", "bgr", "gbr"))
        managed_format = "yuv444p" if rgb else format
        graphs: OrderedDict = local.setdefault("graphs", OrderedDict())
        description = tuple(getattr(frame, tag) for tag in COLOUR_DESCRIPTION)
        if description in self._unsupported:
            raise UnsupportedColourError(self._unsupported[description])
        key = (width, height, frame.format.name, *description, managed_format)
        try:
            graph = graphs.get(key)
            if graph is None:
                graph = graphs[key] = self._build(small, managed_format)
                while len(graphs) > _GRAPHS_PER_THREAD:
                    graphs.popitem(last=False)
            graphs.move_to_end(key)
            graph.push(small)
            out = graph.pull()
        except (av.error.FFmpegError, OSError) as exc:
            graphs.pop(key, None)
            message = (
                f"cannot convert {describe(frame)} pictures (matrix {MATRIX_NAMES.get(frame.colorspace, frame.colorspace)})"
                f" to SDR BT.709: FFmpeg's colour management says {exc.strerror or exc}"
            )
            self._unsupported[description] = message  # not tried again (a failed set-up can be slow)
            raise UnsupportedColourError(message) from None
        if rgb:
            to_rgb = scalers.setdefault((width, height, format), VideoReformatter())
            out = to_rgb.reformat(out, format=format, threads=self.threads)  # BT.709 matrix, from the tags
        out.pts = frame.pts  # the source's timing, whatever the graph's time base
        if frame.time_base is not None:
            out.time_base = frame.time_base
        return out

    def _build(self, frame: av.VideoFrame, format: str) -> av.filter.Graph:
        convert = (
            "out_transfer=bt709:out_primaries=bt709:out_color_matrix=bt709:out_range=tv"
            f":intent={self.intent}:threads={self.threads}"
        )
        size_and_format = (frame.width, frame.height, frame.format.name)
        return filter_chain(*size_and_format, ("scale", convert), ("format", format), time_base=frame.time_base)


@functools.lru_cache(maxsize=None)
def sdr_converter(intent: str = "relative_colorimetric", threads: int = 1) -> SdrConverter:
    """The process's converter for ``intent`` and ``threads``: its graphs outlive a video, so their
    set-up is paid once per process and picture geometry, not once per video or clip."""
    return SdrConverter(intent, threads)
