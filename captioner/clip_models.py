"""open_clip image/text embeddings, the LAION aesthetic head, near-duplicate index, caption–frame score."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from captioner.config import ClipModelConfig
from captioner.hf import pick_device
from captioner.length import split_sentences


class ClipEmbedder:
    """An open_clip model loaded once: L2-normalised image and text embeddings as float32 arrays."""

    def __init__(self, cfg: ClipModelConfig) -> None:
        import open_clip

        self.cfg = cfg
        self.device = pick_device(cfg.device)
        schema = cfg.model.startswith(("local-dir:", "hf-hub:"))
        if cfg.pretrained and not schema and Path(cfg.pretrained).suffix and not Path(cfg.pretrained).is_file():
            raise FileNotFoundError(f"clip.model.pretrained: weights file not found: {cfg.pretrained}")
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            cfg.model, pretrained=None if schema else cfg.pretrained
        )
        self.model = self.model.to(self.device).eval()
        self.tokenizer = open_clip.get_tokenizer(cfg.model)
        self.context_length = int(getattr(self.tokenizer, "context_length", 77))
        self.name = f"{cfg.model}:{cfg.pretrained}" if cfg.pretrained and not schema else cfg.model

    @torch.inference_mode()
    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from PIL import Image

        out = []
        for i in range(0, len(images), self.cfg.batch_size):
            batch = torch.stack([self.preprocess(Image.fromarray(img)) for img in images[i : i + self.cfg.batch_size]])
            emb = self.model.encode_image(batch.to(self.device))
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.cfg.batch_size):
            tokens = self.tokenizer(list(texts[i : i + self.cfg.batch_size]))
            emb = self.model.encode_text(tokens.to(self.device))
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    def count_tokens(self, text: str) -> int:
        """BPE tokens of ``text`` without the start/end tokens."""
        inner = getattr(self.tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers one
        if inner is not None:
            return len(inner(text, add_special_tokens=False).input_ids)
        return len(self.tokenizer.encode(text))

    def text_windows(self, caption: str) -> list[tuple[str, int]]:
        """The caption as sentences, each split into word windows that fit the text tower; (text, tokens)."""
        limit = self.context_length - 2  # start and end tokens
        windows: list[tuple[str, int]] = []
        for sentence in split_sentences(caption):
            n = self.count_tokens(sentence)
            if n <= limit:
                windows.append((sentence, n))
                continue
            current: list[str] = []
            for word in sentence.split():
                candidate = " ".join(current + [word])
                if current and self.count_tokens(candidate) > limit:
                    windows.append((" ".join(current), self.count_tokens(" ".join(current))))
                    current = [word]
                else:
                    current.append(word)
            if current:
                text = " ".join(current)
                if self.count_tokens(text) > limit:
                    raise ValueError(f"a single word is longer than the CLIP text window ({limit} tokens): {text[:40]!r}")
                windows.append((text, self.count_tokens(text)))
        return windows


class AestheticHead(nn.Module):
    """LAION improved-aesthetic-predictor MLP (same layer layout and state-dict keys)."""

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)

    @classmethod
    def load(cls, path: str | Path) -> "AestheticHead":
        """From a ``.safetensors`` or ``torch.save`` state dict (``weights_only`` loading)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"aesthetic.weights: file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or "layers.0.weight" not in state:
            raise ValueError(f"{path}: not an aesthetic-predictor state dict (expected keys layers.0.weight ... layers.7.bias)")
        head = cls(int(state["layers.0.weight"].shape[1]))
        missing, unexpected = head.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: state dict mismatch, missing {missing}, unexpected {unexpected}")
        return head.eval()

    @torch.inference_mode()
    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores for L2-normalised image embeddings of shape (N, input_size)."""
        if embeddings.shape[-1] != self.input_size:
            raise ValueError(
                f"aesthetic head expects {self.input_size}-d CLIP embeddings (ViT-L/14), got {embeddings.shape[-1]}-d"
            )
        return self(torch.from_numpy(embeddings).float()).numpy()


class DuplicateIndex:
    """Embeddings of kept clips for cosine look-ups: a ring buffer of at most ``capacity`` rows
    (the oldest forgotten first), grown by doubling."""

    def __init__(self, threshold: float, capacity: int) -> None:
        self.threshold = threshold
        self.capacity = capacity
        self._matrix: np.ndarray | None = None
        self._ids: list[str] = []
        self._size = 0
        self._next = 0

    def __len__(self) -> int:
        return self._size

    def match(self, embedding: np.ndarray) -> tuple[str, float] | None:
        """The most similar indexed clip when it is at or above the threshold."""
        if not self._size:
            return None
        sims = self._matrix[: self._size] @ embedding
        best = int(np.argmax(sims))
        return (self._ids[best], float(sims[best])) if sims[best] >= self.threshold else None

    def add(self, clip_id: str, embedding: np.ndarray) -> None:
        if self._matrix is None:
            self._matrix = np.zeros((min(self.capacity, 1024), embedding.shape[-1]), np.float32)
        if self._next == len(self._matrix) and len(self._matrix) < self.capacity:
            grown = np.zeros((min(self.capacity, 2 * len(self._matrix)), self._matrix.shape[1]), np.float32)
            grown[: len(self._matrix)] = self._matrix
            self._matrix = grown
        slot = self._next
        self._matrix[slot] = embedding
        if slot < len(self._ids):
            self._ids[slot] = clip_id
        else:
            self._ids.append(clip_id)
        self._size = min(self._size + 1, self.capacity)
        self._next = (slot + 1) % self.capacity


def mean_embedding(embeddings: np.ndarray) -> np.ndarray:
    v = embeddings.mean(axis=0)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def caption_frame_score(
    window_emb: np.ndarray, window_tokens: Sequence[int], frame_emb: np.ndarray, sentence_reduce: str, caption_reduce: str
) -> float:
    """100 x cosine: per text window reduce over keyframes (max/mean), then over windows (token-weighted mean/min)."""
    sims = window_emb @ frame_emb.T  # (windows, frames)
    per_window = sims.max(axis=1) if sentence_reduce == "max" else sims.mean(axis=1)
    if caption_reduce == "min":
        return float(100.0 * per_window.min())
    weights = np.asarray(window_tokens, dtype=np.float64)
    return float(100.0 * (per_window * weights).sum() / weights.sum())
