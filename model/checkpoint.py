"""Diffusers-format checkpoint folders: ``config.json`` plus safetensors weights (sharded or not).

Every model class in ``model/`` mixes in :class:`PretrainedMixin`: its ``__init__`` takes the
same keyword arguments as the diffusers class of the same role (so a checkpoint's
``config.json`` is its config), and its parameter names match the checkpoint's. Pickled
weights are only read with ``torch.load(weights_only=True)``; we write safetensors only.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "diffusion_pytorch_model"
CONFIG_NAME = "config.json"
M = TypeVar("M", bound="PretrainedMixin")


class CheckpointError(ValueError):
    """A checkpoint folder is missing a file, or its weights do not fit the model."""


def resolve_folder(path: str | os.PathLike, subfolder: str | None = None) -> Path:
    """A local folder, or a hub id resolved through the local Hugging Face cache (no download here)."""
    folder = Path(path)
    if not folder.exists():
        if str(path).count("/") == 1 and not str(path).startswith((".", "/")):
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(str(path)))
            except Exception as exc:  # offline, or not on the hub
                raise CheckpointError(f"{path}: not a local folder and not downloadable from the hub: {exc}") from None
        else:
            raise CheckpointError(f"{path}: checkpoint folder not found")
    if subfolder:
        folder = folder / subfolder
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: subfolder {subfolder!r} not found in the checkpoint")
    return folder


def read_config(folder: str | os.PathLike, name: str = CONFIG_NAME) -> dict[str, Any]:
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a diffusers-format folder has {name} beside its weights)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from None


def load_state_dict(folder: str | os.PathLike, weights_name: str = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """Read ``{weights_name}.safetensors``, or its sharded index, or (weights only) a ``.bin``."""
    folder = Path(folder)
    single = folder / f"{weights_name}.safetensors"
    index = folder / f"{weights_name}.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(load_file(str(folder / shard)))
        return state
    for pickled in (folder / f"{weights_name}.bin", folder / "pytorch_model.bin"):
        if pickled.is_file():
            return torch.load(pickled, map_location="cpu", weights_only=True)
    raise CheckpointError(f"{folder}: no {weights_name}.safetensors (or sharded index) found")


def save_state_dict(
    state: dict[str, torch.Tensor],
    folder: str | os.PathLike,
    weights_name: str = WEIGHTS_NAME,
    max_shard_bytes: int = 10 * 2**30,
) -> None:
    """Write safetensors, sharded with an index as diffusers does when larger than ``max_shard_bytes``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / f"{weights_name}.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    total = len(shards)
    for i, shard in enumerate(shards, start=1):
        name = f"{weights_name}-{i:05d}-of-{total:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}, "weight_map": weight_map}
    (folder / f"{weights_name}.safetensors.index.json").write_text(json.dumps(index, indent=2))


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for ``torch.nn.Module`` subclasses with a
    diffusers-style config (the ``__init__`` keyword arguments, stored as ``self.config``)."""

    config_class_name: str = ""  # the diffusers ``_class_name`` written to config.json

    @classmethod
    def init_kwargs_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Keep the config keys that ``__init__`` takes (diffusers adds ``_class_name`` etc.)."""
        params = inspect.signature(cls.__init__).parameters
        return {k: v for k, v in config.items() if k in params and k != "self"}

    @classmethod
    def from_config(cls: type[M], config: dict[str, Any]) -> M:
        return cls(**cls.init_kwargs_from_config(config))

    @classmethod
    def from_pretrained(
        cls: type[M],
        path: str | os.PathLike,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        strict: bool = True,
    ) -> M:
        folder = resolve_folder(path, subfolder)
        model = cls.from_config(read_config(folder))
        state = load_state_dict(folder)
        missing, unexpected = model.load_state_dict(state, strict=False)  # type: ignore[attr-defined]
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"{folder}: weights do not match {cls.__name__}: "
                f"missing {sorted(missing)[:8]}{'...' if len(missing) > 8 else ''}, "
                f"unexpected {sorted(unexpected)[:8]}{'...' if len(unexpected) > 8 else ''}"
            )
        if torch_dtype is not None:
            model = model.to(torch_dtype)  # type: ignore[attr-defined]
        return model.eval()  # type: ignore[attr-defined]

    def save_pretrained(self, folder: str | os.PathLike, max_shard_bytes: int = 10 * 2**30) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": self.config_class_name or type(self).__name__, **dict(self.config)}  # type: ignore[attr-defined]
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=list))
        save_state_dict(self.state_dict(), folder, max_shard_bytes=max_shard_bytes)  # type: ignore[attr-defined]
