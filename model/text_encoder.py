"""The T5 text encoder of CogVideoX: tokenizer + ``T5EncoderModel`` -> (B, 226, D) prompt embeddings.

Matches diffusers' ``CogVideoXPipeline._get_t5_prompt_embeds``: pad to ``max_length`` (226), truncate,
add the ``</s>`` token, and run T5 *without* an attention mask (the padding positions are encoded too,
and the transformer attends to all 226 positions). ``token_spans`` maps words of a prompt to their
token positions in that sequence (for attention-based editing).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5EncoderModel

logger = logging.getLogger(__name__)

MAX_SEQUENCE_LENGTH = 226


class TextEncoder(torch.nn.Module):
    """A frozen T5 encoder with its tokenizer. ``encode`` runs under ``torch.no_grad``."""

    def __init__(self, model: T5EncoderModel, tokenizer: PreTrainedTokenizerBase, max_length: int = MAX_SEQUENCE_LENGTH):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        torch_dtype: torch.dtype | None = None,
        max_length: int = MAX_SEQUENCE_LENGTH,
        text_encoder_subfolder: str = "text_encoder",
        tokenizer_subfolder: str = "tokenizer",
    ) -> TextEncoder:
        """Load ``text_encoder/`` and ``tokenizer/`` from a diffusers-format pipeline folder."""
        root = Path(path)
        for sub in (text_encoder_subfolder, tokenizer_subfolder):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"{root / sub}: missing (a CogVideoX pipeline folder has text_encoder/ and tokenizer/)")
        tokenizer = AutoTokenizer.from_pretrained(root / tokenizer_subfolder)
        model = T5EncoderModel.from_pretrained(root / text_encoder_subfolder, dtype=torch_dtype or torch.float32)
        return cls(model, tokenizer, max_length)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        root = Path(path)
        self.model.save_pretrained(root / "text_encoder")
        self.tokenizer.save_pretrained(root / "tokenizer")

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.d_model)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """(B, max_length) token ids, padded and truncated as CogVideoX does; warns about truncated text."""
        if isinstance(prompts, str):
            raise TypeError("TextEncoder: pass a list of prompts, not a single string")
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        for prompt, row in zip(prompts, ids):
            full = self.tokenizer(prompt, add_special_tokens=True).input_ids
            if len(full) > self.max_length:
                dropped = self.tokenizer.decode(full[self.max_length - 1 : -1])
                logger.warning("prompt truncated to %d tokens; dropped: %r", self.max_length, dropped)
        return ids

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(B, max_length, D) last hidden states of T5 (no attention mask, as in CogVideoX)."""
        ids = self.tokenize(prompts).to(self.model.device)
        return self.model(ids)[0]

    def token_spans(self, prompt: str, words: list[str]) -> list[list[int]]:
        """Token positions (in the encoded sequence) of each word or phrase's first whole-word occurrence.

        Matching is case-insensitive on word boundaries; a word split into several tokens gives several
        positions. Raises ``ValueError`` naming the word when it is not in the prompt or was truncated away.
        """
        enc = self.tokenizer(
            prompt, max_length=self.max_length, truncation=True, add_special_tokens=True, return_offsets_mapping=True
        )
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        special = set(self.tokenizer.all_special_ids)
        spans: list[list[int]] = []
        for word in words:
            if not word.strip():
                raise ValueError("token_spans: empty word")
            match = re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", prompt, flags=re.IGNORECASE)
            if match is None:
                raise ValueError(f"token_spans: word {word!r} does not occur in the prompt {prompt!r}")
            start, end = match.span()
            positions = [
                i for i, ((s, e), tid) in enumerate(zip(offsets, ids)) if tid not in special and s < end and e > start
            ]
            if not positions:
                raise ValueError(f"token_spans: word {word!r} lies beyond the first {self.max_length} tokens of the prompt")
            spans.append(positions)
        return spans
