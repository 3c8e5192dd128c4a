"""Gradual transitions (dissolves, fades through black), which PySceneDetect's detectors lack.

A dissolve from shot A to shot B shows frames ``(1 - a) A + a B`` with ``a`` rising from 0 to 1;
a fade-out is a dissolve to black and a fade-in one from black. :class:`BlendSpanDetector`
finds such spans while frames stream past, keeping only a bounded ring buffer of tiny grey
frames. A span ``[s, e)`` is a candidate when:

1. the frames before and after it differ (``P = f[s-1]``, ``N = f[e]``, mean |N - P| large);
2. every frame inside is well explained as a blend ``P + a_k (N - P)`` (small residual), with
   ``a_k`` rising steadily, without a jump (a hard cut inside a shaky or panning shot fits as flat
   ``a``, a jump at the cut, flat again);
3. detail dips in the middle, as a blend predicts: the variance of the Laplacian of a blend of
   two unrelated pictures is about ``(1-a)^2 G_A + a^2 G_B``, half the endpoints' mean at
   ``a = 1/2`` (checked both against the linear interpolation and against this prediction).

A camera pan or zoom fails (2) at fine enough scale and never shows the dip (3); a hard cut fails
(2). Overlapping candidates are resolved by keeping the best-scoring one; frames equal to an
endpoint (``a`` ~ 0 or ~ 1, e.g. a still shot before a dissolve) are trimmed off and the
boundaries are refined from the fitted ramp of ``a``. A blend with a black frame (fade-out,
fade-in) skips test (3): no camera move fades to black.

:func:`resolve_transitions` then joins fade-outs, black frames (PySceneDetect's ``ThresholdDetector``)
and fade-ins into fades, merges hard cuts from PySceneDetect (dropping those inside a gradual span)
and derives the shots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Transition:
    """``cut`` (``start == end``: the cut lies just before frame ``start``), ``dissolve`` or
    ``fade``; frames ``[start, end)`` belong to no shot."""

    start: int
    end: int
    kind: str


@dataclass
class BlendSpan:
    """A candidate blend ``[start, end)`` between ``f[start-1]`` and ``f[end]``."""

    start: int
    end: int
    score: float
    change: float  # mean |N - P| on the blend frames (0..255)
    residual: float  # mean residual of the blend fit divided by ``change``
    kind: str = "blend"  # "blend" (alpha: dissolve, fade) or "switch" (each pixel turns from P to N: wipe, dither)


_MAX_BATCH = 64
"""Frames per :meth:`BlendSpanDetector.push_batch` chunk (the ring holds this many beyond the spans)."""


class BlendSpanDetector:
    """Streaming detector of blend spans (dissolves, fade-outs, fade-ins).

    Call :meth:`push` once per frame, in order, with a small grey frame (``float32``, a few
    hundred pixels; any fixed size) and that frame's sharpness, or :meth:`push_batch` with several;
    then :meth:`finish`. Memory is bounded by ``max_frames + 66`` small frames.
    """

    def __init__(
        self,
        min_frames: int = 4,
        max_frames: int = 32,
        min_change: float = 10.0,
        max_residual: float = 0.6,
        max_sharpness_dip: float = 0.65,
        min_ramp_correlation: float = 0.9,
        max_ramp_jump: float = 0.25,
        trim: float = 0.02,
        max_dip_mismatch: float = 1.5,
        black_luma: float = 12.0,
        fits_per_frame: int = 3,
        switch_max_residual: float | None = 0.25,
        frame_shape: tuple[int, int] | None = None,
        max_edge_blur: float = 0.12,
    ):
        if not 1 <= min_frames <= max_frames:
            raise ValueError(f"expected 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.min_change = min_change
        self.max_residual = max_residual
        self.max_sharpness_dip = max_sharpness_dip
        self.min_ramp_correlation = min_ramp_correlation
        self.max_ramp_jump = max_ramp_jump
        self.trim = trim
        self.max_dip_mismatch = max_dip_mismatch
        self.black_luma = black_luma
        self.fits_per_frame = fits_per_frame
        self.switch_max_residual = switch_max_residual if frame_shape is not None else None
        self.frame_shape = frame_shape  # (height, width) of the small frames: wipes need it
        self.max_edge_blur = max_edge_blur
        # ring buffers: frame j lives in slot j % size (no per-frame list stacking)
        self._size = size = max_frames + 2 + _MAX_BATCH
        self._ring: np.ndarray | None = None  # (size, pixels) float32, allocated on the first push
        self._sharp = np.zeros(size, np.float64)
        self._black = np.zeros(size, bool)
        self._index = -1
        self.candidates: list[BlendSpan] = []  # pending: may still overlap spans to come
        self.num_candidates = 0
        self._chosen: list[BlendSpan] = []
        self._lengths = np.arange(min_frames, max_frames + 1)

    def push(self, small_gray: np.ndarray, sharpness: float) -> None:
        """Add the next frame."""
        self.push_batch(small_gray.reshape(1, -1), np.asarray([sharpness], np.float64))

    def push_batch(self, small_grays: np.ndarray, sharpness: np.ndarray) -> None:
        """Add the next ``n`` frames (``(n, pixels)`` float32, ``(n,)`` sharpness): the same result as
        ``n`` calls of :meth:`push`, with the cheap pre-test vectorised over the batch."""
        if len(sharpness) == 0:
            return
        frames = np.asarray(small_grays, np.float32).reshape(len(sharpness), -1)
        for first in range(0, len(frames), _MAX_BATCH):
            self._push_chunk(frames[first : first + _MAX_BATCH], np.asarray(sharpness[first : first + _MAX_BATCH], np.float64))

    def _push_chunk(self, frames: np.ndarray, sharpness: np.ndarray) -> None:
        n, size = len(frames), self._size
        if self._ring is None:
            self._ring = np.zeros((size, frames.shape[1]), np.float32)
        elif frames.shape[1] != self._ring.shape[1]:
            raise ValueError(f"push: expected frames of {self._ring.shape[1]} pixels (as the first), got {frames.shape[1]}")
        ring, sharp, black = self._ring, self._sharp, self._black
        ends = self._index + 1 + np.arange(n)  # the frame indices e of this chunk
        end_slots = ends % size
        ring[end_slots] = frames
        sharp[end_slots] = sharpness
        black[end_slots] = frames.mean(axis=1) < self.black_luma
        self._index += n

        # pre-test of every span [s, e) ending at a frame of the chunk, s = e - length; P = s - 1
        lengths = self._lengths
        history = np.minimum(ends + 1, self.max_frames + 2)  # frames e-history+1 .. e are usable
        valid = lengths[None, :] + 2 <= history[:, None]
        starts = ends[:, None] - lengths[None, :]
        prev_slots = (starts - 1) % size
        mid_slots = (starts + (lengths[None, :] - 1) // 2) % size
        ends_avg = 0.5 * (sharp[prev_slots] + sharp[end_slots][:, None])
        dip = sharp[mid_slots] / np.maximum(ends_avg, 1e-6)
        # cheap pre-test on the middle frame only (the fit below averages over the middle half);
        # frames with almost no detail at both ends (black, flat) can still blend: no dip test
        black_end = black[prev_slots] | black[end_slots][:, None]
        keep = valid & ((dip <= min(1.0, self.max_sharpness_dip + 0.25)) | (ends_avg < 1.0) | black_end)
        rows, cols = np.nonzero(keep)  # per frame, lengths ascending
        if rows.size:
            prev = ring[prev_slots[rows, cols]]
            mid = ring[mid_slots[rows, cols]]
            diff = ring[end_slots[rows]] - prev
            change = np.abs(diff).mean(axis=1)
            denom = np.maximum((diff * diff).sum(axis=1), 1e-6)
            a = ((mid - prev) * diff).sum(axis=1) / denom
            resid = np.abs(mid - prev - a[:, None] * diff).mean(axis=1) / np.maximum(change, 1e-6)
            ok = (change >= self.min_change) & (resid <= 1.5 * self.max_residual) & (a > 0.15) & (a < 0.85)
            pre_score = np.where(ok, change * (1.0 - resid), -np.inf)
            bounds = np.searchsorted(rows, np.arange(n + 1))
        switch_rows = self._switch_pretest(ring, valid, starts, lengths, end_slots, size)
        for i in range(n):
            e = int(ends[i])
            # spans found from now on start after frame e - max_frames: pending candidates that
            # all end before that are settled (keeps memory bounded on long videos)
            if self.candidates and max(c.end for c in self.candidates) <= e - self.max_frames:
                self._chosen.extend(_non_overlapping(self.candidates))
                self.candidates = []
            for length in switch_rows.get(i, ()):
                self._fit_switch(e - length, e)
            if not rows.size:
                continue
            lo, hi = bounds[i], bounds[i + 1]
            good = int(ok[lo:hi].sum())
            if good:  # fit only the few most promising spans ending here
                for j in np.argsort(-pre_score[lo:hi])[: min(self.fits_per_frame, good)]:
                    self._fit(int(starts[i, cols[lo + j]]), e)

    def _fit(self, s: int, e: int) -> None:
        """Fit every frame of ``[s, e)`` as a blend of ``f[s-1]`` and ``f[e]``; keep it if it fits."""
        size = self._size
        ring = self._ring
        prev, nxt = ring[(s - 1) % size], ring[e % size]
        span_slots = np.arange(s, e) % size
        # detail dip first (cheap: per-frame sharpness only; half the spans fitted end here): the
        # sharpness over its linear interpolation between the ends, middle half. A fade (a blend
        # with black) needs no detail test: no camera move fades to black, and the sensor/codec
        # noise floor of dim frames skews the sharpness model
        g_prev, g_next = self._sharp[(s - 1) % size], self._sharp[e % size]
        length = e - s
        q = length // 4
        g = self._sharp[span_slots]
        to_black = min(float(prev.mean()), float(nxt.mean())) < self.black_luma
        detail_test = max(g_prev, g_next) >= 1.0 and not to_black
        if detail_test:
            lerp = g_prev + (g_next - g_prev) * np.arange(1, length + 1) / (length + 1)
            if float((g / np.maximum(lerp, 1e-6))[q : length - q].mean()) > self.max_sharpness_dip:
                return
        inner = ring[span_slots]
        diff = nxt - prev
        change = float(np.abs(diff).mean())
        a = ((inner - prev) @ diff) / max(float(diff @ diff), 1e-6)
        resid = np.abs(inner - prev[None, :] - a[:, None] * diff[None, :]).mean(axis=1) / max(change, 1e-6)
        inner_span = self._off_the_ends(a)
        if inner_span is None:
            return
        lo, hi = inner_span
        a_in, r_in = a[lo:hi], resid[lo:hi]
        if float(r_in.mean()) > self.max_residual or not self._steady_ramp(a_in):
            return
        if to_black and not self._scaled_copies(prev, nxt, inner[lo:hi]):
            return
        if detail_test:  # the dip about as deep as a blend predicts: (1-a)^2 G_P + a^2 G_N
            expected = (1.0 - a) ** 2 * g_prev + a**2 * g_next
            agree = float((g / np.maximum(expected, 1e-6))[q : length - q].mean())
            if not 1.0 / self.max_dip_mismatch <= agree <= self.max_dip_mismatch:
                return
        mean_resid = float(r_in.mean())
        score = change * (1.0 - mean_resid / self.max_residual * 0.5)
        start, end = self._refine(a, s + lo, s + hi, s)
        if end - start < 0.5 * (hi - lo):  # most of the fitted frames should lie on the ramp
            return
        self.candidates.append(BlendSpan(start, end, score, change, mean_resid))
        self.num_candidates += 1

    def _off_the_ends(self, ramp: np.ndarray) -> tuple[int, int] | None:
        """``[lo, hi)``: the span's frames left when those equal to an endpoint (``ramp`` within ``trim`` of 0
        or 1: a still shot before or after the transition) are trimmed off; None when too few are left."""
        lo, hi = 0, len(ramp)
        while lo < hi and ramp[lo] < self.trim:
            lo += 1
        while hi > lo and ramp[hi - 1] > 1.0 - self.trim:
            hi -= 1
        return (lo, hi) if hi - lo >= max(2, self.min_frames // 2) else None

    def _steady_ramp(self, ramp: np.ndarray) -> bool:
        """``ramp`` (how far each frame is from ``P`` to ``N``) rises steadily through one half. A hard cut
        inside a moving shot fits a "ramp" that jumps (0.13 -> 0.75 in one frame) between two flat runs,
        which passes the correlation test."""
        if _ramp_correlation(ramp) < self.min_ramp_correlation:
            return False
        rises = np.diff(ramp)
        if len(rises) > 1 and rises.max() > max(self.max_ramp_jump, 3.0 * float(np.median(np.abs(rises)))):
            return False
        return ramp[0] <= 0.5 <= ramp[-1]

    def _switch_pretest(self, ring, valid, starts, lengths, end_slots, size) -> dict[int, list[int]]:
        """Per frame of the chunk, the span lengths (best first, at most ``fits_per_frame``) whose middle frame is
        part ``P``, part ``N`` pixel by pixel (a wipe's two sides, a dither dissolve's mix): few pixels far
        from both, between a quarter and three quarters of the changed pixels already ``N``."""
        if self.switch_max_residual is None:
            return {}
        rows, cols = np.nonzero(valid)
        prev = ring[(starts[rows, cols] - 1) % size, ::3]  # every third pixel: a pre-test, a third of the work
        nxt = ring[end_slots[rows], ::3]
        step = np.abs(nxt - prev)
        change = step.mean(axis=1)
        big = change >= self.min_change  # most spans inside a shot stop here
        rows, cols, prev, nxt, step, change = rows[big], cols[big], prev[big], nxt[big], step[big], change[big]
        if not rows.size:
            return {}
        mid = ring[(starts[rows, cols] + (lengths[cols] - 1) // 2) % size, ::3]
        d_prev, d_next = np.abs(mid - prev), np.abs(mid - nxt)
        resid = np.minimum(d_prev, d_next).mean(axis=1) / np.maximum(change, 1e-6)
        changed = step > 0.5 * change[:, None]
        q = ((d_next < d_prev) & changed).sum(axis=1) / np.maximum(changed.sum(axis=1), 1)
        ok = (resid <= self.switch_max_residual) & (q > 0.25) & (q < 0.75)
        found: dict[int, list[int]] = {}
        passing = np.flatnonzero(ok)
        for r in passing[np.argsort(resid[passing])]:  # best first
            if len(found.setdefault(int(rows[r]), [])) < self.fits_per_frame:
                found[int(rows[r])].append(int(lengths[cols[r]]))
        return found

    def _fit_switch(self, s: int, e: int) -> None:
        """Fit ``[s, e)`` as a switch from ``f[s-1]`` to ``f[e]``: every frame's pixels are either ``P``'s or
        ``N``'s, and the share of ``N`` pixels rises steadily (a wipe, a dither dissolve); keep it if it fits."""
        size = self._size
        prev, nxt = self._ring[(s - 1) % size], self._ring[e % size]
        inner = self._ring[np.arange(s, e) % size]
        step = np.abs(nxt - prev)
        change = float(step.mean())
        changed = step > 0.5 * change
        d_prev, d_next = np.abs(inner - prev), np.abs(inner - nxt)
        resid = np.minimum(d_prev, d_next).mean(axis=1) / max(change, 1e-6)
        q = ((d_next < d_prev) & changed).sum(axis=1) / max(int(changed.sum()), 1)
        inner_span = self._off_the_ends(q)
        if inner_span is None:
            return
        lo, hi = inner_span
        q_in, r_in = q[lo:hi], resid[lo:hi]
        if float(r_in.mean()) > self.switch_max_residual or not self._steady_ramp(q_in) or np.diff(q_in).min() < -0.05:
            return  # a wipe's edge never steps back
        if not self._straight_edge(((d_next < d_prev) & changed)[lo:hi], changed):
            return
        mean_resid = float(r_in.mean())
        start, end = self._refine(q, s + lo, s + hi, s)
        if end - start < 0.5 * (hi - lo):
            return
        score = change * (1.0 - mean_resid / self.switch_max_residual * 0.5)
        self.candidates.append(BlendSpan(start, end, score, change, mean_resid, "switch"))
        self.num_candidates += 1

    def _straight_edge(self, turned: np.ndarray, changed: np.ndarray) -> bool:
        """A wipe: in every frame the turned pixels (``(k, pixels)`` bool) lie on one side of an edge across
        the frame, on the same side and axis throughout: along that axis the turned share of the changed
        pixels of each column (or row) is a step, near 0 or 1 (``max_edge_blur``: mean distance from the
        nearer) and monotone, rising the same way in every frame. A pan, a zoom, a moving subject turn
        pixels here and there."""
        h, w = self.frame_shape
        turned = turned.reshape(len(turned), h, w)
        changed = changed.reshape(h, w)
        for axis in (1, 2):  # 1: along the rows (a vertical wipe), 2: along the columns (a horizontal one)
            count = changed.sum(axis=axis - 1)
            used = count >= 2
            if used.sum() < 4:
                continue
            share = (turned.sum(axis=axis) / np.maximum(count, 1)[None, :])[:, used]
            if float(np.minimum(share, 1 - share).mean()) > self.max_edge_blur:
                continue
            steps = np.diff(share, axis=1)
            way = np.sign(steps.sum())
            if way and float(np.clip(-way * steps, 0, None).sum(axis=1).max()) <= 2 * self.max_edge_blur:
                return True
        return False

    def _scaled_copies(self, prev: np.ndarray, nxt: np.ndarray, inner: np.ndarray) -> bool:
        """A fade dims the whole picture: contrast relative to brightness (std / mean) stays put.
        A camera moving onto a black area darkens only part of the frame, which raises it."""
        ref = prev if prev.mean() >= nxt.mean() else nxt
        ref_cv = float(ref.std()) / max(float(ref.mean()), 1e-6)
        means = inner.mean(axis=1)
        lit = means >= 2 * self.black_luma  # dimmer frames are dominated by codec noise
        if not lit.any():
            return True
        cv = inner[lit].std(axis=1) / means[lit]
        return bool(np.all(np.abs(np.log(np.maximum(cv, 1e-6) / max(ref_cv, 1e-6))) <= math.log(1.5)))

    @staticmethod
    def _refine(a: np.ndarray, start: int, end: int, s: int) -> tuple[int, int]:
        """Boundaries from the ramp: fit ``a = alpha + beta * j`` on the frames with ``a`` in
        [0.15, 0.85] and put the span where the line runs from 0 to 1 (a linear dissolve of ``L``
        frames has ``a = (k + 1) / (L + 1)``). Only ever shrinks ``[start, end)``, so frames of a
        moving shot next to the blend, which still fit with ``a`` near 0 or 1, are given back."""
        j = np.arange(len(a), dtype=np.float64)
        mid = (a > 0.15) & (a < 0.85)
        if mid.sum() < 3:
            return start, end
        beta, alpha = np.polyfit(j[mid], a[mid], 1)
        if beta <= 1e-6:
            return start, end
        first = s + int(math.floor(-alpha / beta + 1.0 + 0.5))  # the frame after a = 0
        last = s + int(math.floor((1.0 - alpha) / beta + 0.5))  # the frame where a = 1
        return max(start, first), min(end, max(last, first + 1))

    def finish(self) -> list[BlendSpan]:
        """The non-overlapping best candidates, in order."""
        self._chosen.extend(_non_overlapping(self.candidates))
        self.candidates = []
        return sorted(self._chosen, key=lambda c: c.start)


