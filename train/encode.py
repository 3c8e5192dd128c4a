"""``vidforge encode --model DIR --shards ... --output OUT``: precompute VAE latents and T5 embeddings.

For every clip the data module would train on (same frame sampling, resize and crop), writes a
sample ``<id>.latents.safetensors`` holding the VAE posterior **mean and std** (``latents_mean``,
``latents_std``, ``(F, C, h, w)``, already multiplied by the VAE's ``scaling_factor``) and the caption's
T5 embedding (``prompt_embeds``, ``(226, D)``), plus the clip's ``.json`` row (with the encoding
settings) and ``.txt`` caption. A fit on these shards draws ``mean + std * eps`` each step (or takes the
mean with ``model.objective.latent=mean``), exactly as the pixel path does, without VAE or T5 in memory;
``data.kind=auto`` detects them.

Frame choice is fixed at encode time (data epoch 0's random start), so latent shards trade the
per-epoch temporal jitter of the pixel path for speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def encode_shards(model: str, shards: str | list[str], output: str | Path, num_frames: int = 49, min_frames: int | None = None,
                  fps: float = 8.0, height: int = 480, width: int = 720, max_samples_per_shard: int = 1000,
                  device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> dict[str, int]:
    """Encode every usable sample of ``shards`` into ``output/shard-NNNNNN.tar``; returns counts."""
    import webdataset as wds
    from safetensors.torch import save as save_safetensors

    from model.text_encoder import TextEncoder
    from model.vae import CausalVideoVAE
    from train.components import resolve_pretrained
    from train.data import ClipSpec, SampleError, ShardStream, StreamConfig, caption_of, expand_shards, load_pixels, plan_sample
    from train.framepack import BatchingConfig

    folder = resolve_pretrained(model)
    vae = CausalVideoVAE.from_pretrained(folder, subfolder="vae", torch_dtype=dtype).to(device)
    text_encoder = TextEncoder.from_pretrained(folder, torch_dtype=dtype).to(device)
    scale = float(vae.config["scaling_factor"])
    spec = ClipSpec(num_frames, min_frames if min_frames is not None else num_frames, fps, height, width)
    stream = ShardStream(expand_shards(shards), spec, BatchingConfig("pad", batch_size=1), StreamConfig(seed=seed, shuffle_buffer=0),
                         kind="video", endless=False)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "skipped": 0}
    writer, shard_index, in_shard = None, 0, 0

    def next_writer():
        nonlocal writer, shard_index, in_shard
        if writer is not None:
            writer.close()
        writer = wds.TarWriter(str(out / f"shard-{shard_index:06d}.tar"), mtime=0)
        shard_index, in_shard = shard_index + 1, 0

    next_writer()
    for sample in stream._raw(0, 0, 1):
        key = sample.get("__key__", "?")
        try:
            planned = plan_sample(sample, spec, "video", seed, 0, text_encoder.max_length, 2, None)
            _, plan = planned.item
            video = load_pixels(sample, plan, spec)
            caption = caption_of(sample, "caption") or ""
        except SampleError as exc:
            counts["skipped"] += 1
            logger.warning("encode: skipping %s (%s): %s", key, exc.reason, exc)
            continue
        with torch.no_grad():
            posterior = vae.encode(video[None].to(device=device, dtype=dtype))
            mean = (posterior.mean[0] * scale).permute(1, 0, 2, 3).float().cpu().contiguous()
            std = (posterior.std[0] * scale).permute(1, 0, 2, 3).float().cpu().contiguous()
            embeds = text_encoder.encode([caption])[0].float().cpu().contiguous()
        row = json.loads(sample["json"]) if "json" in sample else {}
        row["latents"] = {"model": str(model), "num_frames": int(video.shape[1]), "fps": fps, "height": height, "width": width,
                          "scaling_factor": scale, "stored": "posterior mean and std, scaled"}
        if in_shard >= max_samples_per_shard:
            next_writer()
        writer.write({"__key__": key, "latents.safetensors": save_safetensors({"latents_mean": mean, "latents_std": std, "prompt_embeds": embeds}),
                      "json": json.dumps(row).encode(), "txt": caption.encode()})
        in_shard += 1
        counts["written"] += 1
    writer.close()
    if in_shard == 0 and shard_index == 1:
        (out / "shard-000000.tar").unlink(missing_ok=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vidforge encode", description="Precompute VAE latents (posterior mean and std) and T5 embeddings into shards.")
    p.add_argument("--model", required=True, help="diffusers-format pipeline folder (vae/, text_encoder/, tokenizer/), or tiny:2b")
    p.add_argument("--shards", required=True, nargs="+", help="input shards (paths, globs, brace patterns, URLs)")
    p.add_argument("--output", required=True, help="output folder for the latent shards")
    p.add_argument("--num-frames", type=int, default=49)
    p.add_argument("--min-frames", type=int, default=None)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    counts = encode_shards(args.model, args.shards, args.output, args.num_frames, args.min_frames, args.fps, args.height, args.width,
                           max_samples_per_shard=args.samples_per_shard, device=args.device, dtype=dtype, seed=args.seed)
    print(f"encoded {counts['written']} clips into {args.output} ({counts['skipped']} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
