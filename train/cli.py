"""``vidforge fit`` / ``vidforge validate``: a LightningCLI over :class:`VideoDiffusionModule` and
:class:`VideoDataModule`.

Every Lightning flag works as usual (``--trainer.max_steps``, ``--trainer.strategy ddp``,
``--trainer.precision bf16-mixed``, ``--ckpt_path last``, ``--print_config``...). ``data.tokenizer``
follows ``model.pretrained``. A config with a top-level ``stages:`` list is a progressive run
(:mod:`train.progressive`): ``vidforge fit --config configs/train/progressive-tiny.yaml``.
"""

from __future__ import annotations

import sys
import warnings

from lightning.pytorch.cli import LightningCLI

# `python -m train fit ...` passes sys.argv on explicitly (DDP's launcher re-runs sys.argv, so it stays)
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")


class VidforgeCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.pretrained", "data.tokenizer")


def build_cli(argv: list[str]) -> VidforgeCLI:
    """Parse ``argv`` (``fit ...`` / ``validate ...``) and run it; returns the CLI (``.trainer``, ``.model``)."""
    from train.data import VideoDataModule
    from train.module import VideoDiffusionModule

    return VidforgeCLI(
        VideoDiffusionModule,
        VideoDataModule,
        args=argv,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vidforge"},
    )


def run_cli(argv: list[str]) -> int:
    build_cli(argv)
    return 0


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def fit_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = _config_path(argv)
    if config is not None:
        from train.progressive import is_progressive, run_stages

        if is_progressive(config):
            return run_stages(config, [a for a in argv if a not in ("--config", config) and a != f"--config={config}"])
    return run_cli(["fit", *argv])


def validate_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(["validate", *argv])


def main(argv: list[str] | None = None) -> int:
    """``python -m train SUBCOMMAND ...`` (fit, validate, encode, export)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m train {fit,validate,encode,export} ...")
        return 0
    name, rest = argv[0], argv[1:]
    if name == "fit":
        return fit_main(rest)
    if name == "validate":
        return validate_main(rest)
    if name == "encode":
        from train.encode import main as encode_main

        return encode_main(rest)
    if name == "export":
        from train.export import main as export_main

        return export_main(rest)
    print(f"unknown subcommand {name!r}; expected fit, validate, encode or export", file=sys.stderr)
    return 2
