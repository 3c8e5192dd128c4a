"""Frame Pack, model side: several samples of different duration/size packed into one token row.

A row is ``[text_1, video_1, text_2, video_2, ..., padding]``. Each sample keeps its own text,
latent shape and timestep; attention is block-diagonal (a sample never sees another), positions
restart per sample, and every token is modulated by its own sample's timestep embedding. The
transformer consumes a :class:`PackedBatch` in ``ExpertTransformer3D.forward_packed``.

Attention cost: :meth:`PackedBatch.attention_mask` is a boolean ``(rows, 1, S, S)`` tensor,
``rows * S^2`` bytes (S = 17,776 tokens -> 316 MB per row), and SDPA with an explicit mask cannot
use the flash kernels. The transformer's default ``packed_attention="segments"`` instead runs
SDPA once per segment (exact, no mask, memory of the largest segment only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Segment:
    """One sample inside a packed row: its text tokens ``[text_start, video_start)``, then its video tokens."""

    sample: int
    text_start: int
    text_len: int
    video_len: int
    latent_shape: tuple[int, int, int, int]  # (F, C, H, W)

    @property
    def video_start(self) -> int:
        return self.text_start + self.text_len

    @property
    def stop(self) -> int:
        return self.video_start + self.video_len


@dataclass
class PackedBatch:
    """Samples packed into ``len(rows)`` rows of ``seq_len`` tokens (padding after the last segment)."""

    latents: list[torch.Tensor]  # per sample (F_i, C, H_i, W_i)
    text: list[torch.Tensor]  # per sample (L_i, text_embed_dim)
    timesteps: torch.Tensor  # (num_samples,)
    rows: list[list[Segment]]
    seq_len: int
    ofs: torch.Tensor | None = None  # (num_samples,) for checkpoints with an ofs embedding
    patch_size: int = 2
    patch_size_t: int | None = None

    @property
    def num_samples(self) -> int:
        return len(self.latents)

    def row_lengths(self) -> list[int]:
        return [row[-1].stop if row else 0 for row in self.rows]

    def segment_spans(self) -> list[list[tuple[int, int]]]:
        """Per row, the ``[start, stop)`` token span of each sample (text and video together)."""
        return [[(seg.text_start, seg.stop) for seg in row] for row in self.rows]

    def attention_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Block-diagonal boolean keep-mask ``(rows, 1, S, S)`` for SDPA. Padding attends to padding only
        (so no query row is fully masked); ``rows * S^2`` bytes."""
        s = self.seq_len
        segment_id = torch.full((len(self.rows), s), -1, dtype=torch.long, device=device)
        for r, row in enumerate(self.rows):
            for i, seg in enumerate(row):
                segment_id[r, seg.text_start : seg.stop] = i
        return (segment_id[:, :, None] == segment_id[:, None, :])[:, None]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "PackedBatch":
        move = lambda t: t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)  # noqa: E731
        return PackedBatch(
            latents=[move(t) for t in self.latents],
            text=[move(t) for t in self.text],
            timesteps=self.timesteps.to(device),
            rows=self.rows,
            seq_len=self.seq_len,
            ofs=None if self.ofs is None else self.ofs.to(device),
            patch_size=self.patch_size,
            patch_size_t=self.patch_size_t,
        )


def video_token_count(latent_shape: tuple[int, ...], patch_size: int, patch_size_t: int | None = None) -> int:
    """Number of video tokens of one latent ``(F, C, H, W)``; raises on sizes the patching cannot take."""
    f, _, h, w = latent_shape
    pt = patch_size_t or 1
    if h % patch_size or w % patch_size or f % pt:
        raise ValueError(
            f"latent of shape {tuple(latent_shape)} does not patchify: H, W must be divisible by patch_size={patch_size}"
            f" and F by patch_size_t={pt}"
        )
    return (f // pt) * (h // patch_size) * (w // patch_size)


def pack(
    latents: list[torch.Tensor],
    text: list[torch.Tensor],
    timesteps: torch.Tensor,
    max_tokens: int,
    patch_size: int = 2,
    patch_size_t: int | None = None,
    ofs: torch.Tensor | None = None,
    pad_to_multiple: int = 1,
) -> PackedBatch:
    """Greedy first-fit packing of samples (in the given order) into rows of at most ``max_tokens``.

    ``latents[i]``: ``(F_i, C, H_i, W_i)``; ``text[i]``: ``(L_i, D)``; ``timesteps``: ``(N,)``.
    The packed length is the longest row rounded up to ``pad_to_multiple``.
    """
    n = len(latents)
    if n == 0:
        raise ValueError("pack: no samples given")
    if len(text) != n or timesteps.shape != (n,):
        raise ValueError(f"pack: got {n} latents, {len(text)} texts and timesteps of shape {tuple(timesteps.shape)}; expected N, N, (N,)")
    if ofs is not None and ofs.shape != (n,):
        raise ValueError(f"pack: ofs must have shape ({n},), got {tuple(ofs.shape)}")
    rows: list[list[Segment]] = []
    used: list[int] = []
    for i, (lat, txt) in enumerate(zip(latents, text)):
        if lat.ndim != 4 or txt.ndim != 2:
            raise ValueError(f"pack: sample {i}: expected latents (F, C, H, W) and text (L, D), got {tuple(lat.shape)}, {tuple(txt.shape)}")
        n_video = video_token_count(tuple(lat.shape), patch_size, patch_size_t)
        need = txt.shape[0] + n_video
        if need > max_tokens:
            raise ValueError(f"pack: sample {i} needs {need} tokens, more than max_tokens={max_tokens}")
        row = next((r for r, u in enumerate(used) if u + need <= max_tokens), None)
        if row is None:
            rows.append([])
            used.append(0)
            row = len(rows) - 1
        rows[row].append(Segment(i, used[row], txt.shape[0], n_video, tuple(lat.shape)))
        used[row] += need
    seq_len = -(-max(used) // pad_to_multiple) * pad_to_multiple
    return PackedBatch(list(latents), list(text), timesteps, rows, seq_len, ofs, patch_size, patch_size_t)
