"""Where the frozen components come from: a diffusers-format folder, a hub id, or ``tiny:STYLE``.

``tiny:2b`` / ``tiny:5b`` / ``tiny:2b-flow`` name the tiny random models of
:func:`model.testing.build_tiny_model` (seed 0). They are built once into ``$VIDFORGE_CACHE``
(default ``~/.cache/vidforge``) and reused, so ``configs/train/tiny.yaml`` runs anywhere, offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_PREFIX = "tiny:"


def cache_dir() -> Path:
    return Path(os.environ.get("VIDFORGE_CACHE", Path.home() / ".cache" / "vidforge"))


def resolve_pretrained(name: str | None) -> str | None:
    """A folder path for ``name`` (building the tiny model on first use); other values pass through."""
    if name is None or not str(name).startswith(TINY_PREFIX):
        return name
    spec = str(name)[len(TINY_PREFIX):]
    style, _, objective = spec.partition("-")
    objective = {"": "v_prediction", "flow": "flow"}.get(objective)
    if style not in ("2b", "5b") or objective is None:
        raise ValueError(f"{name!r}: expected tiny:2b, tiny:5b, tiny:2b-flow or tiny:5b-flow")
    target = cache_dir() / f"tiny-{spec}"
    if (target / "model_index.json").is_file():
        return str(target)
    from model.testing import build_tiny_model

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{spec}-", dir=target.parent))
    try:
        build_tiny_model(tmp, style=style, objective=objective, seed=0)
        try:
            os.replace(tmp, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
