"""The LightningModule: a trainable expert transformer between a frozen VAE and T5.

Per batch (pixel shards): VAE-encode each clip (posterior sample or mean, times ``scaling_factor``),
T5-encode the captions (10% replaced by the empty prompt), draw one timestep per sample by explicit
uniform sampling over the global batch, noise, predict through :func:`train.framepack.predict` (Frame
Pack rows, buckets or padding), and average the per-sample losses. Latent shards (``vidforge
encode``) skip the VAE and T5. The VAE and T5 are loaded on first use and are not part of the
module's state (checkpoints hold the transformer, EMA and counters only).

Randomness (noise, posterior samples, text dropout, timesteps) comes from generators seeded by
``(seed, micro step, rank)`` (timesteps: ``(seed, micro step)`` on every rank), so a resumed run draws
exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from model.schedulers import load_scheduler
from model.transformer import ExpertTransformer3D
from train.components import resolve_pretrained
from train.ema import EMA, EMAConfig
from train.framepack import predict
from train.objective import Objective, ObjectiveConfig
from train.timesteps import gather_counts, iid_timesteps, step_generator, stratified_unit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay; defaults as the reference CogVideoX fine-tuning
    (gradient clipping 0.1 is the trainer's ``gradient_clip_val``)."""

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 100
    schedule: Literal["cosine", "constant"] = "cosine"
    total_steps: int | None = None  # default: trainer.max_steps
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim: need lr > 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1; got {self}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule: expected cosine|constant, got {self.schedule!r}")


