"""Extract each kept clip to its own H.264 mp4 (in memory), frame-accurately, with PyAV.

Each clip is exactly the frames [start_frame, end_frame) the manifest names, in the scan's
presentation-order numbering. Clips within the scan's frame cache (:mod:`pipeline.framecache`: all
of a short video) are encoded from there; for the others this is the second and last decode of the
video: it seeks to each kept span and decodes only that span (frames matched to the scan's numbers
by presentation time; counted from the start where the source has no usable timestamps).
Optionally downscales (never upscales) and resamples to a target frame rate. The clips are
progressive (interlaced sources deinterlaced: :mod:`pipeline.deinterlace`), limited-range yuv420p,
and carry the source's colour description; HDR and wide-gamut sources are converted to SDR BT.709
(:mod:`pipeline.colour`).
"""

from __future__ import annotations

import io
import itertools
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from pipeline.colour import COLOUR_DESCRIPTION, INTENTS, SdrConverter, copy_colour_tags, needs_sdr_conversion, sdr_converter
from pipeline.decoding import decode_frames, plane_rows
from pipeline.deinterlace import deinterlaced
from pipeline.io import decode_source
from pipeline.probe import main_video_stream
from pipeline.records import ClipRecord, VideoRecord
from pipeline.scan import rotate_upright
from pipeline.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    """Output encoding of the clips written to shards."""

    max_short_side: int = 480  # downscale so the short side is at most this (0: keep the source size)
    fps: float | None = None  # resample to this frame rate (null: keep the source rate)
    codec: str = "libx264"
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 1  # encoder threads per clip (parallelism comes from Ray workers)
    decode_threads: int = 1  # decoder and scaler threads per video (0: FFmpeg's choice, one per core)
    seek_gap_s: float = 2.0  # where the keyframes are unknown: decode through gaps shorter than this instead of seeking
    hdr_to_sdr: str | None = "relative_colorimetric"
    """HDR (PQ, HLG) and wide-gamut (BT.2020, P3) sources become SDR BT.709 clips with this rendering
    intent: ``relative_colorimetric`` (HDR reference white to SDR white, brighter highlights clipped)
    or ``perceptual`` (highlights rolled off, a darker picture); null: clips keep the source's
    colours, tagged so (most readers, decord into training among them, ignore the transfer). The
    scan analyses such sources, and takes their keyframes, as SDR with this intent (null: relative_colorimetric),
    so the brightness the filters judge is the clips'."""
    part_bytes: int = 64 * 2**20
    """A video's clips leave the worker in parts of about this many bytes (mp4s and keyframe JPEGs),
    each as soon as it is full, so memory stays bounded however long the video (the last part
    carries its row)."""
    deinterlace: bool = True
    """Deinterlace interlaced sources (``bwdif``, one frame per frame: numbering and frame rate kept;
    :mod:`pipeline.deinterlace`). False: clips keep the fields, combed wherever something moves."""
    frame_cache_mb: float = 512
    """Memory per video (MiB) for the frame cache (:mod:`pipeline.framecache`): the scan keeps the
    frames it decodes ready for the encoder, so the clips that lie in the first this-many MiB of a video
    (all of a short one: ~300 MiB holds 20 s of 24 fps video at 854x480) are not decoded again. At most
    a quarter of the machine's memory per CPU (:func:`pipeline.framecache.cache_budget`). 0: off."""

    def __post_init__(self) -> None:
        if self.max_short_side < 0:
            raise ValueError("max_short_side must be >= 0")
        if self.fps is not None and self.fps <= 0:
            raise ValueError("fps must be > 0 or null")
        if not 0 <= self.crf <= 51:
            raise ValueError("crf must be in 0..51")
        for key in ("threads", "decode_threads"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: expected >= 0 (0: FFmpeg's choice), got {getattr(self, key)}")
        if self.frame_cache_mb < 0:
            raise ValueError(f"frame_cache_mb: expected >= 0 (0: off), got {self.frame_cache_mb}")
        if self.part_bytes < 1:
            raise ValueError(f"part_bytes: expected >= 1, got {self.part_bytes}")
        if self.hdr_to_sdr is not None and self.hdr_to_sdr not in INTENTS:
            raise ValueError(f"hdr_to_sdr: expected one of {', '.join(INTENTS)} or null, got {self.hdr_to_sdr!r}")


def output_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """Keep aspect, short side <= max_short_side, both even (yuv420p)."""
    scale = 1.0
    if max_short_side and min(width, height) > max_short_side:
        scale = max_short_side / min(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def _nearest_frame(frame_times: np.ndarray, t: float) -> int | None:
    """The scan's number of the frame shown at ``t`` (within half a frame), else None."""
    j = int(np.searchsorted(frame_times, t))
    candidates = [i for i in (j - 1, j) if 0 <= i < len(frame_times)]
    best = min(candidates, key=lambda i: abs(frame_times[i] - t))
    next_gap = frame_times[best + 1] - frame_times[best] if best + 1 < len(frame_times) else None
    prev_gap = frame_times[best] - frame_times[best - 1] if best > 0 else None
    gaps = [g for g in (prev_gap, next_gap) if g is not None]
    tolerance = 0.5 * min(gaps) if gaps else np.inf
    return best if abs(frame_times[best] - t) <= tolerance else None


def _decode_from_before(container, stream, t: float, frame: int, number_of) -> Iterator[av.VideoFrame]:
    """Decoded frames from a keyframe at or before scan frame ``frame`` (stream time ``t``, seconds).

    Seeks backward to ``t``; where the demuxer lands after it (MPEG program streams and other
    containers without an index seek by estimate), seeks again 1, 2, 4... s earlier, down to the start.
    """
    tb = float(stream.time_base)
    back = 0.0
    while True:
        target = max(t - back, 0.0)
        container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
        frames = decode_frames(container, stream)
        first = next(frames, None)
        if first is None:
            return iter(())
        number = number_of(first)
        if (number is not None and number <= frame) or target == 0.0:
            return itertools.chain([first], frames)
        back = max(2.0 * back, 1.0)


def _seek_saves_decoding(
    frame_times: np.ndarray, position: int, a: int, keyframe_times: np.ndarray | None, seek_gap_s: float
) -> bool:
    """Seek to reach frame ``a``, rather than decode on from frame ``position`` (times in seconds
    from the first frame)? With the keyframes' times: when one lies after the next frame and at or
    before ``a``: decoding starts there, later than it would go on. Without: when the gap exceeds
    ``seek_gap_s`` (a seek lands on an unknown keyframe, possibly long before ``a``)."""
    if keyframe_times is None:
        return float(frame_times[a] - frame_times[position]) > seek_gap_s
    tolerance = 1e-3  # timestamps are exact to far less; frames are more than 1 ms apart
    last = int(np.searchsorted(keyframe_times, frame_times[a] + tolerance, side="right")) - 1
    return last >= 0 and keyframe_times[last] > frame_times[position + 1] + tolerance


def _decode_spans(
    path: str,
    spans: list[tuple[int, int]],
    frame_times: np.ndarray,
    time_origin_s: float | None,
    seek_gap_s: float,
    threads: int = 1,
    keyframe_times: np.ndarray | None = None,
    deinterlace: bool = False,
) -> Iterator[tuple[int, av.VideoFrame, float]]:
    """Yield (span index, frame, time from the first frame) for exactly the frames [a, b) of each
    span, numbered as the scan numbered them (presentation order from the first decoded frame).

    With usable timestamps (``time_origin_s`` set) each decoded frame is matched to the scan's
    number by its time. Between spans it seeks where that decodes fewer frames than going on
    (``keyframe_times``, seconds from the first frame, from the probe; without them, across gaps
    longer than ``seek_gap_s``); frames a decoder emits out of place after a seek (open GOPs) are
    skipped. Without timestamps, frames are counted from the start, never seeking. With
    ``deinterlace``, frames come out of ``bwdif`` (fed from each seek on, lead-in frames included).
    Packets the decoder rejects are skipped, as the scan skips them (:mod:`pipeline.decoding`).
    """
    with decode_source(path) as source, av.open(source) as container:
        stream = main_video_stream(container)
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        tb = float(stream.time_base)
        by_time = time_origin_s is not None
        counter = -1

        def number_of(frame: av.VideoFrame) -> int | None:
            nonlocal counter
            if not by_time:
                counter += 1
                return counter
            if frame.pts is None:
                return None
            return _nearest_frame(frame_times, float(frame.pts * tb) - time_origin_s)

        position = -1  # scan number of the last frame taken
        frames = None
        for index, (a, b) in enumerate(spans):
            t0 = float(frame_times[a])
            fresh = None  # a new run of decoded frames: from the start, or from a seek
            if frames is None and not by_time:
                fresh = decode_frames(container, stream)
            elif by_time and (
                frames is None or a <= position or _seek_saves_decoding(frame_times, position, a, keyframe_times, seek_gap_s)
            ):
                half = 0.5 * (float(frame_times[a + 1]) - t0) if a + 1 < len(frame_times) else 0.0
                fresh = _decode_from_before(container, stream, t0 + time_origin_s - half, a, number_of)
            if fresh is not None:
                frames = deinterlaced(fresh, threads) if deinterlace else fresh
            expected = a
            for frame in frames:
                number = number_of(frame)
                if number is None or number < expected or (number > expected and expected == a):
                    continue  # before the span, or emitted out of place right after a seek
                if number > expected:
                    raise ValueError(f"frames {expected}-{number - 1} missing from the decoded stream")
                position = number
                yield index, frame, float(frame_times[number])
                expected += 1
                if expected >= b:
                    break
            if expected < b:
                raise ValueError(f"frames {a}-{b}: expected {b - a} frames, decoded {expected - a}")


LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: luma 16-235, what every decoder assumes of an untagged H.264 stream


class FramePreparer:
    """Makes a decoded frame what the encoder takes: SDR (HDR and wide-gamut sources), upright
    (rotated sources), at the clip's size (area downscale), limited-range yuv420p.

    One per video and output size: the scaler keeps its swscale context (``frame.reformat`` builds
    one per frame). The same preparer serves the frame cache (:mod:`pipeline.framecache`), so a clip
    encoded from the cache is fed the frames that decoding its span again would have given.
    """

    def __init__(self, size: tuple[int, int], rotation: int = 0, to_sdr: SdrConverter | None = None, threads: int = 1) -> None:
        self.size = size
        self.rotation = rotation
        self.to_sdr = to_sdr
        self.threads = threads
        self.reformatter = VideoReformatter()

    @classmethod
    def for_config(cls, config: ExtractConfig, size: tuple[int, int], rotation: int = 0) -> "FramePreparer":
        """The preparer of ``config``'s clips of a video at ``size`` (its SDR conversion and threads)."""
        to_sdr = sdr_converter(config.hdr_to_sdr, config.decode_threads) if config.hdr_to_sdr else None
        return cls(size, rotation, to_sdr, config.decode_threads)

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        # SDR conversion and scaling in the coded orientation, then the small picture turned upright
        coded = self.size[::-1] if self.rotation in (90, 270) else self.size
        if self.to_sdr is not None and needs_sdr_conversion(frame):
            frame = self.to_sdr(frame, *coded, "yuv420p")  # at the clip's size: the scaler then has nothing left to do
        # area averaging: the right filter for a downscale (sizes never grow), and swscale's fastest here;
        # limited range, which every reader assumes of these clips: full-range sources (some phones, MJPEG) are converted
        out = self.reformatter.reformat(
            frame, width=coded[0], height=coded[1], format="yuv420p", interpolation="AREA",
            dst_color_range=LIMITED_RANGE, threads=self.threads,
        )
        return rotated_yuv420p(out, self.rotation) if self.rotation else out


def rotated_yuv420p(frame: av.VideoFrame, rotation: int) -> av.VideoFrame:
    """A yuv420p frame turned by ``rotation`` degrees counter-clockwise, plane by plane (no colour
    conversion: the values and colour description stay)."""
    turned = rotation in (90, 270)
    out = av.VideoFrame(frame.height if turned else frame.width, frame.width if turned else frame.height, "yuv420p")
    for source, target in zip(frame.planes, out.planes):
        plane_rows(target)[:, : target.width] = rotate_upright(plane_rows(source)[:, : source.width], rotation)
    copy_colour_tags(out, frame, COLOUR_DESCRIPTION)
    return out


class ClipEncoder:
    """Streams frames into an in-memory H.264 mp4, resampling to ``fps_out`` on the fly when set.

    Resampling takes, for each output time t0 + k/fps_out, the nearest source frame. Each frame
    written is first made ready by ``prepare`` (:class:`FramePreparer`), only the frames written
    (resampling drops frames) and once each (it repeats some); None: the frames come ready (from
    the frame cache).

    The bytes are not reproducible run to run: libx264 (one thread) given identical frames varies
    its output a little (~0.5% in size) whenever an H.264 decoder works in the same thread between
    its calls, as extraction's does; frame count, timing and picture are the same within coding noise.
    """

    def __init__(
        self,
        fps: float,
        size: tuple[int, int],
        config: ExtractConfig,
        resample: bool,
        span: tuple[float, float],
        prepare: FramePreparer | None = None,
    ) -> None:
        self.buffer = io.BytesIO()
        self.container = av.open(self.buffer, "w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream(config.codec, rate=rate)
        self.time_base = 1 / rate
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.color_range = LIMITED_RANGE
        self.stream.codec_context.thread_count = config.threads
        self.stream.options = {"crf": str(config.crf), "preset": config.preset}
        self.size = size
        self.fps = fps
        self.resample = resample
        self.t0, self.t_end = span
        self.next_target = self.t0
        self.previous: tuple[float, av.VideoFrame] | None = None
        self.count = 0
        self.prepare = prepare
        self._last_prepared: tuple[av.VideoFrame, av.VideoFrame] | None = None  # (source frame, prepared)

    def _prepared(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.prepare is None:
            return frame
        if self._last_prepared is None or self._last_prepared[0] is not frame:
            self._last_prepared = (frame, self.prepare(frame))
        return self._last_prepared[1]

    def _write(self, frame: av.VideoFrame) -> None:
        out = self._prepared(frame)
        if self.count == 0:
            copy_colour_tags(self.stream.codec_context, out)
        # constant-rate timestamps in the encoder's time base; the source's (pts and duration in its
        # own time base, 1/1000 in Matroska) are meaningless here and made the mp4 muxer fail
        out.pts = self.count
        out.time_base = self.time_base
        # x264 takes a frame's picture type as an order (libx264 honours I/P/B): decoded frames carry
        # the source's, which made every clip copy the source's GOP (a keyframe wherever it had one)
        out.pict_type = PictureType.NONE
        self.container.mux(self.stream.encode(out))
        self.count += 1

    def add(self, frame: av.VideoFrame, t: float) -> None:
        if not self.resample:
            self._write(frame)
            return
        while self.next_target <= t and self.next_target < self.t_end - 1e-9:
            if self.previous is not None and abs(self.previous[0] - self.next_target) < abs(t - self.next_target):
                self._write(self.previous[1])
            else:
                self._write(frame)
            self.next_target = self.t0 + (self.count) / self.fps
        self.previous = (t, frame)

    def finish(self) -> bytes:
        if self.resample and self.previous is not None:
            while self.next_target < self.t_end - 1e-9:
                self._write(self.previous[1])
                self.next_target = self.t0 + self.count / self.fps
        self.container.mux(self.stream.encode())
        self.container.close()
        return self.buffer.getvalue()


def deinterlaces(record: VideoRecord, config: ExtractConfig) -> bool:
    """Are this video's clips deinterlaced (its probe found fields, and ``config.deinterlace``)?"""
    return config.deinterlace and bool(getattr(record.probe, "interlaced", False))


def scan_view(record: VideoRecord, config: ExtractConfig) -> tuple[str, bool]:
    """How the scan analyses ``record`` to see what its clips will show: the HDR rendering intent (kept
    HDR, ``hdr_to_sdr: null``: as relative-intent SDR) and whether interlaced frames are read from their
    top field (:func:`deinterlaces`). The ``hdr_intent`` and ``deinterlace`` of :func:`pipeline.scan.scan_video`."""
    return config.hdr_to_sdr or "relative_colorimetric", deinterlaces(record, config)


def iter_extracted(record: VideoRecord, config: ExtractConfig) -> Iterator[ClipRecord]:
    """The kept clips of ``record`` in source order, each as soon as its mp4 is done (``clip.mp4`` and
    the output fps/size/frame count filled): one pass over the video however many clips it has.

    Clips whose frames the scan left in ``record.frame_cache`` (:mod:`pipeline.framecache`) are encoded
    from there; the rest are decoded again, their spans only."""
    kept = sorted(record.kept_clips(), key=lambda c: c.row["start_frame"])
    if not kept:
        return
    scan = record.scan
    rotation = int(record.video.get("rotation") or 0)
    spans = [(clip.row["start_frame"], clip.row["end_frame"]) for clip in kept]
    cache = record.frame_cache
    from_cache = 0  # the first spans lie in the cache (it holds a prefix of the video)
    if cache is not None and cache.config == config:  # made for these clips (size, SDR conversion)
        cache.keep_only(spans)  # what no clip needs is freed before encoding starts
        while from_cache < len(spans) and cache.holds(*spans[from_cache]):
            from_cache += 1
    keyframe_times = getattr(record.probe, "keyframe_times_s", None)
    if keyframe_times is not None and scan.time_origin_s is not None:
        keyframe_times = keyframe_times - scan.time_origin_s  # from the first frame, as the scan's times
    interlaced = deinterlaces(record, config)
    decoded = iter(())  # the file is opened only if some span is left to decode
    if from_cache < len(spans):
        decoded = _decode_spans(
            record.path, spans[from_cache:], scan.frame_times, scan.time_origin_s, config.seek_gap_s, config.decode_threads,
            keyframe_times, deinterlace=interlaced,
        )
    frames = itertools.chain(
        cache.take(spans[:from_cache], scan.frame_times) if from_cache else (),
        ((from_cache + index, frame, t) for index, frame, t in decoded),
    )
    preparers: dict[tuple[int, int], FramePreparer] = {}
    current: ClipEncoder | None = None
    current_index = -1
    for index, frame, t in frames:
        if index != current_index:
            if current is not None:
                _finish(kept[current_index], current)
                yield kept[current_index]
            clip = kept[index]
            size = output_size(clip.row["source_width"], clip.row["source_height"], config.max_short_side)
            fps = config.fps or float(clip.row["source_fps"])
            span = (t, float(clip.row["end_s"]))
            if index < from_cache:
                prepare = None  # the cache's frames are ready
            else:  # one preparer (swscale context) per output size, for the video's clips
                if size not in preparers:
                    preparers[size] = FramePreparer.for_config(config, size, rotation)
                prepare = preparers[size]
            current = ClipEncoder(fps, size, config, bool(config.fps), span, prepare=prepare)
            current_index = index
        current.add(frame, t)
    if current is not None:
        _finish(kept[current_index], current)
        yield kept[current_index]


def _finish(clip: ClipRecord, encoder: ClipEncoder) -> None:
    clip.mp4 = encoder.finish()
    clip.row.update(fps=encoder.fps, width=encoder.size[0], height=encoder.size[1], num_frames=encoder.count)


class ExtractStage(Stage):
    """Encode each kept clip to H.264 mp4 bytes, from the frame cache or decoding its span again.

    The last CPU stage: its records leave the worker in parts of about ``part_bytes`` (mp4s, keyframes)
    (:meth:`process_parts`), so a long video's clips are never all in memory at once. An error
    part-way rejects the clips not yet written (``error:extract``); those written stay.
    """

    name = "extract"
    reads_source = True
    sends_parts = True

    def process_record(self, record: VideoRecord) -> VideoRecord:
        """All the video's clips in one record (its parts put back together)."""
        clips = list(record.clips)
        for _ in self.process_parts(record):
            pass
        record.clips = clips
        return record

    def process_parts(self, record: VideoRecord) -> Iterator[VideoRecord]:
        start = time.perf_counter()
        record.keyframes = []  # the scan's; each clip holds its own (pipeline.plan)
        pending: list[ClipRecord] = []
        sent: set[int] = set()
        size = 0
        try:
            for clip in iter_extracted(record, self.config):
                pending.append(clip)
                size += len(clip.mp4) + sum(key.nbytes for key in clip.keyframes)
                if size >= self.config.part_bytes:
                    yield record.part(pending)
                    sent.update(map(id, pending))
                    pending, size = [], 0
        except Exception as exc:  # the clips written stay; the rest are rejected, saying why
            message = f"extract: {type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            log.warning("%s: %s", record.path, message)
            for clip in record.kept_clips():
                if clip.mp4 is None and id(clip) not in sent:
                    clip.reject("error:extract")
                    clip.row["error"] = message
            record.video["warning"] = "; ".join(w for w in (record.video.get("warning"), message) if w)
        # what follows (model stages, the driver) needs no per-frame signals, nor frames
        record.scan = None
        record.frame_cache = None
        record.probe = None
        record.clips = [clip for clip in record.clips if id(clip) not in sent]
        for clip in record.clips:
            if not clip.kept:
                clip.keyframes = []
        record.video["seconds"] = record.video.get("seconds", 0.0) + time.perf_counter() - start
        yield record
