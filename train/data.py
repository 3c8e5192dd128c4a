"""WebDataset shards -> training batches: a LightningDataModule over ``vidforge curate`` output.

Each loader worker reads its own shards (``shard-NNNNNN.tar``: ``<id>.mp4`` + ``<id>.json`` [+
``<id>.txt``], or ``<id>.jpg|png`` images, or ``<id>.latents.safetensors`` written by ``vidforge
encode``), shuffles through a buffer, plans every sample's frames and token count from its json row
(no decoding), groups samples into batches (:mod:`train.framepack`), and only then decodes the
batch's clips with decord from the mp4 bytes in memory, resized and centre-cropped to the run's size.

Determinism and resume: the stream of a worker is a pure function of ``(seed, data epoch, consumer)``
(consumer = ``rank * num_workers + worker``): the shard order of a data epoch is a permutation seeded by
``(seed, epoch)``, and across all ranks and workers each shard is read exactly once per data epoch
(when there are fewer shards than consumers, every consumer reads all shards and keeps every
``consumers``-th sample instead). The training stream is endless (data epoch after data epoch; the run
stops at ``max_steps``), so DDP ranks never run out of batches at different times. Every batch carries
its position ``(worker, data epoch, index)``; the data module records the position of each batch the
training loop consumes, saves it in the checkpoint, and a resumed run restarts each worker at its
position, skipping consumed batches before decoding them (and rotates worker ids so the DataLoader's
round robin continues where it stopped). A corrupt or unreadable sample is skipped, logged and counted.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from train.framepack import BatchingConfig, Planned, TokenShape, batches

logger = logging.getLogger(__name__)

VIDEO_EXTS = ("mp4", "webm", "mkv", "mov", "avi")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
LATENT_EXT = "latents.safetensors"
Kind = Literal["auto", "video", "latent"]


# ----------------------------------------------------------------------------------------------
# Shard lists
# ----------------------------------------------------------------------------------------------


def expand_shards(spec: str | list[str]) -> list[str]:
    """Shard URLs from brace patterns (``shard-{000000..000009}.tar``), ``::``-joined lists, local globs
    and remote URLs (``s3://``, ``https://``, ``pipe:``; anything webdataset's ``gopen`` opens)."""
    from webdataset.shardlists import expand_urls

    specs = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for entry in specs:
        for url in expand_urls(str(entry)):
            if re.match(r"^[a-z0-9+]+:", url) and not re.match(r"^[A-Za-z]:[\\/]", url):
                urls.append(url)  # remote (or pipe:): taken as is
            elif any(c in url for c in "*?["):
                matched = sorted(glob.glob(url))
                if not matched:
                    raise FileNotFoundError(f"data.shards: pattern {url!r} matches no file")
                urls += matched
            else:
                if not Path(url).is_file():
                    raise FileNotFoundError(f"data.shards: {url}: no such shard")
                urls.append(url)
    if not urls:
        raise ValueError(f"data.shards: {spec!r} names no shard")
    return urls


# ----------------------------------------------------------------------------------------------
# Samples: plan (cheap, from the json row) and load (decode)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSpec:
    """What one training sample looks like: frames at ``fps``, ``height`` x ``width`` pixels.

    ``num_frames`` is the most frames taken (1 + 4k); clips shorter than that give the longest
    1 + 4k count they hold at ``fps``, down to ``min_frames`` (shorter ones are skipped as too short).
    ``min_frames == num_frames`` is fixed-duration training; smaller values give mixed durations.
    """

    num_frames: int = 49
    min_frames: int = 49
    fps: float = 8.0
    height: int = 480
    width: int = 720
    temporal_compression: int = 4
    vae_scale: int = 8

    def __post_init__(self) -> None:
        k = self.temporal_compression
        for name in ("num_frames", "min_frames"):
            value = getattr(self, name)
            if value < 1 or (value - 1) % k:
                raise ValueError(f"data.{name}: must be 1 + {k}*k (e.g. 9, 13, 49), got {value}")
        if self.min_frames > self.num_frames:
            raise ValueError(f"data.min_frames ({self.min_frames}) must be <= data.num_frames ({self.num_frames})")
        if self.fps <= 0:
            raise ValueError(f"data.fps: must be > 0, got {self.fps}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value < 1 or value % (2 * self.vae_scale):
                raise ValueError(f"data.{name}: must be a positive multiple of {2 * self.vae_scale}, got {value}")

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_compression + 1


class SampleError(ValueError):
    """A sample that cannot be used; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Plan:
    """How to load one sample: its kind and, for videos, which source frames."""

    kind: Literal["video", "image", "latent"]
    indices: list[int] | None = None
    latents: dict[str, torch.Tensor] | None = None


def sample_rng(seed: int, epoch: int, key: str) -> random.Random:
    return random.Random((seed * 1_000_003 + epoch) * 4_294_967_311 + zlib.crc32(key.encode()))


def choose_frames(src_frames: int, src_fps: float, spec: ClipSpec, rng: random.Random) -> list[int]:
    """Source frame indices: ``spec.fps`` sampling, the longest 1 + 4k count up to ``num_frames``,
    at a random start. Raises :class:`SampleError` (``too_short``) below ``min_frames``."""
    stride = src_fps / spec.fps if src_fps > 0 else 1.0
    stride = max(stride, 1.0)  # never repeat frames of a low-fps source
    available = int((src_frames - 1) // stride) + 1 if src_frames > 0 else 0
    k = spec.temporal_compression
    n = min(spec.num_frames, (available - 1) // k * k + 1) if available >= 1 else 0
    if n < spec.min_frames:
        raise SampleError("too_short", f"{src_frames} frames at {src_fps:g} fps give {available} at {spec.fps:g} fps, fewer than min_frames={spec.min_frames}")
    span = (n - 1) * stride
    start = rng.uniform(0, max(src_frames - 1 - span, 0))
    return [min(int(round(start + i * stride)), src_frames - 1) for i in range(n)]


def _ext(sample: dict, exts: tuple[str, ...]) -> str | None:
    return next((e for e in exts if e in sample), None)


def plan_sample(sample: dict, spec: ClipSpec, kind: Kind, seed: int, epoch: int, text_tokens: int,
                patch_size: int, patch_size_t: int | None) -> Planned[tuple[dict, Plan]]:
    """Decide frames and token shape from metadata only (the json row, or the video header)."""
    key = sample.get("__key__", "?")
    if kind in ("auto", "latent") and LATENT_EXT in sample:
        from safetensors.torch import load as load_safetensors

        try:
            tensors = load_safetensors(sample[LATENT_EXT])
            mean = tensors["latents_mean"]
        except Exception as exc:  # noqa: BLE001 - any unreadable payload is a skipped sample
            raise SampleError("unreadable_latents", f"{LATENT_EXT}: {exc}") from None
        if mean.ndim != 4:
            raise SampleError("unreadable_latents", f"latents_mean: expected (F, C, h, w), got {tuple(mean.shape)}")
        shape = TokenShape(mean.shape[0], mean.shape[2], mean.shape[3], text_tokens, patch_size, patch_size_t)
        return Planned((sample, Plan("latent", latents=tensors)), shape)
    if kind == "latent":
        raise SampleError("missing_latents", f"no {LATENT_EXT} in the sample (data.kind=latent)")
    h, w = spec.height // spec.vae_scale, spec.width // spec.vae_scale
    video_ext = _ext(sample, VIDEO_EXTS)
    if video_ext is not None:
        meta = _metadata(sample)
        frames, fps = meta.get("num_frames"), meta.get("fps")
        if not frames or not fps:
            frames, fps = _probe(sample[video_ext])
        indices = choose_frames(int(frames), float(fps), spec, sample_rng(seed, epoch, key))
        shape = TokenShape(spec.latent_frames(len(indices)), h, w, text_tokens, patch_size, patch_size_t)
        return Planned((sample, Plan("video", indices=indices)), shape)
    if _ext(sample, IMAGE_EXTS) is not None:
        return Planned((sample, Plan("image")), TokenShape(1, h, w, text_tokens, patch_size, patch_size_t))
    files = sorted(k for k in sample if not k.startswith("__"))
    raise SampleError("no_media", f"no video ({'/'.join(VIDEO_EXTS)}), image or latents in the sample; files: {files}")


def _metadata(sample: dict) -> dict:
    if "json" not in sample:
        return {}
    try:
        row = json.loads(sample["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SampleError("bad_json", f"json: {exc}") from None
    if not isinstance(row, dict):
        raise SampleError("bad_json", f"json: expected an object, got {type(row).__name__}")
    return row


def _probe(data: bytes) -> tuple[int, float]:
    import decord

    try:
        vr = decord.VideoReader(io.BytesIO(data), num_threads=1)
        return len(vr), float(vr.get_avg_fps())
    except Exception as exc:  # noqa: BLE001 - decord raises its own DECORDError and RuntimeError
        raise SampleError("undecodable", f"video header: {exc}") from None


def resize_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(F, 3, H, W)`` uint8 -> ``(F, 3, height, width)`` float in [-1, 1]: scale to cover, then centre-crop."""
    _, _, h, w = frames.shape
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    x = frames.float()
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    x = x[:, :, top : top + height, left : left + width]
    return (x / 127.5 - 1.0).clamp(-1.0, 1.0)


def load_pixels(sample: dict, plan: Plan, spec: ClipSpec) -> torch.Tensor:
    """Decode to ``(3, F, height, width)`` in [-1, 1]."""
    if plan.kind == "video":
        import decord

        data = sample[_ext(sample, VIDEO_EXTS)]
        try:
            vr = decord.VideoReader(io.BytesIO(data), num_threads=1)
            if plan.indices and max(plan.indices) >= len(vr):
                raise SampleError("short_video", f"json says more frames than the video holds ({len(vr)})")
            frames = vr.get_batch(plan.indices).asnumpy()
        except SampleError:
            raise
        except Exception as exc:  # noqa: BLE001 - decord raises DECORDError / RuntimeError
            # decord fails on some frame widths (row alignment); PyAV decodes what decord cannot
            frames = _decode_with_pyav(data, plan.indices or [0], exc)
    else:
        import cv2

        buf = np.frombuffer(sample[_ext(sample, IMAGE_EXTS)], np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise SampleError("undecodable", "image: cv2 could not decode it")
        frames = bgr[None, :, :, ::-1].copy()
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SampleError("undecodable", f"decoded frames have shape {frames.shape}, expected (F, H, W, 3)")
    video = resize_center_crop(torch.from_numpy(frames).permute(0, 3, 1, 2), spec.height, spec.width)
    return video.permute(1, 0, 2, 3).contiguous()


def _decode_with_pyav(data: bytes, indices: list[int], decord_error: Exception) -> np.ndarray:
    import av

    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(io.BytesIO(data)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    frames[i] = frame.to_ndarray(format="rgb24", threads=1)  # one scaler thread per loader worker
                if i >= max(indices):
                    break
    except Exception as exc:  # noqa: BLE001 - av raises many error types
        raise SampleError("undecodable", f"video: decord: {decord_error}; PyAV: {exc}") from None
    missing = sorted(wanted - set(frames))
    if missing:
        raise SampleError("short_video", f"video: frames {missing[:5]} not decodable (decord: {decord_error})")
    return np.stack([frames[i] for i in indices])


def caption_of(sample: dict, field: str) -> str | None:
    """The ``.txt`` caption, else the json row's ``field``; None when neither exists."""
    if "txt" in sample:
        try:
            return sample["txt"].decode("utf-8").strip()
        except UnicodeDecodeError:
            pass
    value = _metadata(sample).get(field) if "json" in sample else None
    return str(value).strip() if value else None


# ----------------------------------------------------------------------------------------------
# The stream
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamConfig:
    seed: int = 0
    shuffle_buffer: int = 64
    text_tokens: int = 226
    patch_size: int = 2
    patch_size_t: int | None = None
    caption_field: str = "caption"


class ShardStream(IterableDataset):
    """Batches from shards, deterministic per ``(seed, data epoch, consumer)``; see the module docstring.

    ``endless``: data epoch after data epoch (training); otherwise one unshuffled pass (validation),
    stopping after ``max_batches`` when given. ``resume``: ``{"rotation": r, "positions": {worker:
    (epoch, index)}}`` from :meth:`VideoDataModule.state_dict`.
    """

    def __init__(self, urls: list[str], spec: ClipSpec, batching: BatchingConfig, stream: StreamConfig,
                 kind: Kind = "auto", tokenizer: str | None = None, rank: int = 0, world_size: int = 1,
                 endless: bool = True, max_batches: int | None = None, resume: dict | None = None):
        super().__init__()
        self.urls, self.spec, self.batching, self.stream = list(urls), spec, batching, stream
        self.kind, self.tokenizer_path = kind, tokenizer
        self.rank, self.world_size = rank, world_size
        self.endless, self.max_batches = endless, max_batches
        self.resume = resume or {}
        self.skipped: Counter[str] = Counter()
        self._tokenizer = None

    # -- worker identity ---------------------------------------------------------------------------
    def _worker(self) -> tuple[int, int]:
        """(logical worker id, number of workers); logical ids rotate on resume (see module docstring)."""
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        physical = info.id if info is not None else 0
        return (physical + int(self.resume.get("rotation", 0))) % workers, workers

    # -- raw samples ---------------------------------------------------------------------------------
    def _skip(self, reason: str, key: str, message: str) -> None:
        self.skipped[reason] += 1
        logger.warning("data: skipping sample %s (%s): %s", key, reason, message)

    def _tar_error(self, exc: Exception) -> bool:
        self.skipped["unreadable_tar"] += 1
        logger.warning("data: unreadable shard data, skipped: %s", exc)
        return True

    def _raw(self, epoch: int, consumer: int, consumers: int) -> Iterator[dict]:
        from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener

        urls = list(self.urls)
        if self.endless:
            random.Random(self.stream.seed * 7919 + epoch).shuffle(urls)
        by_shard = len(urls) >= consumers
        mine = urls[consumer::consumers] if by_shard else urls
        files = tar_file_expander(url_opener(({"url": u} for u in mine), handler=self._tar_error), handler=self._tar_error)
        for j, sample in enumerate(group_by_keys(files, handler=self._tar_error)):
            if by_shard or j % consumers == consumer:
                yield sample

    def _shuffled(self, samples: Iterator[dict], rng: random.Random) -> Iterator[dict]:
        size = self.stream.shuffle_buffer if self.endless else 0
        if size <= 1:
            yield from samples
            return
        buffer: list[dict] = []
        for sample in samples:
            if len(buffer) < size:
                buffer.append(sample)
                continue
            i = rng.randrange(size)
            buffer[i], sample = sample, buffer[i]
            yield sample
        rng.shuffle(buffer)
        yield from buffer

    def _planned(self, epoch: int, consumer: int, consumers: int) -> Iterator[Planned]:
        rng = random.Random((self.stream.seed * 1_000_003 + epoch) * 65_537 + consumer)
        for sample in self._shuffled(self._raw(epoch, consumer, consumers), rng):
            key = sample.get("__key__", "?")
            try:
                yield plan_sample(sample, self.spec, self.kind, self.stream.seed, epoch, self.stream.text_tokens,
                                  self.stream.patch_size, self.stream.patch_size_t)
            except SampleError as exc:
                self._skip(exc.reason, key, str(exc))

    # -- batches -----------------------------------------------------------------------------------
    def tokenizer(self):
        if self._tokenizer is None and self.tokenizer_path:
            from transformers import AutoTokenizer

            from train.components import resolve_pretrained

            root = Path(resolve_pretrained(self.tokenizer_path))
            self._tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer" if (root / "tokenizer").is_dir() else root)
        return self._tokenizer

    def _load(self, group: list[Planned], position: dict) -> dict | None:
        keys, captions, videos, means, stds, embeds = [], [], [], [], [], []
        for planned in group:
            sample, plan = planned.item
            key = sample.get("__key__", "?")
            try:
                caption = caption_of(sample, self.stream.caption_field)
                if caption is None:
                    self.skipped["no_caption"] += 1  # counted, trained with an empty prompt
                    caption = ""
                if plan.kind == "latent":
                    lat = plan.latents
                    video, mean, std = None, lat["latents_mean"].float(), lat.get("latents_std")
                    std = std.float() if std is not None else None
                    embed = lat["prompt_embeds"].float() if "prompt_embeds" in lat else None
                else:
                    video, mean, std, embed = load_pixels(sample, plan, self.spec), None, None, None
            except SampleError as exc:
                self._skip(exc.reason, key, str(exc))
                continue
            keys.append(key)
            captions.append(caption)
            videos.append(video)
            means.append(mean)
            stds.append(std)
            embeds.append(embed)
        if not keys:
            return None
        batch: dict[str, Any] = {
            "keys": keys, "captions": captions, "videos": videos, "latents_mean": means, "latents_std": stds,
            "prompt_embeds": embeds, "mode": self.batching.mode, "max_tokens": self.batching.max_tokens,
            "position": position, "skipped": dict(self.skipped),
        }
        tok = self.tokenizer()
        if tok is not None:
            batch["input_ids"] = tok(captions, padding="max_length", max_length=self.stream.text_tokens, truncation=True,
                                     add_special_tokens=True, return_tensors="pt").input_ids
        return batch

    def __iter__(self) -> Iterator[dict]:
        worker, workers = self._worker()
        consumer, consumers = self.rank * workers + worker, self.world_size * workers
        start_epoch, last_index = self.resume.get("positions", {}).get(worker, (0, -1))
        emitted = 0
        epochs = count(start_epoch) if self.endless else [0]
        for epoch in epochs:
            produced = False
            for index, group in enumerate(batches(self._planned(epoch, consumer, consumers), self.batching)):
                if epoch == start_epoch and index <= last_index:
                    produced = True
                    continue  # consumed before the checkpoint: skipped without decoding
                batch = self._load(group, {"worker": worker, "workers": workers, "epoch": epoch, "index": index})
                if batch is None:
                    continue
                produced = True
                yield batch
                emitted += 1
                if self.max_batches is not None and emitted >= self.max_batches:
                    return
            if not produced and self.endless:
                raise RuntimeError(
                    f"data: consumer {consumer} of {consumers} (rank {self.rank}, worker {worker}) got no usable sample in data "
                    f"epoch {epoch} from {len(self.urls)} shard(s); skipped so far: {dict(self.skipped)}"
                )


# ----------------------------------------------------------------------------------------------
# The data module
# ----------------------------------------------------------------------------------------------


class VideoDataModule(L.LightningDataModule):
    """Training (endless, shuffled) and validation (first ``val_batches`` batches) loaders over shards.

    Args:
        shards: shard paths, globs, brace patterns or URLs (``'out/shards/*.tar'``).
        val_shards: validation shards (default: the training shards, unshuffled).
        kind: ``video`` (mp4/images), ``latent`` (``vidforge encode`` output) or ``auto`` (per sample).
        tokenizer: a pipeline folder (its ``tokenizer/``) or tokenizer folder; the fit CLI links it to
            ``model.pretrained``. Without one, batches carry captions only.
        num_frames, min_frames, fps, height, width: the clip geometry (:class:`ClipSpec`).
        batching: Frame Pack / buckets / pad-to-longest (:class:`train.framepack.BatchingConfig`).
        text_tokens, patch_size, patch_size_t: token accounting of the transformer (CogVideoX: 226, 2, None).
    """

    def __init__(
        self,
        shards: str | list[str],
        val_shards: str | list[str] | None = None,
        kind: Kind = "auto",
        tokenizer: str | None = None,
        num_frames: int = 49,
        min_frames: int | None = None,
        fps: float = 8.0,
        height: int = 480,
        width: int = 720,
        batching: BatchingConfig = BatchingConfig(),
        num_workers: int = 4,
        shuffle_buffer: int = 64,
        seed: int = 0,
        val_batches: int = 2,
        text_tokens: int = 226,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        caption_field: str = "caption",
    ):
        super().__init__()
        if kind not in ("auto", "video", "latent"):
            raise ValueError(f"data.kind: expected 'auto', 'video' or 'latent', got {kind!r}")
        self.shards, self.val_shards, self.kind, self.tokenizer = shards, val_shards, kind, tokenizer
        self.spec = ClipSpec(num_frames, min_frames if min_frames is not None else num_frames, fps, height, width)
        self.batching = batching if isinstance(batching, BatchingConfig) else BatchingConfig(**dict(batching))
        self.stream = StreamConfig(seed, shuffle_buffer, text_tokens, patch_size, patch_size_t, caption_field)
        if num_workers < 0:
            raise ValueError(f"data.num_workers: must be >= 0, got {num_workers}")
        self.num_workers, self.val_batches = num_workers, val_batches
        self.positions: dict[int, tuple[int, int]] = {}  # logical worker -> (epoch, index) last consumed
        self.consumed = 0
        self.skipped: dict[int, dict[str, int]] = {}
        self._resume: dict | None = None

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: ShardStream) -> DataLoader:
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, persistent_workers=False)

    def train_dataset(self) -> ShardStream:
        rank, world = self._rank()
        resume = None
        if self._resume is not None:
            resume = {"rotation": self._resume["consumed"] % max(self.num_workers, 1), "positions": self._resume["positions"]}
            self.positions, self.consumed = dict(self._resume["positions"]), self._resume["consumed"]
        return ShardStream(expand_shards(self.shards), self.spec, self.batching, self.stream, self.kind, self.tokenizer,
                           rank, world, endless=True, resume=resume)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset())

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        urls = expand_shards(self.val_shards if self.val_shards is not None else self.shards)
        dataset = ShardStream(urls, self.spec, self.batching, self.stream, self.kind, self.tokenizer, rank, world,
                              endless=False, max_batches=self.val_batches)
        return DataLoader(dataset, batch_size=None, num_workers=0)

    # -- position tracking (for exact resume) ---------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if isinstance(batch, dict) and "position" in batch and trainer is not None and trainer.training:
            pos = batch["position"]
            self.positions[int(pos["worker"])] = (int(pos["epoch"]), int(pos["index"]))
            self.consumed += 1
            self.skipped[int(pos["worker"])] = batch.get("skipped", {})
        return batch

    def skipped_total(self) -> int:
        return sum(sum(counts.get(k, 0) for k in counts if k != "no_caption") for counts in self.skipped.values())

    def state_dict(self) -> dict[str, Any]:
        """This rank's positions (all ranks' when torch.distributed is up; each rank keeps its own)."""
        mine = {"consumed": self.consumed, "positions": dict(self.positions), "num_workers": self.num_workers}
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, mine)
            return {"ranks": ranks}
        return {"ranks": [mine]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rank, world = self._rank()
        ranks = state.get("ranks", [])
        if len(ranks) != world:
            logger.warning("data: checkpoint was written by %d rank(s), this run has %d: the data stream restarts", len(ranks), world)
            return
        mine = ranks[rank]
        if mine.get("num_workers") != self.num_workers:
            logger.warning("data: checkpoint used num_workers=%s, this run %s: the data stream restarts", mine.get("num_workers"), self.num_workers)
            return
        self._resume = {"consumed": int(mine["consumed"]), "positions": {int(k): tuple(v) for k, v in mine["positions"].items()}}
