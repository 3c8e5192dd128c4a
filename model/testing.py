"""Tiny randomly initialised CogVideoX-style pipeline folders, for smoke tests and demos.

``build_tiny_model(folder)`` writes a complete diffusers-format folder (``model_index.json``,
``scheduler/``, ``text_encoder/``, ``tokenizer/``, ``transformer/``, ``vae/``) with the same layout
and config keys as the public CogVideoX-2B/5B checkpoints, only a few thousand parameters wide.
Everything loads back through the code path users take (``TextToVideoPipeline.from_pretrained``).
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

# Words a tiny tokenizer keeps whole; anything else is spelled out character by character, so
# every ASCII prompt tokenizes without <unk> and multi-token words are common (as with real T5).
TINY_VOCAB_WORDS = (
    "a an the of and with in on at to from by over under through into near while its his her their "
    "is are walks runs flies swims jumps sits stands plays rides drives dances falls rolls turns moves "
    "cat dog bird fish horse car boat train man woman child person people panda robot ball tree trees "
    "flower flowers river ocean sea beach sand mountain forest city street road sky cloud clouds sun "
    "moon night day snow rain water fire light house field grass garden window room table "
    "red blue green yellow white black orange purple golden small large big tall slow fast "
    "camera shot view close up wide slowly quickly gently bright dark sunset sunrise video scene"
).split()


@dataclass
class TinyModelSpec:
    """Sizes of a tiny CogVideoX-style model (defaults give a ~50k-parameter pipeline)."""

    style: Literal["2b", "5b"] = "2b"
    objective: Literal["v_prediction", "flow"] = "v_prediction"
    text_dim: int = 32
    latent_channels: int = 4
    sample_size: int = 4  # latent height = width; pixels = 8 * sample_size
    sample_frames: int = 9  # pixel frames, 1 + 4k
    num_layers: int = 2
    max_text_seq_length: int = 226
    seed: int = 0
    extra_transformer: dict[str, Any] = field(default_factory=dict)
    extra_vae: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.style not in ("2b", "5b"):
            raise ValueError(f"style: expected '2b' or '5b', got {self.style!r}")
        if self.objective not in ("v_prediction", "flow"):
            raise ValueError(f"objective: expected 'v_prediction' or 'flow', got {self.objective!r}")


def tiny_vae_config(spec: TinyModelSpec) -> dict[str, Any]:
    """diffusers ``AutoencoderKLCogVideoX`` kwargs: 4 blocks (/8 spatially), /4 temporally."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["CogVideoXDownBlock3D"] * 4,
        "up_block_types": ["CogVideoXUpBlock3D"] * 4,
        "block_out_channels": [8, 8, 8, 8],
        "latent_channels": spec.latent_channels,
        "layers_per_block": 1,
        "norm_num_groups": 2,
        "temporal_compression_ratio": 4,
        "scaling_factor": 1.15258426 if spec.style == "2b" else 0.7,
        **spec.extra_vae,
    }


def tiny_transformer_config(spec: TinyModelSpec) -> dict[str, Any]:
    """diffusers ``CogVideoXTransformer3DModel`` kwargs; 5B style switches to 3D RoPE."""
    return {
        "num_attention_heads": 2,
        "attention_head_dim": 16,  # RoPE splits 16 into t/h/w = 4/6/6
        "in_channels": spec.latent_channels,
        "out_channels": spec.latent_channels,
        "time_embed_dim": 8,
        "text_embed_dim": spec.text_dim,
        "num_layers": spec.num_layers,
        "sample_width": spec.sample_size,
        "sample_height": spec.sample_size,
        "sample_frames": spec.sample_frames,
        "patch_size": 2,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": spec.max_text_seq_length,
        "use_rotary_positional_embeddings": spec.style == "5b",
        "use_learned_positional_embeddings": False,
        **spec.extra_transformer,
    }


def tiny_scheduler_config(spec: TinyModelSpec) -> dict[str, Any]:
    if spec.objective == "flow":
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
    return {
        "_class_name": "CogVideoXDDIMScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "set_alpha_to_one": True,
        "snr_shift_scale": 3.0 if spec.style == "2b" else 1.0,
        "steps_offset": 0,
        "timestep_spacing": "trailing",
    }


def build_tiny_tokenizer():
    """A T5-compatible Unigram tokenizer (transformers ``T5Tokenizer``) over a small fixed vocabulary."""
    from transformers import T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -1.0) for w in dict.fromkeys(TINY_VOCAB_WORDS)]
    vocab += [(c, -5.0) for c in chars] + [(f"▁{c}", -5.5) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_text_encoder(spec: TinyModelSpec, vocab_size: int):
    """A one-layer T5 v1.1-style (gated-GELU) encoder."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=spec.text_dim,
        d_kv=8,
        d_ff=2 * spec.text_dim,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def build_tiny_model(
    folder: str | os.PathLike,
    style: Literal["2b", "5b"] = "2b",
    objective: Literal["v_prediction", "flow"] = "v_prediction",
    seed: int = 0,
    **sizes: Any,
) -> Path:
    """Write a tiny random CogVideoX-style pipeline folder and return its path.

    ``style="2b"``: sincos positional embeddings, SNR shift 3.0, VAE scaling 1.15258426;
    ``style="5b"``: 3D RoPE, SNR shift 1.0, VAE scaling 0.7. ``objective="flow"`` swaps the scheduler for a
    rectified-flow one. ``sizes`` override :class:`TinyModelSpec` fields. Deterministic for a given seed.
    """
    from model.pipeline import TextToVideoPipeline
    from model.schedulers import load_scheduler
    from model.text_encoder import TextEncoder
    from model.transformer import ExpertTransformer3D
    from model.vae import CausalVideoVAE

    spec = TinyModelSpec(style=style, objective=objective, seed=seed, **sizes)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        tokenizer = build_tiny_tokenizer()
        text_encoder = build_tiny_text_encoder(spec, len(tokenizer))
        vae = CausalVideoVAE(**tiny_vae_config(spec))
        transformer = ExpertTransformer3D(**tiny_transformer_config(spec))
    scheduler_dir = root / "scheduler"
    scheduler_dir.mkdir(exist_ok=True)
    (scheduler_dir / "scheduler_config.json").write_text(json.dumps(tiny_scheduler_config(spec), indent=2))
    pipe = TextToVideoPipeline(vae, transformer, TextEncoder(text_encoder, tokenizer, spec.max_text_seq_length),
                               load_scheduler(scheduler_dir))
    return pipe.save_pretrained(root)
