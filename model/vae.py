"""The CogVideoX 3D causal VAE (arXiv 2408.06072), loadable from diffusers-format checkpoints.

``CausalVideoVAE.from_pretrained("THUDM/CogVideoX-2b", subfolder="vae")`` reads the public
``AutoencoderKLCogVideoX`` folders (2B, 5B, 1.5) unchanged: the constructor takes that class's
keyword arguments and the parameter names are the same.

Shapes: a video ``(B, 3, 1 + 4k, H, W)`` in [-1, 1] encodes to latents ``(B, 16, 1 + k, H/8, W/8)``;
latents ``(B, 16, n, h, w)`` decode to ``(B, 3, 1 + 4(n - 1), 8h, 8w)`` for odd ``n`` (and for
``n == 1``); an even ``n`` decodes to ``4n`` frames, as in diffusers. No scaling factor is applied
here: multiply latents by ``config["scaling_factor"]`` (1.15258426 for 2B, 0.7 for 5B / 1.5) before
the transformer and divide before :meth:`CausalVideoVAE.decode`. ``config["invert_scale_latents"]``
(True for 1.5) only tells an image-to-video pipeline to divide its image latents instead.

Long videos run in bounded memory: :meth:`~CausalVideoVAE.encode` takes 8 frames at a time (the
remainder joins the first chunk) and :meth:`~CausalVideoVAE.decode` 2 latent frames at a time,
carrying each causal convolution's last frames from chunk to chunk; the chunking is the one
diffusers uses, so results match it. Only group-norm statistics differ from one full pass (they are
per chunk); ``temporal_chunking=False`` runs the full pass. :meth:`~CausalVideoVAE.enable_tiling`
also splits large frames into overlapping, blended tiles (diffusers' scheme and defaults).

Bad input raises ``ValueError``: not 5-D, wrong channel count, a frame count that is not
``1 + 4k`` (we do not pad: trim or pad the clip yourself), or height/width not divisible by 8.
Inputs are cast to the model's dtype (not moved between devices).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model.checkpoint import PretrainedMixin
from model.vae_blocks import ConvCache, Decoder3D, Encoder3D

DOWN_BLOCK = "CogVideoXDownBlock3D"
UP_BLOCK = "CogVideoXUpBlock3D"


@dataclass
class DiagonalGaussianPosterior:
    """``N(mean, exp(logvar))`` per latent element; built from the encoder's ``2 * C`` output channels."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussianPosterior:
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean=mean, logvar=logvar.clamp(-30.0, 20.0))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mean + std * eps``; ``eps`` is drawn on the generator's device (as diffusers' ``randn_tensor``)."""
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def kl(self, other: DiagonalGaussianPosterior | None = None) -> torch.Tensor:
        """KL(self || other) (``other`` defaults to N(0, 1)), summed over every dimension but the batch.

        (diffusers sums over dims 1-3 only, which for video latents leaves the width unsummed.)
        """
        dims = list(range(1, self.mean.ndim))
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=dims)
        return 0.5 * torch.sum(
            (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar,
            dim=dims,
        )


def temporal_chunks(frames: int, chunk: int) -> list[slice]:
    """diffusers' chunking: ``frames // chunk`` chunks (at least one), the remainder joining the first."""
    remainder = frames % chunk
    count = max(frames // chunk, 1)
    starts = [0] + [chunk * i + remainder for i in range(1, count)]
    return [slice(start, min(chunk * (i + 1) + remainder, frames)) for i, start in enumerate(starts)]


def _blend(a: torch.Tensor, b: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """Fade ``a``'s last ``extent`` rows (``dim`` 3) or columns (4) into ``b``'s first ones, in place in ``b``."""
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent == 0:
        return b
    ramp = torch.arange(extent, dtype=torch.float64) / extent
    shape = [1] * b.ndim
    shape[dim] = extent
    w_b = ramp.to(b.device, b.dtype).view(shape)
    w_a = (1 - ramp).to(b.device, b.dtype).view(shape)
    head = b.narrow(dim, 0, extent)
    head.copy_(a.narrow(dim, a.shape[dim] - extent, extent) * w_a + head * w_b)
    return b


class CausalVideoVAE(nn.Module, PretrainedMixin):
    """CogVideoX's KL video autoencoder (diffusers ``AutoencoderKLCogVideoX``-compatible)."""

    config_class_name = "AutoencoderKLCogVideoX"

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = (DOWN_BLOCK,) * 4,
        up_block_types: tuple[str, ...] = (UP_BLOCK,) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 256, 512),
        latent_channels: int = 16,
        layers_per_block: int = 3,
        act_fn: str = "silu",
        norm_eps: float = 1e-6,
        norm_num_groups: int = 32,
        temporal_compression_ratio: float = 4,
        sample_height: int = 480,
        sample_width: int = 720,
        scaling_factor: float = 1.15258426,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = False,
        use_post_quant_conv: bool = False,
        invert_scale_latents: bool = False,
    ):
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "down_block_types": list(down_block_types),
            "up_block_types": list(up_block_types),
            "block_out_channels": list(block_out_channels),
            "latent_channels": latent_channels,
            "layers_per_block": layers_per_block,
            "act_fn": act_fn,
            "norm_eps": norm_eps,
            "norm_num_groups": norm_num_groups,
            "temporal_compression_ratio": temporal_compression_ratio,
            "sample_height": sample_height,
            "sample_width": sample_width,
            "scaling_factor": scaling_factor,
            "shift_factor": shift_factor,
            "latents_mean": latents_mean,
            "latents_std": latents_std,
            "force_upcast": force_upcast,
            "use_quant_conv": use_quant_conv,
            "use_post_quant_conv": use_post_quant_conv,
            "invert_scale_latents": invert_scale_latents,
        }
        self._check_config()
        levels = len(block_out_channels)
        temporal_levels = int(math.log2(temporal_compression_ratio))
        shared = dict(
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_eps=norm_eps,
            norm_num_groups=norm_num_groups,
            temporal_compress_level=temporal_levels,
        )
        self.encoder = Encoder3D(in_channels, latent_channels, **shared)
        self.decoder = Decoder3D(latent_channels, out_channels, **shared)
        # diffusers sizes these two with ``out_channels`` (so they only run when it equals
        # ``latent_channels``; no public checkpoint uses them); we size them to the latents.
        self.quant_conv = nn.Conv3d(2 * latent_channels, 2 * latent_channels, 1) if use_quant_conv else None
        self.post_quant_conv = nn.Conv3d(latent_channels, latent_channels, 1) if use_post_quant_conv else None

        self.spatial_compression = 2 ** (levels - 1)
        self.temporal_compression = 2**temporal_levels
        self.encode_chunk_frames = 8  # diffusers' num_sample_frames_batch_size
        self.decode_chunk_latents = 2  # diffusers' num_latent_frames_batch_size
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_height = sample_height // 2
        self.tile_sample_min_width = sample_width // 2
        self.tile_overlap_factor_height = 1 / 6
        self.tile_overlap_factor_width = 1 / 5

    def _check_config(self) -> None:
        cfg = self.config
        n = len(cfg["block_out_channels"])
        for key, expected in (("down_block_types", DOWN_BLOCK), ("up_block_types", UP_BLOCK)):
            if len(cfg[key]) != n or any(t != expected for t in cfg[key]):
                raise ValueError(f"{key}: expected {n} x {expected!r} (one per block_out_channels), got {cfg[key]}")
        for c in cfg["block_out_channels"]:
            if c % cfg["norm_num_groups"]:
                groups = cfg["norm_num_groups"]
                raise ValueError(f"block_out_channels: {c} is not divisible by norm_num_groups={groups}")
        ratio = cfg["temporal_compression_ratio"]
        levels = math.log2(ratio) if ratio >= 1 else -1.0
        if levels != int(levels) or not 0 <= levels <= n - 1:
            raise ValueError(f"temporal_compression_ratio: expected a power of two up to {2 ** (n - 1)}, got {ratio}")

    # ------------------------------------------------------------------ properties and switches
    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def tile_latent_min_height(self) -> int:
        return int(self.tile_sample_min_height / self.spatial_compression)

    @property
    def tile_latent_min_width(self) -> int:
        return int(self.tile_sample_min_width / self.spatial_compression)

    def enable_tiling(
        self,
        tile_sample_min_height: int | None = None,
        tile_sample_min_width: int | None = None,
        tile_overlap_factor_height: float | None = None,
        tile_overlap_factor_width: float | None = None,
    ) -> None:
        """Split frames larger than the tile size into overlapping tiles, blended where they overlap.

        Defaults (diffusers'): tiles of half ``sample_height`` x half ``sample_width`` overlapping
        by 1/6 of a tile vertically and 1/5 horizontally.
        """
        self.use_tiling = True
        self.tile_sample_min_height = tile_sample_min_height or self.tile_sample_min_height
        self.tile_sample_min_width = tile_sample_min_width or self.tile_sample_min_width
        self.tile_overlap_factor_height = tile_overlap_factor_height or self.tile_overlap_factor_height
        self.tile_overlap_factor_width = tile_overlap_factor_width or self.tile_overlap_factor_width
        for name in ("tile_overlap_factor_height", "tile_overlap_factor_width"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a fraction in [0, 1), got {getattr(self, name)}")
        if self.tile_latent_min_height < 1 or self.tile_latent_min_width < 1:
            raise ValueError(f"tile size: expected at least {self.spatial_compression} pixels per side")

    def disable_tiling(self) -> None:
        self.use_tiling = False

    def enable_slicing(self) -> None:
        """Encode and decode one batch element at a time."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    # ------------------------------------------------------------------ input checks
    def _check_input(self, x: torch.Tensor, name: str, channels: int, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a 5-D tensor (batch, channels, frames, height, width), got {shape}")
        if x.shape[1] != channels:
            raise ValueError(f"{name}: expected {channels} channels ({what}) in dim 1, got shape {tuple(x.shape)}")
        if x.shape[2] < 1 or x.shape[3] < 1 or x.shape[4] < 1:
            raise ValueError(f"{name}: empty frames/height/width in shape {tuple(x.shape)}")
        return x.to(self.dtype)

    # ------------------------------------------------------------------ encode
    def encode(self, video: torch.Tensor, temporal_chunking: bool = True) -> DiagonalGaussianPosterior:
        """Video ``(B, C, 1 + 4k, H, W)`` in [-1, 1] → posterior over latents ``(B, 16, 1 + k, H/8, W/8)``.

        ``temporal_chunking=False`` runs the whole clip in one pass (exact group-norm statistics,
        memory growing with the clip) instead of 8-frame chunks.
        """
        video = self._check_input(video, "video", self.config["in_channels"], "in_channels")
        frames, height, width = video.shape[2:]
        r, s = self.temporal_compression, self.spatial_compression
        if (frames - 1) % r:
            raise ValueError(
                f"video: {frames} frames; expected 1 + {r}k frames (1, {1 + r}, {1 + 2 * r}, ..., 49, ...): "
                f"trim or pad the clip before encoding"
            )
        if height % s or width % s:
            raise ValueError(f"video: height and width must be multiples of {s}, got {height}x{width}")
        moments = self._per_sample(video, lambda v: self._encode(v, temporal_chunking))
        return DiagonalGaussianPosterior.from_moments(moments)

    def _per_sample(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.use_slicing and x.shape[0] > 1:
            return torch.cat([fn(one) for one in x.split(1)])
        return fn(x)

    def _encode(self, video: torch.Tensor, temporal_chunking: bool) -> torch.Tensor:
        height, width = video.shape[3:]
        if self.use_tiling and (height > self.tile_sample_min_height or width > self.tile_sample_min_width):
            return self._tiled(
                video,
                lambda tile: self._encode_frames(tile, temporal_chunking),
                tile_size=(self.tile_sample_min_height, self.tile_sample_min_width),
                out_tile_size=(self.tile_latent_min_height, self.tile_latent_min_width),
            )
        return self._encode_frames(video, temporal_chunking)

    def _encode_frames(self, video: torch.Tensor, temporal_chunking: bool) -> torch.Tensor:
        frames = video.shape[2]
        chunks = temporal_chunks(frames, self.encode_chunk_frames) if temporal_chunking else [slice(0, frames)]
        cache: ConvCache | None = {} if len(chunks) > 1 else None
        out = []
        for chunk in chunks:
            moments = self.encoder(video[:, :, chunk], cache)
            if self.quant_conv is not None:
                moments = self.quant_conv(moments)
            out.append(moments)
        return out[0] if len(out) == 1 else torch.cat(out, dim=2)

    # ------------------------------------------------------------------ decode
    def decode(self, latents: torch.Tensor, temporal_chunking: bool = True) -> torch.Tensor:
        """Latents ``(B, 16, n, h, w)`` (unscaled) → video ``(B, C, 1 + 4(n - 1), 8h, 8w)`` for odd ``n``.

        ``temporal_chunking=False`` decodes all latent frames in one pass instead of 2 at a time.
        """
        latents = self._check_input(latents, "latents", self.config["latent_channels"], "latent_channels")
        return self._per_sample(latents, lambda z: self._decode(z, temporal_chunking))

    def _decode(self, latents: torch.Tensor, temporal_chunking: bool) -> torch.Tensor:
        height, width = latents.shape[3:]
        if self.use_tiling and (height > self.tile_latent_min_height or width > self.tile_latent_min_width):
            return self._tiled(
                latents,
                lambda tile: self._decode_frames(tile, temporal_chunking),
                tile_size=(self.tile_latent_min_height, self.tile_latent_min_width),
                out_tile_size=(self.tile_sample_min_height, self.tile_sample_min_width),
            )
        return self._decode_frames(latents, temporal_chunking)

    def _decode_frames(self, latents: torch.Tensor, temporal_chunking: bool) -> torch.Tensor:
        frames = latents.shape[2]
        chunks = temporal_chunks(frames, self.decode_chunk_latents) if temporal_chunking else [slice(0, frames)]
        cache: ConvCache | None = {} if len(chunks) > 1 else None
        out = []
        for chunk in chunks:
            z = latents[:, :, chunk]
            if self.post_quant_conv is not None:
                z = self.post_quant_conv(z)
            out.append(self.decoder(z, cache))
        return out[0] if len(out) == 1 else torch.cat(out, dim=2)

    # ------------------------------------------------------------------ spatial tiling
    def _tiled(
        self,
        x: torch.Tensor,
        run: Callable[[torch.Tensor], torch.Tensor],
        tile_size: tuple[int, int],
        out_tile_size: tuple[int, int],
    ) -> torch.Tensor:
        """Run ``run`` on overlapping tiles of ``x`` and blend the results (diffusers' tiled encode/decode).

        Tiles start every ``tile * (1 - overlap)`` input pixels; each output tile is faded into its
        upper and left neighbours (already blended) over ``out_tile * overlap`` pixels, then cropped
        to ``out_tile * (1 - overlap)``.
        """
        factors = (self.tile_overlap_factor_height, self.tile_overlap_factor_width)
        strides = [max(int(t * (1 - f)), 1) for t, f in zip(tile_size, factors)]
        blend = [int(t * f) for t, f in zip(out_tile_size, factors)]
        keep = [t - b for t, b in zip(out_tile_size, blend)]
        height, width = x.shape[3:]
        rows: list[list[torch.Tensor]] = []
        for top in range(0, height, strides[0]):
            rows.append(
                [
                    run(x[:, :, :, top : top + tile_size[0], left : left + tile_size[1]])
                    for left in range(0, width, strides[1])
                ]
            )
        out_rows = []
        for i, row in enumerate(rows):
            for j, tile in enumerate(row):
                if i > 0:
                    _blend(rows[i - 1][j], tile, blend[0], dim=3)
                if j > 0:
                    _blend(row[j - 1], tile, blend[1], dim=4)
            out_rows.append(torch.cat([tile[:, :, :, : keep[0], : keep[1]] for tile in row], dim=4))
        return torch.cat(out_rows, dim=3)

    # ------------------------------------------------------------------ round trip
    def forward(
        self, video: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Encode then decode (the posterior mode, or a sample of it)."""
        posterior = self.encode(video)
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(latents)
