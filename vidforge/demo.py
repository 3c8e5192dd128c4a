"""``vidforge demo``: build a small sample corpus and run the whole system on it.

corpus (generated H.264 videos with known shots, plus broken files) → ``curate`` with the
caption stages → ``report`` → ``fit`` (tiny config) → ``export`` → ``sample``. Each step runs
through the same entry point a user calls, and prints where its output is.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(started: float, what: str) -> None:
    print(f"   {what} ({time.perf_counter() - started:.1f} s)", flush=True)


def _run(command: list[str]) -> None:
    """Run a vidforge subcommand in-process, as the console script would; stop on failure."""
    from vidforge.cli import main as vidforge

    print("   $ vidforge " + " ".join(command), flush=True)
    code = vidforge(command)
    if code:
        raise SystemExit(f"vidforge demo: 'vidforge {command[0]}' failed with exit code {code}")


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import positive_int

    parser = argparse.ArgumentParser(prog="vidforge demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", "-o", default="vidforge-demo", help="folder for everything the demo writes (default: %(default)s)")
    parser.add_argument("--videos", type=positive_int, default=6, help="generated videos in the corpus (default: %(default)s)")
    parser.add_argument("--caption-preset", default="laptop", help="caption models to use when their weights are local (default: %(default)s)")
    parser.add_argument("--train-steps", type=positive_int, default=30, help="optimizer steps of the tiny fit (default: %(default)s)")
    parser.add_argument("--num-cpus", type=positive_int, help="CPUs of the embedded Ray (default: all)")
    args = parser.parse_args(argv)

    from captioner.smoke import resolve_preset
    from pipeline.curate import CurateConfig, curate
    from pipeline.io import resolve_inputs
    from pipeline.samples import make_broken_inputs, make_corpus

    root = Path(args.output).absolute()
    corpus, curated = root / "corpus", root / "curated"
    total = time.perf_counter()

    t = _step("1. sample corpus")
    videos = make_corpus(corpus, num_videos=args.videos, seed=0)
    broken = make_broken_inputs(corpus / "broken")
    _done(t, f"{len(videos)} videos with known shots and transitions ({corpus}/ground_truth.json) + {len(broken)} broken files")

    t = _step("2. caption models")
    caption_config, smoke, message = resolve_preset(args.caption_preset, smoke_folder=root / "models" / "caption")
    print(f"   {message}")
    if smoke:
        print("   NOTE: captions below come from tiny RANDOM smoke-test models; they exercise the pipeline, they are not real captions.")

    t = _step("3. curate (probe → scan → plan → filter → extract → aesthetic → dedup → caption → CLIP score → shards)")
    config = CurateConfig(caption=caption_config)
    sizes: dict[str, int | None] = {}
    paths = resolve_inputs([str(corpus)], sizes=sizes)
    summary = curate(paths, curated, config, overwrite=True, num_cpus=args.num_cpus, input_sizes=sizes)
    print("   " + summary.line())
    if summary.kept == 0:
        raise SystemExit("vidforge demo: curation kept no clip; nothing to train on")

    t = _step("4. caption quality report")
    _run(["report", str(curated)])
    _done(t, f"open {curated / 'report' / 'index.html'}")

    t = _step("5. train (tiny config, CPU)")
    train_dir = root / "train"
    _run([
        "fit", "--config", str(REPO_ROOT / "configs" / "train" / "tiny.yaml"),
        "--data.shards", str(curated / "shards" / "shard-*.tar"),
        "--trainer.default_root_dir", str(train_dir),
        "--trainer.logger.init_args.save_dir", str(train_dir),
        "--trainer.max_steps", str(args.train_steps),
    ])
    # last.ckpt is the end of the run; otherwise the newest checkpoint
    checkpoints = sorted(glob.glob(str(train_dir / "**" / "*.ckpt"), recursive=True), key=lambda p: (Path(p).name == "last.ckpt", Path(p).stat().st_mtime))
    if not checkpoints:
        raise SystemExit(f"vidforge demo: the fit wrote no checkpoint under {train_dir}")
    _done(t, f"checkpoint {checkpoints[-1]}")

    t = _step("6. export the trained model (diffusers format) and sample from it")
    model_dir = root / "model"
    _run(["export", checkpoints[-1], "--out", str(model_dir)])
    _run(["sample", "--model", str(model_dir), "--prompt", "a slow pan across a mountain landscape at sunset", "--out", str(root / "sample.mp4"), "--steps", "4", "--seed", "42"])
    _done(t, f"{root / 'sample.mp4'} (a tiny model trained for seconds: expect noise, not a picture)")

    print(f"\nvidforge demo: done in {time.perf_counter() - total:.0f} s; everything is under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
