"""Clips captioned per second: batched across clips vs one clip at a time (same tiny models, same run).

    python tests/bench/bench_caption.py [--clips 16] [--batch 8] [--frames 3] [--threads 1]

Two-stage captioning with the smoke-test models (tiny SmolVLM frame captioner + tiny Qwen2
summariser, built into a temp folder). Baseline: one clip per call, every generate() call one
prompt. Batched: ``--batch`` clips per call, all their keyframes in one left-padded generate()
and all their summaries in another. Guards are off so both runs do the same work; greedy
outputs are checked identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from captioner.config import GuardConfig
from captioner.dense import ClipJob, DenseCaptioner
from captioner.keyframes import FrameSample
from captioner.smoke import build_smoke_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=str(Path(tempfile.gettempdir()) / "vidforge-bench-caption-models"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    smoke = build_smoke_models(args.models)
    rng = np.random.default_rng(0)
    jobs = [
        ClipJob([FrameSample(1.0 + 2 * i, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "scan") for i in range(args.frames)], 0.0, 2.0 * args.frames)
        for _ in range(args.clips)
    ]
    no_guards = GuardConfig(enabled=False)

    def captioner(batch: int, frame_batch: int) -> DenseCaptioner:
        c = smoke.caption
        cfg = dataclasses.replace(
            c,
            guards=no_guards,
            frame_captioner=dataclasses.replace(c.frame_captioner, batch_size=frame_batch),
            summariser=dataclasses.replace(c.summariser, batch_size=batch),
        )
        return DenseCaptioner(cfg, smoke_test=True)

    single = captioner(1, 1)
    batched = captioner(args.batch, args.batch * args.frames)
    single.caption(jobs[:1]), batched.caption(jobs[:2])  # warm-up

    t0 = time.perf_counter()
    one_at_a_time = [single.caption([job])[0] for job in jobs]
    t_single = time.perf_counter() - t0

    t0 = time.perf_counter()
    together = []
    for i in range(0, len(jobs), args.batch):
        together += batched.caption(jobs[i : i + args.batch])
    t_batched = time.perf_counter() - t0

    same = [a.caption for a in one_at_a_time] == [b.caption for b in together]
    print(f"clips={args.clips} frames/clip={args.frames} batch={args.batch} torch_threads={args.threads}")
    print(f"one clip at a time: {args.clips / t_single:7.2f} clips/s ({t_single:.2f} s)")
    print(f"batched ({args.batch} clips): {args.clips / t_batched:7.2f} clips/s ({t_batched:.2f} s)")
    print(f"speed-up: {t_single / t_batched:.2f}x   greedy captions identical: {same}")


if __name__ == "__main__":
    main()
