"""The ``vidforge`` console script: dispatches each subcommand to the package that owns it.

Subcommands import their package lazily, so ``vidforge report`` never pays for torch or Ray.
Each entry point is a ``main(argv) -> int`` function that the package's ``python -m`` also uses.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "curate": ("pipeline.cli", "main", "split raw videos into scenes, score, filter and write shards (Ray)"),
    "scenes": ("pipeline.scenes", "main", "print the scenes (shots) and transitions of videos as CSV or JSON, as the curate scan finds them"),
    "caption": ("pipeline.recaption", "main", "recaption an existing shard set (dense captions, CLIP quality stages)"),
    "demo": ("vidforge.demo", "main", "build a small sample corpus and run the whole system on it"),
    "edit": ("model.editing.cli", "main", "edit a video with a text prompt, training-free (FlowDirector)"),
    "report": ("captioner.report.cli", "main", "write the caption quality report (HTML + JSON) of a curated output folder"),
    "fit": ("train.cli", "fit_main", "train the transformer on shards (LightningCLI; a config with stages: runs them in order)"),
    "validate": ("train.cli", "validate_main", "run validation (loss and sample videos) of a fit config / checkpoint"),
    "encode": ("train.encode", "main", "precompute VAE latents and T5 embeddings of shards for latent-only fits"),
    "export": ("train.export", "main", "write a fit checkpoint (EMA weights) as a diffusers-format model folder"),
    "sample": ("model.cli", "sample_main", "generate a video from a text prompt with a diffusers-format model"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: vidforge COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run 'vidforge COMMAND --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from vidforge import __version__

        print(f"vidforge {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vidforge: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    entry = getattr(importlib.import_module(module_name), func_name)
    result = entry(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