def _ramp_correlation(values: np.ndarray) -> float:
    """Pearson correlation of ``values`` with ``0, 1, 2, ...``; 0 when ``values`` is flat (std < 1e-6)."""
    centred = values - values.mean()
    spread = float(centred @ centred)
    if math.sqrt(spread / len(values)) < 1e-6:
        return 0.0
    ramp = np.arange(len(values), dtype=np.float64)
    ramp -= ramp.mean()
    return float(centred @ ramp) / math.sqrt(spread * float(ramp @ ramp))


def _non_overlapping(candidates: list[BlendSpan]) -> list[BlendSpan]:
    """Greedy non-maximum suppression: best score first, drop whatever overlaps a kept span."""
    chosen: list[BlendSpan] = []
    for cand in sorted(candidates, key=lambda c: -c.score):
        if all(cand.end <= c.start or cand.start >= c.end for c in chosen):
            chosen.append(cand)
    return chosen


def resolve_transitions(
    num_frames: int,
    cuts: list[int],
    blends: list[BlendSpan],
    black_runs: list[tuple[int, int]],
    luma: np.ndarray,
    black_luma: float = 12.0,
    max_gap: int = 3,
    cut_tolerance: int = 2,
    learned_spans: list[tuple[int, int]] = (),
) -> tuple[list[Transition], list[tuple[int, int]]]:
    """Combine hard cuts, blend spans and runs of black frames (``[start, end)``, from PySceneDetect's
    ``ThresholdDetector``: see :class:`pipeline.signals.FrameSignals`) into transitions and the
    shots between them.

    Blend spans, black runs and ``learned_spans`` (TransNetV2's, :mod:`pipeline.fusion`) at most ``max_gap``
    frames apart are joined (no shot is that short); a joined span that holds or touches a frame of mean
    luma below ``black_luma`` is a ``fade``, else what its first fitted span was: a ``dissolve`` (blend fit)
    or a ``wipe`` (switch fit), else ``gradual`` (TransNetV2 alone found it). Cuts inside or within
    ``cut_tolerance`` frames of a gradual span are dropped.
    """
    spans = [[b.start, b.end, "wipe" if b.kind == "switch" else "dissolve"] for b in blends]
    spans += [[s, e, "dissolve"] for s, e in black_runs]
    spans += [[s, e, "gradual"] for s, e in learned_spans]
    spans.sort()
    merged: list[list] = []
    for s, e, kind in spans:
        if merged and s <= merged[-1][1] + max_gap:
            merged[-1][1] = max(merged[-1][1], e)  # e.g. fade-out, black frames, fade-in
            merged[-1][2] = merged[-1][2] if merged[-1][2] != "gradual" else kind  # a fitted kind wins
        else:
            merged.append([s, e, kind])
    gradual: list[Transition] = []
    for s, e, fitted_kind in merged:
        s, e = max(0, s), min(num_frames, e)
        if e <= s:
            continue
        lo, hi = max(0, s - 1), min(num_frames, e + 1)
        kind = "fade" if float(luma[lo:hi].min()) < black_luma else fitted_kind
        gradual.append(Transition(s, e, kind))
    hard = []
    for c in sorted(set(int(c) for c in cuts)):
        if c <= 0 or c >= num_frames:
            continue
        if any(t.start - cut_tolerance <= c <= t.end + cut_tolerance for t in gradual):
            continue
        hard.append(Transition(c, c, "cut"))
    transitions = sorted(gradual + hard, key=lambda t: (t.start, t.end))
    shots: list[tuple[int, int]] = []
    pos = 0
    for t in transitions:
        if t.start > pos:
            shots.append((pos, t.start))
        pos = max(pos, t.end)
    if pos < num_frames:
        shots.append((pos, num_frames))
    return transitions, shots
