"""FlowDirector on our pipeline: encode a video, edit its latents with the flow-edit loop, decode.

:class:`ModelField` is the :class:`~model.editing.flowedit.GuidedField` of a loaded pipeline: CFG
velocities of the source or target prompt (each CFG with its own unconditional pass on the negative
prompt), computed per latent-frame window and averaged over overlaps; on request, the binary
attention mask of the branch's edited words from one block's joint attention
(:func:`model.attention.attention_probs_for_keys`, only the selected key columns, the softmax
normaliser accumulated in chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.attention import AttentionProbeRequest
from model.editing.config import EditConfig
from model.editing.flowedit import Branch, edit_sigmas, flow_edit
from model.editing.masks import binarize_maps, word_attention_maps
from model.editing.velocity import TransformerVelocity
from model.editing.windows import frame_windows, windowed


def default_block_index(num_layers: int) -> int:
    """A late-middle block: ``floor(0.6 * num_layers)`` (18 of 30 for CogVideoX-2B, 25 of 42 for 5B)."""
    return min(num_layers - 1, int(0.6 * num_layers))


@dataclass
class PromptBranch:
    """One side of the edit: CFG scale, conditional and unconditional embeddings ``(1, L, D)``, and the
    text positions of each edited word (keys of the joint sequence, text first)."""

    guidance: float
    cond: torch.Tensor
    uncond: torch.Tensor
    word_tokens: list[list[int]]


class ModelField:
    """CFG flow velocities (and attention masks) of the pipeline's transformer for two prompts."""

    def __init__(self, velocity: TransformerVelocity, branches: dict[str, PromptBranch], windows: list[slice],
                 block_index: int, pool_kernel: int = 11, chunk_size: int = 1024):
        self.velocity = velocity
        self.branches = branches
        self.windows = windows
        self.block_index = block_index
        self.pool_kernel = pool_kernel
        self.chunk_size = chunk_size
        tr = velocity.transformer
        self.patch_size, self.patch_size_t = int(tr.config["patch_size"]), tr.config.get("patch_size_t")

    def __call__(self, z: torch.Tensor, t: float, branch: Branch, with_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = self.branches[branch]
        n = z.shape[0]
        context = torch.cat([b.uncond.expand(n, -1, -1), b.cond.expand(n, -1, -1)])
        probe, groups = None, []
        if with_mask:
            keys = sorted({k for tokens in b.word_tokens for k in tokens})
            groups = [[keys.index(k) for k in tokens] for tokens in b.word_tokens]
            probe = AttentionProbeRequest(self.block_index, keys, self.chunk_size)
        window_masks: list[tuple[slice, torch.Tensor]] = []

        def run(zw: torch.Tensor, window: slice) -> torch.Tensor:
            v, probs = self.velocity(torch.cat([zw, zw]), t, context, probe)
            v_uncond, v_cond = v.chunk(2)
            if probs is not None:
                pt = self.patch_size_t or 1
                grid = (zw.shape[1] // pt, zw.shape[3] // self.patch_size, zw.shape[4] // self.patch_size)
                maps = word_attention_maps(probs[n:], groups, grid, self.patch_size, self.patch_size_t)
                window_masks.append((window, binarize_maps(maps, self.pool_kernel).any(dim=1)))
            return v_uncond + b.guidance * (v_cond - v_uncond)

        v = windowed(run, z, self.windows)
        if not with_mask:
            return v, None
        mask = torch.zeros(n, z.shape[1], z.shape[3], z.shape[4], dtype=torch.bool, device=z.device)
        for window, m in window_masks:
            mask[:, window] |= m
        return v, mask


@dataclass
class EditResult:
    frames: np.ndarray  # (F, H, W, 3) uint8, the edited video
    latents: torch.Tensor  # (1, F_latent, C, h, w) edited latents (scaled, as the transformer sees them)
    source_latents: torch.Tensor  # (1, F_latent, C, h, w) the encoded source
    mask: torch.Tensor | None  # (F_latent, h, w) soft mask (max over edit steps), None without masking
    model_evaluations: int  # transformer forward passes, counted per sample


class FlowDirectorEditor:
    """Training-free text-driven video editing with a loaded :class:`~model.pipeline.TextToVideoPipeline`."""

    def __init__(self, pipe, config: EditConfig | None = None):
        self.pipe = pipe
        self.config = (config or EditConfig()).validate()
        layers = len(pipe.transformer.transformer_blocks)
        block = self.config.mask.block_index
        self.block_index = default_block_index(layers) if block is None else block
        if not 0 <= self.block_index < layers:
            raise ValueError(f"mask.block_index: the transformer has {layers} blocks, got {self.block_index}")
        self.velocity = TransformerVelocity(pipe.transformer, pipe.scheduler)

    # -- video <-> latents ----------------------------------------------------------------------
    def check_video(self, frames: np.ndarray, name: str = "video") -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{name}: expected frames (F, H, W, 3), got shape {frames.shape}")
        try:
            self.pipe.check_size(*frames.shape[:3])
        except ValueError as exc:
            raise ValueError(f"{name}: {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]} cannot be edited "
                             f"by this model: {exc}") from None

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> scaled latent mean ``(1, F_latent, C, h, w)`` in float32."""
        self.check_video(frames)
        vae = self.pipe.vae
        dtype = next(vae.parameters()).dtype
        video = torch.from_numpy(np.ascontiguousarray(frames)).to(self.pipe.device)
        video = (video.permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0).to(dtype)
        latents = vae.encode(video).mean * float(vae.config["scaling_factor"])
        return latents.permute(0, 2, 1, 3, 4).float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        video = self.pipe.decode_latents(latents.to(self.pipe.dtype)).float()  # (1, 3, F, H, W)
        video = (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)
        return (video * 255).round().to(torch.uint8).cpu().numpy()

    # -- the edit -------------------------------------------------------------------------------
    def _branch(self, prompt: str, words: Sequence[str], guidance: float, embeds: torch.Tensor, negative: torch.Tensor) -> PromptBranch:
        tokens = self.pipe.text_encoder.token_spans(prompt, list(words)) if words else []
        return PromptBranch(guidance, embeds, negative, tokens)

    def edit_latents(
        self, x_src: torch.Tensor, source_prompt: str, target_prompt: str, source_words: Sequence[str] = (),
        target_words: Sequence[str] = (), generator: torch.Generator | None = None,
        callback: Callable[[int, float], None] | None = None, mask_override: torch.Tensor | None = None,
    ):
        """Edit scaled latents ``(1, F, C, h, w)``; returns :class:`~model.editing.flowedit.FlowEditOutput`."""
        cfg = self.config
        use_mask = cfg.mask.enabled and mask_override is None
        if use_mask and (not source_words or not target_words):
            raise ValueError("source_words/target_words: attention masking needs at least one edited word on each side "
                             "(or set mask.enabled: false)")
        # one row per distinct prompt, so equal prompts get bit-identical embeddings
        unique = list(dict.fromkeys([source_prompt, target_prompt, cfg.negative_prompt]))
        embeds = self.pipe.encode_prompt(unique).float()
        src, tar, neg = (embeds[unique.index(p)][None] for p in (source_prompt, target_prompt, cfg.negative_prompt))
        branches = {
            "source": self._branch(source_prompt, source_words if use_mask else (), cfg.source_guidance, src, neg),
            "target": self._branch(target_prompt, target_words if use_mask else (), cfg.target_guidance, tar, neg),
        }
        pt = int(self.pipe.transformer.config.get("patch_size_t") or 1)
        pad = (-x_src.shape[1]) % pt  # CogVideoX 1.5 patches time by 2: repeat the first frame in front
        x = torch.cat([x_src[:, :1].expand(-1, pad, -1, -1, -1), x_src], dim=1) if pad else x_src
        windows = frame_windows(x.shape[1], cfg.window.frames, cfg.window.stride, pt)
        field = ModelField(self.velocity, branches, windows, self.block_index, cfg.mask.pool_kernel, cfg.mask.chunk_size)
        if generator is None:
            generator = torch.Generator().manual_seed(cfg.seed)
        if mask_override is not None and pad:
            mask_override = torch.cat([mask_override[..., :1, :, :].expand(*mask_override.shape[:-3], pad, -1, -1), mask_override], dim=-3)
        out = flow_edit(
            field, x, edit_sigmas(cfg.steps, cfg.shift), cfg.n_max, cfg.n_min, generator, cfg.dag.num_candidates,
            cfg.dag.num_outliers, cfg.dag.weight, use_mask, cfg.mask.softness, mask_override, callback,
        )
        if pad:
            out.latents = out.latents[:, pad:]
            out.mask = out.mask[:, pad:] if out.mask is not None else None
        return out

    def __call__(
        self, frames: np.ndarray, source_prompt: str, target_prompt: str, source_words: Sequence[str] = (),
        target_words: Sequence[str] = (), seed: int | None = None, callback: Callable[[int, float], None] | None = None,
    ) -> EditResult:
        """Edit uint8 frames ``(F, H, W, 3)`` (``F = 1 + 8k``, sides multiples of the model's size multiple)."""
        x_src = self.encode_video(frames)
        generator = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        before = self.velocity.evaluations
        out = self.edit_latents(x_src, source_prompt, target_prompt, source_words, target_words, generator, callback)
        mask = out.mask[0] if out.mask is not None else None
        return EditResult(self.decode_latents(out.latents), out.latents, x_src, mask, self.velocity.evaluations - before)
