"""Mixed-duration batching: Frame Pack, duration buckets, and pad-to-longest (the baseline).

Data side (in the loader workers, before any pixel is decoded): every sample's token count is known
from its planned latent shape, so a *batcher* groups samples into batches:

- ``pack``: first-fit-decreasing of a look-ahead buffer into ``rows`` rows of at most
  ``max_tokens`` tokens (text + video). Clips of any duration share a batch; the transformer sees one
  token sequence per row with block-diagonal attention (``model.packing``).
- ``bucket``: samples of one latent shape (frames, height, width) only, ``batch_size`` at a time.
- ``pad``: ``batch_size`` consecutive samples, zero-padded in time to the longest (the baseline
  Frame Pack is measured against; padded tokens are masked out of attention and of the loss).

Model side, :func:`predict` runs the transformer on a batch laid out in any of the three ways and
returns one prediction per sample, shaped like that sample's latents.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import torch

from model.packing import pack

Batching = Literal["pack", "bucket", "pad"]
T = TypeVar("T")


@dataclass(frozen=True)
class TokenShape:
    """Latent geometry of a sample and what it costs in transformer tokens."""

    frames: int  # latent frames
    height: int  # latent height
    width: int  # latent width
    text_tokens: int
    patch_size: int = 2
    patch_size_t: int | None = None

    @property
    def video_tokens(self) -> int:
        pt = self.patch_size_t or 1
        return -(-self.frames // pt) * (self.height // self.patch_size) * (self.width // self.patch_size)

    @property
    def tokens(self) -> int:
        return self.text_tokens + self.video_tokens

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.frames, self.height, self.width)


@dataclass
class Planned(Generic[T]):
    """An undecoded sample and its token shape."""

    item: T
    shape: TokenShape


@dataclass(frozen=True)
class BatchingConfig:
    """How loader workers group samples. ``max_tokens`` is per packed row (``pack``)."""

    mode: Batching = "pack"
    batch_size: int = 2  # bucket / pad
    max_tokens: int = 4096  # pack: row length
    rows: int = 1  # pack: rows per batch
    lookahead: int = 32  # pack: samples considered at once (more = tighter packing)

    def __post_init__(self) -> None:
        if self.mode not in ("pack", "bucket", "pad"):
            raise ValueError(f"batching.mode: expected 'pack', 'bucket' or 'pad', got {self.mode!r}")
        for name in ("batch_size", "max_tokens", "rows", "lookahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching.{name}: must be >= 1, got {getattr(self, name)}")


def pack_rows(items: list[Planned[T]], max_tokens: int, rows: int) -> tuple[list[list[Planned[T]]], list[Planned[T]]]:
    """First-fit decreasing into at most ``rows`` rows; returns ``(rows, left over)``."""
    order = sorted(range(len(items)), key=lambda i: -items[i].shape.tokens)  # stable for ties
    filled: list[list[Planned[T]]] = []
    used: list[int] = []
    rest: list[int] = []
    for i in order:
        item = items[i]
        need = item.shape.tokens
        if need > max_tokens:
            raise ValueError(f"a sample needs {need} tokens, more than batching.max_tokens={max_tokens}: raise it or lower the resolution/frames")
        row = next((r for r, u in enumerate(used) if u + need <= max_tokens), None)
        if row is None and len(filled) < rows:
            filled.append([])
            used.append(0)
            row = len(filled) - 1
        if row is None:
            rest.append(i)
        else:
            filled[row].append(item)
            used[row] += need
    return filled, [items[i] for i in sorted(rest)]  # what waits keeps its arrival order


def batches(stream: Iterable[Planned[T]], config: BatchingConfig) -> Iterator[list[Planned[T]]]:
    """Group a stream of planned samples into batches; everything left is flushed at the end."""
    if config.mode == "pack":
        buffer: list[Planned[T]] = []
        for item in stream:
            buffer.append(item)
            if len(buffer) >= config.lookahead:
                filled, buffer = pack_rows(buffer, config.max_tokens, config.rows)
                yield [p for row in filled for p in row]
        while buffer:
            filled, buffer = pack_rows(buffer, config.max_tokens, config.rows)
            yield [p for row in filled for p in row]
    elif config.mode == "bucket":
        buckets: dict[tuple[int, int, int], list[Planned[T]]] = defaultdict(list)
        for item in stream:
            bucket = buckets[item.shape.key]
            bucket.append(item)
            if len(bucket) == config.batch_size:
                yield bucket[:]
                bucket.clear()
        for key in sorted(buckets):
            if buckets[key]:
                yield buckets[key]
    else:
        chunk: list[Planned[T]] = []
        for item in stream:
            chunk.append(item)
            if len(chunk) == config.batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


# ----------------------------------------------------------------------------------------------
# Model side
# ----------------------------------------------------------------------------------------------


@dataclass
class LayoutStats:
    """Token accounting of one forward pass: ``useful / computed`` is the share of useful tokens."""

    useful: int
    computed: int

    @property
    def efficiency(self) -> float:
        return self.useful / max(self.computed, 1)


def predict(
    transformer: torch.nn.Module,
    latents: list[torch.Tensor],
    text: list[torch.Tensor],
    timesteps: torch.Tensor,
    mode: Batching,
    max_tokens: int | None = None,
    ofs: torch.Tensor | None = None,
    packed_attention: str = "segments",
) -> tuple[list[torch.Tensor], LayoutStats]:
    """One prediction per sample. ``latents[i]``: ``(F_i, C, H_i, W_i)``; ``text[i]``: ``(L, D)``.

    ``pack``: rows of at most ``max_tokens`` (default: the longest sample) through ``forward_packed``;
    ``bucket``: one stacked forward (all shapes equal); ``pad``: zero-pad frames to the longest, mask the
    padded video tokens out of attention, and cut each prediction back to its own frames.
    """
    n = len(latents)
    cfg = transformer.config
    p, pt = int(cfg["patch_size"]), cfg.get("patch_size_t")
    shapes = [TokenShape(int(x.shape[0]), int(x.shape[2]), int(x.shape[3]), int(t.shape[0]), p, pt) for x, t in zip(latents, text)]
    useful = sum(s.tokens for s in shapes)
    if mode == "pack":
        budget = max_tokens or max(s.tokens for s in shapes)
        packed = pack(latents, text, timesteps, max_tokens=budget, patch_size=p, patch_size_t=pt, ofs=ofs)
        out = transformer.forward_packed(packed, packed_attention=packed_attention)
        return out, LayoutStats(useful, len(packed.rows) * packed.seq_len)
    if mode == "bucket":
        if len({tuple(x.shape) for x in latents}) != 1 or len({tuple(t.shape) for t in text}) != 1:
            raise ValueError(f"bucket batching needs equal latent shapes, got {sorted({tuple(x.shape) for x in latents})}")
        out = transformer(torch.stack(latents), torch.stack(text), timesteps, ofs=ofs)
        return list(out.unbind(0)), LayoutStats(useful, n * shapes[0].tokens)
    if mode != "pad":
        raise ValueError(f"batching mode: expected 'pack', 'bucket' or 'pad', got {mode!r}")
    if len({tuple(x.shape[1:]) for x in latents}) != 1:
        raise ValueError("pad batching pads frames only; samples must share channels, height and width")
    longest = max(x.shape[0] for x in latents)
    padded = torch.stack([torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])]) for x in latents])
    text_b = torch.stack(text)
    per_frame = (latents[0].shape[2] // p) * (latents[0].shape[3] // p)
    if pt and any(x.shape[0] % pt for x in latents):
        raise ValueError("pad batching with patch_size_t needs frame counts divisible by it")
    frame_tokens = longest // (pt or 1)
    keep = torch.zeros(n, text_b.shape[1] + frame_tokens * per_frame, dtype=torch.bool, device=padded.device)
    keep[:, : text_b.shape[1]] = True
    for i, x in enumerate(latents):
        keep[i, text_b.shape[1] : text_b.shape[1] + (x.shape[0] // (pt or 1)) * per_frame] = True
    out = transformer(padded, text_b, timesteps, attention_mask=keep, ofs=ofs)
    preds = [out[i, : x.shape[0]] for i, x in enumerate(latents)]
    return preds, LayoutStats(useful, n * (text_b.shape[1] + frame_tokens * per_frame))
