"""Typed configs for the caption job: CLIP quality stages and dense recaptioning.

:class:`CaptionJobConfig` is what ``configs/caption/*.yaml`` holds, what ``vidforge caption
--config`` loads, and what the curate config embeds as its ``caption:`` section. A section set to
``null`` is skipped. Loaded with :func:`pipeline.config.load_config` (errors name the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from pipeline.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROMPTS = "configs/caption/prompts.yaml"


@dataclass
class DecodingConfig:
    """``generate`` settings. ``seed`` fixes sampling so a retry is reproducible."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    seed: int | None = None

    def generate_kwargs(self) -> dict:
        kwargs: dict = {"do_sample": self.do_sample, "num_beams": self.num_beams}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kwargs


@dataclass
class HFModelConfig:
    """A transformers model: a hub id (resolved offline from the cache when present) or a local folder."""

    model: str
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto" (cuda when available)
    batch_size: int = 8  # prompts per generate() call (left-padded)
    max_new_tokens: int = 128
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"
    local_files_only: bool = False  # true: never reach the hub
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model: expected a hub id or a local folder, got an empty string")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")


@dataclass
class KeyframeConfig:
    """Which moments of a clip get captioned.

    ``interval``: one frame every ``interval_s`` seconds at the middle of each window
    (1 s, 3 s, 5 s ... for 2 s), at most ``max_frames`` (evenly thinned beyond that); a clip
    shorter than ``interval_s`` gets its middle frame. ``uniform``: ``num_frames`` frames at the
    centres of equal slices of the clip.
    """

    mode: Literal["interval", "uniform"] = "interval"
    interval_s: float = 2.0
    num_frames: int = 4
    max_frames: int = 8
    max_offset_s: float = 0.5  # a scan keyframe this close to the wanted time is used; else decode the mp4
    decode_short_side: int = 384  # frames decoded from the mp4 are resized to this short side (0: keep)

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError(f"interval_s: expected > 0, got {self.interval_s}")
        if self.num_frames < 1 or self.max_frames < 1:
            raise ConfigError("num_frames and max_frames: expected >= 1")


@dataclass
class GuardConfig:
    """Degenerate-caption detection (see :mod:`captioner.guards`) and the one retry."""

    enabled: bool = True
    checks: list[str] = field(default_factory=lambda: ["empty", "cut_off", "repetition", "refusal", "prompt_echo"])
    min_words: int = 3
    max_ngram_repeats: int = 3  # an n-gram (n = 3..6 words) seen more than this many times is a loop
    retry: bool = True
    retry_decoding: DecodingConfig = field(
        default_factory=lambda: DecodingConfig(
            do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.3, no_repeat_ngram_size=4, seed=1234
        )
    )
    reject_clip_on_failure: bool = False  # true: a clip whose caption failed is rejected "caption_failed"

    def __post_init__(self) -> None:
        from captioner.guards import CHECKS

        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ConfigError(f"checks: unknown {unknown}; expected some of {list(CHECKS)}")


@dataclass
class LengthConfig:
    """The dense caption's length budget: ``max_words`` English words and ``max_t5_tokens`` T5 tokens.

    With ``t5_tokenizer`` (a hub id or folder of a T5 tokenizer) tokens are counted exactly;
    without it a conservative estimate is used (see :mod:`captioner.length`).
    """

    max_words: int = 100
    max_t5_tokens: int = 226
    t5_tokenizer: str | None = None


@dataclass
class CaptionConfig:
    """The dense recaption stage.

    ``two_stage``: ``frame_captioner`` (a VLM) captions each keyframe, ``summariser`` (a causal LM)
    merges them in time order. ``one_stage``: ``video_captioner`` (a video-capable VLM) takes
    the keyframes as a video (or as several images) and writes the dense caption directly.
    """

    mode: Literal["two_stage", "one_stage"] = "two_stage"
    frame_captioner: HFModelConfig | None = None
    summariser: HFModelConfig | None = None
    video_captioner: HFModelConfig | None = None
    prompts: str = DEFAULT_PROMPTS  # versioned prompt templates
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    length: LengthConfig = field(default_factory=LengthConfig)
    short_caption_column: str | None = None  # a clips.parquet column with a short caption to pass along
    overwrite: bool = False  # false: clips with caption_status "ok" are left alone
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    concurrency: int = 1
    batch_size: int = 8  # video records per actor call; clips across them are captioned together

    def __post_init__(self) -> None:
        if self.mode == "two_stage" and (self.frame_captioner is None or self.summariser is None):
            raise ConfigError("mode two_stage needs both frame_captioner and summariser")
        if self.mode == "one_stage" and self.video_captioner is None:
            raise ConfigError("mode one_stage needs video_captioner")


@dataclass
class ClipModelConfig:
    """An open_clip model: a built-in name with ``pretrained`` (a tag or a local weights file),
    or ``local-dir:/folder`` / ``hf-hub:org/repo``."""

    model: str = "ViT-L-14"
    pretrained: str | None = "openai"
    device: str = "cpu"
    batch_size: int = 32


@dataclass
class AestheticConfig:
    """LAION improved-aesthetic-predictor over normalised CLIP ViT-L/14 image embeddings."""

    weights: str = ""  # local .safetensors / .pth (state dict with layers.{0,2,4,6,7}.*)
    threshold: float | None = 4.5  # clips scoring below are rejected "aesthetic"; null: score only
    reduce: Literal["mean", "min"] = "mean"

    def __post_init__(self) -> None:
        if not self.weights:
            raise ConfigError("weights: expected a local file of aesthetic head weights")


@dataclass
class DedupConfig:
    """Near-duplicate removal: cosine similarity of mean keyframe embeddings above ``threshold``."""

    threshold: float = 0.95
    max_index: int = 200_000  # kept embeddings remembered (oldest dropped first)

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold: expected a cosine similarity in [-1, 1], got {self.threshold}")


@dataclass
class ClipScoreConfig:
    """Caption–keyframe CLIP score: 100 x cosine, per sentence (77-token windows), aggregated."""

    sentence_reduce: Literal["max", "mean"] = "max"  # over keyframes, per sentence
    caption_reduce: Literal["mean", "min"] = "mean"  # over sentences (weighted by length for mean)


@dataclass
class ClipStagesConfig:
    """Resources shared by the CLIP-based stages."""

    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    concurrency: int = 1
    batch_size: int = 8


@dataclass
class CaptionJobConfig:
    """Everything ``build_stages`` needs; run order aesthetic → dedup → caption → clip_score."""

    clip: ClipStagesConfig | None = field(default_factory=ClipStagesConfig)
    aesthetic: AestheticConfig | None = None
    dedup: DedupConfig | None = None
    caption: CaptionConfig | None = None
    clip_score: ClipScoreConfig | None = None
    smoke_test: bool = False  # tiny random models: captions exercise the code, not quality

    def __post_init__(self) -> None:
        needs_clip = [n for n in ("aesthetic", "dedup", "clip_score") if getattr(self, n) is not None]
        if needs_clip and self.clip is None:
            raise ConfigError(f"clip: needed by {', '.join(needs_clip)} (an open_clip model section)")


def load_caption_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> CaptionJobConfig:
    """Load ``configs/caption/X.yaml`` (plus ``key=value`` overrides) into a :class:`CaptionJobConfig`."""
    return load_config(CaptionJobConfig, path, overrides)


def resolve_path(path: str) -> Path:
    """A config path as given, else relative to the repository root (for the shipped configs)."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    alt = REPO_ROOT / p
    return alt if alt.exists() else p
