"""Training objectives: CogVideoX v-prediction on the zero-SNR DDPM schedule, or rectified flow.

v-prediction follows the reference fine-tuning (diffusers ``examples/cogvideo/train_cogvideox_lora.py``):
``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps``; the model predicts ``v``; the loss compares the implied
``x0_hat = sqrt(a_t) x_t - sqrt(1 - a_t) v_hat`` with ``x0``, weighted by ``1 / (1 - a_t)``:
``mean(1/(1 - a_t) * (x0_hat - x0)^2)`` per sample, then the mean over samples. (Algebraically this
equals the plain ``mean((v_hat - v)^2)``.) ``a_t`` is the scheduler's ``alphas_cumprod`` with its SNR
shift (3.0 for CogVideoX-2B, 1.0 for 5B) and zero-terminal-SNR rescale.

Flow matching: ``x_t = (1 - s) x0 + s eps`` with ``s = shift(u)``, the model predicts ``eps - x0``,
loss ``mean((v_hat - (eps - x0))^2)``; the transformer is conditioned on ``1000 s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from model.schedulers import DDIMScheduler, FlowMatchScheduler, shift_sigmas


@dataclass(frozen=True)
class ObjectiveConfig:
    """``kind="auto"`` follows the model folder's scheduler (CogVideoX: v-prediction DDIM).

    ``snr_shift_scale``: override the DDIM schedule's SNR shift (None keeps the checkpoint's).
    ``timestep_sampling``: ``explicit_uniform`` (stratified over the global batch) or ``uniform`` (i.i.d.).
    ``text_dropout``: share of samples trained with the empty prompt (classifier-free guidance).
    ``latent``: ``sample`` the VAE posterior (reference) or take its ``mean``.
    """

    kind: Literal["auto", "v_prediction", "flow"] = "auto"
    snr_shift_scale: float | None = None
    flow_shift: float | None = None
    timestep_sampling: Literal["explicit_uniform", "uniform"] = "explicit_uniform"
    text_dropout: float = 0.1
    latent: Literal["sample", "mean"] = "sample"

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "v_prediction", "flow"):
            raise ValueError(f"objective.kind: expected auto|v_prediction|flow, got {self.kind!r}")
        if self.timestep_sampling not in ("explicit_uniform", "uniform"):
            raise ValueError(f"objective.timestep_sampling: expected explicit_uniform|uniform, got {self.timestep_sampling!r}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"objective.text_dropout: must be in [0, 1), got {self.text_dropout}")
        if self.latent not in ("sample", "mean"):
            raise ValueError(f"objective.latent: expected sample|mean, got {self.latent!r}")


class Objective:
    """Noising, model conditioning and loss for one scheduler. Works per sample (shapes may differ)."""

    def __init__(self, scheduler: DDIMScheduler | FlowMatchScheduler):
        self.scheduler = scheduler
        self.kind = "flow" if isinstance(scheduler, FlowMatchScheduler) else "v_prediction"
        if self.kind == "v_prediction" and scheduler.config.prediction_type != "v_prediction":
            raise ValueError(f"scheduler prediction_type is {scheduler.config.prediction_type!r}; CogVideoX training uses v_prediction")
        self.num_timesteps = int(scheduler.config.num_train_timesteps)

    @classmethod
    def build(cls, scheduler: DDIMScheduler | FlowMatchScheduler, config: ObjectiveConfig) -> "Objective":
        """Apply ``config`` to the model folder's scheduler (switching objective or shift if asked)."""
        kind = config.kind
        if kind == "flow" and not isinstance(scheduler, FlowMatchScheduler):
            scheduler = FlowMatchScheduler()
        elif kind == "v_prediction" and not isinstance(scheduler, DDIMScheduler):
            scheduler = DDIMScheduler()
        if isinstance(scheduler, DDIMScheduler) and config.snr_shift_scale is not None:
            scheduler = DDIMScheduler(scheduler.config, snr_shift_scale=config.snr_shift_scale)
        if isinstance(scheduler, FlowMatchScheduler) and config.flow_shift is not None:
            scheduler = FlowMatchScheduler(scheduler.config, shift=config.flow_shift)
        return cls(scheduler)

    def timesteps(self, unit: torch.Tensor) -> torch.Tensor:
        """Map ``u`` in [0, 1) to the transformer's timestep: DDPM integers, or ``1000 * shift(u)`` for flow
        (``u`` is mirrored so flow sigma lands in (0, 1])."""
        if self.kind == "v_prediction":
            return (unit * self.num_timesteps).floor().long().clamp_(0, self.num_timesteps - 1)
        sigma = shift_sigmas(1.0 - unit.double(), self.scheduler.config.shift)
        return (sigma * self.num_timesteps).float()

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.to(t.device)[t.long()].float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One sample: ``x0``, ``noise`` of any shape, ``t`` a 0-d tensor."""
        if self.kind == "v_prediction":
            a = self._alpha(t)
            return a.sqrt() * x0 + (1 - a).sqrt() * noise
        s = (t.float() / self.num_timesteps).to(x0.device)
        return (1 - s) * x0 + s * noise

    def loss(self, pred: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Scalar loss of one sample (float32)."""
        pred, x0, x_t, noise = pred.float(), x0.float(), x_t.float(), noise.float()
        if self.kind == "v_prediction":
            a = self._alpha(t).to(x0.device)
            x0_hat = a.sqrt() * x_t - (1 - a).sqrt() * pred
            return ((x0_hat - x0) ** 2 / (1 - a)).mean()
        return ((pred - (noise - x0)) ** 2).mean()
