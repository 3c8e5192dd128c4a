"""Building blocks of the CogVideoX 3D causal VAE (arXiv 2408.06072), parameter names as in diffusers.

Every temporal convolution is *causal*: it pads only the past. At the start of a video the past is
copies of the first frame; when a long video is processed in temporal chunks, the past is the last
``kernel - 1`` input frames of the previous chunk, kept in a :data:`ConvCache` (one flat dict per
video, keyed by the convolution module) that the caller threads from chunk to chunk. Passing
``cache=None`` processes the whole clip in one pass and keeps nothing.

Time compression keeps the first frame on its own (frame counts ``1 + 4k`` ↔ ``1 + k``): the
encoder averages the remaining frames in pairs, the decoder duplicates them.

Under ``torch.no_grad()`` the blocks work in place where it is safe (normalisation, activation,
residual add), which is what keeps peak memory low; with autograd on they are out of place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ConvCache = dict[nn.Module, torch.Tensor]
"""The last ``kernel - 1`` (padded) input frames of each causal convolution, from the previous chunk."""

# A conv3d whose input would exceed this many bytes is run over overlapping slices of time (as
# diffusers' ``CogVideoXSafeConv3d`` does at 2 GiB of fp16), which gives identical results.
MAX_CONV_INPUT_BYTES = 4 * 2**30

_ACTIVATIONS: dict[str, Callable[[torch.Tensor, bool], torch.Tensor]] = {
    "silu": lambda x, inplace: F.silu(x, inplace=inplace),
    "swish": lambda x, inplace: F.silu(x, inplace=inplace),
    "relu": lambda x, inplace: F.relu(x, inplace=inplace),
    "gelu": lambda x, inplace: F.gelu(x),
    "mish": lambda x, inplace: F.mish(x, inplace=inplace),
}


class Activation(nn.Module):
    """The activation ``name`` (diffusers' ``act_fn`` names), in place when autograd is off."""

    def __init__(self, name: str):
        super().__init__()
        if name not in _ACTIVATIONS:
            raise ValueError(f"act_fn: unsupported activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[self.name](x, _inplace_ok())


def _inplace_ok() -> bool:
    return not torch.is_grad_enabled()


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride=(1, 1, 1), padding=(0, 0, 0)):
    """``F.conv3d``, sent to oneDNN for fp32 CPU inference.

    PyTorch's heuristic runs small fp32 5-D inputs (batch 1, ``N*C*T*H <= 20480``) through its
    im2col kernel, which is 2-10x slower than oneDNN at the sizes of a VAE chunk; this only changes
    which CPU kernel runs (results agree to float rounding). With autograd on, ``F.conv3d`` as usual.
    """
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and x.is_contiguous()
        and weight.shape[2:].numel() > 1
    ):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)


