"""CogVideoX expert transformer (arXiv 2408.06072), loadable from diffusers-format checkpoints.

``ExpertTransformer3D`` takes the same config as diffusers' ``CogVideoXTransformer3DModel`` and
has the same parameter names, so ``transformer/`` folders of CogVideoX-2b (3D sin-cos positions),
-5b (3D RoPE), -5b-I2V (RoPE + learned positions) and 1.5 (temporal patches, ofs embedding) load
as they are. Differences from diffusers: RoPE tables are computed inside the model for the latent
size (as the public pipeline computes them), text may be shorter than ``max_text_seq_length``
(with an ``attention_mask`` for padded text), several samples can be packed into one sequence
(:meth:`ExpertTransformer3D.forward_packed`), and one block's text-attention can be probed.

Data flow: latents ``(B, F, C, H, W)`` -> patch tokens; text ``(B, L, Dtext)`` -> ``text_proj``;
joint sequence ``[text; video]`` -> N blocks of (expert adaLN -> joint attention -> gated residual
-> expert adaLN -> GELU-tanh FFN -> gated residual) -> final norm + adaLN on video tokens ->
``proj_out`` -> unpatchify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.attention import AttentionProbeRequest, JointAttention, Rotary
from model.checkpoint import PretrainedMixin
from model.embeddings import PatchEmbed, TimestepEmbedding, rotary_pos_embed_3d, timestep_embedding
from model.packing import PackedBatch


# --------------------------------------------------------------------------------------------------
# Token layout: which adaLN modulation (sample, text/video expert) each token span takes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Tokens ``[start, stop)`` modulated by ``sample``'s embedding with the text or the video expert.
    ``sample=None`` marks padding (no modulation, no residual update)."""

    start: int
    stop: int
    sample: int | None
    is_text: bool


@dataclass(frozen=True)
class TokenLayout:
    """Span lists per batch row. ``shared``: one list for every row, and row ``b`` takes the
    modulation of batch element ``b`` (the plain forward); otherwise ``Span.sample`` indexes the
    modulation table (the packed forward)."""

    rows: tuple[tuple[Span, ...], ...]
    shared: bool

    @staticmethod
    def text_then_video(text_len: int, seq_len: int) -> "TokenLayout":
        return TokenLayout(((Span(0, text_len, 0, True), Span(text_len, seq_len, 0, False)),), shared=True)

    def map(self, x: torch.Tensor, fn: Callable[[torch.Tensor, Span, Callable], torch.Tensor]) -> torch.Tensor:
        """Apply ``fn(piece, span, pick)`` to each span of ``x`` ``(B, S, D)`` and reassemble.
        ``pick(m)`` selects the span's row(s) of a per-sample tensor ``m`` so that it broadcasts."""
        if self.shared:
            pick = lambda m: m[:, None, :]  # noqa: E731
            pieces = [fn(x[:, s.start : s.stop], s, pick) for s in self.rows[0] if s.stop > s.start]
            return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        out = []
        for r, spans in enumerate(self.rows):
            pieces = [fn(x[r, s.start : s.stop], s, lambda m, s=s: m[s.sample]) for s in spans if s.stop > s.start]
            out.append(torch.cat(pieces, dim=0))
        return torch.stack(out)


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------


class ExpertAdaLayerNorm(nn.Module):
    """LayerNorm with separate (shift, scale, gate) for video and text tokens from the timestep embedding.
    ``linear`` output order: video shift, scale, gate, then text shift, scale, gate."""

    def __init__(self, cond_dim: int, dim: int, elementwise_affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, layout: TokenLayout) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        shift, scale, gate, t_shift, t_scale, t_gate = self.linear(F.silu(temb)).chunk(6, dim=-1)

        def modulate(piece, span, pick):
            if span.sample is None:
                return piece
            sh, sc = (t_shift, t_scale) if span.is_text else (shift, scale)
            return piece * (1 + pick(sc)) + pick(sh)

        return layout.map(self.norm(x), modulate), (gate, t_gate)


def gated_residual(x: torch.Tensor, update: torch.Tensor, gates: tuple[torch.Tensor, torch.Tensor], layout: TokenLayout) -> torch.Tensor:
    """``x + gate * update`` with each span's own (text or video) gate; padding is left unchanged."""
    gate, t_gate = gates

    def gated(piece, span, pick):
        if span.sample is None:
            return torch.zeros_like(piece)
        return piece * pick(t_gate if span.is_text else gate)

    return x + layout.map(update, gated)


