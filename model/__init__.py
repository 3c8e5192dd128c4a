"""model/: our CogVideoX implementation (3D causal VAE, expert transformer, schedulers, sampler, editing).

Imports nothing else of ours. Public names are imported lazily so that ``import model`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CausalVideoVAE": "model.vae",
    "ExpertTransformer3D": "model.transformer",
    "DDIMScheduler": "model.schedulers",
    "FlowMatchScheduler": "model.schedulers",
    "TextEncoder": "model.text_encoder",
    "TextToVideoPipeline": "model.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
