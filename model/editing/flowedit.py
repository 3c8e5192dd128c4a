"""Inversion-free editing flow (FlowEdit, arXiv 2412.08629) with FlowDirector's mask and DAG.

Convention: ``z_t = (1 - t) x0 + t eps``, ``t = 1`` is noise, a velocity field gives ``v ~ eps - x0``.
Starting from ``z = x_src``, each step ``i`` with ``n_min < T - i <= n_max`` draws ``L`` noises ``n``,
forms ``z_src = (1 - t) x_src + t n`` and ``z_tar = z + z_src - x_src`` and takes the candidates
``dv = v_cfg(z_tar, t, target) - v_cfg(z_src, t, source)``. The soft mask ``M`` (union of the
passes' attention masks, edge-softened) multiplies them, DAG combines them into ``V``, and
``z <- z + (t_next - t) V``. For ``n_min > 0`` the last ``n_min`` steps are ordinary target sampling
from ``z`` re-noised at that step (as FlowEdit does).

The loop only needs a :class:`GuidedField`; the model-backed one lives in :mod:`model.editing.editor`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from model.editing.dag import differential_average
from model.editing.masks import soften, union
from model.schedulers import shift_sigmas

Branch = Literal["source", "target"]


class GuidedField(Protocol):
    def __call__(self, z: torch.Tensor, t: float, branch: Branch, with_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CFG velocity ``(N, F, C, h, w)`` (float32) of ``branch`` at states ``z`` ``(N, F, C, h, w)``;
        with ``with_mask``, also the branch's binary attention mask ``(N, F, h, w)``."""


def edit_sigmas(steps: int, shift: float) -> np.ndarray:
    """``steps + 1`` flow times from 1 to 0: ``linspace(1, 0)`` shifted by ``s sigma / (1 + (s - 1) sigma)``."""
    return shift_sigmas(np.linspace(1.0, 0.0, steps + 1), shift)


@dataclass
class FlowEditOutput:
    latents: torch.Tensor  # (B, F, C, h, w) float32
    mask: torch.Tensor | None  # (B, F, h, w): the largest soft mask value over the edit steps
    edit_steps: int


def _draw(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)


@torch.no_grad()
def flow_edit(
    field: GuidedField,
    x_src: torch.Tensor,
    sigmas: np.ndarray | torch.Tensor,
    n_max: int,
    n_min: int = 0,
    generator: torch.Generator | None = None,
    num_candidates: int = 1,
    num_outliers: int = 1,
    dag_weight: float = 0.0,
    use_mask: bool = False,
    softness: float = 0.25,
    mask_override: torch.Tensor | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> FlowEditOutput:
    """Edit ``x_src`` ``(B, F, C, h, w)``. ``sigmas``: ``T + 1`` decreasing flow times ending at 0.

    ``mask_override``: a fixed mask ``(B, F, h, w)`` or ``(F, h, w)`` in [0, 1] used instead of the
    attention masks. ``callback(i, t)`` runs after every step that evaluates the model.
    """
    sig = [float(s) for s in (sigmas.tolist() if hasattr(sigmas, "tolist") else sigmas)]
    steps = len(sig) - 1
    if not 0 <= n_min <= n_max <= steps:
        raise ValueError(f"flow_edit: need 0 <= n_min <= n_max <= {steps}, got n_min={n_min}, n_max={n_max}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    x_src = x_src.float()
    batch, frames, _, h, w = x_src.shape
    if mask_override is not None:
        mask_override = mask_override.float().to(x_src.device).expand(batch, frames, h, w)
    z = x_src.clone()
    x_tar: torch.Tensor | None = None
    seen_mask: torch.Tensor | None = None
    edit_steps = 0
    for i in range(steps):
        remaining = steps - i
        if remaining > n_max:
            continue
        t, t_next = sig[i], sig[i + 1]
        if remaining > n_min:
            noise = _draw((num_candidates, *x_src.shape), generator, x_src.device)
            z_src = (1 - t) * x_src + t * noise
            z_tar = z_src + (z - x_src)  # = z + z_src - x_src, and exactly z_src while z == x_src
            want = use_mask and mask_override is None
            v_src, m_src = field(z_src.flatten(0, 1), t, "source", want)
            v_tar, m_tar = field(z_tar.flatten(0, 1), t, "target", want)
            dv = (v_tar - v_src).view(num_candidates, *x_src.shape)
            mask = mask_override
            if want:
                binary = union([m_src, m_tar]).view(num_candidates, batch, frames, h, w).any(dim=0)
                mask = soften(binary, softness)
            if mask is not None:
                dv = dv * mask[None, :, :, None]
                seen_mask = mask if seen_mask is None else torch.maximum(seen_mask, mask)
            velocity = differential_average(dv, num_outliers, dag_weight)
            z = z + (t_next - t) * velocity
            edit_steps += 1
        else:
            if x_tar is None:  # first sampling step: re-noise the edit at this t
                src_t = (1 - t) * x_src + t * _draw(tuple(x_src.shape), generator, x_src.device)
                x_tar = z + src_t - x_src
            v_tar, _ = field(x_tar, t, "target", False)
            x_tar = x_tar + (t_next - t) * v_tar
        if callback is not None:
            callback(i, t)
    return FlowEditOutput(z if x_tar is None else x_tar, seen_mask, edit_steps)
