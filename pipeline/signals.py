"""The scan's per-frame signals, computed from its small analysis frames a batch at a time.

:class:`FrameSignals` takes the analysis frames (BGR, all one size) in order, in batches, and
keeps per frame:

- hard cuts and scores from PySceneDetect's ``AdaptiveDetector`` / ``ContentDetector``, fed
  through their ``process_frame`` / ``post_process`` API;
- mean luma and sharpness (variance of the Laplacian of the grey frame);
- optical flow (OpenCV DIS or Farneback) on a smaller grey copy: mean magnitude and the global
  (median) motion, in frame lengths (long side) per second; the motion-compensated difference
  (the frame warped back along the flow against its predecessor), whose spikes are cuts that
  PySceneDetect misses next to fast camera motion (:func:`compensated_cuts`);
- candidate dissolves and fades (:class:`pipeline.transitions.BlendSpanDetector`);
- TransNetV2's probabilities, on every frame or where the signals above are unsure
  (:class:`pipeline.shotnet.TransNetV2Stream`, ``scan.learned``; fused in :mod:`pipeline.fusion`).

Why batches: the decoder evicts the analysis code's working set from the CPU caches at every
frame; running the analysis over a batch of frames keeps it warm (about a third less analysis
time at 720p), and the colour conversion and the median reductions then run once per batch.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.transitions import BlendSpanDetector

if TYPE_CHECKING:
    from pipeline.scan import ScanConfig

BATCH_FRAMES = 32
"""Analysis frames per batch (32 frames of 160x90 BGR: 1.4 MB)."""


def make_cut_detectors(config: ScanConfig) -> dict:
    """PySceneDetect detectors named by ``config.cut_detector``."""
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    detectors = {}
    if config.cut_detector in ("adaptive", "both"):
        detectors["adaptive"] = AdaptiveDetector(
            adaptive_threshold=config.adaptive_threshold,
            min_scene_len=config.min_shot_frames,
            window_width=config.adaptive_window,
            min_content_val=config.adaptive_min_content,
        )
    if config.cut_detector in ("content", "both"):
        detectors["content"] = ContentDetector(threshold=config.content_threshold, min_scene_len=config.min_shot_frames)
    return detectors


class _Flow:
    def __init__(self, method: str):
        self.method = method
        if method == "dis":
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if self.method == "dis":
            return self._dis.calc(prev, cur, None)
        return cv2.calcOpticalFlowFarneback(prev, cur, None, 0.5, 3, 9, 3, 5, 1.1, 0)


def column_medians(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``np.median(values, axis)`` with one partition (a third of the time on a few hundred rows)."""
    n = values.shape[axis]
    k = n // 2
    if n % 2:
        return np.take(np.partition(values, k, axis=axis), k, axis=axis)
    part = np.partition(values, (k - 1, k), axis=axis)
    return (np.take(part, k - 1, axis=axis) + np.take(part, k, axis=axis)) * 0.5


