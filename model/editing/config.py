"""Typed settings of a FlowDirector edit, loaded from ``configs/edit/*.yaml``.

Every field has the reference default (FlowDirector, arXiv 2506.05046, on top of FlowEdit): 50 steps,
edit window ``[n_min, n_max) = [0, 40)``, source/target CFG 3.5/10.5, sigma shift 12, seed 42.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class MaskConfig:
    """Attention-guided masking of the velocity difference.

    ``block_index``: transformer block whose joint attention is probed (``None``: a late-middle block,
    ``floor(0.6 * num_layers)``). ``pool_kernel``: per-frame average pooling before binarising at the
    mean. ``softness``: lambda of the edge softening ``M + (1 - M) exp(-lambda d)``.
    ``chunk_size``: queries x keys per tile when computing the softmax normaliser.
    """

    enabled: bool = True
    block_index: int | None = None
    pool_kernel: int = 11
    softness: float = 0.25
    chunk_size: int = 1024

    def validate(self, where: str) -> None:
        if self.pool_kernel < 1 or self.pool_kernel % 2 == 0:
            raise ValueError(f"{where}: mask.pool_kernel must be a positive odd number, got {self.pool_kernel}")
        if self.softness <= 0:
            raise ValueError(f"{where}: mask.softness must be > 0, got {self.softness}")
        if self.chunk_size < 1:
            raise ValueError(f"{where}: mask.chunk_size must be >= 1, got {self.chunk_size}")
        if self.block_index is not None and self.block_index < 0:
            raise ValueError(f"{where}: mask.block_index must be >= 0 or null, got {self.block_index}")


@dataclass
class GuidanceConfig:
    """Differential averaging guidance: ``num_candidates`` noise draws per step, the ``num_outliers``
    least similar (cosine) to their mean form the baseline, ``V = V_hq + weight (V_hq - V_bl)``.
    ``num_candidates = 1`` or ``weight = 0`` is plain FlowEdit averaging."""

    num_candidates: int = 4
    num_outliers: int = 2
    weight: float = 2.75

    def validate(self, where: str) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"{where}: dag.num_candidates must be >= 1, got {self.num_candidates}")
        if self.num_candidates > 1 and not 1 <= self.num_outliers < self.num_candidates:
            raise ValueError(
                f"{where}: dag.num_outliers must be in [1, num_candidates) = [1, {self.num_candidates}), got {self.num_outliers}"
            )


@dataclass
class WindowConfig:
    """Latent-frame windows for long videos; velocities are averaged where windows overlap."""

    frames: int = 11
    stride: int = 8

    def validate(self, where: str) -> None:
        if self.frames < 1 or not 1 <= self.stride <= self.frames:
            raise ValueError(f"{where}: window needs frames >= 1 and 1 <= stride <= frames, got {self.frames}/{self.stride}")


@dataclass
class EditConfig:
    """One edit. ``steps``: T of the shifted sigma schedule; the flow edit runs the steps whose
    remaining count ``T - i`` lies in ``(n_min, n_max]``, then (for ``n_min > 0``) ordinary
    target sampling finishes the last ``n_min`` steps."""

    steps: int = 50
    n_max: int = 40
    n_min: int = 0
    source_guidance: float = 3.5
    target_guidance: float = 10.5
    shift: float = 12.0
    seed: int = 42
    negative_prompt: str = ""
    mask: MaskConfig = field(default_factory=MaskConfig)
    dag: GuidanceConfig = field(default_factory=GuidanceConfig)
    window: WindowConfig = field(default_factory=WindowConfig)

    def validate(self, where: str = "edit config") -> EditConfig:
        if self.steps < 1:
            raise ValueError(f"{where}: steps must be >= 1, got {self.steps}")
        if not 0 <= self.n_min <= self.n_max <= self.steps:
            raise ValueError(f"{where}: need 0 <= n_min <= n_max <= steps, got n_min={self.n_min}, n_max={self.n_max}, steps={self.steps}")
        if self.shift <= 0:
            raise ValueError(f"{where}: shift must be > 0, got {self.shift}")
        self.mask.validate(where)
        self.dag.validate(where)
        self.window.validate(where)
        return self


_SECTIONS = {"mask": MaskConfig, "dag": GuidanceConfig, "window": WindowConfig}


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    kwargs = {}
    for key, value in raw.items():
        if key in _SECTIONS and cls is EditConfig:
            kwargs[key] = _build(_SECTIONS[key], value or {}, f"{where}.{key}")
        else:
            default = getattr(cls(), key)
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ValueError(f"{where}.{key}: expected true/false, got {value!r}")
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
                if isinstance(default, int) and not isinstance(value, int):
                    raise ValueError(f"{where}.{key}: expected an integer, got {value!r}")
            kwargs[key] = value
    return cls(**kwargs)


def edit_config_from_dict(raw: dict[str, Any], where: str = "edit config") -> EditConfig:
    return _build(EditConfig, raw, where).validate(where)


def load_edit_config(path: str | os.PathLike | None) -> EditConfig:
    """The defaults, overridden by the YAML file at ``path`` (if any)."""
    if path is None:
        return EditConfig().validate()
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: edit config not found")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{file}: not valid YAML: {exc}") from None
    return edit_config_from_dict(raw, str(file))
