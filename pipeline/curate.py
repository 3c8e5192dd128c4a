"""The curation job: inputs → probe → scan → plan → filter → extract → (model stages) → shards.

Runs on Ray Data. The CPU stages of one video run as one task (a chain of stateless stages, so
the per-frame scan signals never leave the worker); model stages (captioner/) follow as actor
pools; the driver is the only writer: it streams finished videos into shards and commits them
through :class:`pipeline.journal.OutputJournal`, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from captioner.config import CaptionJobConfig
from pipeline.config import ConfigError, config_to_dict
from pipeline.extract import ExtractConfig, ExtractStage, deinterlaces, scan_view
from pipeline.filters import FilterConfig, FilterStage
from pipeline.framecache import FrameCache
from pipeline.journal import OutputError, OutputJournal, output_folder, writing_to
from pipeline.manifest import write_atomic
from pipeline.plan import PlanConfig, PlanStage
from pipeline.probe import ProbeConfig, ProbeStage
from pipeline.records import VideoRecord
from pipeline.scan import ScanConfig, opencv_threads, scan_video
from pipeline.shards import ShardConfig, ShardWriter
from pipeline.stage import Resources, Stage, from_batch, map_stages, to_batch

log = logging.getLogger(__name__)


@dataclass
class RayConfig:
    """How the CPU stages use the cluster."""

    num_cpus_per_video: float = 1.0  # CPUs reserved by one video's probe→extract task
    max_videos_in_flight: int | None = None  # cap on concurrent video tasks (null: all free CPUs)


@dataclass
class CurateConfig:
    """``vidforge curate``'s config (``configs/curate/default.yaml`` documents every key)."""

    probe: ProbeConfig = field(default_factory=ProbeConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    caption: CaptionJobConfig | None = None  # model stages (aesthetic, dedup, captions, CLIP score); null: none


class ScanStage(Stage):
    """One decode pass per video: cuts, transitions, luma, sharpness, motion, keyframes; given the
    extraction settings that follow in the chain, also the frame cache extraction encodes from
    (:mod:`pipeline.framecache`). Config: ``(ScanConfig, ExtractConfig or None)``."""

    name = "scan"
    reads_source = True

    def __init__(self, config: tuple[ScanConfig, ExtractConfig | None]) -> None:
        super().__init__(config[0])
        self.extract = config[1]

    def _frame_cache(self, record: VideoRecord) -> FrameCache | None:
        extract = self.extract
        if extract is None or not extract.frame_cache_mb:
            return None
        if deinterlaces(record, extract):
            return None  # its clips come from bwdif, fed from each seek
        return FrameCache(extract, rotation=int(record.video.get("rotation") or 0))

    def process_record(self, record: VideoRecord) -> VideoRecord:
        start = time.perf_counter()
        record.frame_cache = self._frame_cache(record)
        with opencv_threads(self.config.decode_threads):
            # analysed as the clips will show it (no extraction in the chain: as the default one would)
            view = scan_view(record, self.extract or ExtractConfig())
            record.scan = scan_video(record.path, self.config, record.frame_cache, *view)
        scan = record.scan
        record.keyframes = list(scan.keyframes)
        # the frames that decode, which the clips' frame numbers count (the probe counted packets:
        # more where a stream starts mid-GOP, as a cut MPEG-TS recording does)
        record.video["frame_count"] = scan.num_frames
        record.video["damaged_frames"] = scan.decode_report.damaged_frames
        notes = [note for note in (scan.decode_report.summary(), scan.decode_error) if note]
        record.video["warning"] = "; ".join(notes) or None
        record.video["seconds"] = record.video.get("seconds", 0.0) + time.perf_counter() - start
        return record


class VideoTaskStage(ProbeStage):
    """The probe, heading the per-video CPU chain: declares the chain's resources from ``ray``."""

    @classmethod
    def resources(cls, config: tuple[ProbeConfig, RayConfig]) -> Resources:
        return Resources(num_cpus=config[1].num_cpus_per_video, concurrency=config[1].max_videos_in_flight)

    def __init__(self, config: tuple[ProbeConfig, RayConfig]) -> None:
        super().__init__(config[0])


def cpu_stages(config: CurateConfig) -> list[tuple[type[Stage], Any]]:
    """The per-video chain, run as one Ray task per video (fused: the scan signals stay in the worker)."""
    return [
        (VideoTaskStage, (config.probe, config.ray)),
        (ScanStage, (config.scan, config.extract)),
        (PlanStage, config.plan),
        (FilterStage, config.filter),
        (ExtractStage, config.extract),
    ]


def model_stages(config: CurateConfig) -> list[tuple[type[Stage], Any]]:
    """The captioner's stages, when the config has a ``caption`` section."""
    if config.caption is None:
        return []
    from captioner.stages import build_stages

    return build_stages(config.caption)


class ClusterError(RuntimeError):
    """The Ray cluster named by ``--ray-address`` / ``RAY_ADDRESS`` cannot be reached."""


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast where nothing listens at a cluster address (``host:port`` or ``ray://host:port``):
    Ray itself retries such an address for minutes (over 5 measured), logging only warnings."""
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto" and other forms: Ray's own resolution
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(
            f"Ray cluster at {address} (--ray-address / RAY_ADDRESS): cannot connect ({exc.strerror or exc}); "
            "start it with `ray start --head`, or leave the address unset to run on an embedded local Ray"
        ) from None


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` / ``RAY_ADDRESS``, or start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    # our own progress bar replaces Ray Data's; silence the notice that they are off
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:  # something listens there, but not a Ray cluster's GCS
            raise ClusterError(f"Ray cluster at {address} (--ray-address / RAY_ADDRESS): {exc}") from None
    else:
        # an embedded single-machine cluster: its auto-generated token notice is noise here
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def largest_first(paths: list[str], sizes: dict[str, int | None]) -> list[str]:
    """``paths`` largest file first (unknown sizes last; ties in their given order). A video is one
    task, so a long one started last keeps a worker busy after all the others are done: started
    first, it runs while the short ones fill the other workers (longest-processing-time-first)."""
    return sorted(paths, key=lambda p: -(sizes.get(p) or 0))


def build_dataset(paths: list[str], stages: list[tuple[type[Stage], Any]]):
    """The Ray Data plan: one block per video (up to a cap), then the stages (:func:`map_stages`)."""
    import ray

    items = [to_batch([VideoRecord(path=p)])["record"][0] for p in paths]
    ds = ray.data.from_items([{"record": item} for item in items], override_num_blocks=max(1, min(len(items), 20000)))
    return map_stages(ds, stages)


@dataclass
class CurateSummary:
    inputs: int = 0
    skipped_done: int = 0
    videos_ok: int = 0
    videos_failed: int = 0
    clips: int = 0
    kept: int = 0
    shards: int = 0
    hours_in: float = 0.0
    hours_out: float = 0.0
    seconds: float = 0.0
    output: str = ""

    def line(self) -> str:
        return (
            f"vidforge curate: {self.inputs} inputs ({self.videos_failed} failed"
            f"{f', {self.skipped_done} already done' if self.skipped_done else ''}) → "
            f"{self.clips} candidate clips, {self.kept} kept in {self.shards} shards; "
            f"{self.hours_in:.3f} h in, {self.hours_out:.3f} h out; {self.seconds:.1f} s → {self.output}"
        )


class ShardSink:
    """The driver side: groups finished videos into shards and commits them to the journal.

    A long video comes in parts (:attr:`VideoRecord.final`): each part's clips go into the open shard
    as they come, and a full shard is committed even between two parts of a video; the video's row
    comes with its final part. A clip already written for the video (by an interrupted run:
    ``journal.partial``; or by this one, when a retried task sends its parts again) is skipped, so
    none is written twice.
    """

    def __init__(self, journal: OutputJournal, config: ShardConfig, manifest_only_every: int = 64) -> None:
        self.journal = journal
        self.config = config
        self.manifest_only_every = manifest_only_every
        self.writer: ShardWriter | None = None
        self.videos: list[dict] = []
        self.clips: list[dict] = []
        self.kept_written = 0
        self.in_progress: dict[str, dict[str, bool]] = {}  # videos whose final part is to come: clip id -> kept
        self.consistent = True  # False while a record is half-added to the open shard

    def add(self, record: VideoRecord) -> None:
        """Write ``record``'s kept clips into the open shard; commit it once full. A failed write
        raises :class:`OutputError`."""
        with writing_to(self.journal.root):
            self._add(record)

    def _add(self, record: VideoRecord) -> None:
        self.consistent = False
        # this video's clips already written: by an interrupted run (journal.partial), or by this one
        # in an earlier part (also the parts a retried task sends again)
        written = self.in_progress.setdefault(record.path, dict(self.journal.partial.get(record.path, {})))
        clips = [clip for clip in record.clips if clip.clip_id not in written]
        for clip in clips:
            if not clip.kept:
                continue
            if clip.clip_id in self.journal.committed_clip_ids:  # the same content under another path
                clip.reject("duplicate_source")
                continue
            if self.writer is None:
                self.writer = ShardWriter(self.journal.shards_dir, self.journal.new_shard_index())
            self.writer.add(clip)
            self.kept_written += 1
        written.update((clip.clip_id, clip.kept) for clip in clips)
        if record.final:
            record.video["num_kept"] = sum(written.values())
            self.videos.append(record.video)
            del self.in_progress[record.path]
            self.journal.partial.pop(record.path, None)
        self.clips.extend(clip.row for clip in clips)
        self.consistent = True
        full = self.writer is not None and (self.writer.size >= self.config.max_bytes or self.writer.count >= self.config.max_samples)
        if full or (self.writer is None and len(self.videos) >= self.manifest_only_every):
            self.flush()

    def flush(self) -> None:
        """Commit the open shard and the finished videos' rows. When that fails, they are dropped
        (the shard's file removed): the videos are redone on resume."""
        writer, videos, clips = self.writer, self.videos, self.clips
        self.writer, self.videos, self.clips = None, [], []
        with writing_to(self.journal.root):
            try:
                self.journal.commit(videos, clips, writer)
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        self.writer, self.videos, self.clips = None, [], []


RUN_ONLY_KEYS = (
    "ray", "scan.decode_threads", "extract.decode_threads", "extract.threads", "extract.frame_cache_mb", "extract.part_bytes",
)
"""Config keys (and sections) that change how a run goes, not what it writes (threads, memory, task
sizes): a resumed run may change them, to fit other machines."""


def check_config_matches(root: Path, config: Any, name: str = "curate_config.yaml") -> None:
    """Resuming with another config would mix two runs' outputs: refuse, naming the changed keys
    (:data:`RUN_ONLY_KEYS` may change)."""
    saved_path = root / name
    current = config_to_dict(config)
    if saved_path.is_file():
        saved = yaml.safe_load(saved_path.read_text()) or {}
        changed = sorted(
            key for key in _diff_keys(saved, yaml.safe_load(yaml.safe_dump(current)))
            if not any(key == run_only or key.startswith(run_only + ".") for run_only in RUN_ONLY_KEYS)
        )
        if changed:
            raise ConfigError(
                f"{root}: an earlier run here used a different config ({', '.join(changed[:6])} changed); "
                "rerun with the same config to resume, or pass --overwrite to start over"
            )
    else:
        with writing_to(root):
            write_atomic(saved_path, lambda f: f.write(yaml.safe_dump(current, sort_keys=False).encode()))


def _diff_keys(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    elif a != b:
        yield prefix


def curate(
    paths: list[str],
    output: str | Path,
    config: CurateConfig,
    ray_address: str | None = None,
    overwrite: bool = False,
    num_cpus: int | None = None,
    progress: bool = True,
    on_video: Callable[[VideoRecord], None] | None = None,
    input_sizes: dict[str, int | None] | None = None,
) -> CurateSummary:
    """Curate ``paths`` into ``output``; resumes an interrupted run in the same folder. With
    ``input_sizes`` (bytes, from :func:`pipeline.io.resolve_inputs`), the largest videos start first."""
    started = time.perf_counter()
    root = output_folder(output)
    config.scan.require_learned_weights()  # before any video is read
    with OutputJournal(root, overwrite=overwrite) as journal:  # one run at a time in a folder
        check_config_matches(root, config)
        todo = largest_first([p for p in paths if p not in journal.done_paths], input_sizes or {})
        summary = CurateSummary(inputs=len(paths), skipped_done=len(paths) - len(todo), output=str(root))
        if journal.recovered_orphans:
            log.warning("resuming: removed %d uncommitted files from an interrupted run", len(journal.recovered_orphans))
        if todo:
            start_ray(ray_address, num_cpus)
            ds = build_dataset(todo, cpu_stages(config) + model_stages(config))
            stream_into_shards(ds, ShardSink(journal, config.shards), len(todo), "video", progress, on_video)
        with writing_to(root):
            videos, clips = journal.finalize()
    _fill_summary(summary, videos, clips)
    summary.seconds = time.perf_counter() - started
    return summary


class Terminated(KeyboardInterrupt):
    """SIGTERM (``ray job stop``, a scheduler's stop) while finished records were being written."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def stopping_on_sigterm() -> Iterator[None]:
    """SIGTERM stops the block as Ctrl-C does (:class:`Terminated`): what is complete gets committed.
    Without it, the handler Ray installs in the driver dumped a stack trace and aborted (exit 134)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:  # None: a handler installed outside Python (Ray's); the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def stream_into_shards(
    ds, sink: ShardSink, total: int, unit: str, progress: bool, on_record: Callable[[VideoRecord], None] | None = None
) -> None:
    """Drain a dataset of finished records into ``sink``, with a progress bar (units and clips done, rate).

    On any interruption (Ctrl-C, SIGTERM) the complete records (and parts of long videos) already
    received are committed; the rest is redone on resume.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc="vidforge", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    with stopping_on_sigterm():
        _drain(ds, sink, bar, on_record)


def _drain(ds, sink: ShardSink, bar, on_record: Callable[[VideoRecord], None] | None) -> None:
    try:
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=1):
            for record in from_batch(batch):
                sink.add(record)
                bar.set_postfix(clips=sink.kept_written, refresh=False)
                if not record.final:  # a part of a long video: the video is not done yet
                    continue
                if on_record is not None:
                    on_record(record)
                bar.update(1)
        sink.flush()
    except OutputError:  # writing failed (a full disk...): nothing more is written
        sink.abort()
        raise
    except BaseException:  # interrupted: commit the videos received whole, then stop
        if sink.consistent:
            try:
                sink.flush()
            except OutputError as exc:
                log.warning("could not commit the last finished videos (they are redone on resume): %s", exc)
        else:
            sink.abort()
        raise
    finally:
        bar.close()


def _fill_summary(summary: CurateSummary, videos, clips) -> None:
    import pyarrow.compute as pc

    status = videos.column("status")
    summary.videos_ok = pc.sum(pc.equal(status, "ok")).as_py() or 0
    summary.videos_failed = pc.sum(pc.equal(status, "failed")).as_py() or 0
    summary.clips = clips.num_rows
    kept = clips.filter(clips.column("kept"))
    summary.kept = kept.num_rows
    summary.shards = len(set(s for s in kept.column("shard").to_pylist() if s))
    summary.hours_in = (pc.sum(pc.fill_null(videos.column("duration_s"), 0.0)).as_py() or 0.0) / 3600
    summary.hours_out = (pc.sum(kept.column("duration_s")).as_py() or 0.0) / 3600
