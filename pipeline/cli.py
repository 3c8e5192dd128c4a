"""``vidforge curate`` (also ``python -m pipeline``): the curation job's command line."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.config import ConfigError, load_config, positive_int
from pipeline.io import InputError, resolve_inputs
from pipeline.journal import OutputError

DEFAULT_CONFIG_HELP = "YAML config (default: built-in defaults, as in configs/curate/default.yaml)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidforge curate",
        description="Split raw videos into scenes, score and filter the clips, and write WebDataset shards "
        "plus Parquet manifests. Resumable: rerun the same command after an interruption.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (recursive) or text files listing paths; local or s3://, gs://")
    parser.add_argument("--output", "-o", required=True, metavar="OUT", help="output folder (shards/, manifest/)")
    parser.add_argument("--config", "-c", metavar="YAML", help=DEFAULT_CONFIG_HELP)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. --set filter.min_motion=0.02 (repeatable)")
    parser.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to run on (default: $RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("--num-cpus", type=positive_int, metavar="N", help="CPUs of the embedded local Ray (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="discard an earlier run's shards and manifests in OUT and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pipeline.curate import ClusterError, CurateConfig, Terminated, curate

    try:
        config = load_config(CurateConfig, args.config, args.overrides)
        sizes: dict[str, int | None] = {}
        paths = resolve_inputs(args.inputs, sizes=sizes)
        if not paths:
            raise InputError(f"no videos found in {', '.join(args.inputs)}")
        summary = curate(
            paths,
            args.output,
            config,
            ray_address=args.ray_address,
            overwrite=args.overwrite,
            num_cpus=args.num_cpus,
            progress=not args.no_progress,
            input_sizes=sizes,
        )
    except (ConfigError, InputError, OutputError, ClusterError) as exc:
        print(f"vidforge curate: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("vidforge curate: stopped (SIGTERM); finished videos are committed — rerun the same command to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("vidforge curate: interrupted; finished videos are committed — rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary.line())
    return 0
