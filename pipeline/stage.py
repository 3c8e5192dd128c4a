"""The stage contract: a class that takes a batch of records and declares its resources.

Ray Data runs each stage with ``map_batches``: a stateless stage as tasks, a stateful one
(a model loaded once per actor: aesthetic scorer, captioner) as an actor pool with the
declared ``num_gpus`` (fractions allowed) and ``concurrency``. Batches are Ray Data's numpy
format with one column, ``record``, holding pickled :class:`pipeline.records.VideoRecord` objects
(:func:`to_batch` / :func:`from_batch`).

A stage never lets one bad input take down the batch: :meth:`Stage.process_record` errors fail
that video alone (status ``failed`` with the reason), and stages that work per clip isolate
errors per clip with :meth:`Stage.for_each_clip`.
"""

from __future__ import annotations

import abc
import logging
import pickle
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from pipeline.io import staged_locally
from pipeline.records import ClipRecord, VideoRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs, and how many workers to run.

    ``concurrency``: an int (fixed pool size) or ``(min, max)`` for an autoscaling actor pool;
    ``None`` lets Ray Data decide (stateless stages only). ``batch_size``: records per call.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    concurrency: int | tuple[int, int] | None = None
    batch_size: int = 1

    def map_batches_kwargs(self, stateful: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``Dataset.map_batches``: resources and the compute strategy
        (an actor pool for stateful stages, a bounded task pool otherwise)."""
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        kwargs: dict[str, Any] = {"num_cpus": self.num_cpus, "batch_size": self.batch_size}
        if self.num_gpus:
            kwargs["num_gpus"] = self.num_gpus
        size = self.concurrency
        if stateful:
            if isinstance(size, tuple):
                kwargs["compute"] = ActorPoolStrategy(min_size=size[0], max_size=size[1])
            else:
                kwargs["compute"] = ActorPoolStrategy(size=size or 1)
        elif size is not None:
            kwargs["compute"] = TaskPoolStrategy(size=size if isinstance(size, int) else size[1])
        return kwargs


def to_batch(records: list[VideoRecord]) -> dict[str, np.ndarray]:
    """Records → a Ray Data batch: one ``record`` column of pickled records (Arrow binary).

    Pickling ourselves keeps the column a plain Arrow binary type (no fallback warnings) and
    makes the cost of moving a record between workers explicit.
    """
    array = np.empty(len(records), dtype=object)
    array[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
    return {"record": array}


def from_batch(batch: dict[str, np.ndarray]) -> list[VideoRecord]:
    """The inverse of :func:`to_batch`."""
    return [r if isinstance(r, VideoRecord) else pickle.loads(r) for r in batch["record"]]


def run_stages(batch: dict[str, np.ndarray], stages: list[tuple[type["Stage"], Any]]) -> Iterator[dict[str, np.ndarray]]:
    """Run stateless stages one after another on a batch (one Ray task, no hand-offs between them),
    one batch of the last stage's records; where it sends parts, one batch per part, as each comes:
    a long video's clips leave the worker a part at a time (:meth:`Stage.process_parts`).

    When a stage reads the source videos, remote ones are copied to the worker once for the whole
    chain (:func:`pipeline.io.staged_locally`).
    """
    records = from_batch(batch)
    reads_source = any(stage_cls.reads_source for stage_cls, _ in stages)
    with staged_locally([r.path for r in records if r.ok] if reads_source else []):
        *leading, (last_cls, last_config) = stages
        for stage_cls, stage_config in leading:
            records = stage_cls(stage_config).process(records)
        last = last_cls(last_config)
        if not last_cls.sends_parts:
            yield to_batch(last.process(records))
            return
        for record in records:
            for part in last.iter_parts(record):
                batch = to_batch([part])
                if not part.final:  # serialised: the worker keeps no copy of what it sent
                    for clip in part.clips:
                        clip.mp4 = None
                        clip.keyframes = []
                yield batch


def map_stages(ds, stages: list[tuple[type["Stage"], Any]]):
    """Append stages to a Ray dataset: consecutive stateless stages fused into one task chain
    (resources of the first), each stateful stage as its own actor pool."""
    pending: list[tuple[type[Stage], Any]] = []

    def flush(ds):
        if pending:
            resources = pending[0][0].resources(pending[0][1])
            ds = ds.map_batches(run_stages, fn_kwargs={"stages": list(pending)}, batch_format="numpy", **resources.map_batches_kwargs(stateful=False))
            pending.clear()
        return ds

    for stage_cls, stage_config in stages:
        if not stage_cls.stateful:
            pending.append((stage_cls, stage_config))
            continue
        ds = flush(ds)
        resources = stage_cls.resources(stage_config)
        ds = ds.map_batches(stage_cls, fn_constructor_kwargs={"config": stage_config}, batch_format="numpy", **resources.map_batches_kwargs())
    return flush(ds)


class Stage(abc.ABC):
    """A pipeline step over :class:`VideoRecord` batches.

    Subclasses set ``name``, override :meth:`resources` when they need more than one CPU, and
    implement :meth:`process_record` (or :meth:`process` to batch across records, as model
    stages do). The constructor gets the stage's config; load models there, once per actor.
    """

    name: ClassVar[str] = "stage"
    stateful: ClassVar[bool] = False  # True: an actor pool; the constructor loads a model once
    reads_source: ClassVar[bool] = False  # True: decodes or reads ``record.path`` (staged locally when remote)
    sends_parts: ClassVar[bool] = False  # True: last in a fused chain, its records leave as parts (:meth:`process_parts`)

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @classmethod
    def resources(cls, config: Any = None) -> Resources:
        return Resources()

    def process_record(self, record: VideoRecord) -> VideoRecord:  # pragma: no cover - abstract-ish
        raise NotImplementedError(f"{type(self).__name__} implements neither process nor process_record")

    def process(self, records: list[VideoRecord]) -> list[VideoRecord]:
        """Process a batch; by default one record at a time, each failure isolated to its video."""
        out = []
        for record in records:
            if not record.ok:
                out.append(record)
                continue
            try:
                out.append(self.process_record(record))
            except Exception as exc:  # one broken video never stops the run
                out.append(self._failed(record, exc))
        return out

    def _failed(self, record: VideoRecord, exc: Exception) -> VideoRecord:
        """``record`` marked failed by ``exc`` (logged), the way every stage reports a broken video."""
        log.warning("%s failed on %s: %s", self.name, record.path, exc)
        record.fail(f"{self.name}: {type(exc).__name__}: {exc}")
        return record

    def process_parts(self, record: VideoRecord) -> Iterator[VideoRecord]:
        """The record processed, as one or more records: non-final parts (clips sent on ahead), then
        the final one (:attr:`VideoRecord.final`). By default the one record of :meth:`process_record`;
        the last stage of a fused chain streams its parts out of the worker as they come."""
        yield self.process_record(record)

    def iter_parts(self, record: VideoRecord) -> Iterator[VideoRecord]:
        """:meth:`process_parts` with :meth:`process`'s failure handling: an error before any part
        left fails the video; a stage that sends parts on handles its later errors itself."""
        if not record.ok:
            yield record
            return
        sent = False
        try:
            for part in self.process_parts(record):
                sent = True
                yield part
        except Exception as exc:
            if sent:
                raise
            yield self._failed(record, exc)

    def for_each_clip(self, record: VideoRecord, fn: Callable[[ClipRecord], None], kept_only: bool = True) -> None:
        """Apply ``fn`` to each (kept) clip; an exception rejects that clip alone with ``error:<stage>``."""
        for clip in record.clips:
            if kept_only and not clip.kept:
                continue
            try:
                fn(clip)
            except Exception as exc:
                log.warning("%s failed on clip %s: %s", self.name, clip.clip_id, exc)
                clip.reject(f"error:{self.name}")
                clip.row["error"] = f"{self.name}: {type(exc).__name__}: {exc}"[:500]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return to_batch(self.process(from_batch(batch)))
