"""The fused shot-boundary detector: the cheap detectors everywhere, TransNetV2 where it is asked.

The cheap detectors (PySceneDetect's, the motion-compensated cuts, the blend fit of
:mod:`pipeline.transitions`) see every frame. TransNetV2 (:mod:`pipeline.shotnet`) runs, in the
same decode pass, on the 48x27 copies of the analysis frames, either on every frame
(``scan.learned: all``) or only on the reference windows that hold a frame the cheap signals find
unsure (``scan.learned: unsure``): a local jump of the cut detector's score, a cut, a blend
candidate (:class:`pipeline.shotnet.TransNetV2Stream` with ``every_window=False``). Its windows are
the reference's (100 frames, every 50, the middle 50 kept), so a frame it scores gets exactly the
probability a run over the whole video gives it.

:func:`fuse` then decides: a cheap cut or blend that TransNetV2 scored is kept only if TransNetV2
sees a transition there (it reads passing cars and fast dancers as what they are; wipes, which it
misses, are kept); TransNetV2's own confident transitions where the cheap detectors saw none are
added. Runs of black frames (fades through black) are always kept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pipeline.shotnet import TransNetV2Net, load_transnetv2, transnet_transitions
from pipeline.transitions import BlendSpan


@functools.lru_cache(maxsize=2)
def cached_transnetv2(weights: str | None, device: str) -> TransNetV2Net:
    """:func:`pipeline.shotnet.load_transnetv2`, once per process (a Ray worker scans many videos)."""
    return load_transnetv2(weights, device)


@dataclass
class FusionConfig:
    """Thresholds of :func:`fuse` (TransNetV2 probabilities, 0..1; the defaults, and what they were chosen
    from, are ``scan.learned_verify_cut``, ``learned_verify_span`` and ``learned_add``)."""

    verify_cut: float
    """A cheap cut at frame ``k`` stands if TransNetV2's single-frame probability reaches this on frames
    ``k-2 .. k`` (it marks a cut on the old shot's last frame, ``k - 1``)."""
    verify_span: float
    """A blend candidate stands if either TransNetV2 output reaches this inside it (one frame around)."""
    add: float
    """TransNetV2's own transitions (single-frame probability above this) where the cheap detectors saw none."""


def _peak(probs: np.ndarray, start: int, end: int) -> float | None:
    """The largest probability on frames ``[start, end)``; None where none was computed."""
    window = probs[max(0, start) : max(0, end)]
    window = window[~np.isnan(window)]
    return float(window.max()) if len(window) else None


def fuse(
    cuts: list[int],
    blends: list[BlendSpan],
    single: np.ndarray,
    many: np.ndarray,
    config: FusionConfig,
    tolerance: int = 2,
) -> tuple[list[int], list[BlendSpan], list[tuple[int, int]]]:
    """The cheap cuts and blends TransNetV2 confirms (or did not score), and TransNetV2's own transitions
    ``[start, end)`` (cut: ``start == end``) away from them by more than ``tolerance`` frames. Wipes (switch
    spans: an edge sweeping across the frame) are not put to it: TransNetV2 misses hard-edged wipes (all 7
    of the hard synthetic set), and a pan or a passing object does not draw a straight sweeping edge."""
    kept_cuts = [k for k in cuts if (p := _peak(single, k - 2, k + 1)) is None or p >= config.verify_cut]
    either = np.fmax(single, many)
    kept_blends = [
        b for b in blends
        if b.kind == "switch" or (p := _peak(either, b.start - 1, b.end + 1)) is None or p >= config.verify_span
    ]
    taken = [(k, k) for k in kept_cuts] + [(b.start, b.end) for b in kept_blends]
    added = []
    for start, end in transnet_transitions(np.nan_to_num(single, nan=0.0), config.add):
        if all(end + tolerance < s or start - tolerance > max(e, s) for s, e in taken):
            added.append((start, end))
    return kept_cuts, kept_blends, added
