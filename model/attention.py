"""Joint [text; video] self-attention of CogVideoX: QK LayerNorm, 3D RoPE on video tokens, SDPA.

Parameter names match diffusers' ``Attention`` as CogVideoX uses it (``to_q``, ``to_k``, ``to_v``,
``norm_q``, ``norm_k``, ``to_out.0``). Besides the plain (optionally masked) attention, packed
sequences can run block-diagonal attention segment by segment (no ``S x S`` mask), and
:func:`attention_probs_for_keys` extracts the attention of chosen queries onto a few key columns
without materialising the full attention matrix (used by training-free editing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Rotary:
    """RoPE tables for the token range ``[start, start + N)``: ``cos``/``sin`` of shape ``(N, d)`` or ``(B, N, d)``."""

    cos: torch.Tensor
    sin: torch.Tensor
    start: int = 0


@dataclass(frozen=True)
class AttentionProbeRequest:
    """Ask a forward pass for one block's attention probabilities of video queries onto selected keys.

    ``key_indices`` index the joint sequence ``[text; video]`` (text token ``j`` is key ``j``).
    The result has shape ``(B, heads, N_video, len(key_indices))``; each row is normalised over
    *all* keys, computed in chunks of ``chunk_size`` queries x ``chunk_size`` keys.
    """

    block_index: int
    key_indices: Sequence[int] | torch.Tensor
    chunk_size: int = 1024


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs ``(x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)`` in float32.

    ``x``: ``(B, H, N, d)``; ``cos``/``sin``: ``(N, d)`` or ``(B, N, d)``.
    """
    if cos.ndim == 3:
        cos, sin = cos[:, None], sin[:, None]
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def attention_probs_for_keys(
    q: torch.Tensor,
    k: torch.Tensor,
    key_indices: Sequence[int] | torch.Tensor,
    chunk_size: int = 1024,
    attn_bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax(q k^T * scale + bias)[..., key_indices]`` without the full ``Sq x Sk`` matrix.

    ``q``: ``(B, H, Sq, d)``, ``k``: ``(B, H, Sk, d)``. ``attn_bias`` (optional) is an additive
    float or keep-boolean mask broadcastable to ``(B, H, Sq, Sk)``. Each row's log-normaliser
    (logsumexp over all keys) is accumulated over ``chunk_size x chunk_size`` tiles, so peak extra
    memory is ``B * H * chunk_size^2`` scores. Returns ``(B, H, Sq, K)`` in float32.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    idx = torch.as_tensor(key_indices, dtype=torch.long, device=q.device).reshape(-1)
    if attn_bias is not None and attn_bias.dtype == torch.bool:
        attn_bias = torch.zeros(attn_bias.shape, device=q.device).masked_fill(~attn_bias, float("-inf"))
    sq, sk = q.shape[2], k.shape[2]
    k_sel = k.index_select(2, idx).float()
    out = []
    for q0 in range(0, sq, chunk_size):
        qc = q[:, :, q0 : q0 + chunk_size].float()
        lse = torch.full(qc.shape[:3], float("-inf"), device=q.device)
        for k0 in range(0, sk, chunk_size):
            scores = qc @ k[:, :, k0 : k0 + chunk_size].float().transpose(-1, -2) * scale
            if attn_bias is not None:
                scores = scores + _bias_tile(attn_bias, q0, qc.shape[2], k0, scores.shape[-1])
            lse = torch.logaddexp(lse, torch.logsumexp(scores, dim=-1))
        selected = qc @ k_sel.transpose(-1, -2) * scale
        if attn_bias is not None:
            b = attn_bias[..., q0 : q0 + qc.shape[2], :] if attn_bias.shape[-2] > 1 else attn_bias
            selected = selected + b.index_select(-1, idx)
        out.append(torch.exp(selected - lse[..., None]))
    return torch.cat(out, dim=2)


def _bias_tile(bias: torch.Tensor, q0: int, nq: int, k0: int, nk: int) -> torch.Tensor:
    rows = bias[..., q0 : q0 + nq, :] if bias.shape[-2] > 1 else bias
    return rows[..., k0 : k0 + nk]


class JointAttention(nn.Module):
    """Full self-attention over the joint sequence with per-head LayerNorm on queries and keys."""

    def __init__(self, dim: int, heads: int, head_dim: int, bias: bool = True, out_bias: bool = True, qk_norm: bool = True, eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        self.norm_q = nn.LayerNorm(head_dim, eps=eps) if qk_norm else None
        self.norm_k = nn.LayerNorm(head_dim, eps=eps) if qk_norm else None
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=out_bias), nn.Dropout(0.0)])

    def forward(
        self,
        x: torch.Tensor,
        rotary: Rotary | None = None,
        attn_mask: torch.Tensor | None = None,
        segments: Sequence[Sequence[tuple[int, int]]] | None = None,
        probe: AttentionProbeRequest | None = None,
        probe_queries: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x``: ``(B, S, dim)``. ``attn_mask``: SDPA mask (bool keep-mask or additive float),
        broadcastable to ``(B, H, S, S)``. ``segments``: per batch row, the ``[start, stop)`` spans
        that attend only within themselves (block-diagonal attention without a mask; tokens outside
        every span get zeros). ``probe``/``probe_queries``: also return
        :func:`attention_probs_for_keys` for queries ``[q_start, q_stop)``. Returns ``(out, probs)``.
        """
        b, s, _ = x.shape
        q, k, v = (proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        if rotary is not None:
            q, k = (self._rotate(t, rotary) for t in (q, k))
        q, k = q.to(v.dtype), k.to(v.dtype)
        probs = None
        if probe is not None:
            q0, q1 = probe_queries if probe_queries is not None else (0, s)
            probs = attention_probs_for_keys(q[:, :, q0:q1], k, probe.key_indices, probe.chunk_size, attn_bias=attn_mask)
        if segments is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            out = self._segment_attention(q, k, v, segments)
        out = out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        return self.to_out[1](self.to_out[0](out)), probs

    @staticmethod
    def _rotate(t: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        stop = rotary.start + rotary.cos.shape[-2]
        if rotary.start == 0 and stop == t.shape[2]:
            return apply_rotary(t, rotary.cos, rotary.sin)
        parts = [t[:, :, : rotary.start], apply_rotary(t[:, :, rotary.start : stop], rotary.cos, rotary.sin), t[:, :, stop:]]
        return torch.cat(parts, dim=2)

    @staticmethod
    def _segment_attention(q, k, v, segments) -> torch.Tensor:
        if len(segments) != q.shape[0]:
            raise ValueError(f"segments: expected one span list per batch row ({q.shape[0]}), got {len(segments)}")
        rows = []
        for row, spans in enumerate(segments):
            pieces, cursor = [], 0
            for start, stop in spans:
                if start > cursor:
                    pieces.append(v.new_zeros(v.shape[1], start - cursor, v.shape[3]))
                sl = slice(start, stop)
                pieces.append(F.scaled_dot_product_attention(q[row : row + 1, :, sl], k[row : row + 1, :, sl], v[row : row + 1, :, sl])[0])
                cursor = stop
            if cursor < q.shape[2]:
                pieces.append(v.new_zeros(v.shape[1], q.shape[2] - cursor, v.shape[3]))
            rows.append(torch.cat(pieces, dim=1))
        return torch.stack(rows)
