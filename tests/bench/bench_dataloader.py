"""Is the data loader ever the bottleneck at the tiny config? Loader throughput vs the training step.

    python tests/bench/bench_dataloader.py [--clips 16] [--workers 2] [--steps 12]

Writes ``--clips`` synthetic H.264 clips (pipeline.samples, 64x48, 10 or 18 frames at 16 fps) into
WebDataset shards, then measures in the same run (a) batches/s of the tiny config's loader alone
(decord decode, resize/crop, tokenize, Frame Pack batching; ``--workers`` processes) and (b) steps/s of
the tiny model's training step on ready batches (VAE + T5 encode, forward, loss, backward, AdamW).
Prints loader / step throughput; >= 1.0 means the loader keeps up (target: never the bottleneck).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch


def write_shards(folder: Path, clips: int) -> Path:
    from pipeline.records import ClipRecord
    from pipeline.samples import ShotSpec, make_video, source_names
    from pipeline.shards import ShardWriter

    names = source_names()
    per_shard = max(clips // 4, 1)
    writer = None
    for i in range(clips):
        if i % per_shard == 0:
            if writer is not None:
                writer.commit()
            writer = ShardWriter(folder / "shards", i // per_shard)
        frames = 18 if i % 2 == 0 else 10
        path = folder / f"v{i}.mp4"
        make_video(path, [ShotSpec("pan", names[i % len(names)], frames)], fps=16, size=(64, 48), seed=i)
        row = {"clip_id": f"clip{i}", "fps": 16.0, "width": 64, "height": 48, "num_frames": frames, "caption": f"a {names[i % len(names)]} pan"}
        writer.add(ClipRecord(row=row, mp4=path.read_bytes()))
    writer.commit()
    return folder / "shards"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    from train.components import resolve_pretrained
    from train.data import VideoDataModule
    from train.framepack import BatchingConfig
    from train.module import OptimConfig, VideoDiffusionModule
    from train.objective import ObjectiveConfig

    with tempfile.TemporaryDirectory() as tmp:
        shards = write_shards(Path(tmp), args.clips)
        model = resolve_pretrained("tiny:2b")
        dm = VideoDataModule(str(shards / "*.tar"), tokenizer=model, num_frames=9, min_frames=5, height=32, width=32,
                             num_workers=args.workers, shuffle_buffer=8, batching=BatchingConfig("pack", max_tokens=720, lookahead=4))
        loader = dm.train_dataloader()
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        start = time.perf_counter()
        ready = list(islice(it, args.steps))
        loader_rate = len(ready) / (time.perf_counter() - start)

        module = VideoDiffusionModule(model, objective=ObjectiveConfig(latent="mean"), optim=OptimConfig(lr=1e-4))
        opt = torch.optim.AdamW([p for p in module.transformer.parameters() if p.requires_grad], lr=1e-4)
        module.compute_loss(ready[0], 0, 0.1)[0].backward()  # loads VAE/T5, warms up
        start = time.perf_counter()
        for i, batch in enumerate(ready):
            loss, _ = module.compute_loss(batch, i, 0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        step_rate = len(ready) / (time.perf_counter() - start)
    print(f"loader: {loader_rate:.2f} batches/s ({args.workers} workers); training step: {step_rate:.2f} steps/s")
    print(f"loader / step throughput = {loader_rate / step_rate:.2f}x (>= 1.0: the loader is not the bottleneck)")


if __name__ == "__main__":
    main()
