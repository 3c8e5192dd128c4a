"""The report's typed config (``configs/report/default.yaml`` documents every key)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.config import ConfigError, load_config, read_yaml


@dataclass
class Thresholds:
    """Filter thresholds drawn on the clip-statistics plots (null: not drawn)."""

    min_duration_s: float | None = 2.0
    max_duration_s: float | None = 20.0
    min_fps: float | None = None
    min_short_side: float | None = None
    min_motion: float | None = None
    max_motion: float | None = None
    max_shake: float | None = None
    min_sharpness: float | None = None
    min_brightness: float | None = None
    max_brightness: float | None = None
    min_aesthetic: float | None = None
    min_clip_score: float | None = None


@dataclass
class Captions:
    """How captions are judged."""

    min_words: int = 5  # an ok caption shorter than this is degenerate ("too_short")
    max_repeated_trigram_share: float = 0.3  # above this, degenerate ("repetitive")
    max_tokens: int = 226  # the text encoder's context (CogVideoX: 226 T5 tokens); longer is truncated
    opener_words: int = 3
    top_openers: int = 15
    counter_capacity: int = 20000  # bounded heavy-hitter counters (openers, reasons, resolutions)
    distinct_sketch_k: int = 65536  # distinct-n counts are exact up to this many distinct n-grams
    minhash_permutations: int = 64
    minhash_bands: int = 8  # 8 bands x 8 rows: pairs with 3-gram Jaccard >= ~0.8 are near-duplicates
    # 16 MiB per duplicate filter. Expected false positives (reported in report.json): exact < 0.01% up to
    # 2M distinct captions; near-duplicate ~1.6% at 1M, ~15% at 2M. Each +1 doubles the captions for the same rate.
    bloom_bits_log2: int = 27


@dataclass
class Check:
    """Heuristic warning levels for the verdict box (not gates: they never change the exit code)."""

    max_failed_rate: float = 0.05
    max_degenerate_rate: float = 0.02
    max_duplicate_rate: float = 0.05
    max_near_duplicate_rate: float = 0.10
    max_top_opener_share: float = 0.30
    min_grounding: float = 0.5
    max_truncated_rate: float = 0.05
    min_kept_share: float = 0.05


@dataclass
class Gate:
    """A quality gate on one report.json number (dotted path), e.g. caption.degenerate_rate <= 0.02."""

    metric: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ConfigError(f"gate {self.metric}: give min, max or both")


@dataclass
class ReportConfig:
    samples: int = 8  # worst-N and random-N sample clips
    seed: int = 0
    tokenizer: str | None = None  # folder of a T5 tokenizer (tokenizer.json or spiece.model)
    thumbnails: int = 4  # keyframes per sample clip
    thumbnail_height: int = 96
    histogram_bins: int = 40
    batch_rows: int = 8192  # Parquet rows per streamed batch
    max_shard_rows: int = 200  # shards listed in the page (report.json lists all)
    curate_config: str | None = None  # a curate YAML whose filter.* keys override thresholds below
    thresholds: Thresholds = field(default_factory=Thresholds)
    captions: Captions = field(default_factory=Captions)
    checks: Check = field(default_factory=Check)
    gates: list[Gate] = field(default_factory=list)


def thresholds_from_curate(path: str | Path, base: Thresholds) -> Thresholds:
    """Override ``base`` with the same-named keys of the curate config's ``filter`` section.

    Other keys of the curate config are not the report's business and are ignored.
    """
    data = read_yaml(path)
    section = data.get("filter") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: filter: expected a mapping")
    known = {f.name for f in fields(Thresholds)}
    values = {f.name: getattr(base, f.name) for f in fields(Thresholds)}
    for key, value in section.items():
        if key in known:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{path}: filter.{key}: expected a number, got {value!r}")
            values[key] = None if value is None else float(value)
    return Thresholds(**values)


def load_report_config(path: str | Path | None, overrides: list[str] = ()) -> ReportConfig:
    config = load_config(ReportConfig, path, overrides)
    if config.curate_config:
        curate = Path(config.curate_config)
        if not curate.is_absolute() and path is not None and not curate.exists():
            curate = Path(path).parent / curate
        config.thresholds = thresholds_from_curate(curate, config.thresholds)
    if config.samples < 0 or config.thumbnails < 0:
        raise ConfigError(f"{path or 'report config'}: samples and thumbnails must be >= 0")
    if config.captions.minhash_permutations % config.captions.minhash_bands:
        raise ConfigError(f"{path or 'report config'}: captions.minhash_permutations must be a multiple of minhash_bands")
    return config
