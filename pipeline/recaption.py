"""``vidforge caption``: recaption an existing shard set without re-running curation.

Reads the shards (local paths, brace patterns or URLs, through ``webdataset``), runs the
captioner's stages (aesthetic, near-duplicates, dense captions, caption–frame score) as Ray actor
pools, and writes new shards plus ``manifest/clips.parquet`` with the same clip ids. Work is
committed in groups of clips, so an interrupted run resumes like curation. Captions already in the
input are replaced (that is what recaptioning is for).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import ConfigError, positive_int
from pipeline.curate import ClusterError, ShardSink, Terminated, check_config_matches, start_ray, stream_into_shards
from pipeline.journal import OutputError, OutputJournal, output_folder, writing_to
from pipeline.manifest import CLIP_SCHEMA, VIDEOS_FILE, write_atomic
from pipeline.records import ClipRecord, VideoRecord
from pipeline.shards import ShardConfig
from pipeline.stage import Stage, map_stages, to_batch

# one row per group of input clips (the unit of work and of commits)
INPUT_GROUP_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # <shard url>#<group index>
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("num_clips", pa.int32()),
        pa.field("num_kept", pa.int32()),
        pa.field("seconds", pa.float64()),
    ]
)
INPUTS_FILE = "manifest/recaption_inputs.parquet"


def expand_shards(pattern: str) -> list[str]:
    """Brace patterns and globs of local shards; URLs are expanded by brace only."""
    import glob

    from webdataset.shardlists import expand_urls

    urls = []
    for url in expand_urls(pattern):
        if "://" not in url and any(c in url for c in "*?["):
            urls += sorted(glob.glob(url))
        else:
            urls.append(url)
    if not urls:
        raise ConfigError(f"--shards {pattern!r}: matches no shard")
    missing = [u for u in urls if "://" not in u and not Path(u).is_file()]
    if missing:
        raise ConfigError(f"{missing[0]}: shard not found")
    return urls


def read_shard_groups(batch: dict[str, np.ndarray], clips_per_group: int, done: frozenset[str]) -> dict[str, np.ndarray]:
    """One input shard → records of up to ``clips_per_group`` clips each (groups already done are skipped)."""
    import webdataset as wds

    url = str(batch["url"][0])
    records = []
    clips: list[ClipRecord] = []
    group = 0

    def emit() -> None:
        nonlocal clips, group
        path = f"{url}#{group}"
        if path not in done and clips:
            video = {"path": path, "status": "ok", "error": None, "num_clips": len(clips), "num_kept": len(clips), "seconds": 0.0}
            records.append(VideoRecord(path=path, video=video, clips=clips))
        clips, group = [], group + 1

    try:
        for sample in wds.WebDataset(url, shardshuffle=False, empty_check=False):
            if "json" not in sample or "mp4" not in sample:
                raise ValueError(f"sample {sample.get('__key__')!r} lacks .json or .mp4: not a vidforge shard")
            row = {k: v for k, v in json.loads(sample["json"]).items() if k in CLIP_SCHEMA.names}
            row.update(kept=True, reject_reason=None, shard=None)
            clips.append(ClipRecord(row=row, mp4=sample["mp4"]))
            if len(clips) == clips_per_group:
                emit()
        emit()
    except Exception as exc:  # a corrupt shard fails its unread part, not the run
        path = f"{url}#{group}"
        if path not in done:
            failed = VideoRecord(path=path, video={"path": path, "status": "ok", "num_clips": len(clips), "num_kept": 0, "seconds": 0.0})
            failed.fail(f"unreadable shard: {type(exc).__name__}: {exc}")
            records.append(failed)
    return to_batch(records)


def copy_source_videos_manifest(shard_urls: list[str], output: Path) -> None:
    """Carry the curation run's ``videos.parquet`` over (the report's funnel needs it)."""
    local = [Path(u) for u in shard_urls if "://" not in u]
    if not local:
        return
    source = local[0].resolve().parent.parent / VIDEOS_FILE
    if source.is_file():
        with open(source, "rb") as f:
            write_atomic(output / VIDEOS_FILE, lambda out: shutil.copyfileobj(f, out))


@dataclass
class RecaptionSummary:
    groups: int
    clips: int
    kept: int
    captioned_ok: int
    caption_failed: int
    seconds: float
    output: str

    def line(self) -> str:
        return (
            f"vidforge caption: {self.clips} clips → {self.kept} kept, {self.captioned_ok} captioned, "
            f"{self.caption_failed} caption failures; {self.seconds:.1f} s → {self.output}"
        )


def recaption(
    shard_urls: list[str],
    output: str | Path,
    config: Any,
    stages: list[tuple[type[Stage], Any]],
    shards: ShardConfig | None = None,
    clips_per_group: int = 16,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RecaptionSummary:
    import pyarrow.compute as pc
    import ray

    started = time.perf_counter()
    root = output_folder(output)
    journal = OutputJournal(root, overwrite=overwrite, unit_schema=INPUT_GROUP_SCHEMA, units_file=INPUTS_FILE, units_are_sources=False)
    with journal:  # one run at a time in a folder
        check_config_matches(root, config, name="caption_config.yaml")
        start_ray(ray_address, num_cpus)
        done = frozenset(journal.done_paths)
        ds = ray.data.from_items([{"url": u} for u in shard_urls], override_num_blocks=len(shard_urls))
        ds = ds.map_batches(read_shard_groups, fn_kwargs={"clips_per_group": clips_per_group, "done": done}, batch_size=1, batch_format="numpy")
        ds = map_stages(ds, stages)
        stream_into_shards(ds, ShardSink(journal, shards or ShardConfig()), len(shard_urls), "group", progress)
        with writing_to(root):
            _, clips = journal.finalize()
            copy_source_videos_manifest(shard_urls, root)
    status = clips.column("caption_status")
    return RecaptionSummary(
        groups=len(journal.done_paths),
        clips=clips.num_rows,
        kept=pc.sum(clips.column("kept")).as_py() or 0,
        captioned_ok=pc.sum(pc.equal(status, "ok")).as_py() or 0,
        caption_failed=pc.sum(pc.equal(status, "failed")).as_py() or 0,
        seconds=time.perf_counter() - started,
        output=str(root),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidforge caption", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", required=True, help="input shards: a brace pattern, glob or URL, e.g. 'OUT/shards/shard-{000000..000009}.tar'")
    parser.add_argument("--output", "-o", required=True, help="output folder for the new shards and manifest")
    parser.add_argument("--config", "-c", default="configs/caption/laptop.yaml", help="caption config YAML (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--clips-per-task", type=positive_int, default=16, help="clips per unit of work and commit (default: %(default)s)")
    parser.add_argument("--shard-max-samples", type=positive_int, default=ShardConfig.max_samples, help="samples per output shard")
    parser.add_argument("--ray-address", help="Ray cluster (default: $RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("--num-cpus", type=positive_int, help="CPUs of the embedded local Ray")
    parser.add_argument("--overwrite", action="store_true", help="start over in OUTPUT")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from captioner.config import load_caption_config, resolve_path
    from captioner.stages import build_stages

    try:
        config = load_caption_config(resolve_path(args.config), args.overrides)
        if config.caption is not None:
            config = dataclasses.replace(config, caption=dataclasses.replace(config.caption, overwrite=True))
        urls = expand_shards(args.shards)
        summary = recaption(
            urls, args.output, config, build_stages(config), ShardConfig(max_samples=args.shard_max_samples),
            args.clips_per_task, args.ray_address, args.num_cpus, args.overwrite, not args.no_progress,
        )
    except (ConfigError, OutputError, ClusterError) as exc:
        print(f"vidforge caption: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("vidforge caption: stopped (SIGTERM); rerun the same command to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("vidforge caption: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary.line())
    return 0
