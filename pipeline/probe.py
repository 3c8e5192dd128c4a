"""Probe: what an input video is, with PyAV, before any frame is scanned.

Reads the container header and demuxes the video packets (no decoding but the first frame):
duration, frame rate (variable frame rate detected from packet timestamps), size, rotation,
codec, frame count, and the keyframes' times (where extraction can seek to). A file that is
empty, not a video, audio-only, truncated, a single frame, or shorter/smaller than the configured
minimum is reported with a one-line reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from pipeline.colour import describe
from pipeline.decoding import REJECTED_PACKET
from pipeline.deinterlace import is_interlaced
from pipeline.io import content_hash, decode_source, file_size
from pipeline.records import VideoRecord
from pipeline.stage import Stage


@dataclass
class ProbeConfig:
    """Minimums an input must meet to be scanned at all (smaller inputs end as ``failed``)."""

    min_duration_s: float = 2.0
    min_width: int = 128
    min_height: int = 128

    def __post_init__(self) -> None:
        if self.min_duration_s < 0 or self.min_width < 1 or self.min_height < 1:
            raise ValueError("min_duration_s must be >= 0, min_width and min_height >= 1")


@dataclass
class ProbeResult:
    duration_s: float
    fps: float
    vfr: bool
    frame_count: int
    width: int  # display size: square pixels, after rotation
    height: int
    rotation: int
    codec: str
    keyframe_times_s: np.ndarray | None = None  # stream times of the keyframe packets (seek points); None: no timestamps
    colour: str = "SDR"  # dynamic range and wide gamut of the first frame (pipeline.colour.describe)
    interlaced: bool = False  # fields, not frames (pipeline.deinterlace): extraction deinterlaces


class ProbeError(Exception):
    """The input cannot be curated; the message is the one-line reason for the manifest."""


def probe_video(path: str, size_bytes: int | None = None) -> ProbeResult:
    """Inspect a video; raise :class:`ProbeError` with a one-line reason when it is unusable.
    ``size_bytes``: the file's size when the caller has it (a remote stat is a request)."""
    if (file_size(path) if size_bytes is None else size_bytes) == 0:
        raise ProbeError("empty file")
    with decode_source(path) as source:
        try:
            container = av.open(source, metadata_errors="ignore")
        except av.FFmpegError as exc:
            raise ProbeError(f"not a video file ({exc.strerror or type(exc).__name__})") from None
        with container:
            stream = main_video_stream(container)
            if stream is None:
                kinds = sorted({s.type for s in container.streams}) or ["no streams"]
                raise ProbeError(f"no video stream (has {', '.join(kinds)})")
            stream.thread_count = 1  # one frame to decode: starting a pool of decoder threads costs more than it saves
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
            sample_aspect = stream.sample_aspect_ratio
            time_base = float(stream.time_base) if stream.time_base else 0.0
            pts: list[int] = []
            keyframe_pts: list[int] = []
            packets = 0
            first = None  # the first frame must decode (and tells the rotation): decoded on the way
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    packets += 1
                    if packet.pts is not None:
                        pts.append(packet.pts)
                        if packet.is_keyframe:
                            keyframe_pts.append(packet.pts)
                    if first is None:
                        first = _decode_first(stream, packet)
            except av.FFmpegError as exc:
                raise ProbeError(f"truncated or corrupt stream after {packets} packets ({exc.strerror or exc})") from None
            if first is None:
                first = _decode_first(stream, None)  # flush: a decoder may hold the only frame back
            if first is None:
                raise ProbeError("no decodable video frames")
            rotation = quarter_turns(first)
            colour = describe(first)
            interlaced = is_interlaced(stream.codec_context.field_order, first)
            declared = int(stream.frames or 0)
            if declared and packets < declared:
                raise ProbeError(f"truncated: header declares {declared} frames, only {packets} present")
            rate = float(stream.average_rate or stream.guessed_rate or 0)
    frame_count = packets
    if frame_count <= 1:
        raise ProbeError(f"{frame_count} frame{'s' if frame_count != 1 else ''}: not a video")
    if len(pts) == frame_count:
        ts = np.sort(np.asarray(pts, dtype=np.float64)) * time_base
        deltas = np.diff(ts)
        median = float(np.median(deltas)) if len(deltas) else 0.0
        vfr = bool(median > 0 and np.mean(np.abs(deltas - median) > 0.1 * median) > 0.05)
        duration = float(ts[-1] - ts[0] + (median if median > 0 else 0.0))
        fps = frame_count / duration if duration > 0 else rate
        if not vfr and rate:
            fps = rate
    else:  # frames without timestamps (a raw H.264 stream): the nominal rate
        if not rate:
            raise ProbeError("frames have no timestamps and the stream declares no frame rate")
        vfr, fps, duration = False, rate, frame_count / rate
    keyframe_times = np.sort(np.asarray(keyframe_pts, np.float64)) * time_base if len(pts) == frame_count else None
    width, height = display_size(width, height, sample_aspect, rotation)
    return ProbeResult(duration, fps, vfr, frame_count, width, height, rotation, codec, keyframe_times, colour, interlaced)