def conv3d_bounded(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a conv with no temporal padding, over overlapping time slices when ``x`` is huge."""
    kt = conv.kernel_size[0]
    parts = min(x.numel() * x.element_size() // MAX_CONV_INPUT_BYTES + 1, max(x.shape[2] - kt + 1, 1))
    if parts <= 1:
        return conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    bounds = torch.linspace(0, x.shape[2] - kt + 1, parts + 1).round().long().tolist()
    parts = [x[:, :, a : b + kt - 1] for a, b in zip(bounds[:-1], bounds[1:])]
    return torch.cat([conv3d(part, conv.weight, conv.bias, conv.stride, conv.padding) for part in parts], dim=2)


def conv2d_per_frame(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D convolution to every frame of ``(B, C, T, H, W)`` (as a conv3d with a depth-1 kernel)."""
    return conv3d(x, conv.weight.unsqueeze(2), conv.bias, stride=(1, *conv.stride), padding=(0, *conv.padding))


class CausalConv3d(nn.Module):
    """A 3D convolution padded causally in time and zero-padded "same" in height and width."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.time_kernel_size = kernel_size
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=(0, kernel_size // 2, kernel_size // 2))

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None) -> torch.Tensor:
        past_frames = self.time_kernel_size - 1
        if past_frames == 0:
            return self.conv(x)
        past = cache.get(self) if cache is not None else None
        if past is None:
            past = x[:, :, :1].expand(-1, -1, past_frames, -1, -1)
        x = torch.cat([past, x], dim=2)
        if cache is not None:
            cache[self] = x[:, :, -past_frames:].clone()
        return conv3d_bounded(self.conv, x)


def splits_first_frame(frames: int) -> bool:
    """Time-compressing layers treat an odd frame count > 1 as the first frame + the rest."""
    return frames > 1 and frames % 2 == 1


def _modulate(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * up(scale) + up(shift)`` where ``up`` is nearest-neighbour resizing to ``x``'s size.

    ``scale`` and ``shift`` stay small: an integer resize ratio is applied by broadcasting, without
    building the full-size tensors (nearest-neighbour resizing by an integer ratio repeats each value).
    """
    b, c = x.shape[:2]
    sizes = x.shape[2:]
    ratios = [big // small for big, small in zip(sizes, scale.shape[2:])]
    if any(big != small * r for big, small, r in zip(sizes, scale.shape[2:], ratios)) or any(
        r & (r - 1) for r in ratios
    ):  # not a power-of-two ratio: let F.interpolate pick the indices
        scale, shift = (F.interpolate(t, size=sizes) for t in (scale, shift))
        ratios = [1, 1, 1]
    (t, h, w), (rt, rh, rw) = scale.shape[2:], ratios
    x_view = x.view(b, c, t, rt, h, rh, w, rw)
    scale = scale.reshape(b, c, t, 1, h, 1, w, 1)
    shift = shift.reshape(b, c, t, 1, h, 1, w, 1)
    if _inplace_ok():
        return x_view.mul_(scale).add_(shift).view(x.shape)
    return (x_view * scale + shift).reshape(x.shape)


class SpatialNorm3D(nn.Module):
    """Group norm whose scale and shift are 1x1x1 convolutions of the latents, resized to the features
    (arXiv 2209.09002; the CogVideoX decoder's normalisation). The first frame is resized on its own."""

    def __init__(self, f_channels: int, zq_channels: int, groups: int = 32):
        super().__init__()
        self.norm_layer = nn.GroupNorm(num_channels=f_channels, num_groups=groups, eps=1e-6, affine=True)
        self.conv_y = CausalConv3d(zq_channels, f_channels, kernel_size=1)
        self.conv_b = CausalConv3d(zq_channels, f_channels, kernel_size=1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        # conv1x1 commutes with nearest resizing, so the convolutions run at the latents' size.
        scale, shift = self.conv_y(zq), self.conv_b(zq)
        out = self.norm_layer(f)
        if not splits_first_frame(f.shape[2]):
            return _modulate(out, scale, shift)
        # First frame with the first latent frame, the rest with the rest (in place: views of ``out``).
        first = _modulate(out[:, :, :1], scale[:, :, :1], shift[:, :, :1])
        rest = _modulate(out[:, :, 1:], scale[:, :, 1:], shift[:, :, 1:])
        return out if _inplace_ok() else torch.cat([first, rest], dim=2)


class ResnetBlock3D(nn.Module):
    """norm → act → causal conv → norm → act → causal conv, plus a (1x1x1-projected) shortcut.

    With ``spatial_norm_dim`` the norms are :class:`SpatialNorm3D` conditioned on the latents (decoder).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 32,
        eps: float = 1e-6,
        act_fn: str = "silu",
        spatial_norm_dim: int | None = None,
    ):
        super().__init__()
        self.act = Activation(act_fn)
        if spatial_norm_dim is None:
            self.norm1: nn.Module = nn.GroupNorm(num_channels=in_channels, num_groups=groups, eps=eps)
            self.norm2: nn.Module = nn.GroupNorm(num_channels=out_channels, num_groups=groups, eps=eps)
        else:
            self.norm1 = SpatialNorm3D(in_channels, spatial_norm_dim, groups=groups)
            self.norm2 = SpatialNorm3D(out_channels, spatial_norm_dim, groups=groups)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.conv_shortcut = (
            nn.Conv3d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def _norm(self, norm: nn.Module, x: torch.Tensor, zq: torch.Tensor | None) -> torch.Tensor:
        return norm(x, zq) if zq is not None else norm(x)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None, cache: ConvCache | None = None) -> torch.Tensor:
        h = self.act(self._norm(self.norm1, x, zq))
        h = self.conv1(h, cache)
        h = self.act(self._norm(self.norm2, h, zq))
        h = self.conv2(h, cache)
        shortcut = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return h.add_(shortcut) if _inplace_ok() else h + shortcut


class Downsample3D(nn.Module):
    """Halve height and width (3x3 stride-2 conv after padding right/bottom); with ``compress_time``
    first average frames in pairs, the first frame of an odd count kept as it is."""

    def __init__(self, in_channels: int, out_channels: int, compress_time: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=0)
        self.compress_time = compress_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compress_time:
            x = halve_time(x)
        return conv2d_per_frame(self.conv, F.pad(x, (0, 1, 0, 1)))


def halve_time(x: torch.Tensor) -> torch.Tensor:
    """Average frames in pairs; an odd count keeps its first frame alone (``1 + 2k`` → ``1 + k``)."""
    b, c, t, h, w = x.shape
    if t % 2 == 1:
        if t == 1:
            return x
        rest = x[:, :, 1:].reshape(b, c, (t - 1) // 2, 2, h, w).mean(dim=3)
        return torch.cat([x[:, :, :1], rest], dim=2)
    return x.reshape(b, c, t // 2, 2, h, w).mean(dim=3)


class Upsample3D(nn.Module):
    """Double height and width (nearest, then a 3x3 conv); with ``compress_time`` also double the
    frames, the first frame of an odd count kept single (``1 + k`` → ``1 + 2k``)."""

    def __init__(self, in_channels: int, out_channels: int, compress_time: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.compress_time = compress_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        if not self.compress_time or t == 1:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0))
        elif t % 2 == 0:
            x = F.interpolate(x, scale_factor=2.0)
        else:
            first = F.interpolate(x[:, :, :1], scale_factor=(1.0, 2.0, 2.0))
            x = torch.cat([first, F.interpolate(x[:, :, 1:], scale_factor=2.0)], dim=2)
        return conv2d_per_frame(self.conv, x)


class DownBlock3D(nn.Module):
    """``num_layers`` ResNet blocks, then optionally a :class:`Downsample3D` (diffusers' ``CogVideoXDownBlock3D``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        eps: float,
        act_fn: str,
        groups: int,
        add_downsample: bool,
        compress_time: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps, act_fn)
            for i in range(num_layers)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample3D(out_channels, out_channels, compress_time)]) if add_downsample else None
        )

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache=cache)
        for down in self.downsamplers or ():
            x = down(x)
        return x


