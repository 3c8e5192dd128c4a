"""Curation throughput against two baselines measured in the same run.

- floor: decoding the same files once, nothing else, with the same number of processes (the faster
  of FFmpeg's decoder threads and one decoder thread per process);
- vidforge scan → filter (probe, single-pass scan, plan, filter), without and with filling the frame
  cache, and the whole CPU chain with extraction at the default output size (short side 480, libx264
  ``veryfast``), in the same process pool, with the frame cache (the default) and without it (the
  kept spans decoded again); the whole chain again with the ``--fast-preset`` encoder preset, to show
  what the encoder costs (and the clip files' bytes with either preset: what a faster preset costs);
- multi-pass: PySceneDetect's own pass (ContentDetector), then a separate motion pass (decode again,
  optical flow), then extraction of the clips vidforge keeps (decode those spans again, encode with
  the same settings) — the glue-code way;
- the multi-pass analysis passes without extraction, and the encoder alone on the kept frames
  (decoded and downscaled beforehand, untimed): what extraction costs whichever way it is run;
- the same chain in 1 process, for the speed-up from 1 to ``--workers`` processes;
- the real ``vidforge curate`` command (embedded Ray, start-up included) with 1 and 2 workers.

Targets: scan → filter ≤ 1.3× the floor; with extraction ≤ 2× the floor; ≥ 2× faster than multi-pass.

    python tests/bench/bench_curate.py [--videos 8] [--workers 2] [--size 1280x720] [--fast-preset superfast] [--repeats 2]
    python tests/bench/bench_curate.py --corpus DIR  # your own videos instead of the generated corpus

The default size is HD because raw footage is: the scan's per-frame analysis works on a 160-pixel
wide copy, so its cost is fixed per frame while decoding grows with the pixels (at 640x360 the
ratios are higher; pass ``--size`` to see them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np


def decode_once(args: tuple[str, int]) -> int:
    """The floor: demux and decode every frame, nothing more (``threads`` decoder threads, 0: FFmpeg's choice)."""
    path, threads = args
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def vidforge_chain(args: tuple[str, bool, str | None, bool]) -> tuple[list[tuple[int, int]], int]:
    """The real per-video CPU chain (with the frame cache, as by default, or without); returns the
    kept clips' frame ranges and the bytes of their mp4 files (0 without extraction)."""
    from pipeline.curate import CurateConfig, cpu_stages
    from pipeline.records import VideoRecord

    path, with_extract, preset, frame_cache = args
    config = CurateConfig()
    if preset:
        config.extract.preset = preset
    if not frame_cache:
        config.extract.frame_cache_mb = 0
    stages = cpu_stages(config)
    if not with_extract:
        stages = stages[:-1]
    records = [VideoRecord(path=path)]
    for stage_cls, stage_config in stages:
        records = stage_cls(stage_config).process(records)
    kept = [c for c in records[0].clips if c.kept]
    return [(c.row["start_frame"], c.row["end_frame"]) for c in kept], sum(len(c.mp4 or b"") for c in kept)


def multi_pass(args: tuple[str, list[tuple[int, int]]]) -> int:
    """PySceneDetect pass, then a motion pass, then extraction: three decodes. The extraction
    encodes the same clips as vidforge (its kept frame ranges), with the same encoder settings;
    with no spans it is the two analysis passes alone."""
    from scenedetect import ContentDetector, detect

    path, spans = args
    detect(path, ContentDetector())  # pass 1: its own decode
    with av.open(path) as container:  # pass 2: motion
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = 1  # one process per core, as vidforge's workers
        prev, motion = None, []
        for frame in container.decode(stream):
            gray = frame.to_ndarray(width=160, height=90, format="gray", threads=1)
            if prev is not None:
                flow = cv2.calcOpticalFlowFarneback(prev, gray, None, 0.5, 2, 9, 2, 5, 1.1, 0)
                motion.append(float(np.linalg.norm(flow, axis=2).mean()))
            prev = gray
    extract_spans((path, spans, False))  # pass 3: extraction of the kept spans
    return len(spans)


def extract_spans(args: tuple[str, list[tuple[int, int]], bool]) -> float:
    """Seek to each span, decode it, and downscale and encode it with vidforge's own clip encoder
    (default output size and settings). Returns the seconds spent encoding; with ``encoder_alone``
    the span's frames are decoded and downscaled first, so only the encode runs while timed."""
    from pipeline.extract import ClipEncoder, ExtractConfig, FramePreparer, output_size

    path, spans, encoder_alone = args
    cfg = ExtractConfig()
    encode_s = 0.0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = 1
        fps = float(stream.average_rate)
        size = output_size(stream.codec_context.width, stream.codec_context.height, cfg.max_short_side)
        prepare = FramePreparer(size)
        for a, b in spans:
            container.seek(int(a / fps / stream.time_base), stream=stream, backward=True)

            def span_frames():
                for frame in container.decode(stream):
                    idx = int(round(frame.time * fps))
                    if idx < a:
                        continue
                    if idx >= b:
                        break
                    yield frame

            frames = span_frames()
            if encoder_alone:  # downscaled beforehand, as the encoder takes them
                frames = [prepare(f) for f in frames]
            start = time.perf_counter()
            encoder = ClipEncoder(fps, size, cfg, resample=False, span=(0.0, 0.0), prepare=None if encoder_alone else prepare)
            for frame in frames:
                encoder.add(frame, 0.0)
            encoder.finish()
            encode_s += time.perf_counter() - start
    return encode_s


def timed_pool(fn, items, workers: int) -> tuple[float, list]:
    """Wall seconds of ``fn`` over ``items`` in a pool of ``workers`` processes, and the results."""
    ctx = get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(fn, items[:1] * workers, chunksize=1)  # warm every worker (imports, caches), not timed
        start = time.perf_counter()
        results = pool.map(fn, items, chunksize=1)
        return time.perf_counter() - start, results


def frame_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (even, >= 64) for ``--size``."""
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    if min(width, height) < 64 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"expected even sides of at least 64 pixels, got {text!r}")
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", default="1280x720", type=frame_size, help="WIDTHxHEIGHT of the generated corpus")
    parser.add_argument("--fast-preset", default="superfast", help="libx264 preset of the extra extraction run")
    parser.add_argument("--corpus", help="a folder of videos to measure instead of a generated corpus (searched recursively)")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the `vidforge curate` runs (1 and 2 workers)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; each figure is the best of them")
    args = parser.parse_args()
    if args.repeats < 1 or args.workers < 1:
        parser.error(f"--repeats and --workers: expected >= 1, got {args.repeats} and {args.workers}")
    from pipeline.samples import make_corpus

    width, height = args.size
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus:
            from pipeline.io import VIDEO_EXTENSIONS, InputError, resolve_inputs
            from pipeline.probe import probe_video

            corpus = Path(args.corpus)
            try:
                paths = resolve_inputs([str(corpus)])  # as `vidforge curate` finds them
            except InputError as exc:
                parser.error(f"--corpus: {exc}")
            if not paths:
                parser.error(f"--corpus {corpus}: no videos found (extensions: {', '.join(VIDEO_EXTENSIONS)})")
            frames = sum(probe_video(p).frame_count for p in paths)
            print(f"corpus: {len(paths)} videos in {corpus}, {frames} frames, {args.workers} worker processes")
        else:
            corpus = Path(tmp) / "corpus"
            videos = make_corpus(corpus, num_videos=args.videos, seed=11, size=(width, height))
            paths = [v.path for v in videos]
            frames = sum(v.num_frames for v in videos)
            print(f"corpus: {len(paths)} videos, {frames} frames at {width}x{height}, {args.workers} worker processes")
        kept: list = []  # each video's kept spans, from the first scan run: the multi-pass baseline extracts the same clips
        runs = {  # name: (function, its items)
            "floor_auto": (decode_once, lambda: [(p, 0) for p in paths]),
            "floor_single": (decode_once, lambda: [(p, 1) for p in paths]),
            "scan": (vidforge_chain, lambda: [(p, False, None, False) for p in paths]),
            "scan_cached": (vidforge_chain, lambda: [(p, False, None, True) for p in paths]),
            "whole": (vidforge_chain, lambda: [(p, True, None, True) for p in paths]),
            "whole_uncached": (vidforge_chain, lambda: [(p, True, None, False) for p in paths]),
            "fast": (vidforge_chain, lambda: [(p, True, args.fast_preset, True) for p in paths]),
            "multi": (multi_pass, lambda: list(zip(paths, kept))),
            "analysis_passes": (multi_pass, lambda: [(p, []) for p in paths]),
            "encode": (extract_spans, lambda: [(p, spans, True) for p, spans in zip(paths, kept)]),
        }
        # best of --repeats rounds, each round timing every pipeline once (the VM's speed drifts)
        best = dict.fromkeys(runs, float("inf"))
        clip_bytes = {}  # run name: the kept clips' mp4 bytes
        for _ in range(args.repeats):
            for name, (fn, items) in runs.items():
                seconds, results = timed_pool(fn, items(), args.workers)
                if name == "encode":  # encoder CPU seconds, spread over the workers
                    seconds = sum(results) / args.workers
                elif name == "scan" and not kept:
                    kept = [spans for spans, _ in results]
                    kept_frames = sum(b - a for spans in kept for a, b in spans)
                    print(f"vidforge keeps {sum(map(len, kept))} clips, {kept_frames} frames ({kept_frames / frames:.0%} of the input)")
                elif name in ("whole", "fast"):
                    clip_bytes[name] = sum(n for _, n in results)
                best[name] = min(best[name], seconds)
        floor_auto, floor_single, scan, scan_cached, whole, whole_uncached, fast, multi, analysis_passes, encode = best.values()
        # the floor is the faster of FFmpeg's threading and one decoder thread per process
        floor = min(floor_auto, floor_single)
        print(f"floor: {floor_auto:.2f} s with FFmpeg's decoder threads, {floor_single:.2f} s with one per process")
        rows = [
            ("floor: decode once", floor),
            ("vidforge probe+scan+plan+filter", scan),
            ("  the same, filling the frame cache", scan_cached),
            ("vidforge + extraction (default size, veryfast)", whole),
            ("  the same without the frame cache", whole_uncached),
            (f"vidforge + extraction (default size, {args.fast_preset})", fast),
            ("multi-pass (PySceneDetect, motion, extract same clips)", multi),
            ("multi-pass analysis passes alone (no extraction)", analysis_passes),
            ("libx264 encode of the kept frames alone", encode),
        ]
        print(f"\n{'pipeline':48s} {'seconds':>8s} {'x floor':>8s}")
        for name, seconds in rows:
            print(f"{name:48s} {seconds:8.2f} {seconds / floor:8.2f}")
        print(f"\nscan→filter / floor = {scan / floor:.2f} (target <= 1.3); filling the frame cache: {scan_cached / floor:.2f}")
        print(f"with extraction / floor = {whole / floor:.2f} (target <= 2.0); without the frame cache: {whole_uncached / floor:.2f}; "
              f"with preset {args.fast_preset}: {fast / floor:.2f}")
        print(f"clip files: {clip_bytes['whole'] / 1e6:.2f} MB with veryfast, {clip_bytes['fast'] / 1e6:.2f} MB "
              f"with {args.fast_preset} ({clip_bytes['fast'] / clip_bytes['whole']:.2f}x)")
        print(f"multi-pass / vidforge with extraction = {multi / whole:.2f} (target >= 2.0); "
              f"analysis passes alone / vidforge scan→filter = {analysis_passes / scan:.2f}")
        if args.workers > 1:
            one, _ = timed_pool(vidforge_chain, [(p, True, None, True) for p in paths], 1)
            print(f"vidforge with extraction, 1 process: {one:.2f} s; speed-up 1 → {args.workers} processes {one / whole:.2f}x")

        if args.no_end_to_end:
            return
        print("\nvidforge curate end to end (embedded Ray, start-up included):")
        walls = {}
        for workers in (1, 2):
            out = Path(tmp) / f"out-{workers}"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "vidforge", "curate", str(corpus), "--output", str(out), "--num-cpus", str(workers), "--no-progress"],
                check=True, capture_output=True,
            )
            walls[workers] = time.perf_counter() - start
            print(f"  {workers} worker(s): {walls[workers]:.1f} s")
        print(f"  speed-up 1 → 2 workers: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