def lr_factor(step: int, warmup: int, total: int | None, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or not total or total <= warmup:
        return 1.0
    progress = min((step - warmup) / (total - warmup), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (peft) on the attention projections; the reference script's defaults."""

    rank: int = 128
    alpha: int = 128
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


def add_lora(transformer: torch.nn.Module, config: LoraConfig) -> torch.nn.Module:
    """Inject peft LoRA layers; only the adapters stay trainable."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_config = PeftLoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=list(config.target_modules), init_lora_weights=True)
    transformer = inject_adapter_in_model(peft_config, transformer)
    for name, param in transformer.named_parameters():
        param.requires_grad_("lora_" in name)
    return transformer


def merge_lora(transformer: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA adapters into their base layers and put the plain layers back (for export)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(transformer.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = transformer.get_submodule(parent_name) if parent_name else transformer
            setattr(parent, child, module.get_base_layer())
    return transformer


def build_transformer(pretrained: str | None, transformer_config: dict | str | None) -> ExpertTransformer3D:
    """Weights from ``pretrained/transformer`` or, with ``transformer_config`` (a dict or a config.json
    path), a randomly initialised model of that config (from scratch)."""
    pretrained = resolve_pretrained(pretrained)
    if transformer_config is None:
        if pretrained is None:
            raise ValueError("model: give model.pretrained (a diffusers-format folder) or model.transformer_config (from scratch)")
        return ExpertTransformer3D.from_pretrained(pretrained, subfolder="transformer").train()
    if isinstance(transformer_config, (str, Path)):
        path = Path(transformer_config)
        if not path.is_file():
            raise FileNotFoundError(f"model.transformer_config: {path}: no such config.json")
        transformer_config = json.loads(path.read_text())
    return ExpertTransformer3D.from_config(dict(transformer_config)).train()


def _as(cls, value):
    """A config dataclass from itself or from a mapping (hyper-parameters read back from a checkpoint)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**{k: tuple(v) if k == "betas" else v for k, v in value.items()})
    raise TypeError(f"expected {cls.__name__} or a mapping, got {type(value).__name__}")


class VideoDiffusionModule(L.LightningModule):
    """Trains ``ExpertTransformer3D``; see the module docstring.

    Args:
        pretrained: diffusers-format pipeline folder or hub id (vae/, text_encoder/, tokenizer/,
            scheduler/, and transformer/ unless ``transformer_config`` is given).
        transformer_config: train from scratch with this transformer config (dict or config.json path).
        init_from: a Lightning checkpoint whose transformer (and EMA) weights start this run (progressive
            stages); optimizer and counters start fresh.
        objective, optim, ema, lora: see their dataclasses. ``lora=None`` trains every weight.
        gradient_checkpointing: recompute each block in the backward pass (memory for compute).
        packed_attention: ``segments`` (SDPA per packed sample) or ``mask`` (one masked SDPA per row).
        seed: base of every generator of the run.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        transformer_config: dict | str | None = None,
        init_from: str | None = None,
        objective: ObjectiveConfig = ObjectiveConfig(),
        optim: OptimConfig = OptimConfig(),
        ema: EMAConfig = EMAConfig(),
        lora: LoraConfig | None = None,
        gradient_checkpointing: bool = False,
        packed_attention: Literal["segments", "mask"] = "segments",
        seed: int = 0,
    ):
        super().__init__()
        objective, optim, ema = _as(ObjectiveConfig, objective), _as(OptimConfig, optim), _as(EMAConfig, ema)
        lora = _as(LoraConfig, lora) if lora is not None else None
        self.save_hyperparameters()
        self.pretrained, self.seed = resolve_pretrained(pretrained), seed
        self.objective_config, self.optim_config, self.ema_config, self.lora_config = objective, optim, ema, lora
        self.packed_attention = packed_attention
        self.transformer = build_transformer(pretrained, transformer_config)
        self.transformer_config = dict(self.transformer.config)
        if gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        if lora is not None:
            add_lora(self.transformer, lora)
        folder = self.pretrained
        scheduler = load_scheduler(folder, subfolder="scheduler") if folder and Path(folder, "scheduler").is_dir() else None
        if scheduler is None:
            from model.schedulers import DDIMScheduler

            scheduler = DDIMScheduler()
        self.objective = Objective.build(scheduler, objective)
        self.ema = EMA(self.transformer, ema.decay) if ema.enabled else None
        self.micro_step = 0  # training batches seen (drives the generators)
        self._frozen: dict[str, Any] = {}  # vae, text encoder, null prompt embedding: not submodules
        if init_from:
            self.load_weights_from(init_from)

    # -- weights from another run -----------------------------------------------------------------------
    def load_weights_from(self, checkpoint: str) -> None:
        """Transformer (and EMA) weights of a Lightning checkpoint of this module (progressive training)."""
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state = {k[len("transformer."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("transformer.")}
        missing, unexpected = self.transformer.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"model.init_from {checkpoint}: weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(ckpt["ema"])
        elif self.ema is not None:
            self.ema = EMA(self.transformer, self.ema_config.decay)

    # -- frozen components ---------------------------------------------------------------------------------
    def vae(self):
        if "vae" not in self._frozen:
            from model.vae import CausalVideoVAE

            if not self.pretrained:
                raise ValueError("pixel shards need a VAE: set model.pretrained (or train on `vidforge encode` latent shards)")
            self._frozen["vae"] = CausalVideoVAE.from_pretrained(self.pretrained, subfolder="vae").requires_grad_(False)
        vae = self._frozen["vae"]
        return vae.to(self.device) if vae.device != self.device else vae

    def text_encoder(self):
        if "text" not in self._frozen:
            from model.text_encoder import TextEncoder

            if not self.pretrained:
                raise ValueError("captions need a text encoder: set model.pretrained (or train on latent shards)")
            self._frozen["text"] = TextEncoder.from_pretrained(self.pretrained, max_length=int(self.transformer_config["max_text_seq_length"]))
        encoder = self._frozen["text"]
        return encoder.to(self.device) if encoder.device != self.device else encoder

    def null_prompt(self, like: torch.Tensor) -> torch.Tensor:
        """The empty prompt's T5 embedding (text dropout); zeros when no text encoder is available."""
        if "null" not in self._frozen:
            try:
                self._frozen["null"] = self.text_encoder().encode([""])[0].float().cpu()
            except (ValueError, FileNotFoundError, OSError) as exc:
                logger.warning("text dropout uses a zero embedding (no text encoder: %s)", exc)
                self._frozen["null"] = torch.zeros(like.shape)
        return self._frozen["null"].to(device=like.device, dtype=like.dtype)

    # -- batch -> latents and text -------------------------------------------------------------------------
    def _latents(self, batch: dict, gen: torch.Generator) -> list[torch.Tensor]:
        """Per sample ``(F, C, h, w)`` scaled latents."""
        n = len(batch["keys"])
        out: list[torch.Tensor | None] = [None] * n
        sample = self.objective_config.latent == "sample"
        for i in range(n):
            mean = batch["latents_mean"][i]
            if mean is not None:
                std = batch["latents_std"][i]
                noise = torch.randn(mean.shape, generator=gen, device=gen.device).to(mean.device)
                out[i] = mean + std * noise if (sample and std is not None) else mean
        pending = [i for i in range(n) if out[i] is None]
        if pending:
            vae = self.vae()
            scale = float(vae.config["scaling_factor"])
            groups: dict[tuple, list[int]] = {}
            for i in pending:
                groups.setdefault(tuple(batch["videos"][i].shape), []).append(i)
            with torch.no_grad():
                for idx in groups.values():
                    video = torch.stack([batch["videos"][i] for i in idx]).to(vae.dtype)
                    posterior = vae.encode(video)
                    z = posterior.sample(gen) if sample else posterior.mean
                    z = (z * scale).permute(0, 2, 1, 3, 4)  # (B, F, C, h, w)
                    for j, i in enumerate(idx):
                        out[i] = z[j]
        return [x.float() for x in out]  # type: ignore[union-attr]

    def _text(self, batch: dict, gen: torch.Generator, dropout: float) -> list[torch.Tensor]:
        n = len(batch["keys"])
        embeds = list(batch.get("prompt_embeds") or [None] * n)
        if any(e is None for e in embeds):
            if "input_ids" not in batch:
                raise ValueError("batch has neither prompt embeddings nor input_ids (is data.tokenizer set?)")
            with torch.no_grad():
                encoded = self.text_encoder().model(batch["input_ids"].to(self.device))[0]
            embeds = [e if e is not None else encoded[i] for i, e in enumerate(embeds)]
        drop = torch.rand(n, generator=gen, device=gen.device) < dropout
        return [self.null_prompt(e) if bool(d) else e.float() for e, d in zip(embeds, drop)]

    # -- the loss ----------------------------------------------------------------------------------------------
    def _generator(self, step: int, rank: int | None, salt: int) -> torch.Generator:
        g = step_generator(self.seed, step, rank, salt)
        if self.device.type == "cpu":
            return g
        dev = torch.Generator(device=self.device)
        dev.manual_seed(int(g.initial_seed()))
        return dev

    def compute_loss(self, batch: dict, step: int, text_dropout: float) -> tuple[torch.Tensor, dict[str, float]]:
        rank = self.global_rank
        gen = self._generator(step, rank, salt=1)
        x0 = self._latents(batch, gen)
        text = self._text(batch, gen, text_dropout)
        n = len(x0)
        if self.objective_config.timestep_sampling == "explicit_uniform":
            counts, my_rank = gather_counts(n)
            unit = stratified_unit(counts, my_rank, step_generator(self.seed, step, None, salt=3))
        else:
            unit = iid_timesteps(n, 1 << 30, step_generator(self.seed, step, rank, salt=3)).double() / (1 << 30)
        t = self.objective.timesteps(unit).to(self.device)
        noise = [torch.randn(x.shape, generator=gen, device=gen.device).to(x.device) for x in x0]
        x_t = [self.objective.add_noise(x, e, ti) for x, e, ti in zip(x0, noise, t)]
        dtype = next(self.transformer.parameters()).dtype
        preds, stats = predict(self.transformer, [x.to(dtype) for x in x_t], [e.to(dtype) for e in text], t,
                               batch.get("mode", "pack"), batch.get("max_tokens"), packed_attention=self.packed_attention)
        losses = torch.stack([self.objective.loss(p, x, xt, e, ti) for p, x, xt, e, ti in zip(preds, x0, x_t, noise, t)])
        return losses.mean(), {"useful_token_share": stats.efficiency, "samples": float(n), "tokens": float(stats.useful)}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, info = self.compute_loss(batch, self.micro_step, self.objective_config.text_dropout)
        self.micro_step += 1
        n = len(batch["keys"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/useful_token_share", info["useful_token_share"], batch_size=n)
        self.log("train/samples", info["samples"], batch_size=n, reduce_fx="sum")
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "skipped_total"):
            self.log("data/skipped", float(datamodule.skipped_total()), batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # fixed generators: the same noise and timesteps at every validation
        loss, _ = self.compute_loss(batch, -1 - batch_idx, text_dropout=0.0)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["keys"]), sync_dist=True)
        return loss

    # -- optimisation, EMA, checkpoints -------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_config
        params = [p for p in self.transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, eps=cfg.eps)
        total = cfg.total_steps or (self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, cfg.warmup_steps, total, cfg.schedule, cfg.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # here, not in on_train_batch_end: checkpoint callbacks run before the module's batch-end hook
        self._optimizer_steps = getattr(self, "_optimizer_steps", 0) + 1
        if self.ema is not None and self._optimizer_steps % self.ema_config.update_every == 0:
            self.ema.update(self.transformer)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["vidforge"] = {
            "micro_step": self.micro_step,
            "optimizer_steps": getattr(self, "_optimizer_steps", 0),
            "transformer_config": self.transformer_config,
            "torch_rng": torch.get_rng_state(),
            "lora": asdict(self.lora_config) if self.lora_config is not None else None,
        }
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("vidforge", {})
        self.micro_step = int(state.get("micro_step", 0))
        self._optimizer_steps = int(state.get("optimizer_steps", 0))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
