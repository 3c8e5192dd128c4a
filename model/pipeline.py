"""Text-to-video sampling: T5 prompt embeddings -> denoise latents with the expert transformer -> VAE decode.

A readable counterpart of diffusers' ``CogVideoXPipeline`` that loads and saves the same folder layout
(``model_index.json`` + ``scheduler/ text_encoder/ tokenizer/ transformer/ vae/``). Classifier-free
guidance runs the unconditional and conditional branches as one batch ``[uncond, cond]``. The
objective follows the scheduler: v-prediction DDIM (CogVideoX) or rectified flow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from model.schedulers import DDIMScheduler, FlowMatchScheduler, load_scheduler
from model.text_encoder import TextEncoder

MODEL_INDEX_NAME = "model_index.json"
COMPONENTS = ("scheduler", "text_encoder", "tokenizer", "transformer", "vae")


def model_index(scheduler_class: str, tokenizer_class: str = "T5Tokenizer") -> dict[str, Any]:
    """diffusers' ``model_index.json`` for a CogVideoX text-to-video pipeline."""
    return {
        "_class_name": "CogVideoXPipeline",
        "_diffusers_version": "0.32.0",
        "scheduler": ["diffusers", scheduler_class],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", tokenizer_class],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }


def check_pipeline_folder(path: str | os.PathLike) -> Path:
    """The folder, after checking it has ``model_index.json`` and every component subfolder."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: model folder not found")
    if not (root / MODEL_INDEX_NAME).is_file():
        raise FileNotFoundError(f"{root / MODEL_INDEX_NAME}: missing (not a diffusers-format pipeline folder)")
    missing = [name for name in COMPONENTS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: missing component folder(s) {missing} (expected {list(COMPONENTS)})")
    return root


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


class TextToVideoPipeline:
    """VAE + expert transformer + T5 text encoder + scheduler; call it with a prompt to get frames."""

    def __init__(self, vae: torch.nn.Module, transformer: torch.nn.Module, text_encoder: TextEncoder,
                 scheduler: DDIMScheduler | FlowMatchScheduler):
        self.vae = vae.eval()
        self.transformer = transformer.eval()
        self.text_encoder = text_encoder
        self.scheduler = scheduler
        # the transformer's text positions are sized for this many tokens (226 for CogVideoX)
        self.text_encoder.max_length = int(transformer.config.get("max_text_seq_length", text_encoder.max_length))

    # -- loading / saving -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None) -> TextToVideoPipeline:
        from model.transformer import ExpertTransformer3D
        from model.vae import CausalVideoVAE

        root = check_pipeline_folder(path)
        pipe = cls(
            vae=CausalVideoVAE.from_pretrained(root, subfolder="vae", torch_dtype=torch_dtype),
            transformer=ExpertTransformer3D.from_pretrained(root, subfolder="transformer", torch_dtype=torch_dtype),
            text_encoder=TextEncoder.from_pretrained(root, torch_dtype=torch_dtype),
            scheduler=load_scheduler(root, subfolder="scheduler"),
        )
        return pipe.to(device) if device is not None else pipe

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(root / "vae")
        self.transformer.save_pretrained(root / "transformer")
        self.text_encoder.save_pretrained(root)
        self.scheduler.save_pretrained(root / "scheduler")
        index = model_index(self.scheduler.config_class_name, type(self.text_encoder.tokenizer).__name__)
        (root / MODEL_INDEX_NAME).write_text(json.dumps(index, indent=2))
        return root

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> TextToVideoPipeline:
        for module in (self.vae, self.transformer, self.text_encoder):
            module.to(device=device, dtype=dtype)
        return self

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def vae_scale_spatial(self) -> int:
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def vae_scale_temporal(self) -> int:
        return int(self.vae.config["temporal_compression_ratio"])

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (VAE downsampling times the patch size)."""
        return self.vae_scale_spatial * int(self.transformer.config["patch_size"])

    def default_size(self) -> tuple[int, int, int]:
        """(frames, height, width) the transformer was configured for (49 x 480 x 720 for CogVideoX)."""
        c = self.transformer.config
        return int(c["sample_frames"]), int(c["sample_height"]) * self.vae_scale_spatial, int(c["sample_width"]) * self.vae_scale_spatial

    def check_size(self, num_frames: int, height: int, width: int) -> None:
        k = self.vae_scale_temporal
        if num_frames < 1 or (num_frames - 1) % k:
            raise ValueError(f"num_frames: must be 1 + {k}k (e.g. 9, 17, 49), got {num_frames}")
        latent_frames = (num_frames - 1) // k + 1
        if latent_frames > 1 and latent_frames % 2 == 0:
            raise ValueError(
                f"num_frames: {num_frames} gives {latent_frames} latent frames; the causal VAE decodes an even latent "
                f"count to {k * latent_frames} frames, so use 1 + {2 * k}j (e.g. 9, 17, 49)"
            )
        m = self.size_multiple
        for name, value in (("height", height), ("width", width)):
            if value < m or value % m:
                raise ValueError(f"{name}: must be a positive multiple of {m}, got {value}")

    # -- stages -----------------------------------------------------------------------------------
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B, max_text_seq_length, D) T5 embeddings in the transformer's dtype."""
        return self.text_encoder.encode(prompts).to(device=self.device, dtype=self.dtype)

    def latent_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(B, F_latent, C, H/8, W/8), padded in time to a multiple of ``patch_size_t`` (CogVideoX 1.5)."""
        frames = (num_frames - 1) // self.vae_scale_temporal + 1
        p_t = self.transformer.config.get("patch_size_t")
        if p_t and frames % p_t:
            frames += p_t - frames % p_t
        channels = int(self.transformer.config["in_channels"])
        return (batch_size, frames, channels, height // self.vae_scale_spatial, width // self.vae_scale_spatial)

    def prepare_latents(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Initial noise drawn in float32 on the generator's device, so a seed gives the same video everywhere."""
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        return (noise * self.scheduler.init_noise_sigma).to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        num_inference_steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Run the sampler from ``latents`` (B, F, C, h, w); CFG when ``guidance_scale > 1``."""
        use_cfg = guidance_scale > 1.0 and negative_prompt_embeds is not None
        context = torch.cat([negative_prompt_embeds, prompt_embeds]) if use_cfg else prompt_embeds
        self.scheduler.set_timesteps(num_inference_steps, device=latents.device)
        for i, t in enumerate(self.scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if use_cfg else latents
            pred = self.transformer(
                hidden_states=model_input, encoder_hidden_states=context, timestep=t.expand(model_input.shape[0])
            ).float()
            if use_cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample.to(self.dtype)
            if callback is not None:
                callback(i, t, latents)
        return latents

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, F, C, h, w) latents -> (B, 3, frames, H, W) video in about [-1, 1] (the VAE chunks in time)."""
        z = latents.permute(0, 2, 1, 3, 4) / float(self.vae.config["scaling_factor"])
        vae_dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(z.to(vae_dtype))

    # -- the whole thing --------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] = "",
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        output_type: Literal["np", "pt", "latent"] = "np",
        callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Generate videos. Returns frames in [0, 1]: ``np`` (B, F, H, W, 3) float32, ``pt`` (B, F, 3, H, W),
        or the final latents (B, F_latent, C, h, w) for ``latent``. Frame count and size default to the
        transformer's configured sample size. ``latents`` overrides the seeded initial noise."""
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"output_type: expected 'np', 'pt' or 'latent', got {output_type!r}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"negative_prompt: {len(negatives)} given for {len(prompts)} prompts")
        default_frames, default_height, default_width = self.default_size()
        num_frames, height, width = num_frames or default_frames, height or default_height, width or default_width
        self.check_size(num_frames, height, width)

        use_cfg = guidance_scale > 1.0
        embeds = self.encode_prompt(prompts + negatives if use_cfg else prompts)
        prompt_embeds, negative_embeds = (embeds[: len(prompts)], embeds[len(prompts):]) if use_cfg else (embeds, None)

        generator = _generator(seed, generator)
        shape = self.latent_shape(len(prompts), num_frames, height, width)
        if latents is None:
            latents = self.prepare_latents(shape, generator)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents: expected shape {shape}, got {tuple(latents.shape)}")
        else:
            latents = latents.to(device=self.device, dtype=self.dtype) * self.scheduler.init_noise_sigma
        padding = shape[1] - ((num_frames - 1) // self.vae_scale_temporal + 1)

        latents = self.denoise(latents, prompt_embeds, negative_embeds, num_inference_steps, guidance_scale, generator, callback)
        latents = latents[:, padding:]
        if output_type == "latent":
            return latents
        video = (self.decode_latents(latents).float() / 2 + 0.5).clamp(0, 1)  # (B, 3, F, H, W)
        if output_type == "pt":
            return video.permute(0, 2, 1, 3, 4).cpu()
        return video.permute(0, 2, 3, 4, 1).cpu().numpy()
