"""The caption job's Ray Data stages: aesthetic → duplicate → caption → caption–frame score.

Every stage gets the whole :class:`CaptionJobConfig` and reads its own section. All are
stateful (an actor loads its models once). Keyframe CLIP image embeddings are computed once per
clip and passed on in ``clip.extras["clip_image_emb"]``. Errors stay with the clip that caused
them: a CLIP stage rejects it with ``error:<stage>``; the caption stage marks its caption failed.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import numpy as np

from pipeline.records import ClipRecord, VideoRecord
from pipeline.stage import Resources, Stage

from captioner.config import CaptionJobConfig, KeyframeConfig
from captioner.keyframes import FrameSample, sample_frames

log = logging.getLogger(__name__)

EMB_KEY = "clip_image_emb"
CLIP_KEYFRAMES = KeyframeConfig()  # CLIP stages embed the same 2 s grid of keyframes captioning uses


def _limit_cpu_threads(num_cpus: float, device: str | None) -> None:
    """An actor on CPU uses as many torch threads as CPUs it reserved (oversubscription is slow)."""
    if device is None or not str(device).startswith("cuda"):
        import torch

        torch.set_num_threads(max(1, int(num_cpus)))


def _kept_clips(records: list[VideoRecord]) -> list[tuple[VideoRecord, ClipRecord]]:
    return [(r, c) for r in records if r.ok for c in r.clips if c.kept]


class _ClipStage(Stage):
    """Shared by the CLIP-based stages: one open_clip model per actor, keyframe embeddings via extras."""

    stateful = True

    def __init__(self, config: CaptionJobConfig) -> None:
        from captioner.clip_models import ClipEmbedder

        super().__init__(config)
        _limit_cpu_threads(config.clip.num_cpus, config.clip.model.device)
        self.embedder = ClipEmbedder(config.clip.model)
        keyframes = config.caption.keyframes if config.caption is not None else CLIP_KEYFRAMES
        self.keyframes = keyframes

    @classmethod
    def resources(cls, config: CaptionJobConfig) -> Resources:
        c = config.clip
        return Resources(num_cpus=c.num_cpus, num_gpus=c.num_gpus, concurrency=c.concurrency, batch_size=c.batch_size)

    def _isolated(self, pairs: list[tuple[VideoRecord, ClipRecord]], fn: Callable[[ClipRecord], None]) -> None:
        """``fn`` per clip; an exception rejects that clip alone (the Stage contract's ``for_each_clip``)."""
        by_record: dict[int, tuple[VideoRecord, set[str]]] = {}
        for record, clip in pairs:
            by_record.setdefault(id(record), (record, set()))[1].add(clip.clip_id)
        for record, ids in by_record.values():
            self.for_each_clip(record, lambda clip: fn(clip) if clip.clip_id in ids else None)

    def ensure_embeddings(self, pairs: list[tuple[VideoRecord, ClipRecord]]) -> None:
        """Fill ``extras[EMB_KEY]`` for clips that lack it: frames per clip, one batched forward pass."""
        todo = [(r, c) for r, c in pairs if c.extras.get(EMB_KEY, {}).get("model") != self.embedder.name]
        frames: dict[str, list[FrameSample]] = {}
        self._isolated(todo, lambda clip: frames.__setitem__(clip.clip_id, sample_frames(clip, self.keyframes)))
        todo = [(r, c) for r, c in todo if c.clip_id in frames and c.kept]
        images = [f.image for _, c in todo for f in frames[c.clip_id]]
        try:
            emb = self.embedder.embed_images(images)
        except Exception as exc:  # fall back to one clip at a time so the failure stays with its clip
            log.warning("%s: batched embedding failed (%s); retrying clip by clip", self.name, exc)
            self._isolated(todo, lambda clip: self._store(clip, frames[clip.clip_id], self.embedder.embed_images([f.image for f in frames[clip.clip_id]])))
            return
        start = 0
        for _, clip in todo:
            n = len(frames[clip.clip_id])
            self._store(clip, frames[clip.clip_id], emb[start : start + n])
            start += n

    def _store(self, clip: ClipRecord, frames: list[FrameSample], emb: np.ndarray) -> None:
        clip.extras[EMB_KEY] = {"model": self.embedder.name, "times_s": [f.time_s for f in frames], "emb": emb}

    def process(self, records: list[VideoRecord]) -> list[VideoRecord]:
        pairs = _kept_clips(records)
        self.ensure_embeddings(pairs)
        self._isolated([(r, c) for r, c in pairs if c.kept and EMB_KEY in c.extras], self.score_clip)
        return records

    def score_clip(self, clip: ClipRecord) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class AestheticStage(_ClipStage):
    """LAION aesthetic score (mean or min over keyframes) into ``aesthetic``; below threshold → rejected."""

    name = "aesthetic"

    def __init__(self, config: CaptionJobConfig) -> None:
        from captioner.clip_models import AestheticHead

        super().__init__(config)
        self.head = AestheticHead.load(config.aesthetic.weights)

    def score_clip(self, clip: ClipRecord) -> None:
        scores = self.head.score(clip.extras[EMB_KEY]["emb"])
        cfg = self.config.aesthetic
        value = float(scores.min() if cfg.reduce == "min" else scores.mean())
        clip.row["aesthetic"] = value
        if cfg.threshold is not None and value < cfg.threshold:
            clip.reject("aesthetic")


class DuplicateStage(_ClipStage):
    """Near-duplicate removal against the clips this actor kept so far (one actor: one index)."""

    name = "duplicate"

    def __init__(self, config: CaptionJobConfig) -> None:
        from captioner.clip_models import DuplicateIndex

        super().__init__(config)
        self.index = DuplicateIndex(config.dedup.threshold, config.dedup.max_index)

    @classmethod
    def resources(cls, config: CaptionJobConfig) -> Resources:
        c = config.clip
        return Resources(num_cpus=c.num_cpus, num_gpus=c.num_gpus, concurrency=1, batch_size=c.batch_size)

    def score_clip(self, clip: ClipRecord) -> None:
        from captioner.clip_models import mean_embedding

        embedding = mean_embedding(clip.extras[EMB_KEY]["emb"])
        match = self.index.match(embedding)
        if match is not None and match[0] != clip.clip_id:
            clip.row["duplicate_of"] = match[0]
            clip.reject("duplicate")
            return
        self.index.add(clip.clip_id, embedding)


class ClipScoreStage(_ClipStage):
    """CLIP score (100 x cosine) of the final caption against the keyframes, sentence by sentence."""

    name = "clip_score"

    def process(self, records: list[VideoRecord]) -> list[VideoRecord]:
        from captioner.clip_models import caption_frame_score

        pairs = [(r, c) for r, c in _kept_clips(records) if c.row.get("caption_status") == "ok" and c.row.get("caption")]
        self.ensure_embeddings(pairs)
        pairs = [(r, c) for r, c in pairs if c.kept and EMB_KEY in c.extras]
        windows: dict[str, list[tuple[str, int]]] = {}
        self._isolated(pairs, lambda clip: windows.__setitem__(clip.clip_id, self.embedder.text_windows(clip.row["caption"])))
        pairs = [(r, c) for r, c in pairs if c.clip_id in windows and windows[c.clip_id]]
        texts = [t for _, c in pairs for t, _ in windows[c.clip_id]]
        text_emb = self.embedder.embed_texts(texts) if texts else None
        cfg = self.config.clip_score
        start = 0
        spans = {}
        for _, clip in pairs:
            spans[clip.clip_id] = (start, start + len(windows[clip.clip_id]))
            start += len(windows[clip.clip_id])

        def score(clip: ClipRecord) -> None:
            a, b = spans[clip.clip_id]
            tokens = [n for _, n in windows[clip.clip_id]]
            clip.row["clip_score"] = caption_frame_score(
                text_emb[a:b], tokens, clip.extras[EMB_KEY]["emb"], cfg.sentence_reduce, cfg.caption_reduce
            )

        self._isolated(pairs, score)
        return records


class CaptionStage(Stage):
    """Dense video captions for kept clips, batched across the records of one call."""

    name = "caption"
    stateful = True

    def __init__(self, config: CaptionJobConfig) -> None:
        from captioner.dense import DenseCaptioner

        super().__init__(config)
        self.cfg = config.caption
        devices = [m.device for m in (self.cfg.frame_captioner, self.cfg.summariser, self.cfg.video_captioner) if m]
        _limit_cpu_threads(self.cfg.num_cpus, "cuda" if any(d != "cpu" for d in devices) else "cpu")
        self.captioner = DenseCaptioner(config.caption, smoke_test=config.smoke_test)

    @classmethod
    def resources(cls, config: CaptionJobConfig) -> Resources:
        c = config.caption
        return Resources(num_cpus=c.num_cpus, num_gpus=c.num_gpus, concurrency=c.concurrency, batch_size=c.batch_size)

    def _fail(self, clip: ClipRecord, reason: str, provenance: dict | None = None) -> None:
        clip.row.update(caption=None, caption_status="failed", caption_error=" ".join(reason.split())[:500])
        if provenance is not None:
            clip.row["caption_provenance"] = json.dumps(provenance)
        if self.cfg.guards.reject_clip_on_failure:
            clip.reject("caption_failed")

    def _write(self, clip: ClipRecord, result: Any) -> None:
        clip.row["frame_captions"] = json.dumps(result.frame_captions)
        clip.row["caption_provenance"] = json.dumps(result.provenance)
        if result.status == "ok":
            clip.row.update(caption=result.caption, caption_status="ok", caption_error=None)
        else:
            self._fail(clip, result.error or "failed")

    def process(self, records: list[VideoRecord]) -> list[VideoRecord]:
        from captioner.dense import ClipJob

        todo = [
            c for _, c in _kept_clips(records) if self.cfg.overwrite or c.row.get("caption_status") != "ok"
        ]
        jobs: dict[str, ClipJob] = {}
        for clip in todo:
            try:
                short = clip.row.get(self.cfg.short_caption_column) if self.cfg.short_caption_column else None
                jobs[clip.clip_id] = ClipJob(
                    sample_frames(clip, self.cfg.keyframes), float(clip.row["start_s"]), float(clip.row["end_s"]), short
                )
            except Exception as exc:
                log.warning("caption: no frames for clip %s: %s", clip.clip_id, exc)
                self._fail(clip, f"keyframes: {type(exc).__name__}: {exc}")
        todo = [c for c in todo if c.clip_id in jobs]
        try:
            results = self.captioner.caption([jobs[c.clip_id] for c in todo])
        except Exception as exc:  # one clip at a time, so an exception fails only its clip
            log.warning("caption: batched captioning failed (%s); retrying clip by clip", exc)
            for clip in todo:
                try:
                    self._write(clip, self.captioner.caption([jobs[clip.clip_id]])[0])
                except Exception as clip_exc:
                    self._fail(clip, f"{type(clip_exc).__name__}: {clip_exc}")
            return records
        for clip, result in zip(todo, results):
            self._write(clip, result)
        return records


def build_stages(config: CaptionJobConfig) -> list[tuple[type[Stage], Any]]:
    """The enabled stages in run order, each with the config to construct it with."""
    stages: list[tuple[type[Stage], Any]] = []
    if config.aesthetic is not None:
        stages.append((AestheticStage, config))
    if config.dedup is not None:
        stages.append((DuplicateStage, config))
    if config.caption is not None:
        stages.append((CaptionStage, config))
    if config.clip_score is not None:
        stages.append((ClipScoreStage, config))
    return stages
