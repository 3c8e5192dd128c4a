"""``vidforge edit``: edit a video with a text prompt, training-free (FlowDirector)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidforge edit",
        description="Edit a video with a text prompt using a diffusers-format CogVideoX-style model, without training "
                    "or inversion (FlowDirector: FlowEdit + attention-guided masks + differential averaging guidance).",
    )
    p.add_argument("--model", required=True, help="pipeline folder (model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/, vae/)")
    p.add_argument("--video", required=True, help="source .mp4 (1 + 8k frames, sides multiples of the model's size multiple)")
    p.add_argument("--source-prompt", required=True, help="describes the source video, e.g. 'a cat on a sofa'")
    p.add_argument("--target-prompt", required=True, help="describes the edit, e.g. 'a fox on a sofa'")
    p.add_argument("--source-words", nargs="+", default=[], help="edited word(s) of the source prompt (quote phrases)")
    p.add_argument("--target-words", nargs="+", default=[], help="their replacement(s) in the target prompt")
    p.add_argument("--out", required=True, help="output .mp4 path")
    p.add_argument("--mask-out", default=None, help="also write the edit mask (max over steps) as an .mp4")
    p.add_argument("--config", default=None, help="edit settings YAML (default: built-in defaults = configs/edit/default.yaml)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed (42)")
    p.add_argument("--steps", type=int, default=None, help="overrides the config's steps (T)")
    p.add_argument("--negative-prompt", default=None, help="overrides the config's negative prompt")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    return p


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from model.pipeline import check_pipeline_folder

    try:
        check_pipeline_folder(args.model)
    except FileNotFoundError as exc:
        parser.error(f"--model: {exc}")
    if not Path(args.video).is_file():
        parser.error(f"--video {args.video}: file not found")
    for name in ("source_prompt", "target_prompt"):
        if not getattr(args, name).strip():
            parser.error(f"--{name.replace('_', '-')}: must not be empty")
    for name in ("out", "mask_out"):
        value = getattr(args, name)
        if value is not None and Path(value).suffix.lower() != ".mp4":
            parser.error(f"--{name.replace('_', '-')} {value}: expected a .mp4 path")
    if args.fps is not None and args.fps <= 0:
        parser.error(f"--fps {args.fps}: must be > 0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    import dataclasses

    import torch
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from model.editing.config import load_edit_config
    from model.editing.editor import FlowDirectorEditor
    from model.editing.masks import latent_mask_to_frames
    from model.pipeline import TextToVideoPipeline
    from model.video_io import read_video, write_video

    try:
        config = load_edit_config(args.config)
        overrides = {k: v for k, v in (("seed", args.seed), ("steps", args.steps), ("negative_prompt", args.negative_prompt)) if v is not None}
        if "steps" in overrides:
            # keep the edit window at the same fraction of the schedule
            overrides["n_max"] = round(config.n_max * overrides["steps"] / config.steps)
            overrides["n_min"] = round(config.n_min * overrides["steps"] / config.steps)
        config = dataclasses.replace(config, **overrides).validate("--config/flags")
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    try:
        frames, source_fps = read_video(args.video)
    except Exception as exc:  # PyAV raises its own error types for corrupt files
        parser.error(f"--video {args.video}: cannot read video ({type(exc).__name__}: {exc})")

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: CUDA is not available on this machine")
    start = time.perf_counter()
    hf_logging.disable_progress_bar()
    pipe = TextToVideoPipeline.from_pretrained(args.model, torch_dtype=getattr(torch, DTYPES[args.dtype]), device=device)
    try:
        editor = FlowDirectorEditor(pipe, config)
        editor.check_video(frames, name=f"--video {args.video}")
        for prompt, words, flag in ((args.source_prompt, args.source_words, "--source-words"), (args.target_prompt, args.target_words, "--target-words")):
            if config.mask.enabled and not words:
                parser.error(f"{flag}: required with attention masking (mask.enabled in the config)")
            try:
                pipe.text_encoder.token_spans(prompt, words)
            except ValueError as exc:
                parser.error(f"{flag}: {exc}")
    except ValueError as exc:
        parser.error(str(exc))
    progress = tqdm(total=config.n_max, desc="editing", unit="step", file=sys.stderr)
    try:
        result = editor(frames, args.source_prompt, args.target_prompt, args.source_words, args.target_words,
                        callback=lambda i, t: progress.update(1))
    finally:
        progress.close()
    fps = args.fps or source_fps or 8.0
    out = write_video(args.out, result.frames, fps=fps)
    print(f"wrote {out} ({result.frames.shape[0]} frames, {result.frames.shape[2]}x{result.frames.shape[1]}, {fps:g} fps, "
          f"{result.model_evaluations} model evaluations) in {time.perf_counter() - start:.1f}s")
    if args.mask_out is not None:
        if result.mask is None:
            print(f"--mask-out {args.mask_out}: no mask (masking disabled or no edit step ran); not written", file=sys.stderr)
        else:
            f, h, w = result.frames.shape[:3]
            mask_frames = latent_mask_to_frames(result.mask, f, h, w, pipe.vae_scale_temporal)
            print(f"wrote {write_video(args.mask_out, mask_frames, fps=fps)} (edit mask)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
