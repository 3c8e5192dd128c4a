"""``vidforge sample`` / ``python -m model sample``: generate a video from a text prompt."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidforge sample",
        description="Generate a video from a text prompt with a diffusers-format CogVideoX-style model folder.",
    )
    p.add_argument("--model", required=True, help="pipeline folder (model_index.json, scheduler/, text_encoder/, "
                   "tokenizer/, transformer/, vae/)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", required=True, help="output .mp4 path")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--frames", type=int, default=None, help="frame count, 1 + 8k (default: the model's, 49 for CogVideoX)")
    p.add_argument("--height", type=int, default=None, help="multiple of 16 (default: the model's, 480 for CogVideoX)")
    p.add_argument("--width", type=int, default=None, help="multiple of 16 (default: the model's, 720 for CogVideoX)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale (<= 1 disables it)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    return p


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from model.pipeline import COMPONENTS, MODEL_INDEX_NAME

    model = Path(args.model)
    if not model.is_dir():
        parser.error(f"--model {model}: folder not found")
    if not (model / MODEL_INDEX_NAME).is_file():
        parser.error(f"--model {model}: no {MODEL_INDEX_NAME} (not a diffusers-format pipeline folder)")
    missing = [c for c in COMPONENTS if not (model / c).is_dir()]
    if missing:
        parser.error(f"--model {model}: missing component folder(s) {missing}")
    if not args.prompt.strip():
        parser.error("--prompt: must not be empty")
    if Path(args.out).suffix.lower() != ".mp4":
        parser.error(f"--out {args.out}: expected a .mp4 path")
    if args.frames is not None and (args.frames < 1 or (args.frames - 1) % 4):
        parser.error(f"--frames {args.frames}: must be 1 + 4k (e.g. 9, 17, 49)")
    if args.frames is not None and args.frames > 1 and ((args.frames - 1) // 4) % 2:
        parser.error(f"--frames {args.frames}: gives an even number of latent frames, which the VAE decodes to "
                     f"{args.frames + 3} frames; use 1 + 8k (9, 17, 25, 33, 41, 49)")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < 16 or value % 16):
            parser.error(f"--{name} {value}: must be a positive multiple of 16")
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: must be >= 1")
    if args.fps <= 0:
        parser.error(f"--fps {args.fps}: must be > 0")


def sample_main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    import torch
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from model.pipeline import TextToVideoPipeline
    from model.video_io import write_video

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: CUDA is not available on this machine")
    dtype = getattr(torch, DTYPES[args.dtype])
    start = time.perf_counter()
    hf_logging.disable_progress_bar()
    pipe = TextToVideoPipeline.from_pretrained(args.model, torch_dtype=dtype, device=device)
    progress = tqdm(total=args.steps, desc="denoising", unit="step", file=sys.stderr)
    try:
        frames = pipe(
            args.prompt,
            negative_prompt=args.negative_prompt,
            num_frames=args.frames,
            height=args.height,
            width=args.width,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            seed=args.seed,
            output_type="np",
            callback=lambda step, timestep, latents: progress.update(1),
        )[0]
    except ValueError as exc:  # size checks against this model (e.g. a multiple of 32 for another patch size)
        parser.error(str(exc))
    finally:
        progress.close()
    out = write_video(args.out, frames, fps=args.fps)
    f, h, w = frames.shape[:3]
    print(f"wrote {out} ({f} frames, {w}x{h}, {args.fps:g} fps) in {time.perf_counter() - start:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m model sample [ARGS...]\n\ncommands:\n  sample  generate a video from a text prompt")
        return 0
    if argv[0] != "sample":
        print(f"python -m model: unknown command {argv[0]!r} (expected 'sample')", file=sys.stderr)
        return 2
    return sample_main(argv[1:])