class GELUProjection(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, approximate: str, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class FeedForward(nn.Module):
    """``net.0.proj`` -> GELU -> dropout -> ``net.2`` -> dropout (diffusers' ``FeedForward`` layout)."""

    def __init__(self, dim: int, inner_dim: int, activation_fn: str = "gelu-approximate", dropout: float = 0.0, bias: bool = True):
        super().__init__()
        approximations = {"gelu-approximate": "tanh", "gelu": "none"}
        if activation_fn not in approximations:
            raise ValueError(f"activation_fn: expected one of {sorted(approximations)}, got {activation_fn!r}")
        self.net = nn.ModuleList(
            [GELUProjection(dim, inner_dim, approximations[activation_fn], bias), nn.Dropout(dropout), nn.Linear(inner_dim, dim, bias=bias), nn.Dropout(dropout)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class CogVideoXBlock(nn.Module):
    """Expert adaLN -> joint attention -> gated residual -> expert adaLN -> FFN -> gated residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, time_embed_dim: int, dropout: float, activation_fn: str,
                 attention_bias: bool, norm_elementwise_affine: bool, norm_eps: float):
        super().__init__()
        self.norm1 = ExpertAdaLayerNorm(time_embed_dim, dim, norm_elementwise_affine, norm_eps)
        self.attn1 = JointAttention(dim, heads, head_dim, bias=attention_bias, out_bias=True, qk_norm=True, eps=1e-6)
        self.norm2 = ExpertAdaLayerNorm(time_embed_dim, dim, norm_elementwise_affine, norm_eps)
        self.ff = FeedForward(dim, 4 * dim, activation_fn, dropout)

    def forward(self, x, temb, layout, rotary=None, attn_mask=None, segments=None, probe=None, probe_queries=None):
        h, gates = self.norm1(x, temb, layout)
        attn, probs = self.attn1(h, rotary, attn_mask, segments, probe, probe_queries)
        x = gated_residual(x, attn, gates, layout)
        h, gates = self.norm2(x, temb, layout)
        x = gated_residual(x, self.ff(h), gates, layout)
        return x, probs


class FinalAdaLayerNorm(nn.Module):
    """``norm(x) * (1 + scale) + shift`` with ``(shift, scale)`` from the timestep embedding (``norm_out``)."""

    def __init__(self, cond_dim: int, dim: int, elementwise_affine: bool, eps: float):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.linear(F.silu(temb)).chunk(2, dim=-1)
        if temb.ndim == 2:
            shift, scale = shift[:, None], scale[:, None]
        return self.norm(x) * (1 + scale) + shift


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class ExpertTransformer3D(PretrainedMixin, nn.Module):
    """CogVideoX transformer. ``__init__`` takes diffusers' ``CogVideoXTransformer3DModel`` config."""

    config_class_name = "CogVideoXTransformer3DModel"

    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
    ):
        super().__init__()
        self.config: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if use_learned_positional_embeddings and not use_rotary_positional_embeddings:
            raise ValueError("config: use_learned_positional_embeddings requires use_rotary_positional_embeddings (as in every CogVideoX checkpoint)")
        if ofs_embed_dim and ofs_embed_dim != time_embed_dim:
            raise ValueError(f"config: ofs_embed_dim ({ofs_embed_dim}) must equal time_embed_dim ({time_embed_dim}); the two embeddings are added")
        out_channels = out_channels or in_channels
        inner = num_attention_heads * attention_head_dim
        self.inner_dim, self.out_channels = inner, out_channels
        self.patch_size, self.patch_size_t = patch_size, patch_size_t
        self.use_rope = use_rotary_positional_embeddings

        self.patch_embed = PatchEmbed(
            patch_size, patch_size_t, in_channels, inner, text_embed_dim, patch_bias, sample_width, sample_height,
            sample_frames, temporal_compression_ratio, max_text_seq_length, spatial_interpolation_scale,
            temporal_interpolation_scale, use_sincos_positions=not use_rotary_positional_embeddings,
            use_learned_positions=use_learned_positional_embeddings,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_embedding = TimestepEmbedding(inner, time_embed_dim, timestep_activation_fn)
        self.ofs_embedding = TimestepEmbedding(ofs_embed_dim, ofs_embed_dim, timestep_activation_fn) if ofs_embed_dim else None
        self.transformer_blocks = nn.ModuleList(
            [
                CogVideoXBlock(inner, num_attention_heads, attention_head_dim, time_embed_dim, dropout, activation_fn,
                               attention_bias, norm_elementwise_affine, norm_eps)
                for _ in range(num_layers)
            ]
        )
        self.norm_final = nn.LayerNorm(inner, norm_eps, norm_elementwise_affine)
        self.norm_out = FinalAdaLayerNorm(time_embed_dim, inner, norm_elementwise_affine, norm_eps)
        self.proj_out = nn.Linear(inner, patch_size * patch_size * (patch_size_t or 1) * out_channels)
        self.gradient_checkpointing = False
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---------------------------------------------------------------- switches and helpers

    def enable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False

    def time_embed(self, timestep: torch.Tensor | float, batch: int, dtype: torch.dtype, device: torch.device, ofs: torch.Tensor | float | None = None) -> torch.Tensor:
        """Timestep (+ ofs) embedding ``(batch, time_embed_dim)``."""
        t = torch.as_tensor(timestep, device=device).reshape(-1)
        t = t.expand(batch) if t.numel() == 1 else t
        if t.shape != (batch,):
            raise ValueError(f"timestep: expected a scalar or shape ({batch},), got {tuple(t.shape)}")
        cfg = self.config
        emb = self.time_embedding(timestep_embedding(t, self.inner_dim, cfg["flip_sin_to_cos"], cfg["freq_shift"]).to(dtype))
        if self.ofs_embedding is not None:
            if ofs is None:
                raise ValueError("ofs: this checkpoint has an ofs embedding (ofs_embed_dim set); pass ofs (the CogVideoX 1.5 I2V pipeline uses 2.0)")
            o = torch.as_tensor(ofs, device=device).reshape(-1)
            o = o.expand(batch) if o.numel() == 1 else o
            ofs_dim = cfg["ofs_embed_dim"]
            emb = emb + self.ofs_embedding(timestep_embedding(o, ofs_dim, cfg["flip_sin_to_cos"], cfg["freq_shift"]).to(dtype))
        return emb

    def rotary_tables(self, frames: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """3D RoPE cos/sin ``(N_video, head_dim)`` for a latent of ``frames x height x width``."""
        key = (frames, height, width, device)
        if key not in self._rope_cache:
            if len(self._rope_cache) > 8:
                self._rope_cache.clear()
            _, gh, gw = self.patch_embed.token_grid(frames, height, width)
            cfg = self.config
            self._rope_cache[key] = rotary_pos_embed_3d(
                cfg["attention_head_dim"], frames, gh, gw, cfg["sample_height"], cfg["sample_width"], self.patch_size,
                self.patch_size_t, device=device,
            )
        return self._rope_cache[key]

    def _embed_sample(self, latents: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch/text embeddings plus absolute positions for a batch of same-shaped samples."""
        _, f, _, h, w = latents.shape
        video = self.patch_embed.embed_video(latents)
        text = self.patch_embed.embed_text(text)
        pos = self.patch_embed.video_positions(f, h, w, video.device, video.dtype)
        if pos is not None:
            video = video + pos
        text_pos = self.patch_embed.text_positions(text.shape[1], f, h, w)
        if text_pos is not None:
            text = text + text_pos.to(text.dtype)
        return text, video

    def _unpatchify(self, tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """``(B, N, p_t*p*p*C)`` -> ``(B, F, C, H, W)``; feature order ``(C, p_t, p, p)``."""
        b = tokens.shape[0]
        p, pt, c = self.patch_size, self.patch_size_t or 1, self.out_channels
        t, gh, gw = frames // pt, height // p, width // p
        x = tokens.reshape(b, t, gh, gw, c, pt, p, p).permute(0, 1, 5, 4, 2, 6, 3, 7)  # (B, t, pt, C, h, p, w, p)
        return x.reshape(b, frames, c, height, width)

    def _run_blocks(self, x, emb, layout, rotary, attn_mask, segments, probe, probe_queries):
        probs = None
        for i, block in enumerate(self.transformer_blocks):
            block_probe = probe if probe is not None and probe.block_index == i else None
            args = (x, emb, layout, rotary, attn_mask, segments, block_probe, probe_queries)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, p = checkpoint(block, *args, use_reentrant=False)
            else:
                x, p = block(*args)
            probs = p if p is not None else probs
        return x, probs

    @staticmethod
    def _joint_mask(mask: torch.Tensor | None, batch: int, text_len: int, seq_len: int) -> torch.Tensor | None:
        """Normalise ``attention_mask`` to an SDPA mask broadcastable to ``(B, H, S, S)``.

        2-D masks are keep-masks over keys (nonzero = attend): ``(B, L)`` for the text (video keys are
        always kept) or ``(B, S)`` for the joint sequence. 3-D ``(B, S, S)`` / 4-D ``(B, 1|H, S, S)``
        masks are boolean keep-masks or additive float biases."""
        if mask is None:
            return None
        if mask.ndim == 2:
            if mask.shape[0] != batch or mask.shape[1] not in (text_len, seq_len):
                raise ValueError(f"attention_mask: expected (B, L)=({batch}, {text_len}) or (B, S)=({batch}, {seq_len}), got {tuple(mask.shape)}")
            keep = mask != 0
            if mask.shape[1] == text_len and text_len != seq_len:
                keep = torch.cat([keep, keep.new_ones(batch, seq_len - text_len)], dim=1)
            return keep[:, None, None, :]
        if mask.ndim == 3:
            mask = mask[:, None]
        if mask.ndim != 4 or mask.shape[-2:] != (seq_len, seq_len):
            raise ValueError(f"attention_mask: expected (B, [H,] S, S) with S={seq_len}, got {tuple(mask.shape)}")
        return mask

    # ---------------------------------------------------------------- forward passes

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        attention_mask: torch.Tensor | None = None,
        ofs: torch.Tensor | float | None = None,
        return_attention_probs_for: AttentionProbeRequest | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict for latents ``(B, F, C, H, W)`` given text ``(B, L, text_embed_dim)`` and timesteps ``(B,)``.

        Returns the prediction ``(B, F, C_out, H, W)``; with ``return_attention_probs_for`` also the
        requested block's attention probabilities ``(B, heads, N_video, K)``.
        """
        if hidden_states.ndim != 5 or encoder_hidden_states.ndim != 3:
            raise ValueError(
                f"forward: expected hidden_states (B, F, C, H, W) and encoder_hidden_states (B, L, D), got "
                f"{tuple(hidden_states.shape)} and {tuple(encoder_hidden_states.shape)}"
            )
        b, f, _, h, w = hidden_states.shape
        emb = self.time_embed(timestep, b, hidden_states.dtype, hidden_states.device, ofs)
        text, video = self._embed_sample(hidden_states, encoder_hidden_states)
        text_len = text.shape[1]
        x = self.embedding_dropout(torch.cat([text, video], dim=1))
        seq_len = x.shape[1]
        rotary = None
        if self.use_rope:
            cos, sin = self.rotary_tables(f, h, w, x.device)
            rotary = Rotary(cos, sin, start=text_len)
        mask = self._joint_mask(attention_mask, b, text_len, seq_len)
        layout = TokenLayout.text_then_video(text_len, seq_len)
        probe = return_attention_probs_for
        if probe is not None and not 0 <= probe.block_index < len(self.transformer_blocks):
            raise ValueError(f"return_attention_probs_for.block_index must be in [0, {len(self.transformer_blocks)}), got {probe.block_index}")
        x, probs = self._run_blocks(x, emb, layout, rotary, mask, None, probe, (text_len, seq_len))
        video = self.norm_out(self.norm_final(x[:, text_len:]), emb)
        out = self._unpatchify(self.proj_out(video), f, h, w)
        return out if probe is None else (out, probs)

    def forward_packed(self, packed: PackedBatch, packed_attention: str = "segments") -> list[torch.Tensor]:
        """Predictions for every sample of a :class:`PackedBatch`, each shaped like its latents.

        ``packed_attention``: ``"segments"`` runs SDPA per sample span (exact, no mask);
        ``"mask"`` runs one SDPA per row with the block-diagonal boolean mask (``rows * S^2`` bytes).
        """
        if packed_attention not in ("segments", "mask"):
            raise ValueError(f"packed_attention: expected 'segments' or 'mask', got {packed_attention!r}")
        if packed.patch_size != self.patch_size or packed.patch_size_t != self.patch_size_t:
            raise ValueError(
                f"packed batch was built for patch sizes ({packed.patch_size}, {packed.patch_size_t}), "
                f"model uses ({self.patch_size}, {self.patch_size_t})"
            )
        ref = packed.latents[0]
        device, dtype = ref.device, ref.dtype
        emb = self.time_embed(packed.timesteps, packed.num_samples, dtype, device, packed.ofs)
        s = packed.seq_len
        head_dim = self.config["attention_head_dim"]
        rows, cos_rows, sin_rows, layout_rows = [], [], [], []
        for row in packed.rows:
            pieces, cos_pieces, sin_pieces, spans = [], [], [], []
            for seg in row:
                f, _, h, w = seg.latent_shape
                text, video = self._embed_sample(packed.latents[seg.sample][None], packed.text[seg.sample][None])
                pieces += [text[0], video[0]]
                spans += [Span(seg.text_start, seg.video_start, seg.sample, True), Span(seg.video_start, seg.stop, seg.sample, False)]
                if self.use_rope:
                    cos, sin = self.rotary_tables(f, h, w, device)
                    cos_pieces += [cos.new_ones(seg.text_len, head_dim), cos]
                    sin_pieces += [sin.new_zeros(seg.text_len, head_dim), sin]
            pad = s - (row[-1].stop if row else 0)
            if pad:
                pieces.append(pieces[0].new_zeros(pad, self.inner_dim))
                spans.append(Span(s - pad, s, None, False))
                cos_pieces.append(torch.ones(pad, head_dim, device=device))
                sin_pieces.append(torch.zeros(pad, head_dim, device=device))
            rows.append(torch.cat(pieces))
            layout_rows.append(tuple(spans))
            if self.use_rope:
                cos_rows.append(torch.cat(cos_pieces))
                sin_rows.append(torch.cat(sin_pieces))
        x = self.embedding_dropout(torch.stack(rows))
        rotary = Rotary(torch.stack(cos_rows), torch.stack(sin_rows)) if self.use_rope else None
        layout = TokenLayout(tuple(layout_rows), shared=False)
        if packed_attention == "mask":
            mask, segments = packed.attention_mask(device), None
        else:
            mask, segments = None, packed.segment_spans()
        x, _ = self._run_blocks(x, emb, layout, rotary, mask, segments, None, None)

        outputs: list[torch.Tensor | None] = [None] * packed.num_samples
        for r, row in enumerate(packed.rows):
            for seg in row:
                f, _, h, w = seg.latent_shape
                video = self.norm_out(self.norm_final(x[r, seg.video_start : seg.stop]), emb[seg.sample])
                outputs[seg.sample] = self._unpatchify(self.proj_out(video)[None], f, h, w)[0]
        return outputs  # type: ignore[return-value]

    # ---------------------------------------------------------------- cost model

    def forward_flops(self, video_tokens: int, text_tokens: int, batch: int = 1) -> int:
        """Matmul FLOPs of one forward pass (2 per multiply-add), for MFU; training step = 3x this.

        Per block and sequence of ``S = text + video`` tokens with width ``D``: QKV + out projections
        ``8 S D^2``, FFN ``16 S D^2``, attention scores and weighted sum ``4 S^2 D``; plus adaLN
        ``2 * 6 * Dt * D * 2`` per sample, patch/text embedding and ``proj_out``.
        """
        d, s = self.inner_dim, text_tokens + video_tokens
        dt = self.config["time_embed_dim"]
        per_block = 24 * s * d * d + 4 * s * s * d + 2 * 2 * 6 * dt * d
        patch_in = self.config["in_channels"] * self.patch_size**2 * (self.patch_size_t or 1)
        embed = 2 * video_tokens * patch_in * d + 2 * text_tokens * self.config["text_embed_dim"] * d
        head = 2 * video_tokens * d * self.proj_out.out_features
        return batch * (len(self.transformer_blocks) * per_block + embed + head)
