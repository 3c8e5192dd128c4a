"""Streaming aggregation over an output folder's manifests into the report's numbers.

Two passes over ``clips.parquet`` with ``pq.ParquetFile.iter_batches``: the first reads only the
numeric columns to fix the histogram ranges, the second computes everything else. Only the bounded
aggregates of :mod:`captioner.report.sketches` are kept (plus one small record per shard), so a
manifest of any length is reported in the same memory: Arrow reads stream page by page
(:func:`_batches`), and Python objects exist for one slice of rows at a time (:class:`_ClipPass`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.manifest import CLIP_SCHEMA, CLIPS_FILE, VIDEO_SCHEMA, VIDEOS_FILE, missing_columns

from . import metrics
from .config import ReportConfig
from .sketches import DistinctCounter, Histogram, Reservoir, SeenFilter, TopCounter, WorstN, combine64, hash64, mix64


class FolderError(ValueError):
    """The path is not a readable vidforge output folder (a usage error: exit code 2)."""


# plotted clip statistics: column -> (label, threshold names drawn on the plot)
CLIP_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "duration_s": ("duration (s)", ("min_duration_s", "max_duration_s")),
    "short_side": ("resolution: short side (px)", ("min_short_side",)),
    "fps": ("frame rate (fps)", ("min_fps",)),
    "motion": ("motion", ("min_motion", "max_motion")),
    "shake": ("shake", ("max_shake",)),
    "sharpness": ("sharpness", ("min_sharpness",)),
    "brightness": ("brightness", ("min_brightness", "max_brightness")),
    "aesthetic": ("aesthetic score", ("min_aesthetic",)),
    "clip_score": ("caption-frame CLIP score", ("min_clip_score",)),
}
SHARD_SCORES = ("motion", "sharpness", "brightness", "aesthetic", "clip_score")
SAMPLE_SCORES = ("duration_s", "motion", "shake", "sharpness", "brightness", "aesthetic", "clip_score")


@dataclass
class Folder:
    root: Path
    videos: Path
    clips: Path
    shards: Path


def open_folder(path: str | Path) -> Folder:
    """Check that ``path`` is a vidforge output folder with manifests that follow the contract."""
    root = Path(path)
    if not root.exists():
        raise FolderError(f"{root}: no such folder")
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")
    folder = Folder(root, root / VIDEOS_FILE, root / CLIPS_FILE, root / "shards")
    for manifest, schema in ((folder.videos, VIDEO_SCHEMA), (folder.clips, CLIP_SCHEMA)):
        if not manifest.is_file():
            raise FolderError(
                f"{root}: not a vidforge output folder ({manifest.relative_to(root)} is missing; "
                "run 'vidforge curate' first)"
            )
        try:
            names = pq.ParquetFile(manifest).schema_arrow.names
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same usage error
            raise FolderError(f"{manifest}: not a readable Parquet file: {exc}") from None
        missing, _ = missing_columns(names, schema)  # columns added since (transitions) may be absent
        if missing:
            raise FolderError(f"{manifest}: not a vidforge manifest, missing columns {missing}")
    return folder


READ_BUFFER_BYTES = 1 << 20


def _batches(path: Path, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of a Parquet file in batches of at most ``batch_rows`` rows, in bounded memory.

    ``pre_buffer=False`` matters most: with pyarrow's default pre-buffering, one reader over the
    whole file keeps the raw column chunks of every row group read so far until it is dropped, so
    memory grows with the file (measured: 240 MiB of Arrow memory at the end of a 1M-clip manifest).
    A buffered input stream reads the pages of the current batch only, and a fresh batch reader per
    row group drops the decoder state of the previous one (a single reader over all row groups still
    grew by ~20 MiB over a 1M-clip manifest).
    """
    reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
    for group in range(reader.num_row_groups):
        yield from reader.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns, use_threads=False)


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _short_side(batch: pa.RecordBatch) -> np.ndarray:
    return np.fmin(_floats(batch, "width"), _floats(batch, "height"))


