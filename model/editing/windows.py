"""Latent-frame windows for long videos: run a function per window, average where windows overlap."""

from __future__ import annotations

from collections.abc import Callable

import torch


def frame_windows(num_frames: int, size: int, stride: int, multiple: int = 1) -> list[slice]:
    """Windows of ``size`` latent frames every ``stride`` frames, the last one aligned to the end.

    ``multiple``: window starts and sizes are kept multiples of it (the transformer's temporal patch size);
    ``num_frames`` must be a multiple of it too. A clip no longer than ``size`` is one window.
    """
    if num_frames < 1:
        raise ValueError(f"frame_windows: need at least one frame, got {num_frames}")
    if num_frames % multiple:
        raise ValueError(f"frame_windows: {num_frames} latent frames is not a multiple of the temporal patch size {multiple}")
    size = max(multiple, size - size % multiple)
    stride = max(multiple, stride - stride % multiple)
    if num_frames <= size:
        return [slice(0, num_frames)]
    starts = list(range(0, num_frames - size + 1, stride))
    if starts[-1] + size < num_frames:
        starts.append(num_frames - size)
    return [slice(s, s + size) for s in starts]


def windowed(
    fn: Callable[[torch.Tensor, slice], torch.Tensor], z: torch.Tensor, windows: list[slice], frame_dim: int = 1
) -> torch.Tensor:
    """``fn(z[window], window)`` for each window, stitched along ``frame_dim`` and averaged over overlaps."""
    if len(windows) == 1 and windows[0] == slice(0, z.shape[frame_dim]):
        return fn(z, windows[0])
    total: torch.Tensor | None = None
    count = torch.zeros(z.shape[frame_dim], device=z.device)
    for w in windows:
        part = fn(z.narrow(frame_dim, w.start, w.stop - w.start), w)
        if total is None:
            shape = list(part.shape)
            shape[frame_dim] = z.shape[frame_dim]
            total = part.new_zeros(shape)
        total.narrow(frame_dim, w.start, w.stop - w.start).add_(part)
        count[w] += 1
    shape = [1] * total.ndim
    shape[frame_dim] = -1
    return total / count.view(shape).to(total.dtype)
