"""Attention-guided edit masks (FlowDirector): word attention maps -> binary masks -> soft mask.

The maps come from one transformer block's *joint* attention: the sequence is ``[text; video]``
and every query's softmax runs over all ``text + video`` keys, so a video query's probability on an
edited word's token is its share of attention among all keys, text and video. Maps are averaged over
heads and over the word's tokens, put back on the latent grid, normalised by their maximum,
average-pooled per frame, binarised at their mean; masks are united (source/target passes, words,
noise draws, windows) and their edges softened with a distance transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def word_attention_maps(
    probs: torch.Tensor, token_groups: Sequence[Sequence[int]], token_grid: tuple[int, int, int], patch_size: int,
    patch_size_t: int | None = None,
) -> torch.Tensor:
    """Per-word attention maps on the latent grid.

    ``probs``: ``(N, heads, T*h*w, K)`` probabilities of video queries (token order ``t, h, w``) on K
    selected keys; ``token_groups``: for each word, its columns among the K. Returns
    ``(N, words, T * patch_size_t, h * patch_size, w * patch_size)``: heads and the word's tokens are
    averaged, and each token's value is repeated over the latent pixels (and frames) it covers.
    """
    t, gh, gw = token_grid
    if probs.ndim != 4 or probs.shape[2] != t * gh * gw:
        raise ValueError(f"word_attention_maps: expected probs (N, heads, {t * gh * gw}, K), got {tuple(probs.shape)}")
    per_head = probs.float().mean(dim=1)  # (N, Nv, K)
    maps = torch.stack([per_head[..., list(cols)].mean(dim=-1) for cols in token_groups], dim=1)  # (N, W, Nv)
    maps = maps.reshape(*maps.shape[:2], t, gh, gw)
    maps = maps.repeat_interleave(patch_size, dim=-2).repeat_interleave(patch_size, dim=-1)
    return maps.repeat_interleave(patch_size_t or 1, dim=2)


def binarize_maps(maps: torch.Tensor, pool_kernel: int = 11) -> torch.Tensor:
    """``(..., F, H, W)`` maps -> bool masks: divide by the map's max, average-pool each frame
    (``pool_kernel``, stride 1, padding not counted), keep values at or above the map's mean."""
    *lead, f, h, w = maps.shape
    x = maps.float().reshape(-1, f, h, w)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
    pad = pool_kernel // 2
    x = F.avg_pool2d(x, pool_kernel, stride=1, padding=pad, count_include_pad=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x >= mean).reshape(*lead, f, h, w)


def union(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Element-wise OR of bool masks of one shape."""
    if not masks:
        raise ValueError("union: no masks")
    out = masks[0].clone()
    for m in masks[1:]:
        if m.shape != out.shape:
            raise ValueError(f"union: shapes differ, {tuple(out.shape)} vs {tuple(m.shape)}")
        out |= m
    return out


def distance_to_mask(mask: torch.Tensor) -> torch.Tensor:
    """Euclidean distance (in latent pixels) from each pixel to the nearest ``True`` pixel of its frame.

    ``mask``: bool ``(..., H, W)``; 0 inside the mask, ``inf`` in frames with an empty mask.
    """
    *lead, h, w = mask.shape
    frames = mask.reshape(-1, h, w).cpu().numpy()
    out = np.empty(frames.shape, dtype=np.float32)
    for i, frame in enumerate(frames):
        if not frame.any():
            out[i] = np.inf
            continue
        # distanceTransform measures each non-zero pixel's distance to the nearest zero pixel
        out[i] = cv2.distanceTransform((~frame).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return torch.from_numpy(out).reshape(*lead, h, w).to(mask.device)


def soften(mask: torch.Tensor, softness: float = 0.25) -> torch.Tensor:
    """``M + (1 - M) exp(-softness * d)`` with ``d`` the per-frame distance to the mask; float32."""
    m = mask.float()
    return m + (1 - m) * torch.exp(-softness * distance_to_mask(mask))


def latent_mask_to_frames(mask: torch.Tensor, num_frames: int, height: int, width: int, temporal_ratio: int) -> np.ndarray:
    """``(F_latent, h, w)`` soft mask -> ``(num_frames, height, width, 3)`` uint8 video of it.

    Latent frame 0 covers pixel frame 0; latent frame ``i > 0`` covers ``temporal_ratio`` frames
    (the causal VAE's layout). Space is upsampled bilinearly.
    """
    idx = torch.tensor([0] + [1 + (f - 1) // temporal_ratio for f in range(1, num_frames)])
    idx = idx.clamp(max=mask.shape[0] - 1)
    frames = mask.float()[idx][:, None]
    frames = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    gray = (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return np.repeat(gray[..., None], 3, axis=-1)
