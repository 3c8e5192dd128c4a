"""Embeddings of the CogVideoX expert transformer (arXiv 2408.06072).

* sinusoidal timestep embedding + its MLP (``TimestepEmbedding``),
* the patch embedding of latents and the text projection (``PatchEmbed``),
* 3D sin-cos absolute position embedding (CogVideoX-2b),
* 3D rotary frequencies (CogVideoX-5b and 1.5), computed as the public CogVideoX pipeline does
  for a given latent size.

Numerics follow diffusers' ``get_timestep_embedding``, ``get_3d_sincos_pos_embed``,
``get_3d_rotary_pos_embed`` and ``CogVideoXPipeline._prepare_rotary_positional_embeddings`` so that
public checkpoints produce the same outputs; parameter names match ``CogVideoXPatchEmbed`` and
``TimestepEmbedding``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------------------------------
# Timesteps
# --------------------------------------------------------------------------------------------------


def timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0) -> torch.Tensor:
    """DDPM sinusoidal embedding of (possibly fractional) timesteps ``(N,)`` -> ``(N, dim)`` float32."""
    if timesteps.ndim != 1:
        raise ValueError(f"timestep_embedding: expected timesteps of shape (N,), got {tuple(timesteps.shape)}")
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / (half - freq_shift)
    angles = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """``linear_1 -> act -> linear_2`` on the sinusoidal embedding (names as in diffusers)."""

    def __init__(self, in_dim: int, out_dim: int, act_fn: str = "silu"):
        super().__init__()
        acts = {"silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, "mish": nn.Mish, "relu": nn.ReLU}
        if act_fn not in acts:
            raise ValueError(f"timestep_activation_fn: expected one of {sorted(acts)}, got {act_fn!r}")
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = acts[act_fn]()
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


# --------------------------------------------------------------------------------------------------
# 3D sin-cos absolute positions (CogVideoX-2b)
# --------------------------------------------------------------------------------------------------


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin(pos * w), cos(pos * w)]`` with ``w_i = 10000^(-2i/dim)``, computed in float64: ``(M, dim)``."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding dim must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = torch.outer(positions.reshape(-1).double(), omega)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_pos_embed_3d(
    embed_dim: int,
    frames: int,
    height: int,
    width: int,
    spatial_interpolation_scale: float = 1.0,
    temporal_interpolation_scale: float = 1.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Absolute 3D position embedding for a ``frames x height x width`` token grid: ``(F*H*W, D)`` float64.

    The channels are ``[temporal (D/4) | width (3D/8) | height (3D/8)]``; tokens are ordered (t, h, w).
    Positions are scaled by ``1 / interpolation_scale`` in float32 before the float64 sin/cos.
    """
    if embed_dim % 16:
        raise ValueError(f"3D sin-cos position embedding needs embed_dim divisible by 16, got {embed_dim}")
    dim_t, dim_s = embed_dim // 4, 3 * embed_dim // 4
    rows = torch.arange(height, device=device, dtype=torch.float32) / spatial_interpolation_scale
    cols = torch.arange(width, device=device, dtype=torch.float32) / spatial_interpolation_scale
    col_of_token = cols[None, :].expand(height, width)
    row_of_token = rows[:, None].expand(height, width)
    spatial = torch.cat([sincos_1d(dim_s // 2, col_of_token), sincos_1d(dim_s // 2, row_of_token)], dim=1)  # (H*W, 3D/4)
    times = torch.arange(frames, device=device, dtype=torch.float32) / temporal_interpolation_scale
    temporal = sincos_1d(dim_t, times)  # (F, D/4)
    return torch.cat(
        [temporal[:, None, :].expand(-1, height * width, -1), spatial[None].expand(frames, -1, -1)], dim=-1
    ).reshape(frames * height * width, embed_dim)


# --------------------------------------------------------------------------------------------------
# 3D RoPE (CogVideoX-5b, 1.5)
# --------------------------------------------------------------------------------------------------


def rope_1d(dim: int, positions: torch.Tensor, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``(M, dim)`` for positions ``(M,)``; each frequency repeated for its channel pair."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    angles = torch.outer(positions.float(), inv_freq)
    return angles.cos().repeat_interleave(2, dim=1), angles.sin().repeat_interleave(2, dim=1)


def _crop_region(grid_h: int, grid_w: int, base_w: int, base_h: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a ``grid_h x grid_w`` grid lands when resized to cover the base grid keeping aspect (CogVideoX 1.0)."""
    if grid_h / grid_w > base_h / base_w:
        resize_h, resize_w = base_h, int(round(base_h / grid_h * grid_w))
    else:
        resize_w, resize_h = base_w, int(round(base_w / grid_w * grid_h))
    top, left = int(round((base_h - resize_h) / 2.0)), int(round((base_w - resize_w) / 2.0))
    return (top, left), (top + resize_h, left + resize_w)


def rotary_pos_embed_3d(
    head_dim: int,
    frames: int,
    grid_h: int,
    grid_w: int,
    sample_height: int,
    sample_width: int,
    patch_size: int,
    patch_size_t: int | None = None,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """3D RoPE cos/sin ``(T*grid_h*grid_w, head_dim)`` float32 for ``frames`` latent frames.

    ``grid_h, grid_w`` are the token grid (latent size // patch_size). Channels are
    ``[t (D/4) | h (3D/8) | w (3D/8)]``. CogVideoX 1.0 (``patch_size_t is None``) maps the grid onto
    the crop region of the base grid ``sample_{height,width} // patch_size`` with linspace positions;
    CogVideoX 1.5 uses integer positions and ``ceil(frames / patch_size_t)`` temporal tokens (the
    pipeline slices tables of the base size, which is the same for grids up to the base size).
    """
    if head_dim % 8:
        raise ValueError(f"3D RoPE needs attention_head_dim divisible by 8, got {head_dim}")
    if patch_size_t is None:
        temporal = frames
        (top, left), (bottom, right) = _crop_region(grid_h, grid_w, sample_width // patch_size, sample_height // patch_size)
        pos_h = torch.linspace(top, bottom * (grid_h - 1) / grid_h, grid_h, device=device, dtype=torch.float32)
        pos_w = torch.linspace(left, right * (grid_w - 1) / grid_w, grid_w, device=device, dtype=torch.float32)
        pos_t = torch.linspace(0, temporal * (temporal - 1) / temporal, temporal, device=device, dtype=torch.float32)
    else:
        temporal = (frames + patch_size_t - 1) // patch_size_t
        pos_h = torch.arange(grid_h, device=device, dtype=torch.float32)
        pos_w = torch.arange(grid_w, device=device, dtype=torch.float32)
        pos_t = torch.arange(temporal, device=device, dtype=torch.float32)
    dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3
    tables = [rope_1d(dim_t, pos_t), rope_1d(dim_hw, pos_h), rope_1d(dim_hw, pos_w)]

    def grid(parts: list[torch.Tensor]) -> torch.Tensor:
        t, h, w = parts
        shape = (temporal, grid_h, grid_w)
        return torch.cat(
            [t[:, None, None].expand(*shape, -1), h[None, :, None].expand(*shape, -1), w[None, None, :].expand(*shape, -1)],
            dim=-1,
        ).reshape(temporal * grid_h * grid_w, -1)

    return grid([c for c, _ in tables]), grid([s for _, s in tables])


# --------------------------------------------------------------------------------------------------
# Patch embedding
# --------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Latents ``(B, F, C, H, W)`` -> video tokens ``(B, N, D)`` (t, h, w order) and text ``(B, L, Dtext)`` -> ``(B, L, D)``.

    1.0 checkpoints patchify frame by frame with a ``Conv2d`` (``proj``); 1.5 checkpoints
    (``patch_size_t``) flatten ``(C, p_t, p, p)`` patches and apply a ``Linear``. Absolute position
    embeddings (sin-cos, or the learned table of 5b-I2V stored as the ``pos_embedding`` buffer) are
    added by :meth:`video_positions` / :meth:`text_positions` callers.
    """

    def __init__(
        self,
        patch_size: int,
        patch_size_t: int | None,
        in_channels: int,
        embed_dim: int,
        text_embed_dim: int,
        bias: bool,
        sample_width: int,
        sample_height: int,
        sample_frames: int,
        temporal_compression_ratio: int,
        max_text_seq_length: int,
        spatial_interpolation_scale: float,
        temporal_interpolation_scale: float,
        use_sincos_positions: bool,
        use_learned_positions: bool,
    ):
        super().__init__()
        self.patch_size, self.patch_size_t = patch_size, patch_size_t
        self.embed_dim = embed_dim
        self.sample_width, self.sample_height, self.sample_frames = sample_width, sample_height, sample_frames
        self.temporal_compression_ratio = temporal_compression_ratio
        self.max_text_seq_length = max_text_seq_length
        self.spatial_interpolation_scale = spatial_interpolation_scale
        self.temporal_interpolation_scale = temporal_interpolation_scale
        self.use_sincos_positions, self.use_learned_positions = use_sincos_positions, use_learned_positions
        if patch_size_t is None:
            self.proj: nn.Module = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        else:
            self.proj = nn.Linear(in_channels * patch_size * patch_size * patch_size_t, embed_dim)
        self.text_proj = nn.Linear(text_embed_dim, embed_dim)
        if use_learned_positions:
            # The 5b-I2V checkpoint stores its table ``(1, max_text + N_default, D)`` under this name.
            frames = (sample_frames - 1) // temporal_compression_ratio + 1
            grid = (frames, sample_height // patch_size, sample_width // patch_size)
            table = torch.zeros(1, max_text_seq_length + math.prod(grid), embed_dim)
            table[0, max_text_seq_length:] = self._sincos(*grid, device=None).float()
            self.register_buffer("pos_embedding", table, persistent=True)
        self._cache: dict[tuple, torch.Tensor] = {}

    def token_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid ``(T, h, w)`` of a latent ``(frames, C, height, width)``; raises if not divisible."""
        p, pt = self.patch_size, self.patch_size_t or 1
        if height % p or width % p:
            raise ValueError(f"latent height/width ({height}, {width}) must be divisible by patch_size {p}")
        if frames % pt:
            raise ValueError(f"latent frames ({frames}) must be divisible by patch_size_t {pt} (pad the latents)")
        return frames // pt, height // p, width // p

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        return self.text_proj(text)

    def embed_video(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, F, C, H, W)`` -> ``(B, T*h*w, D)`` without positions."""
        b, f, c, h, w = latents.shape
        t, gh, gw = self.token_grid(f, h, w)
        if self.patch_size_t is None:
            x = self.proj(latents.reshape(b * f, c, h, w))  # (B*F, D, h', w')
            return x.reshape(b, f, self.embed_dim, gh * gw).transpose(2, 3).reshape(b, f * gh * gw, self.embed_dim)
        p, pt = self.patch_size, self.patch_size_t
        x = latents.reshape(b, t, pt, c, gh, p, gw, p).permute(0, 1, 4, 6, 3, 2, 5, 7)  # (B, t, h, w, C, pt, p, p)
        return self.proj(x.reshape(b, t * gh * gw, c * pt * p * p))

    def _sincos(self, t: int, gh: int, gw: int, device: torch.device | None) -> torch.Tensor:
        return sincos_pos_embed_3d(
            self.embed_dim, t, gh, gw, self.spatial_interpolation_scale, self.temporal_interpolation_scale, device=device
        )

    def video_positions(self, frames: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """Absolute positions ``(N, D)`` added to the video tokens of one latent, or ``None`` (RoPE only).

        With a learned table (5b-I2V) the size must be the default one; a different frame count
        falls back to sin-cos positions, exactly as diffusers' ``CogVideoXPatchEmbed`` does.
        """
        if not (self.use_sincos_positions or self.use_learned_positions):
            return None
        if self.use_learned_positions:
            if height != self.sample_height or width != self.sample_width:
                raise ValueError(
                    f"learned positional embeddings only support latents of {self.sample_height}x{self.sample_width}, "
                    f"got {height}x{width}"
                )
            if (frames - 1) * self.temporal_compression_ratio + 1 == self.sample_frames:
                return self.pos_embedding[0, self.max_text_seq_length :].to(device=device, dtype=dtype)
        key = (frames, height, width, device, dtype)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = self._sincos(*self.token_grid(frames, height, width), device=device).to(dtype)
        return self._cache[key]

    def text_positions(self, text_len: int, frames: int, height: int, width: int) -> torch.Tensor | None:
        """The learned table's text rows ``(L, D)`` (zero in sin-cos tables, so ``None`` there)."""
        if not self.use_learned_positions or (frames - 1) * self.temporal_compression_ratio + 1 != self.sample_frames:
            return None
        if text_len > self.max_text_seq_length:
            raise ValueError(f"text length {text_len} exceeds max_text_seq_length {self.max_text_seq_length}")
        return self.pos_embedding[0, :text_len]