def _metric_values(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return _short_side(batch) if name == "short_side" else _floats(batch, name)


def _ranges(folder: Folder, config: ReportConfig) -> dict[str, tuple[float, float]]:
    """Pass 1: min/max of each plotted metric (thresholds included so they fall on the plot)."""
    columns = [c for c in CLIP_METRICS if c != "short_side"] + ["width", "height"]
    lo = {name: math.inf for name in CLIP_METRICS}
    hi = {name: -math.inf for name in CLIP_METRICS}
    for batch in _batches(folder.clips, columns, config.batch_rows):
        for name in CLIP_METRICS:
            values = _metric_values(batch, name)
            values = values[np.isfinite(values)]
            if values.size:
                lo[name] = min(lo[name], float(values.min()))
                hi[name] = max(hi[name], float(values.max()))
    out = {}
    for name, (_, threshold_names) in CLIP_METRICS.items():
        for t in threshold_names:
            value = getattr(config.thresholds, t)
            if value is not None:
                lo[name], hi[name] = min(lo[name], value), max(hi[name], value)
        if not math.isfinite(lo[name]):
            lo[name], hi[name] = 0.0, 1.0
        span = hi[name] - lo[name]
        pad = 0.02 * span if span > 0 else max(abs(lo[name]) * 0.05, 0.5)
        out[name] = (lo[name] - pad, hi[name] + pad)
    return out


@lru_cache(maxsize=65_536)
def _cached_word_hash(word: str) -> int:
    return hash64(word)


def _word_hash(word: str) -> int:
    """64-bit word hash; the bounded cache holds words, not the numbers (ids, times) that are mostly unique."""
    return _cached_word_hash(word) if word.isalpha() else hash64(word)


@lru_cache(maxsize=256)
def _provenance(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {"_invalid": True}
    return value if isinstance(value, dict) else {"_invalid": True}


@lru_cache(maxsize=256)
def _models_key(text: str) -> str:
    return json.dumps(_provenance(text)["models"], sort_keys=True)[:300]


def _frame_captions(text: str | None) -> tuple[list[dict], bool]:
    """Parse the ``frame_captions`` JSON list; returns (items, valid)."""
    if not text:
        return [], True
    try:
        items = json.loads(text)
    except ValueError:
        return [], False
    if not isinstance(items, list):
        return [], False
    clean = [i for i in items if isinstance(i, dict) and isinstance(i.get("caption"), str)]
    return clean, len(clean) == len(items)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class _ShardStats:
    """Per-shard sums; one small record per shard."""

    def __init__(self) -> None:
        self.clips = 0
        self.seconds = 0.0
        self.sums = {k: 0.0 for k in SHARD_SCORES}
        self.counts = {k: 0 for k in SHARD_SCORES}
        self.captioned = 0
        self.caption_failed = 0
        self.degenerate = 0

    def to_json(self, name: str) -> dict[str, Any]:
        return {
            "shard": name,
            "clips": self.clips,
            "hours": self.seconds / 3600.0,
            **{f"mean_{k}": (self.sums[k] / self.counts[k] if self.counts[k] else None) for k in SHARD_SCORES},
            "captioned": self.captioned,
            "caption_failed": self.caption_failed,
            "degenerate": self.degenerate,
        }


MINHASH_CELLS = 1 << 17  # 1 MiB per temporary array of the MinHash signature computation


class CaptionStats:
    """Streaming caption-quality aggregates over the kept, captioned clips."""

    def __init__(self, config: ReportConfig, count_tokens: Callable[[list[str]], list[int]] | None):
        c = config.captions
        self.config = c
        self.count_tokens = count_tokens
        self.attempted = 0
        self.ok = 0
        self.failed = TopCounter(c.counter_capacity)
        self.degenerate = TopCounter(64)
        self.degenerate_total = 0
        self.uncaptioned_kept = 0
        self.words = Histogram(0, 300, 60)
        self.tokens = Histogram(0, max(300, int(c.max_tokens * 1.5)), 60)
        self.truncated = 0
        self.tokens_seen = 0
        self.clip_score = Histogram(-1.0, 1.0, 80)
        self.grounding = Histogram(0.0, 1.0, 20)
        self.no_frame_captions = 0
        self.no_nouns = 0
        self.frame_captions_invalid = 0
        self.frame_caption_counts = Histogram(0, 32, 32)
        self.ttr = Histogram(0.0, 1.0, 20)
        self.unigrams = DistinctCounter(c.distinct_sketch_k)
        self.bigrams = DistinctCounter(c.distinct_sketch_k)
        self.unigram_total = 0
        self.bigram_total = 0
        self.exact_filter = SeenFilter(c.bloom_bits_log2)
        self.near_filter = SeenFilter(c.bloom_bits_log2)
        self.exact_dups = 0
        self.near_dups = 0
        self.dedup_checked = 0
        self.openers = TopCounter(c.counter_capacity)
        self.opener_total = 0
        self.smoke_test = 0
        self.provenance_invalid = 0
        self.models = TopCounter(64)
        rng = np.random.default_rng(1234567)
        self.minhash_seeds = rng.integers(0, 2**63, size=c.minhash_permutations, dtype=np.uint64)

    # ---- per-batch update over the status-ok captions of one batch --------------------------
    def add_texts(self, token_lists: list[list[str]], texts: list[str]) -> None:
        """Corpus-level figures over ok captions: distinct-n, duplicates, tokens."""
        if self.count_tokens is not None and texts:
            counts = np.asarray(self.count_tokens(texts), dtype=np.float64)
            self.tokens.add(counts)
            self.tokens_seen += len(counts)
            self.truncated += int((counts > self.config.max_tokens).sum())
        nonempty = [t for t in token_lists if t]
        if not nonempty:
            return
        lengths = np.array([len(t) for t in nonempty])
        flat = np.fromiter((_word_hash(w) for t in nonempty for w in t), dtype=np.uint64, count=int(lengths.sum()))
        owner = np.repeat(np.arange(len(nonempty)), lengths)
        self.unigrams.add(np.unique(flat))
        self.unigram_total += len(flat)
        same2 = owner[:-1] == owner[1:]
        bigrams = combine64(flat[:-1], flat[1:])[same2]
        self.bigrams.add(np.unique(bigrams))
        self.bigram_total += len(bigrams)

        # exact duplicates: hash of the normalised text (order-sensitive fold of the word hashes)
        exact_keys = np.array([hash64(" ".join(t)) for t in nonempty], dtype=np.uint64)
        self.exact_dups += int(self.exact_filter.seen_before(exact_keys).sum())
        self.dedup_checked += len(nonempty)

        # near duplicates: MinHash over word 3-gram shingles, LSH bands in a Bloom filter
        same3 = np.zeros(len(flat), dtype=bool)
        if len(flat) >= 3:
            same3[:-2] = (owner[:-2] == owner[2:])
        tri = np.zeros(len(flat), dtype=np.uint64)
        if len(flat) >= 3:
            tri[:-2] = combine64(combine64(flat[:-2], flat[1:-1]), flat[2:])
        short = lengths < 3  # captions under 3 words: the whole text is the one shingle
        shingle_owner = np.concatenate([owner[same3], np.nonzero(short)[0]])
        shingles = np.concatenate([tri[same3], exact_keys[short]])
        order = np.argsort(shingle_owner, kind="stable")
        shingle_owner, shingles = shingle_owner[order], shingles[order]
        bounds = np.searchsorted(shingle_owner, np.arange(len(nonempty) + 1))
        # captions per chunk: bounds the (shingles x permutations) uint64 array to ~MINHASH_CELLS cells
        chunk = max(1, MINHASH_CELLS // (self.config.minhash_permutations * max(1, int(np.mean(lengths)))))
        bands, rows = self.config.minhash_bands, self.config.minhash_permutations // self.config.minhash_bands
        for start in range(0, len(nonempty), chunk):
            stop = min(start + chunk, len(nonempty))
            sub = shingles[bounds[start] : bounds[stop]]
            perm = mix64(sub[:, None] ^ self.minhash_seeds[None, :])
            signature = np.minimum.reduceat(perm, bounds[start:stop] - bounds[start], axis=0)
            signature = signature.reshape(stop - start, bands, rows)
            keys = signature[:, :, 0]
            for r in range(1, rows):
                keys = combine64(keys, signature[:, :, r])
            keys = combine64(keys, np.arange(bands, dtype=np.uint64)[None, :])
            self.near_dups += int(self.near_filter.seen_before(keys).sum())

    def to_json(self, has_tokenizer_reason: str | None) -> dict[str, Any]:
        c = self.config
        distinct1 = self.unigrams.estimate()
        distinct2 = self.bigrams.estimate()
        failed_total = self.failed.n
        openers = [
            {"opener": k, "count": v, "share": v / self.opener_total}
            for k, v in self.openers.most_common(c.top_openers)
        ]
        if self.count_tokens is None:
            # same keys as when available, all null, so gates on them fail rather than vanish
            tokens = {"available": False, "reason": has_tokenizer_reason, "count": 0, "mean": None,
                      "median": None, "p90": None, "max_tokens": c.max_tokens, "truncated": None,
                      "truncated_rate": None}
        else:
            tokens = {
                "available": True,
                **self.tokens.to_json(),
                "max_tokens": c.max_tokens,
                "truncated": self.truncated,
                "truncated_rate": _rate(self.truncated, self.tokens_seen),
            }
        exact_fp = self.exact_filter.false_positive_rate(1)
        near_fp = self.near_filter.false_positive_rate(c.minhash_bands)
        return {
            "attempted": self.attempted,
            "ok": self.ok,
            "uncaptioned_kept": self.uncaptioned_kept,
            "failed": failed_total,
            "failed_rate": _rate(failed_total, self.attempted),
            "failed_by_reason": dict(self.failed.most_common(50)),
            "degenerate": self.degenerate_total,
            "degenerate_rate": _rate(self.degenerate_total, self.attempted),
            "degenerate_by_reason": dict(self.degenerate.most_common(50)),
            "unusable_rate": _rate(failed_total + self.degenerate_total, self.attempted),
            "words": self.words.to_json(),
            "tokens": tokens,
            "clip_score": self.clip_score.to_json(),
            "grounding": {
                **self.grounding.to_json(),
                "approximate": True,
                "method": "share of the dense caption's approximate nouns (lexicon-based, no POS tagger) "
                "found, lemmatised, in some frame caption",
                "no_frame_captions": self.no_frame_captions,
                "no_nouns": self.no_nouns,
                "frame_captions_invalid": self.frame_captions_invalid,
            },
            "frame_captions_per_clip": self.frame_caption_counts.summary(),
            "lexical": {
                "distinct_1": distinct1 / self.unigram_total if self.unigram_total else None,
                "distinct_2": distinct2 / self.bigram_total if self.bigram_total else None,
                "distinct_unigrams": distinct1,
                "distinct_bigrams": distinct2,
                "total_unigrams": self.unigram_total,
                "total_bigrams": self.bigram_total,
                "exact": self.unigrams.exact and self.bigrams.exact,
                "type_token_ratio": self.ttr.summary()["mean"],
                "type_token_ratio_hist": self.ttr.to_json(),
            },
            "duplicates": {
                "checked": self.dedup_checked,
                "exact": self.exact_dups,
                "exact_rate": _rate(self.exact_dups, self.dedup_checked),
                "near": self.near_dups,
                "near_rate": _rate(self.near_dups, self.dedup_checked),
                "method": "a caption counts as a duplicate when its normalised text (lowercase words) equals an "
                "earlier caption's; as a near-duplicate when one of its MinHash LSH bands over word 3-gram "
                f"shingles ({c.minhash_permutations} permutations, {c.minhash_bands} bands) matches an earlier "
                "caption's (3-gram Jaccard >= ~0.8); near includes exact",
                "false_positive_rate_bound": {"exact": exact_fp, "near": near_fp},
            },
            "duplicate_rate": _rate(self.exact_dups, self.dedup_checked),
            "near_duplicate_rate": _rate(self.near_dups, self.dedup_checked),
            "openers": openers,
            "openers_exact": self.openers.exact,
            "top_opener_share": openers[0]["share"] if openers else None,
            "smoke_test_clips": self.smoke_test,
            "smoke_test": self.smoke_test > 0,
            "provenance_invalid": self.provenance_invalid,
            "models": [{"models": k, "clips": v} for k, v in self.models.most_common(10)],
        }


CLIP_COLUMNS = [
    "clip_id", "source", "start_s", "end_s", "duration_s", "fps", "width", "height", "motion", "shake",
    "sharpness", "brightness", "aesthetic", "clip_score", "kept", "reject_reason", "shard", "caption",
    "caption_status", "caption_error", "frame_captions", "caption_provenance",
]  # fmt: skip


def collect_videos(folder: Folder, config: ReportConfig) -> dict[str, Any]:
    inputs = ok = failed = scenes = transitions = 0
    seconds_in = 0.0
    reasons = TopCounter(config.captions.counter_capacity)
    codecs = TopCounter(256)
    columns = ["status", "error", "duration_s", "num_scenes", "num_transitions", "codec"]
    for batch in _batches(folder.videos, columns, config.batch_rows):
        status = batch.column("status").to_pylist()
        errors = batch.column("error").to_pylist()
        inputs += len(status)
        for s, e in zip(status, errors):
            if s == "ok":
                ok += 1
            else:
                failed += 1
                reasons.add(metrics.leading_phrase(e))
        durations = _floats(batch, "duration_s")
        seconds_in += float(np.nansum(durations))
        scenes += int(np.nansum(_floats(batch, "num_scenes")))
        transitions += int(np.nansum(_floats(batch, "num_transitions")))
        for codec in batch.column("codec").to_pylist():
            if codec:
                codecs.add(codec)
    return {
        "inputs": inputs,
        "ok_inputs": ok,
        "failed_inputs": failed,
        "failed_by_reason": dict(reasons.most_common(50)),
        "scenes": scenes,
        "transitions": transitions,
        "hours_in": seconds_in / 3600.0,
        "codecs": dict(codecs.most_common(20)),
    }


def _sample_record(row: dict[str, Any], frame_items: list[dict], grounding: float | None, degenerate: str | None) -> dict:
    return {
        "clip_id": row["clip_id"],
        "shard": row["shard"],
        "source": row["source"],
        "start_s": row["start_s"],
        "end_s": row["end_s"],
        "scores": {k: row[k] for k in SAMPLE_SCORES},
        "caption": row["caption"],
        "caption_status": row["caption_status"],
        "caption_error": row["caption_error"],
        "frame_captions": [{"time_s": i.get("time_s"), "caption": i["caption"]} for i in frame_items],
        "grounding": grounding,
        "degenerate": degenerate,
    }


ROW_SLICE = 1024  # kept rows turned into Python objects at a time (bounds the per-batch transient)


class _ClipPass:
    """Pass 2 over the clips manifest: every aggregate, fed one Arrow batch at a time.

    Each batch is handled in :meth:`add` and its kept rows in slices of :data:`ROW_SLICE` in
    :meth:`_add_rows`, so the Python objects of one slice (row dicts, word lists) are freed before
    the next slice is built: the transient memory does not depend on ``batch_rows``.
    """

    def __init__(self, config: ReportConfig, ranges: dict[str, tuple[float, float]], caps: CaptionStats):
        self.config = config
        self.hist_all = {n: Histogram(*ranges[n], config.histogram_bins) for n in CLIP_METRICS}
        self.hist_kept = {n: Histogram(*ranges[n], config.histogram_bins) for n in CLIP_METRICS}
        self.resolutions = TopCounter(config.captions.counter_capacity)
        self.rejects = TopCounter(config.captions.counter_capacity)
        self.shards: dict[str, _ShardStats] = {}
        self.caps = caps
        self.caps.clip_score = Histogram(*ranges["clip_score"], config.histogram_bins)
        self.worst = WorstN(config.samples)
        self.reservoir = Reservoir(config.samples, config.seed)
        self.clips = self.kept = 0
        self.seconds_candidates = self.seconds_kept = 0.0

    def add(self, batch: pa.RecordBatch) -> None:
        self.clips += batch.num_rows
        kept_mask = np.asarray(batch.column("kept").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        self.kept += int(kept_mask.sum())
        durations = _floats(batch, "duration_s")
        self.seconds_candidates += float(np.nansum(durations))
        self.seconds_kept += float(np.nansum(durations[kept_mask]))
        for name in CLIP_METRICS:
            values = _metric_values(batch, name)
            self.hist_all[name].add(values)
            self.hist_kept[name].add(values[kept_mask])
        for reason in pc.filter(batch.column("reject_reason"), pa.array(~kept_mask)).to_pylist():
            self.rejects.add(metrics.leading_phrase(reason))
        kept_batch = batch.filter(pa.array(kept_mask))
        for offset in range(0, kept_batch.num_rows, ROW_SLICE):
            self._add_rows(kept_batch.slice(offset, ROW_SLICE).to_pylist())

    def _add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Per-clip figures of kept rows: shards, captions, samples."""
        c, caps, shards = self.config.captions, self.caps, self.shards
        ok_tokens: list[list[str]] = []
        ok_texts: list[str] = []
        # per-slice value lists, added to the histograms once per slice
        word_counts, ttrs, ok_scores, groundings, frame_counts = [], [], [], [], []
        for row in rows:
            width, height = row["width"], row["height"]
            if width and height:
                self.resolutions.add(f"{width}x{height}")
            shard = shards.setdefault(row["shard"] or "(no shard)", _ShardStats())
            shard.clips += 1
            shard.seconds += row["duration_s"] or 0.0
            for k in SHARD_SCORES:
                v = row[k]
                if v is not None and math.isfinite(v):
                    shard.sums[k] += v
                    shard.counts[k] += 1

            status = row["caption_status"]
            grounding = degenerate = None
            frame_items: list[dict] = []
            if status is None:
                caps.uncaptioned_kept += 1
            else:
                caps.attempted += 1
                shard.captioned += 1
                if row["caption_provenance"]:
                    prov = _provenance(row["caption_provenance"])
                    if prov.get("_invalid"):
                        caps.provenance_invalid += 1
                    if prov.get("smoke_test") is True:
                        caps.smoke_test += 1
                    if "models" in prov:
                        caps.models.add(_models_key(row["caption_provenance"]))
                if status != "ok":
                    caps.failed.add(metrics.leading_phrase(row["caption_error"]))
                    shard.caption_failed += 1
                else:
                    caps.ok += 1
                    tokens = metrics.words(row["caption"])
                    ok_tokens.append(tokens)
                    ok_texts.append(row["caption"] or "")
                    word_counts.append(len(tokens))
                    degenerate = metrics.degenerate_reason(tokens, c.min_words, c.max_repeated_trigram_share)
                    if degenerate:
                        caps.degenerate.add(degenerate)
                        caps.degenerate_total += 1
                        shard.degenerate += 1
                    ttr = metrics.type_token_ratio(tokens)
                    if ttr is not None:
                        ttrs.append(ttr)
                    first = metrics.opener(tokens, c.opener_words)
                    if first:
                        caps.openers.add(first)
                        caps.opener_total += 1
                    if row["clip_score"] is not None:
                        ok_scores.append(row["clip_score"])
                    frame_items, valid = _frame_captions(row["frame_captions"])
                    if not valid:
                        caps.frame_captions_invalid += 1
                    frame_counts.append(len(frame_items))
                    frame_tokens = metrics.words(" ".join(i["caption"] for i in frame_items))
                    grounding = metrics.grounding(tokens, frame_tokens)
                    if not frame_tokens:
                        caps.no_frame_captions += 1
                    elif grounding is None:
                        caps.no_nouns += 1
                    else:
                        groundings.append(grounding)

            score = row["clip_score"]
            take_worst = score is not None and math.isfinite(score) and self.worst.would_take(score, row["clip_id"])
            slot = self.reservoir.wants()
            if take_worst or slot is not None:
                if status is not None and not frame_items and row["frame_captions"]:
                    frame_items, _ = _frame_captions(row["frame_captions"])
                record = _sample_record(row, frame_items, grounding, degenerate)
                if take_worst:
                    self.worst.push(score, row["clip_id"], record)
                if slot is not None:
                    self.reservoir.put(slot, record)
        caps.add_texts(ok_tokens, ok_texts)
        caps.words.add(np.array(word_counts, dtype=np.float64))
        caps.ttr.add(np.array(ttrs, dtype=np.float64))
        caps.clip_score.add(np.array(ok_scores, dtype=np.float64))
        caps.grounding.add(np.array(groundings, dtype=np.float64))
        caps.frame_caption_counts.add(np.array(frame_counts, dtype=np.float64))

    def funnel(self) -> dict[str, Any]:
        return {
            "clips": self.clips,
            "kept_clips": self.kept,
            "rejected_clips": self.clips - self.kept,
            "rejected_by_reason": dict(self.rejects.most_common(50)),
            "kept_share": _rate(self.kept, self.clips),
            "hours_candidates": self.seconds_candidates / 3600.0,
            "hours_out": self.seconds_kept / 3600.0,
        }


def collect(
    folder: Folder,
    config: ReportConfig,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    tokenizer_reason: str | None = None,
) -> dict[str, Any]:
    """All the report's numbers for one output folder, plus the worst/random sample clips."""
    clip_pass = _ClipPass(config, _ranges(folder, config), CaptionStats(config, count_tokens))
    for batch in _batches(folder.clips, CLIP_COLUMNS, config.batch_rows):
        clip_pass.add(batch)
    funnel = collect_videos(folder, config)
    funnel.update(clip_pass.funnel())
    p = clip_pass
    return {
        "folder": str(folder.root),
        "funnel": funnel,
        "clips": {
            "thresholds": {k: v for k, v in vars(config.thresholds).items() if v is not None},
            "metrics": {
                name: {"label": CLIP_METRICS[name][0], "all": p.hist_all[name].to_json(), "kept": p.hist_kept[name].to_json()}
                for name in CLIP_METRICS
            },
            "resolutions": dict(p.resolutions.most_common(20)),
        },
        "caption": p.caps.to_json(tokenizer_reason),
        "shards": [s.to_json(name) for name, s in sorted(p.shards.items())],
        "samples": {"worst": p.worst.items(), "random": p.reservoir.items, "seed": config.seed},
    }


def find_clips(folder: Folder, clip_ids: list[str], config: ReportConfig) -> dict[str, dict]:
    """The rows of ``clip_ids`` (a bounded list) from ``folder``'s clips manifest, by streaming."""
    wanted = pa.array(sorted(set(clip_ids)), pa.string())
    found: dict[str, dict] = {}
    if len(wanted) == 0:
        return found
    for batch in _batches(folder.clips, CLIP_COLUMNS, config.batch_rows):
        mask = pc.is_in(batch.column("clip_id"), value_set=wanted)
        for row in batch.filter(mask).to_pylist():
            items, _ = _frame_captions(row["frame_captions"])
            tokens = metrics.words(row["caption"]) if row["caption_status"] == "ok" else []
            frame_tokens = metrics.words(" ".join(i["caption"] for i in items))
            found[row["clip_id"]] = _sample_record(
                row,
                items,
                metrics.grounding(tokens, frame_tokens) if tokens else None,
                metrics.degenerate_reason(tokens, config.captions.min_words, config.captions.max_repeated_trigram_share)
                if row["caption_status"] == "ok"
                else None,
            )
    return found