def main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The video stream to curate: FFmpeg's choice (``av_find_best_stream``: the default, most frames),
    never a cover picture (``attached_pic``: the thumbnail yt-dlp and taggers embed in Matroska and
    MP4, which can come first) while a real one exists. Probe, scan and extraction all use this one."""
    videos = list(container.streams.video)
    pictures = [s for s in videos if s.disposition & av.stream.Disposition.attached_pic]
    moving = [s for s in videos if s not in pictures] or videos
    if not moving:
        return None
    best = container.streams.best("video")
    return best if best in moving else moving[0]


def quarter_turns(frame: av.VideoFrame) -> int:
    """The frame's display rotation (degrees counter-clockwise, from its display matrix) as the
    quarter turn players apply: 0, 90, 180 or 270. Probe, scan and extraction all use this one."""
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360


def display_size(width: int, height: int, sample_aspect: Fraction | None, rotation: int) -> tuple[int, int]:
    """The size a player shows a ``width x height`` frame at: non-square pixels (anamorphic SD,
    HDV) widened to square ones (width rounded to even), then the display rotation applied."""
    if sample_aspect and sample_aspect > 0 and sample_aspect != 1:
        width = max(2, int(round(width * sample_aspect / 2)) * 2)
    return (height, width) if rotation in (90, 270) else (width, height)


def _decode_first(stream, packet) -> av.VideoFrame | None:
    """The first frame decoding ``packet`` gives (None: flush the decoder), if any. A packet the
    decoder rejects (damaged) gives none, as the scan skips it; any other decoder error is a
    :class:`ProbeError`."""
    try:
        frames = stream.decode(packet)
    except REJECTED_PACKET:
        return None
    except av.FFmpegError as exc:
        raise ProbeError(f"undecodable video stream ({exc.strerror or exc})") from None
    return frames[0] if frames else None


def check_minimums(result: ProbeResult, config: ProbeConfig) -> None:
    if result.duration_s < config.min_duration_s:
        raise ProbeError(f"too short: {result.duration_s:.2f} s < min_duration_s {config.min_duration_s:g} s")
    if result.width < config.min_width or result.height < config.min_height:
        raise ProbeError(
            f"too small: {result.width}x{result.height} < minimum {config.min_width}x{config.min_height}"
        )


class ProbeStage(Stage):
    """Fill the record's ``videos.parquet`` row; unusable inputs end ``failed`` with the reason."""

    name = "probe"
    reads_source = True

    def process_record(self, record: VideoRecord) -> VideoRecord:
        start = time.perf_counter()
        config: ProbeConfig = self.config
        record.video.update(
            path=record.path, status="ok", error=None, num_scenes=0, num_transitions=0, transitions=[], num_clips=0, num_kept=0
        )
        try:
            record.video["size_bytes"] = file_size(record.path)
            result = probe_video(record.path, record.video["size_bytes"])
            record.video.update(
                duration_s=result.duration_s,
                fps=result.fps,
                vfr=result.vfr,
                frame_count=result.frame_count,
                width=result.width,
                height=result.height,
                rotation=result.rotation,
                codec=result.codec,
                colour=result.colour,
                interlaced=result.interlaced,
            )
            check_minimums(result, config)
            record.video["content_hash"] = content_hash(record.path)
            record.probe = result
        except ProbeError as exc:
            record.fail(str(exc))
        except OSError as exc:
            record.fail(f"unreadable: {exc}")
        record.video["seconds"] = time.perf_counter() - start
        return record
