"""Differential averaging guidance (FlowDirector): sharpen the averaged velocity away from outliers.

From ``L`` velocity-difference candidates (one per noise draw): ``V_hq`` is their mean, ``V_bl`` the
mean of the ``K`` candidates least similar (cosine) to ``V_hq``, and ``V = V_hq + w (V_hq - V_bl)``.
(The authors' released code averages ``V_bl`` over *all* K-subsets, which equals ``V_hq`` and
cancels the guidance term; here the K least similar candidates are used.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def differential_average(candidates: torch.Tensor, num_outliers: int, weight: float) -> torch.Tensor:
    """``candidates``: ``(L, B, ...)``; returns ``(B, ...)``. Similarity is per batch element over all other dims."""
    num = candidates.shape[0]
    v_hq = candidates.mean(dim=0)
    if num == 1 or weight == 0:
        return v_hq
    if not 1 <= num_outliers < num:
        raise ValueError(f"differential_average: num_outliers must be in [1, {num}), got {num_outliers}")
    flat = candidates.flatten(2).float()  # (L, B, D)
    sim = F.cosine_similarity(flat, v_hq.flatten(1).float()[None], dim=-1)  # (L, B)
    outliers = sim.topk(num_outliers, dim=0, largest=False).indices  # (K, B)
    index = outliers.view(num_outliers, -1, *([1] * (candidates.ndim - 2))).expand(-1, *candidates.shape[1:])
    v_bl = candidates.gather(0, index).mean(dim=0)
    return v_hq + weight * (v_hq - v_bl)
