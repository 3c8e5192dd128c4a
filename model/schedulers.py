"""Noise schedulers: CogVideoX's v-prediction zero-terminal-SNR DDIM, and rectified-flow Euler.

Both read and write diffusers' ``scheduler_config.json`` (same keys), so a public CogVideoX
checkpoint's scheduler folder loads as is. Both share one small interface that the sampler and the
trainer use:

- ``timesteps`` (after ``set_timesteps(n)``): the values the transformer is conditioned on, noisiest first;
- ``step(model_output, timestep, sample) -> StepOutput(prev_sample, pred_original_sample)``;
- ``add_noise(x0, noise, timesteps)`` (the forward process at training timesteps);
- ``get_velocity(x0, noise, timesteps)`` (the training target for the model's output).

DDIM timesteps are integers in ``[0, num_train_timesteps)``; flow timesteps are ``sigma * num_train_timesteps``
with ``sigma`` in ``[0, 1]`` (``sigma = 1`` is pure noise).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
import torch

SCHEDULER_CONFIG_NAME = "scheduler_config.json"
logger = logging.getLogger(__name__)
C = TypeVar("C")


class StepOutput(NamedTuple):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _read_scheduler_config(path: str | os.PathLike, subfolder: str | None) -> tuple[Path, dict[str, Any]]:
    folder = Path(path)
    if subfolder:
        folder = folder / subfolder
    file = folder / SCHEDULER_CONFIG_NAME if folder.is_dir() or not folder.suffix else folder
    if not file.is_file():
        raise FileNotFoundError(f"{file}: scheduler config not found (expected a diffusers {SCHEDULER_CONFIG_NAME})")
    try:
        return file, json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON: {exc}") from None


def _config_from_dict(config_cls: type[C], raw: dict[str, Any], source: str) -> C:
    """Keep the keys the dataclass knows (diffusers adds ``_class_name``, ``_diffusers_version``...)."""
    names = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k in raw if k not in names and not k.startswith("_"))
    if unknown:
        logger.debug("%s: ignoring scheduler config keys %s", source, unknown)
    return config_cls(**{k: v for k, v in raw.items() if k in names})


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample coefficients -> shape (B, 1, 1, ...) to multiply ``like``."""
    values = values.flatten().to(device=like.device, dtype=like.dtype)
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1))) if values.ndim else values


