"""Loading transformers models (hub id or local folder) with provenance, and batched generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from captioner.config import DecodingConfig, HFModelConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_source(cfg: HFModelConfig) -> tuple[str, dict[str, Any]]:
    """Where to load ``cfg.model`` from, and its provenance (folder path, or hub id + commit hash).

    A hub id is looked up in the local cache first (offline); its snapshot folder name is the commit.
    """
    path = Path(cfg.model).expanduser()
    if path.is_dir():
        return str(path), {"model": cfg.model, "source": "folder", "path": str(path.resolve())}
    if path.suffix or str(cfg.model).startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder not found: {cfg.model}")
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(cfg.model, revision=cfg.revision, local_files_only=True)
        return snapshot, {"model": cfg.model, "source": "hub-cache", "revision": Path(snapshot).name}
    except Exception as exc:  # not in the cache
        if cfg.local_files_only:
            raise FileNotFoundError(f"{cfg.model} is not in the local Hugging Face cache (local_files_only)") from exc
        return cfg.model, {"model": cfg.model, "source": "hub", "revision": cfg.revision}


def _load_kwargs(cfg: HFModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": _DTYPES[cfg.dtype]}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    return kwargs


def _finish(model, provenance: dict, cfg: HFModelConfig):
    if provenance.get("source") == "hub":
        provenance["revision"] = getattr(model.config, "_commit_hash", None) or cfg.revision
    provenance["class"] = type(model).__name__
    provenance["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
    return model.to(pick_device(cfg.device)).eval()


def load_vlm(cfg: HFModelConfig):
    """An image-text-to-text model and its processor (tokenizer left-padded), with provenance."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source, provenance = resolve_source(cfg)
    processor = AutoProcessor.from_pretrained(source)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"{cfg.model}: its processor has no tokenizer; expected an image-text-to-text processor")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForImageTextToText.from_pretrained(source, **_load_kwargs(cfg))
    return _finish(model, provenance, cfg), processor, provenance


def load_llm(cfg: HFModelConfig):
    """A causal LM and its (left-padding) tokenizer, with provenance."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, provenance = resolve_source(cfg)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ValueError(f"{cfg.model}: the tokenizer has no chat template; expected an instruction-tuned model")
    model = AutoModelForCausalLM.from_pretrained(source, **_load_kwargs(cfg))
    return _finish(model, provenance, cfg), tokenizer, provenance


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.inference_mode()
def generate(model, tokenizer, inputs: dict, max_new_tokens: int, decoding: DecodingConfig) -> list[tuple[str, bool]]:
    """Generate for a (left-padded) batch; returns (text, hit_token_limit) per row."""
    device = model.device
    inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    if decoding.seed is not None:
        torch.manual_seed(decoding.seed)
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **decoding.generate_kwargs(),
    )
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    eos = _eos_ids(model, tokenizer)
    results = []
    for row in new_tokens.tolist():
        ended = any(t in eos for t in row)
        text = tokenizer.decode(row, skip_special_tokens=True)
        results.append((text.strip(), not ended and len(row) >= max_new_tokens))
    return results
