"""Exponential moving average of the trainable weights (validation videos and export use it).

Decay warms up as diffusers' ``EMAModel`` does by default: ``min(decay, (1 + n) / (10 + n))`` after
``n`` updates. Shadows are float32 copies of the *trainable* parameters only (all of them for full
fine-tuning, the LoRA matrices for LoRA), so the EMA of a frozen weight is the weight itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EMAConfig:
    enabled: bool = True
    decay: float = 0.9999
    update_every: int = 1  # optimizer steps between updates

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"ema.decay: must be in [0, 1), got {self.decay}")
        if self.update_every < 1:
            raise ValueError(f"ema.update_every: must be >= 1, got {self.update_every}")


class EMA:
    """Float32 shadow copies of ``module``'s trainable parameters, keyed by parameter name."""

    def __init__(self, module: nn.Module, decay: float = 0.9999):
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in module.named_parameters() if p.requires_grad}

    def _pairs(self, module: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(module.named_parameters())
        for name, shadow in self.shadow.items():
            if name not in params:
                raise KeyError(f"EMA: parameter {name!r} is not in the module")
            yield params[name], shadow

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = self.current_decay()
        for param, shadow in self._pairs(module):
            if shadow.device != param.device:
                shadow.data = shadow.data.to(param.device)
            shadow.lerp_(param.detach().float(), 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for param, shadow in self._pairs(module):
            param.copy_(shadow.to(device=param.device, dtype=param.dtype))

    @contextmanager
    def swapped(self, module: nn.Module) -> Iterator[nn.Module]:
        """Run a block with the EMA weights in ``module``; the trained weights come back afterwards."""
        backup = {name: p.detach().clone() for name, p in module.named_parameters() if name in self.shadow}
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                params = dict(module.named_parameters())
                for name, value in backup.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the trainable parameters: {sorted(missing)[:8]}")
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        for name, value in state["shadow"].items():
            self.shadow[name] = value.float().to(self.shadow[name].device)