class MidBlock3D(nn.Module):
    """ResNet blocks at the lowest resolution (group norm in the encoder, spatial norm in the decoder)."""

    def __init__(
        self, channels: int, num_layers: int, eps: float, act_fn: str, groups: int, spatial_norm_dim: int | None = None
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(channels, channels, groups, eps, act_fn, spatial_norm_dim) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None, cache: ConvCache | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, zq, cache)
        return x


class UpBlock3D(nn.Module):
    """Spatially normalised ResNet blocks, then optionally an :class:`Upsample3D` (``CogVideoXUpBlock3D``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        eps: float,
        act_fn: str,
        groups: int,
        spatial_norm_dim: int,
        add_upsample: bool,
        compress_time: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps, act_fn, spatial_norm_dim)
            for i in range(num_layers)
        )
        self.upsamplers = (
            nn.ModuleList([Upsample3D(out_channels, out_channels, compress_time)]) if add_upsample else None
        )

    def forward(self, x: torch.Tensor, zq: torch.Tensor, cache: ConvCache | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, zq, cache)
        for up in self.upsamplers or ():
            x = up(x)
        return x


class Encoder3D(nn.Module):
    """Video ``(B, C, T, H, W)`` → posterior parameters ``(B, 2 * latent_channels, T', H / 2^n, W / 2^n)``."""

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        block_out_channels: tuple[int, ...],
        layers_per_block: int,
        act_fn: str,
        norm_eps: float,
        norm_num_groups: int,
        temporal_compress_level: int,
    ):
        super().__init__()
        self.act = Activation(act_fn)
        self.conv_in = CausalConv3d(in_channels, block_out_channels[0], kernel_size=3)
        self.down_blocks = nn.ModuleList()
        channels = block_out_channels[0]
        for i, out_channels in enumerate(block_out_channels):
            self.down_blocks.append(
                DownBlock3D(
                    channels,
                    out_channels,
                    num_layers=layers_per_block,
                    eps=norm_eps,
                    act_fn=act_fn,
                    groups=norm_num_groups,
                    add_downsample=i < len(block_out_channels) - 1,
                    compress_time=i < temporal_compress_level,
                )
            )
            channels = out_channels
        self.mid_block = MidBlock3D(channels, num_layers=2, eps=norm_eps, act_fn=act_fn, groups=norm_num_groups)
        self.norm_out = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.conv_out = CausalConv3d(channels, 2 * latent_channels, kernel_size=3)

    def forward(self, video: torch.Tensor, cache: ConvCache | None = None) -> torch.Tensor:
        x = self.conv_in(video, cache)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache=cache)
        x = self.act(self.norm_out(x))
        return self.conv_out(x, cache)


