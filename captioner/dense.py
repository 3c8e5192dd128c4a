"""Dense video captions for a batch of clips: captions, guards with one retry, length budget, provenance.

Two-stage: every keyframe of every clip in the batch goes through the frame captioner together,
then every clip's timestamped frame captions through the summariser together. One-stage: the
video captioner takes each clip's keyframes directly. A defective output (see
:mod:`captioner.guards`) is retried once with ``guards.retry_decoding``; if still defective the
clip's caption is ``failed`` with the reason. A frame caption that stays defective is left out of
the summary (and listed in the provenance); a clip with no usable frame caption fails.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from captioner.config import CaptionConfig, DecodingConfig
from captioner.guards import find_defect
from captioner.keyframes import FrameSample
from captioner.length import clean_caption, enforce_length, strip_opener, t5_counter
from captioner.prompts import Prompts


@dataclass
class ClipJob:
    frames: list[FrameSample]
    start_s: float
    end_s: float
    short_caption: str | None = None


@dataclass
class CaptionResult:
    caption: str | None
    status: str  # "ok" | "failed"
    error: str | None
    frame_captions: list[dict] = field(default_factory=list)  # {"time_s" (source seconds), "caption"}
    provenance: dict[str, Any] = field(default_factory=dict)


class DenseCaptioner:
    """Loads the configured models once; :meth:`caption` turns :class:`ClipJob`s into :class:`CaptionResult`s."""

    def __init__(self, cfg: CaptionConfig, smoke_test: bool = False) -> None:
        from captioner.captioners import FrameCaptioner, Summariser, VideoCaptioner

        self.cfg = cfg
        self.smoke_test = smoke_test
        self.prompts = Prompts.load(cfg.prompts)
        self.count_t5, self.t5_counter_name = t5_counter(cfg.length.t5_tokenizer)
        if cfg.mode == "two_stage":
            self.frame_captioner = FrameCaptioner(cfg.frame_captioner, self.prompts.frame)
            self.summariser = Summariser(cfg.summariser, self.prompts)
            self.models = {"frame_captioner": self.frame_captioner.provenance, "summariser": self.summariser.provenance}
        else:
            self.video_captioner = VideoCaptioner(cfg.video_captioner, self.prompts.video)
            self.models = {"video_captioner": self.video_captioner.provenance}

    # -- guarded generation -------------------------------------------------------------------
    def _defect(self, text: str, hit_limit: bool, prompt: str) -> str | None:
        g = self.cfg.guards
        if not g.enabled:
            return None
        return find_defect(text, prompt, g.checks, g.min_words, g.max_ngram_repeats, hit_limit)

    def _guarded(
        self, run: Callable[[list[int], DecodingConfig | None], list[tuple[str, bool]]], n: int, prompt: str,
        postprocess: Callable[[str], str] = lambda s: s,
    ) -> list[tuple[str, str | None, bool]]:
        """Run for all n inputs, retry the defective ones once; returns (text, defect, retried)."""
        outputs = run(list(range(n)), None)
        results = []
        for text, hit in outputs:
            text = postprocess(text)
            results.append((text, self._defect(text, hit, prompt), False))
        retry = [i for i, (_, defect, _) in enumerate(results) if defect]
        if retry and self.cfg.guards.enabled and self.cfg.guards.retry:
            for i, (text, hit) in zip(retry, run(retry, self.cfg.guards.retry_decoding)):
                text = postprocess(text)
                defect = self._defect(text, hit, prompt)
                results[i] = (text, f"{defect} (after retry; first: {results[i][1]})" if defect else None, True)
        return results

    # -- the two modes --------------------------------------------------------------------------
    def caption(self, jobs: Sequence[ClipJob]) -> list[CaptionResult]:
        if not jobs:
            return []
        started = time.perf_counter()
        results = self._two_stage(jobs) if self.cfg.mode == "two_stage" else self._one_stage(jobs)
        seconds = (time.perf_counter() - started) / len(jobs)
        for result in results:
            result.provenance["seconds"] = round(seconds, 4)
        return results

    def _two_stage(self, jobs: Sequence[ClipJob]) -> list[CaptionResult]:
        frames = [(j, f) for j, job in enumerate(jobs) for f in job.frames]
        images = [f.image for _, f in frames]
        frame_out = self._guarded(
            lambda idx, dec: self.frame_captioner.caption([images[i] for i in idx], dec),
            len(frames), self.prompts.frame, clean_caption,
        )
        per_clip: list[list[tuple[FrameSample, str]]] = [[] for _ in jobs]
        failures: list[list[dict]] = [[] for _ in jobs]
        retried_frames = [0] * len(jobs)
        for (j, frame), (text, defect, retried) in zip(frames, frame_out):
            retried_frames[j] += retried
            if defect:
                failures[j].append({"time_s": round(frame.time_s, 3), "error": defect})
            else:
                per_clip[j].append((frame, text))

        summarisable = [j for j in range(len(jobs)) if per_clip[j]]
        items = [
            ([(f.time_s - jobs[j].start_s, text) for f, text in per_clip[j]], jobs[j].short_caption) for j in summarisable
        ]
        summary_out = self._guarded(
            lambda idx, dec: self.summariser.summarise([items[i] for i in idx], dec),
            len(items), self.prompts.summary_system, self._postprocess,
        )
        by_clip = dict(zip(summarisable, summary_out))
        results = []
        for j, job in enumerate(jobs):
            frame_captions = [{"time_s": round(f.time_s, 3), "caption": t} for f, t in per_clip[j]]
            provenance = self._provenance(job, retried_frames=retried_frames[j], frame_failures=failures[j])
            if j not in by_clip:
                reasons = "; ".join(sorted({f["error"] for f in failures[j]})) or "no keyframes"
                results.append(CaptionResult(None, "failed", f"frame captions: {reasons}"[:500], frame_captions, provenance))
                continue
            text, defect, retried = by_clip[j]
            provenance["retried"] = retried
            results.append(self._finish(text, defect, frame_captions, provenance))
        return results

    def _one_stage(self, jobs: Sequence[ClipJob]) -> list[CaptionResult]:
        clips = [(job.frames, job.start_s, job.end_s) for job in jobs]
        outputs = self._guarded(
            lambda idx, dec: self.video_captioner.caption([clips[i] for i in idx], dec),
            len(clips), self.prompts.video, self._postprocess,
        )
        results = []
        for job, (text, defect, retried) in zip(jobs, outputs):
            provenance = self._provenance(job)
            provenance["retried"] = retried
            results.append(self._finish(text, defect, [], provenance))
        return results

    # -- helpers --------------------------------------------------------------------------------
    def _postprocess(self, text: str) -> str:
        return strip_opener(clean_caption(text))

    def _finish(self, text: str, defect: str | None, frame_captions: list[dict], provenance: dict) -> CaptionResult:
        if defect:
            return CaptionResult(None, "failed", defect[:500], frame_captions, provenance)
        length = self.cfg.length
        final, trimmed = enforce_length(text, length.max_words, length.max_t5_tokens, self.count_t5)
        provenance["length"] = {
            "words": len(final.split()),
            "t5_tokens": self.count_t5(final),
            "t5_counter": self.t5_counter_name,
            "trimmed": trimmed,
        }
        if not final:
            return CaptionResult(None, "failed", "empty: nothing left within the length budget", frame_captions, provenance)
        return CaptionResult(final, "ok", None, frame_captions, provenance)

    def _provenance(self, job: ClipJob, **extra: Any) -> dict[str, Any]:
        decoding = {
            name: dataclasses.asdict(getattr(self.cfg, name).decoding) | {"max_new_tokens": getattr(self.cfg, name).max_new_tokens}
            for name in ("frame_captioner", "summariser", "video_captioner")
            if getattr(self.cfg, name) is not None and name in self.models
        }
        provenance: dict[str, Any] = {
            "mode": self.cfg.mode,
            "models": self.models,
            "prompt_version": self.prompts.version,
            "prompts_file": self.prompts.path,
            "decoding": decoding,
            "retry_decoding": dataclasses.asdict(self.cfg.guards.retry_decoding) if self.cfg.guards.retry else None,
            "guards": list(self.cfg.guards.checks) if self.cfg.guards.enabled else [],
            "keyframes": {"config": dataclasses.asdict(self.cfg.keyframes), "times_s": [round(f.time_s, 3) for f in job.frames],
                          "sources": [f.source for f in job.frames]},
            "smoke_test": self.smoke_test,
        }
        provenance.update({k: v for k, v in extra.items() if v or v == 0})
        return provenance
