"""The rectified-flow velocity of any of our models, on the editing convention.

Convention: ``z_t = (1 - t) x0 + t eps`` (``t = 1`` is noise) and the velocity ``v = eps - x0``.

- Flow-matching models (``FlowMatchScheduler``) are trained on exactly this: the state is fed as is
  at timestep ``t * num_train_timesteps``.
- v-prediction models (``DDIMScheduler``, CogVideoX) see ``x_s = a x0 + s eps`` with ``a = sqrt(alpha_bar)``,
  ``s = sqrt(1 - alpha_bar)``. The same point on the straight path is ``z = x_s / (a + s)`` at
  ``t = s / (a + s)``, so we feed ``x_s = (a + s) z``, read ``x0_hat = a x_s - s v_pred`` and
  ``eps_hat = s x_s + a v_pred``, and return ``eps_hat - x0_hat``. The model's (continuous) timestep
  is interpolated from the table of ``t`` over its integer timesteps.

Both conversions are affine in the model output with weights summing to one, so classifier-free
guidance gives the same result before or after conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.attention import AttentionProbeRequest
from model.schedulers import DDIMScheduler, FlowMatchScheduler


def v_prediction_to_flow(v_pred: torch.Tensor, x_s: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """Flow velocity ``eps_hat - x0_hat`` from a v-prediction at ``x_s = alpha x0 + sigma eps`` (alpha^2 + sigma^2 = 1)."""
    x0 = alpha * x_s - sigma * v_pred
    eps = sigma * x_s + alpha * v_pred
    return eps - x0


@dataclass(frozen=True)
class ModelInput:
    """How to feed a flow state at time ``t`` to the model: ``model_state = scale * z`` at ``timestep``."""

    scale: float
    timestep: float
    alpha: float  # 1 - t for flow models; sqrt(alpha_bar) for v-prediction
    sigma: float  # t for flow models; sqrt(1 - alpha_bar) for v-prediction


class FlowTime:
    """Maps flow time ``t`` to the model's input scaling and timestep, and its output to ``eps - x0``."""

    def __init__(self, scheduler: DDIMScheduler | FlowMatchScheduler):
        self.scheduler = scheduler
        if isinstance(scheduler, FlowMatchScheduler):
            self.objective = "flow"
        elif isinstance(scheduler, DDIMScheduler):
            if scheduler.config.prediction_type != "v_prediction":
                raise ValueError(
                    f"scheduler: editing supports v_prediction or flow-matching models, got prediction_type="
                    f"{scheduler.config.prediction_type!r}"
                )
            self.objective = "v_prediction"
            ab = scheduler.alphas_cumprod.double()
            a, s = ab.sqrt(), (1 - ab).sqrt()
            self._t_table = (s / (a + s)).numpy()  # increasing in the timestep
            if not np.all(np.diff(self._t_table) > 0):
                raise ValueError("scheduler: alphas_cumprod must decrease strictly to map flow time to timesteps")
        else:
            raise TypeError(f"scheduler: expected DDIMScheduler or FlowMatchScheduler, got {type(scheduler).__name__}")

    def model_input(self, t: float) -> ModelInput:
        t = float(t)
        if not 0.0 < t <= 1.0:
            raise ValueError(f"flow time must be in (0, 1], got {t}")
        if self.objective == "flow":
            return ModelInput(1.0, t * self.scheduler.config.num_train_timesteps, 1.0 - t, t)
        # alpha / sigma = (1 - t) / t on the unit circle alpha^2 + sigma^2 = 1
        norm = float(np.hypot(1.0 - t, t))
        alpha, sigma = (1.0 - t) / norm, t / norm
        table = self._t_table
        timestep = float(np.interp(t, table, np.arange(len(table), dtype=np.float64)))
        return ModelInput(alpha + sigma, timestep, alpha, sigma)

    def to_velocity(self, output: torch.Tensor, model_state: torch.Tensor, inp: ModelInput) -> torch.Tensor:
        if self.objective == "flow":
            return output
        return v_prediction_to_flow(output, model_state, inp.alpha, inp.sigma)


class TransformerVelocity:
    """``velocity(z, t, context)``: the transformer's flow velocity in float32, optionally with one
    block's attention probabilities onto chosen text tokens (see :class:`AttentionProbeRequest`)."""

    def __init__(self, transformer: torch.nn.Module, scheduler: DDIMScheduler | FlowMatchScheduler):
        self.transformer = transformer
        self.time = FlowTime(scheduler)
        self.ofs = 2.0 if getattr(transformer, "ofs_embedding", None) is not None else None
        self.evaluations = 0  # forward passes, counted per sample

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @torch.no_grad()
    def __call__(
        self, z: torch.Tensor, t: float, context: torch.Tensor, probe: AttentionProbeRequest | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        inp = self.time.model_input(t)
        state = (z.float() * inp.scale).to(self.dtype)
        self.evaluations += z.shape[0]
        timestep = torch.full((z.shape[0],), inp.timestep, device=z.device, dtype=torch.float32)
        out = self.transformer(
            hidden_states=state, encoder_hidden_states=context.to(self.dtype), timestep=timestep, ofs=self.ofs,
            return_attention_probs_for=probe,
        )
        out, probs = out if probe is not None else (out, None)
        return self.time.to_velocity(out.float(), state.float(), inp), probs
