"""Transition-detection accuracy of vidforge's scan against PySceneDetect alone, and scan speed.

Generates a corpus with ground truth (``pipeline.samples``), then for each method reports
precision, recall and F1 of detected transitions. Matching (one-to-one, greedy by distance):
a detected cut matches a true cut within ±2 frames; otherwise a detection matches a truth when
their spans overlap, each widened by 2 frames (so a cut reported inside a dissolve or fade
counts for PySceneDetect, which reports gradual transitions, if at all, as cuts).

Then it times ``scan_video`` against a plain PyAV decode loop over the same files (same run)
and prints the ratio; ``--speed-size 1280x720`` adds a corpus at that size for a realistic ratio.

    python tests/bench/bench_cuts.py [--num-videos 20] [--seed 1234] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import av  # noqa: E402

from pipeline.samples import load_ground_truth, make_corpus  # noqa: E402
from pipeline.scan import ScanConfig, scan_video  # noqa: E402

TOLERANCE = 2


def match(detected: list[tuple[int, int]], truth: list[tuple[int, int]], tol: int = TOLERANCE):
    """Greedy one-to-one matching of [start, end) spans (cuts: start == end). Returns (tp, fp, fn, matched truth idx)."""
    pairs = []
    for i, (ds, de) in enumerate(detected):
        for j, (ts, te) in enumerate(truth):
            if ds == de and ts == te:
                dist = abs(ds - ts)
                ok = dist <= tol
            else:
                ok = ds - tol <= te + tol - (1 if te > ts else 0) and ts - tol <= (de - 1 if de > ds else de) + tol
                dist = abs((ds + de) / 2 - (ts + te) / 2)
            if ok:
                pairs.append((dist, i, j))
    used_d, used_t = set(), set()
    for _, i, j in sorted(pairs):
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    tp = len(used_t)
    return tp, len(detected) - tp, len(truth) - tp, used_t


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def scenedetect_cuts(path: str, detector) -> list[tuple[int, int]]:
    from scenedetect import detect

    scenes = detect(path, detector, backend="pyav")
    return [(s.frame_num, s.frame_num) for s, _ in scenes[1:]]


def decode_only(path: str) -> tuple[float, float]:
    """Wall and CPU (all threads) seconds of a plain threaded PyAV decode loop."""
    t0, c0 = time.perf_counter(), time.process_time()
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            pass
    return time.perf_counter() - t0, time.process_time() - c0


def scan_only(path: str, config: ScanConfig) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    scan_video(path, config)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--workdir", default=None, help="where to write the corpus (default: a temp dir)")
    parser.add_argument("--speed-size", default="", help="also time on a corpus at WxH, e.g. 1280x720")
    parser.add_argument("--verbose", action="store_true", help="print misses and false alarms")
    args = parser.parse_args()

    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    root = Path(args.workdir or tmp.name)
    t0 = time.perf_counter()
    gt_path = root / "ground_truth.json"
    videos = load_ground_truth(gt_path) if gt_path.exists() else make_corpus(root, args.num_videos, seed=args.seed)
    n_frames = sum(v.num_frames for v in videos)
    kinds: dict[str, int] = {}
    for v in videos:
        for t in v.transitions:
            kinds[t.kind] = kinds.get(t.kind, 0) + 1
    print(f"corpus: {len(videos)} videos, {n_frames} frames, transitions {kinds} ({time.perf_counter() - t0:.1f}s to make)")

    config = ScanConfig()
    methods = {
        "vidforge scan_video": lambda p: [(t.start, t.end) for t in scan_video(p, config).transitions],
        "scenedetect ContentDetector": lambda p: scenedetect_cuts(p, ContentDetector()),
        "scenedetect AdaptiveDetector": lambda p: scenedetect_cuts(p, AdaptiveDetector()),
    }
    rows = []
    for name, fn in methods.items():
        tp = fp = fn_ = 0
        by_kind_hit: dict[str, int] = {}
        t_method = time.perf_counter()
        for v in videos:
            truth = [(t.start, t.end) for t in v.transitions]
            det = fn(v.path)
            a, b, c, hit = match(det, truth)
            tp, fp, fn_ = tp + a, fp + b, fn_ + c
            for j in hit:
                k = v.transitions[j].kind
                by_kind_hit[k] = by_kind_hit.get(k, 0) + 1
            if args.verbose and (b or c):
                missed = [truth[j] + (v.transitions[j].kind,) for j in range(len(truth)) if j not in hit]
                print(f"  {name} {Path(v.path).name}: missed {missed}; detected {det}")
        p, r, f = prf(tp, fp, fn_)
        recall_kind = " ".join(f"{k}={by_kind_hit.get(k, 0)}/{kinds[k]}" for k in sorted(kinds))
        rows.append((name, tp, fp, fn_, p, r, f, recall_kind, time.perf_counter() - t_method))

    print(f"\ntransition detection (cut: ±{TOLERANCE} frames; gradual: spans overlap, ±{TOLERANCE})")
    print(f"{'method':30s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'prec':>6s} {'recall':>6s} {'F1':>6s}  recall by kind         time")
    for name, tp, fp, fn_, p, r, f, rk, sec in rows:
        print(f"{name:30s} {tp:4d} {fp:4d} {fn_:4d} {p:6.3f} {r:6.3f} {f:6.3f}  {rk:22s} {sec:5.1f}s")
    print("F1: " + ", ".join(f"{name} {f:.3f}" for name, *_, f, _rk, _s in rows))

    def speed(label: str, paths: list[str], repeats: int = 3) -> None:
        """Best of ``repeats`` interleaved runs per file (the machine may be shared), wall and CPU."""
        dec = [0.0, 0.0]
        scan = [0.0, 0.0]
        for p in paths:
            decode_only(p)  # warm the page cache
            d_runs, s_runs = [], []
            for _ in range(repeats):
                d_runs.append(decode_only(p))
                s_runs.append(scan_only(p, config))
            for k in range(2):
                dec[k] += min(r[k] for r in d_runs)
                scan[k] += min(r[k] for r in s_runs)
        frames = sum(av.open(p).streams.video[0].frames for p in paths)
        print(
            f"speed {label} ({frames} frames): decode-only {dec[0]:.2f}s wall / {dec[1]:.2f}s CPU, "
            f"scan_video {scan[0]:.2f}s wall / {scan[1]:.2f}s CPU; "
            f"ratio {scan[0] / dec[0]:.2f}x wall, {scan[1] / dec[1]:.2f}x CPU"
        )

    print()
    speed(f"{videos[0].width}x{videos[0].height}", [v.path for v in videos[:6]])
    if args.speed_size:
        av.logging.set_level(None)  # scenedetect's PyAV backend turned FFmpeg's logging on
        w, h = (int(x) for x in args.speed_size.lower().split("x"))
        big = make_corpus(root / f"speed_{w}x{h}", 2, seed=args.seed, size=(w, h))
        speed(f"{w}x{h}", [v.path for v in big])
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