class Decoder3D(nn.Module):
    """Latents ``(B, latent_channels, T, h, w)`` → video; every norm is conditioned on the latents."""

    def __init__(
        self,
        latent_channels: int,
        out_channels: int,
        block_out_channels: tuple[int, ...],
        layers_per_block: int,
        act_fn: str,
        norm_eps: float,
        norm_num_groups: int,
        temporal_compress_level: int,
    ):
        super().__init__()
        self.act = Activation(act_fn)
        channels_per_level = list(reversed(block_out_channels))
        channels = channels_per_level[0]
        self.conv_in = CausalConv3d(latent_channels, channels, kernel_size=3)
        self.mid_block = MidBlock3D(
            channels,
            num_layers=2,
            eps=norm_eps,
            act_fn=act_fn,
            groups=norm_num_groups,
            spatial_norm_dim=latent_channels,
        )
        self.up_blocks = nn.ModuleList()
        for i, level_channels in enumerate(channels_per_level):
            self.up_blocks.append(
                UpBlock3D(
                    channels,
                    level_channels,
                    num_layers=layers_per_block + 1,
                    eps=norm_eps,
                    act_fn=act_fn,
                    groups=norm_num_groups,
                    spatial_norm_dim=latent_channels,
                    add_upsample=i < len(block_out_channels) - 1,
                    compress_time=i < temporal_compress_level,
                )
            )
            channels = level_channels
        self.norm_out = SpatialNorm3D(channels, latent_channels, groups=norm_num_groups)
        self.conv_out = CausalConv3d(channels, out_channels, kernel_size=3)

    def forward(self, latents: torch.Tensor, cache: ConvCache | None = None) -> torch.Tensor:
        x = self.conv_in(latents, cache)
        x = self.mid_block(x, latents, cache)
        for block in self.up_blocks:
            x = block(x, latents, cache)
        x = self.act(self.norm_out(x, latents))
        return self.conv_out(x, cache)