def _neighbour_means(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the mean of the ``window`` frames each side (frame 0, which has no difference to
    its predecessor, left out) and how many there are."""
    n = len(values)
    padded = np.concatenate([np.zeros(1), np.cumsum(values)])
    lo = np.maximum(np.arange(n) - window, 1)
    hi = np.minimum(np.arange(n) + window + 1, n)
    count = np.maximum(hi - lo - 1, 0)
    return (padded[hi] - padded[lo] - values) / np.maximum(count, 1), count


def compensated_cuts(
    differences: np.ndarray,
    content: np.ndarray,
    *,
    window: int,
    ratio: float,
    min_change: float,
    content_ratio: float,
    min_content: float,
    known: set[int],
    min_gap: int,
) -> list[int]:
    """Cuts by motion-compensated difference: frames whose difference is at least ``min_change``
    and ``ratio`` times the mean of the ``window`` frames each side, and whose cut detector score
    (``content``) is at least ``min_content`` and ``content_ratio`` times its neighbours' (the
    detector saw a jump, just not a big enough one: a jitter spike inside a shaky shot has a
    large difference but no such jump); at least ``min_gap`` frames from the ``known`` cuts and
    from each other (the stronger spike wins). Frame 0 is never a cut."""
    n = len(differences)
    if len(content) != n:
        raise ValueError(f"compensated_cuts: {n} differences but {len(content)} detector scores (one per frame each)")
    if n < 3:
        return []
    d = np.asarray(differences, np.float64)
    c = np.nan_to_num(np.asarray(content, np.float64))
    d_around, count = _neighbour_means(d, window)
    c_around, _ = _neighbour_means(c, window)
    spike = (d >= min_change) & (d >= ratio * d_around) & (c >= min_content) & (c >= content_ratio * c_around) & (count > 0)
    spike[0] = False
    cuts: list[int] = []
    taken = sorted(known)
    for i in sorted(np.nonzero(spike)[0], key=lambda i: -d[i]):
        j = int(np.searchsorted(taken, i))
        if (j < len(taken) and taken[j] - i < min_gap) or (j > 0 and i - taken[j - 1] < min_gap):
            continue
        taken.insert(j, int(i))
        cuts.append(int(i))
    return sorted(cuts)


class TransientScores:
    """Per frame ``k``: how far the picture before it comes back, ``min_j d(f[k-1], f[k+j]) / d(f[k-1], f[k])``
    over ``j = 1..frames`` (``d``: mean absolute difference of the tiny grey frames). A cut leaves the old
    picture for good (about 1 or more); a flash of up to ``frames`` frames returns to it (near 0)."""

    def __init__(self, frames: int):
        self.frames = frames
        self._ring: np.ndarray | None = None  # the last frames + 2 tiny frames
        self._count = 0
        self._ratio: list[float] = []

    def push(self, tiny: np.ndarray) -> None:
        """The next tiny grey frames ``(n, pixels)`` float32."""
        span = self.frames + 2
        for frame in tiny:
            if self._ring is None:
                self._ring = np.zeros((span, frame.size), np.float32)
            self._ring[self._count % span] = frame
            self._count += 1
            k = self._count - 1 - self.frames  # every frame after k up to k + frames is here
            if k >= 1:
                self._ratio.append(self._score(k, self._count))
            elif k == 0:
                self._ratio.append(np.inf)

    def _score(self, k: int, count: int) -> float:
        span = self.frames + 2
        before = self._ring[(k - 1) % span]
        jump = float(np.abs(self._ring[k % span] - before).mean())
        back = min(float(np.abs(self._ring[j % span] - before).mean()) for j in range(k + 1, min(count, k + 1 + self.frames)))
        return back / max(jump, 1e-6)

    def finish(self) -> np.ndarray:
        """The ratio per frame (inf for the first frame and where nothing follows)."""
        while len(self._ratio) < self._count:
            k = len(self._ratio)
            self._ratio.append(self._score(k, self._count) if 1 <= k < self._count - 1 else np.inf)
        return np.asarray(self._ratio, np.float64)


def _learned_stream(config: ScanConfig):
    """TransNetV2 for ``config.learned`` (None when off); the network is loaded once per process."""
    mode = config.learned_mode()
    if mode == "off":
        return None
    from pipeline.fusion import cached_transnetv2
    from pipeline.shotnet import TransNetV2Stream

    net = cached_transnetv2(config.learned_weights, config.learned_device)
    lag = BATCH_FRAMES + config.blend_max_frames + 8  # blend candidates are found up to this late
    batch = config.learned_batch_windows or (8 if net.device.type == "cuda" else 1)
    return TransNetV2Stream(net, batch, every_window=mode == "all", lag=lag)


class FrameSignals:
    """Per-frame signals of one video. Call :meth:`add` with consecutive batches of analysis
    frames and their times, then :meth:`finish`; read the lists and :attr:`cuts`."""

    def __init__(self, config: ScanConfig, fps_frac: Fraction, flow_size: tuple[int, int], blend_size: tuple[int, int]):
        from scenedetect.detectors import ThresholdDetector

        self.detectors = make_cut_detectors(config)
        # black frames: PySceneDetect's fade detector (mean of the frame below the threshold); its
        # state, which flips "out" at the first black frame and "in" at the first lit one, gives the
        # runs of black frames that resolve_transitions joins with the blends into fades
        self._black = ThresholdDetector(threshold=config.black_luma, method=ThresholdDetector.Method.FLOOR)
        self._black_since: int | None = None
        self.black_runs: list[tuple[int, int]] = []
        self.blend = (
            BlendSpanDetector(
                config.blend_min_frames, config.blend_max_frames, config.blend_min_change,
                config.blend_max_residual, config.blend_max_sharpness_dip, black_luma=config.black_luma,
                switch_max_residual=config.wipe_max_residual, frame_shape=(blend_size[1], blend_size[0]),
            )
            if config.gradual
            else None
        )
        self._flow = _Flow(config.flow_method)
        self._config = config
        self.learned = _learned_stream(config)
        self._transients = TransientScores(config.transient_frames) if config.transient_frames > 0 else None
        self._marked_blends: set[tuple[int, int]] = set()
        # the compensated cuts' detector: its score, its bar for a near miss (see :meth:`finish`)
        self._primary = "adaptive" if "adaptive" in self.detectors else "content"
        self._near_miss = config.adaptive_min_content if self._primary == "adaptive" else 0.5 * config.content_threshold
        self._compensate = config.compensated_threshold is not None and bool(self.detectors)
        grid_x, grid_y = np.meshgrid(np.arange(flow_size[0], dtype=np.float32), np.arange(flow_size[1], dtype=np.float32))
        self._grid = np.stack([grid_x, grid_y], axis=-1)  # flow frame coordinates, for warping along the flow
        self._fps_frac = fps_frac
        self._fps = float(fps_frac)
        self._flow_size = flow_size
        self._blend_size = blend_size
        self.count = 0
        self.luma: list[float] = []
        self.sharpness: list[float] = []
        self.motion: list[float] = []
        # mean |frame warped back along the flow - its predecessor|, 0-255; 0 where the detector scored
        # the frame below its near-miss bar (no cut there: saves the warp on most frames)
        self.compensated: list[float] = []
        self._global_motion: list[np.ndarray] = []  # (n, 2) per batch
        self.scores: dict[str, list[float]] = {name: [] for name in self.detectors}
        self.cuts: set[int] = set()
        self._prev_flow_gray: np.ndarray | None = None
        self._prev_time = 0.0
        self._last_timecode = None

    def add(self, frames: np.ndarray, times: list[float]) -> None:
        """Analyse ``frames`` (``(n, h, w, 3)`` uint8 BGR, the next ``n`` frames) shown at ``times`` (s)."""
        from scenedetect import FrameTimecode

        n, h, w, _ = frames.shape
        if n == 0:
            return
        grays = cv2.cvtColor(frames.reshape(n * h, w, 3), cv2.COLOR_BGR2GRAY).reshape(n, h, w)
        self.luma.extend(grays.reshape(n, -1).mean(axis=1).tolist())
        per_s = np.zeros(n)
        samples = None  # flow vectors on a 1-in-9 grid, for the global-motion medians
        blend_frames = np.empty((n, self._blend_size[0] * self._blend_size[1]), np.float32)
        flw, flh = self._flow_size
        for i in range(n):
            index = self.count + i
            bgr, gray = frames[i], grays[i]
            timecode = FrameTimecode(index, fps=self._fps_frac)
            for name, detector in self.detectors.items():
                for cut in detector.process_frame(timecode, bgr):
                    self.cuts.add(int(cut.frame_num))
                    if self.learned is not None:
                        self.learned.want(int(cut.frame_num) - 3, int(cut.frame_num) + 2)
                score = getattr(detector, "_frame_score", None)
                self.scores[name].append(float(score) if score is not None else float("nan"))
            self._last_timecode = timecode
            self._black.process_frame(timecode, bgr)
            fade = self._black.last_fade
            if fade["type"] == "out" and self._black_since is None:
                self._black_since = int(fade["frame"].frame_num)
            elif fade["type"] == "in" and self._black_since is not None:
                self.black_runs.append((self._black_since, int(fade["frame"].frame_num)))
                self._black_since = None

            lap = cv2.Laplacian(gray, cv2.CV_32F)
            sharpness = float(cv2.meanStdDev(lap)[1][0, 0] ** 2)
            self.sharpness.append(sharpness)

            flow_gray = cv2.resize(gray, (flw, flh), interpolation=cv2.INTER_AREA)
            if self._prev_flow_gray is None:
                self.motion.append(0.0)
                self.compensated.append(0.0)
            else:
                dt = times[i] - self._prev_time
                if dt <= 0:
                    dt = 1.0 / self._fps
                uv = self._flow(self._prev_flow_gray, flow_gray)
                per_s[i] = 1.0 / (max(flw, flh) * dt)
                self.motion.append(float(cv2.mean(cv2.magnitude(uv[..., 0], uv[..., 1]))[0]) * per_s[i])
                if self._compensate and self.scores[self._primary][-1] >= self._near_miss:
                    # prev(p) ~ cur(p + flow(p)): cur warped back along the flow is prev, unless a cut lies between
                    back = cv2.remap(flow_gray, self._grid + uv, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    self.compensated.append(cv2.norm(back, self._prev_flow_gray, cv2.NORM_L1) / back.size)
                else:
                    self.compensated.append(0.0)
                grid = uv[::3, ::3].reshape(-1, 2)
                if samples is None:
                    samples = np.zeros((n,) + grid.shape, np.float32)
                samples[i] = grid
            self._prev_flow_gray = flow_gray
            self._prev_time = times[i]

            blend_frames[i] = cv2.resize(flow_gray, self._blend_size, interpolation=cv2.INTER_AREA).reshape(-1)
        if self.blend is not None:
            self.blend.push_batch(blend_frames, np.asarray(self.sharpness[-n:], np.float64))
        if self.learned is not None:
            self._mark_unsure(n)
            from pipeline.shotnet import frames_for_transnet

            self.learned.push(frames_for_transnet(frames))
        # median over the grid: robust to moving objects (frames without flow: 0 x 0)
        medians = column_medians(samples, axis=1) if samples is not None else np.zeros((n, 2), np.float32)
        self._global_motion.append(medians * per_s[:, None])
        if self._transients is not None:
            self._transients.push(blend_frames)
        self.count += n

    def _mark_unsure(self, n: int) -> None:
        """Ask TransNetV2 about the last ``n`` frames where the cheap signals are unsure: a jump of the cut
        detector's score (at least ``learned_unsure_score`` and twice its two predecessors' mean), and every
        blend candidate found so far. Cuts are asked for as the detectors report them."""
        scores = np.nan_to_num(np.asarray(self.scores[self._primary][-(n + 2) :], np.float64)) if self.detectors else None
        if scores is not None and len(scores) > 2:
            before = 0.5 * (scores[:-2] + scores[1:-1])
            jumps = np.flatnonzero((scores[2:] >= self._config.learned_unsure_score) & (scores[2:] >= 2.0 * before))
            first = self.count + n - (len(scores) - 2)
            for j in jumps.tolist():
                self.learned.want(first + j - 3, first + j + 2)
        for span in self.blend.candidates if self.blend is not None else []:
            if (span.start, span.end) not in self._marked_blends:
                self._marked_blends.add((span.start, span.end))
                self.learned.want(span.start - 2, span.end + 2)

    def learned_probabilities(self) -> tuple[np.ndarray, np.ndarray] | None:
        """TransNetV2's ``(single, many_hot)`` per frame (NaN where it did not run); None when off."""
        return self.learned.finish() if self.learned is not None else None

    def finish(self) -> None:
        """Flush the detectors (cuts they hold back until the end of the video), then add the
        motion-compensated cuts they missed."""
        if self._last_timecode is None:
            return
        if self._black_since is not None:  # black to the end
            self.black_runs.append((self._black_since, self.count))
            self._black_since = None
        for detector in self.detectors.values():
            for cut in detector.post_process(self._last_timecode):
                self.cuts.add(int(cut.frame_num))
        config = self._config
        if self._compensate:
            self.cuts.update(
                compensated_cuts(
                    np.asarray(self.compensated),
                    np.asarray(self.scores[self._primary]),
                    window=config.adaptive_window,
                    ratio=config.compensated_threshold,
                    min_change=config.compensated_min_change,
                    # a near miss: half the adaptive ratio (a cut out of a shaky shot scores ~2-3)
                    content_ratio=0.5 * config.adaptive_threshold,
                    min_content=self._near_miss,
                    known=self.cuts,
                    min_gap=config.min_shot_frames,
                )
            )

    def transient(self, cuts: list[int]) -> set[int]:
        """The ``cuts`` whose old picture comes back within ``transient_frames`` (a flash, a flicker, something
        passing the lens): :class:`TransientScores` below ``transient_ratio``."""
        if self._transients is None:
            return set()
        ratio = self._transients.finish()
        return {k for k in cuts if 0 < k < len(ratio) and ratio[k] < self._config.transient_ratio}

    @property
    def global_motion(self) -> np.ndarray:
        """``(n, 2)`` median flow (dx, dy) per frame, frame lengths per second."""
        if not self._global_motion:
            return np.zeros((0, 2), np.float32)
        return np.concatenate(self._global_motion).astype(np.float32)