def _as_timestep_tensor(timesteps: torch.Tensor | int | float | list, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(timesteps, device=device)
    return t.reshape(1) if t.ndim == 0 else t


# ----------------------------------------------------------------------------------------------
# DDIM (CogVideoXDDIMScheduler semantics)
# ----------------------------------------------------------------------------------------------


@dataclass
class DDIMSchedulerConfig:
    """The keys of diffusers' ``CogVideoXDDIMScheduler`` config (CogVideoX-2B/5B ship these)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: Literal["linear", "scaled_linear"] = "scaled_linear"
    trained_betas: list[float] | None = None
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True
    steps_offset: int = 0
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "v_prediction"
    sample_max_value: float = 1.0
    timestep_spacing: Literal["linspace", "leading", "trailing"] = "trailing"
    rescale_betas_zero_snr: bool = True
    snr_shift_scale: float = 3.0  # 3.0 for CogVideoX-2B, 1.0 for 5B

    def __post_init__(self) -> None:
        if self.beta_schedule not in ("linear", "scaled_linear") and self.trained_betas is None:
            raise ValueError(f"beta_schedule: expected 'linear' or 'scaled_linear', got {self.beta_schedule!r}")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type: expected epsilon|v_prediction|sample, got {self.prediction_type!r}")
        if self.timestep_spacing not in ("linspace", "leading", "trailing"):
            raise ValueError(f"timestep_spacing: expected linspace|leading|trailing, got {self.timestep_spacing!r}")
        if self.snr_shift_scale <= 0:
            raise ValueError(f"snr_shift_scale: must be > 0, got {self.snr_shift_scale}")


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last timestep has zero SNR (Lin et al. 2023, Algorithm 1)."""
    sqrt_ab = alphas_cumprod.sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    return sqrt_ab**2


class DDIMScheduler:
    """Deterministic DDIM (eta = 0) over CogVideoX's noise schedule.

    alpha_bar: scaled-linear betas -> cumulative product -> SNR shift ``a / (s + (1 - s) a)`` (SNR divided by
    ``snr_shift_scale``) -> optional zero-terminal-SNR rescale. With ``prediction_type="v_prediction"`` the model
    predicts ``v = sqrt(a) * eps - sqrt(1 - a) * x0``.
    """

    config_class_name = "CogVideoXDDIMScheduler"
    order = 1

    def __init__(self, config: DDIMSchedulerConfig | None = None, **overrides: Any) -> None:
        config = config or DDIMSchedulerConfig()
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        c = self.config
        if c.trained_betas is not None:
            betas = torch.tensor(c.trained_betas, dtype=torch.float64)
        elif c.beta_schedule == "linear":
            betas = torch.linspace(c.beta_start, c.beta_end, c.num_train_timesteps, dtype=torch.float64)
        else:  # scaled_linear
            betas = torch.linspace(c.beta_start**0.5, c.beta_end**0.5, c.num_train_timesteps, dtype=torch.float64) ** 2
        self.betas = betas
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        s = c.snr_shift_scale
        alphas_cumprod = alphas_cumprod / (s + (1 - s) * alphas_cumprod)
        if c.rescale_betas_zero_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        self.alphas_cumprod = alphas_cumprod  # float64, (num_train_timesteps,)
        self.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64) if c.set_alpha_to_one else alphas_cumprod[0]
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(c.num_train_timesteps - 1, -1, -1, dtype=torch.int64)

    # -- loading / saving -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, subfolder: str | None = None, **overrides: Any) -> DDIMScheduler:
        file, raw = _read_scheduler_config(path, subfolder)
        return cls(_config_from_dict(DDIMSchedulerConfig, raw, str(file)), **overrides)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": self.config_class_name, **dataclasses.asdict(self.config)}
        (folder / SCHEDULER_CONFIG_NAME).write_text(json.dumps(config, indent=2))

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # -- sampling -------------------------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        n, total = num_inference_steps, self.config.num_train_timesteps
        if not 1 <= n <= total:
            raise ValueError(f"num_inference_steps: expected 1..{total}, got {n}")
        self.num_inference_steps = n
        spacing = self.config.timestep_spacing
        if spacing == "linspace":
            steps = np.linspace(0, total - 1, n).round()[::-1].astype(np.int64)
        elif spacing == "leading":
            steps = (np.arange(0, n) * (total // n)).round()[::-1].astype(np.int64) + self.config.steps_offset
        else:  # trailing: start exactly at the last (zero-SNR) timestep
            steps = np.round(np.arange(total, 0, -total / n)).astype(np.int64) - 1
        self.timesteps = torch.from_numpy(steps.copy()).to(device)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One deterministic DDIM update x_t -> x_{t_prev}; also returns the predicted x0.

        ``generator`` is accepted for interface parity with stochastic samplers; eta = 0 draws no noise.
        """
        if self.num_inference_steps is None:
            raise RuntimeError("DDIMScheduler.step: call set_timesteps(num_inference_steps) first")
        t = int(timestep)
        prev_t = t - self.config.num_train_timesteps // self.num_inference_steps  # as CogVideoXDDIMScheduler does
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        pred_x0 = self.predict_original_sample(model_output, a_t, sample)
        if self.config.clip_sample:
            pred_x0 = pred_x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        # x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps, with eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)
        coef_sample = ((1 - a_prev) / (1 - a_t)) ** 0.5
        coef_x0 = a_prev**0.5 - a_t**0.5 * coef_sample
        prev = coef_sample.to(sample.dtype) * sample + coef_x0.to(sample.dtype) * pred_x0.to(sample.dtype)
        return StepOutput(prev, pred_x0)

    def predict_original_sample(self, model_output: torch.Tensor, alpha_cumprod: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        a = alpha_cumprod.to(sample.dtype) if torch.is_tensor(alpha_cumprod) else alpha_cumprod
        if self.config.prediction_type == "v_prediction":
            return a**0.5 * sample - (1 - a) ** 0.5 * model_output
        if self.config.prediction_type == "epsilon":
            return (sample - (1 - a) ** 0.5 * model_output) / a**0.5
        return model_output

    # -- training -------------------------------------------------------------------------------
    def _coefficients(self, timesteps: torch.Tensor | int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = _as_timestep_tensor(timesteps, self.alphas_cumprod.device).long()
        a = self.alphas_cumprod[t]
        return _broadcast(a.sqrt(), like), _broadcast((1 - a).sqrt(), like)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, per sample (``timesteps`` is (B,) or a scalar)."""
        sqrt_a, sqrt_1ma = self._coefficients(timesteps, original_samples)
        return sqrt_a * original_samples + sqrt_1ma * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """v = sqrt(a_t) eps - sqrt(1 - a_t) x0 (the v-prediction target)."""
        sqrt_a, sqrt_1ma = self._coefficients(timesteps, sample)
        return sqrt_a * noise - sqrt_1ma * sample

    def training_target(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """What the model should output at ``timesteps`` for this ``prediction_type``."""
        if self.config.prediction_type == "v_prediction":
            return self.get_velocity(sample, noise, timesteps)
        return noise if self.config.prediction_type == "epsilon" else sample


# ----------------------------------------------------------------------------------------------
# Rectified flow (FlowMatchEulerDiscreteScheduler semantics)
# ----------------------------------------------------------------------------------------------


@dataclass
class FlowMatchSchedulerConfig:
    """The keys of diffusers' ``FlowMatchEulerDiscreteScheduler`` config that this scheduler implements."""

    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: float | None = 0.5
    max_shift: float | None = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    invert_sigmas: bool = False
    shift_terminal: float | None = None
    use_karras_sigmas: bool = False
    use_exponential_sigmas: bool = False
    use_beta_sigmas: bool = False
    time_shift_type: str = "exponential"
    stochastic_sampling: bool = False

    def __post_init__(self) -> None:
        unsupported = [
            name
            for name in ("use_dynamic_shifting", "invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas",
                         "use_beta_sigmas", "stochastic_sampling", "shift_terminal")
            if getattr(self, name)
        ]
        if unsupported:
            raise ValueError(f"FlowMatchScheduler supports a fixed shift only; unsupported options set: {unsupported}")
        if self.shift <= 0:
            raise ValueError(f"shift: must be > 0, got {self.shift}")


def shift_sigmas(sigmas: torch.Tensor | np.ndarray | float, shift: float) -> Any:
    """sigma' = s sigma / (1 + (s - 1) sigma): spends more steps at high noise for s > 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


class FlowMatchScheduler:
    """Rectified-flow Euler sampler: z_t = (1 - sigma) x0 + sigma eps; the model predicts v = eps - x0."""

    config_class_name = "FlowMatchEulerDiscreteScheduler"
    order = 1

    def __init__(self, config: FlowMatchSchedulerConfig | None = None, **overrides: Any) -> None:
        config = config or FlowMatchSchedulerConfig()
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        n = self.config.num_train_timesteps
        train_sigmas = shift_sigmas(torch.linspace(1, n, n, dtype=torch.float32).flip(0) / n, self.config.shift)
        self.sigmas = train_sigmas
        self.timesteps = train_sigmas * n
        self.sigma_max = float(train_sigmas[0])
        self.sigma_min = float(train_sigmas[-1])
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, subfolder: str | None = None, **overrides: Any) -> FlowMatchScheduler:
        file, raw = _read_scheduler_config(path, subfolder)
        return cls(_config_from_dict(FlowMatchSchedulerConfig, raw, str(file)), **overrides)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": self.config_class_name, **dataclasses.asdict(self.config)}
        (folder / SCHEDULER_CONFIG_NAME).write_text(json.dumps(config, indent=2))

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """``n`` sigmas from sigma_max down to sigma_min (shifted, as diffusers does), plus a final 0."""
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: expected >= 1, got {num_inference_steps}")
        n_train = self.config.num_train_timesteps
        self.num_inference_steps = num_inference_steps
        sigmas = np.linspace(self.sigma_max * n_train, self.sigma_min * n_train, num_inference_steps) / n_train
        sigmas = torch.from_numpy(shift_sigmas(sigmas, self.config.shift)).to(dtype=torch.float32, device=device)
        self.timesteps = sigmas * n_train
        self.sigmas = torch.cat([sigmas, torch.zeros(1, device=sigmas.device)])

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        t = torch.as_tensor(timestep, dtype=torch.float32, device=self.timesteps.device).reshape(())
        index = int((self.timesteps.float() - t).abs().argmin())
        if not torch.isclose(self.timesteps[index].float(), t, rtol=1e-5, atol=1e-3):
            raise ValueError(f"timestep {float(t)} is not one of this schedule's timesteps (call set_timesteps first)")
        return index

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """Euler step z_{sigma_next} = z_sigma + (sigma_next - sigma) v; ``pred_original_sample`` = z - sigma v."""
        if self.num_inference_steps is None:
            raise RuntimeError("FlowMatchScheduler.step: call set_timesteps(num_inference_steps) first")
        i = self.index_for_timestep(timestep)
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        z = sample.float()
        v = model_output.float()
        prev = (z + (sigma_next - sigma) * v).to(model_output.dtype)
        return StepOutput(prev, (z - sigma * v).to(model_output.dtype))

    # -- training -------------------------------------------------------------------------------
    def sigmas_for(self, timesteps: torch.Tensor | float) -> torch.Tensor:
        return _as_timestep_tensor(timesteps, torch.device("cpu")).float() / self.config.num_train_timesteps

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        """z_t = (1 - sigma) x0 + sigma eps with sigma = timestep / num_train_timesteps (t = 1000 is noise)."""
        sigma = _broadcast(self.sigmas_for(timesteps), original_samples)
        return (1.0 - sigma) * original_samples + sigma * noise

    def scale_noise(self, sample: torch.Tensor, timestep: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
        """diffusers' name and argument order for :meth:`add_noise`."""
        return self.add_noise(sample, noise, timestep)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float | None = None) -> torch.Tensor:
        """v = eps - x0 (constant along the straight path, so ``timesteps`` is not needed)."""
        return noise - sample

    def training_target(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | float | None = None) -> torch.Tensor:
        return self.get_velocity(sample, noise, timesteps)


Scheduler = DDIMScheduler | FlowMatchScheduler

# diffusers class names in scheduler_config.json -> our class. CogVideoXDPMScheduler configs carry the same
# noise schedule keys as CogVideoXDDIMScheduler; we sample them with DDIM.
SCHEDULER_CLASSES: dict[str, type] = {
    "CogVideoXDDIMScheduler": DDIMScheduler,
    "CogVideoXDPMScheduler": DDIMScheduler,
    "DDIMScheduler": DDIMScheduler,
    "FlowMatchEulerDiscreteScheduler": FlowMatchScheduler,
}


def load_scheduler(path: str | os.PathLike, subfolder: str | None = None) -> DDIMScheduler | FlowMatchScheduler:
    """The scheduler named by ``_class_name`` in ``scheduler_config.json``."""
    file, raw = _read_scheduler_config(path, subfolder)
    name = raw.get("_class_name", "CogVideoXDDIMScheduler")
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"{file}: _class_name {name!r} is not supported; expected one of {sorted(SCHEDULER_CLASSES)}")
    if name == "CogVideoXDPMScheduler":
        logger.info("%s: CogVideoXDPMScheduler config, sampling with DDIM on the same noise schedule", file)
    cls = SCHEDULER_CLASSES[name]
    config_cls = DDIMSchedulerConfig if cls is DDIMScheduler else FlowMatchSchedulerConfig
    return cls(_config_from_dict(config_cls, raw, str(file)))
