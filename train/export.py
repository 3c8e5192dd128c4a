"""``vidforge export CKPT --out DIR``: a fit checkpoint -> a diffusers-format model folder.

Writes the transformer (EMA weights by default; ``--weights raw`` for the trained ones; LoRA adapters
are merged into their layers) as ``DIR/transformer`` with diffusers' config keys, and copies the
other components (vae, text_encoder, tokenizer, scheduler, model_index.json) from the run's
``model.pretrained`` folder, or from ``--components DIR``. The result loads with ``vidforge sample``,
``model.pipeline.TextToVideoPipeline.from_pretrained`` and ``diffusers.CogVideoXPipeline``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch


def load_module(checkpoint: str | Path):
    """The fit module with the checkpoint's weights (CPU); frozen parts are not loaded."""
    from train.module import VideoDiffusionModule

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "state_dict" not in ckpt or "vidforge" not in ckpt:
        raise ValueError(f"{checkpoint}: not a vidforge fit checkpoint (no state_dict / vidforge entries)")
    hparams = dict(ckpt.get("hyper_parameters", {}))
    hparams.pop("init_from", None)
    hparams["transformer_config"] = ckpt["vidforge"]["transformer_config"]  # no need for the original weights
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
    module = VideoDiffusionModule(**hparams)
    module.load_state_dict(ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    return module


def export(checkpoint: str | Path, out: str | Path, weights: str = "ema", components: str | Path | None = None) -> Path:
    from train.components import resolve_pretrained
    from train.module import merge_lora

    if weights not in ("ema", "raw"):
        raise ValueError(f"--weights: expected 'ema' or 'raw', got {weights!r}")
    module = load_module(checkpoint)
    transformer = module.transformer
    if weights == "ema":
        if module.ema is None:
            raise ValueError(f"{checkpoint}: the run kept no EMA weights (model.ema.enabled=false); use --weights raw")
        module.ema.copy_to(transformer)
    if module.lora_config is not None:
        merge_lora(transformer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    transformer.requires_grad_(False)
    transformer.save_pretrained(out / "transformer")
    source = resolve_pretrained(str(components)) if components else module.pretrained
    if source:
        src = Path(source)
        for name in ("vae", "text_encoder", "tokenizer", "scheduler"):
            if (src / name).is_dir() and not (out / name).exists():
                shutil.copytree(src / name, out / name)
        if (src / "model_index.json").is_file():
            shutil.copy2(src / "model_index.json", out / "model_index.json")
    module.objective.scheduler.save_pretrained(out / "scheduler")  # the schedule the weights were trained for
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidforge export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt written by vidforge fit")
    parser.add_argument("--out", required=True, help="output folder (diffusers layout)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema")
    parser.add_argument("--components", default=None, help="take vae/text_encoder/tokenizer/scheduler from this folder")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        parser.error(f"{args.checkpoint}: checkpoint not found")
    path = export(args.checkpoint, args.out, args.weights, args.components)
    print(f"exported {args.checkpoint} ({args.weights} weights) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
