"""The dense caption's length budget: at most N English words and never over T5's 226 tokens.

Captions are trimmed to whole sentences. T5 tokens are counted with a real T5 tokenizer when one
is configured; otherwise with :func:`estimate_t5_tokens`, a conservative estimate (it
over-counts English: one token per 4 letters of each word, rounded up, plus one per digit and
per punctuation mark, plus the end-of-sequence token; T5's SentencePiece averages about 1.3
tokens per English word, the estimate about 1.6-1.8).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Callable

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_OPENER = re.compile(
    r"^\s*(?:in\s+)?(?:this|the)\s+(?:video|clip|footage|scene|sequence)\s+"
    r"(?:shows|depicts|features|captures|presents|showcases|displays|begins with|opens with|is of)\s*:?\s*",
    re.IGNORECASE,
)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text.strip()) if s.strip()]


def estimate_t5_tokens(text: str) -> int:
    """Conservative (over-)estimate of the T5 token count, end-of-sequence token included."""
    count = 1
    for piece in text.split():
        letters = sum(ch.isalpha() for ch in piece)
        count += math.ceil(letters / 4) if letters else 0
        count += sum(ch.isdigit() for ch in piece)
        count += sum(not ch.isalnum() for ch in piece)
    return count


def t5_counter(tokenizer_name: str | None) -> tuple[Callable[[str], int], str]:
    """A T5 token counter and its description for provenance."""
    if tokenizer_name is None:
        return estimate_t5_tokens, "estimate (1 per 4 letters per word + digits + punctuation + EOS)"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    return (lambda text: len(tokenizer(text).input_ids)), f"tokenizer {tokenizer_name}"


def strip_opener(text: str) -> str:
    """Drop a "The video shows ..." opener and capitalise what is left."""
    stripped = _OPENER.sub("", text, count=1)
    if stripped is text or not stripped:
        return text.strip()
    return (stripped[0].upper() + stripped[1:]).strip()


def clean_caption(text: str) -> str:
    """One line, single spaces, no control characters, wrapping quotes or markdown emphasis."""
    text = "".join(
        " " if ch.isspace() or unicodedata.category(ch)[0] == "Z" else "" if unicodedata.category(ch)[0] == "C" or ch == "\ufffd" else ch
        for ch in text
    )
    text = " ".join(text.replace("**", "").split())
    text = re.sub(r"^(?:caption|description)\s*:\s*", "", text, flags=re.IGNORECASE)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def enforce_length(text: str, max_words: int, max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, bool]:
    """Keep whole sentences while within ``max_words`` and ``max_tokens``; return (text, trimmed).

    When even the first sentence is over budget it is cut at a word boundary and closed with a full stop.
    """
    def fits(candidate: str) -> bool:
        return len(candidate.split()) <= max_words and count_tokens(candidate) <= max_tokens

    if fits(text):
        return text, False
    kept: list[str] = []
    for sentence in split_sentences(text):
        candidate = " ".join(kept + [sentence])
        if not fits(candidate):
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept), True
    cut = text.split()[:max_words]
    while cut and not fits(" ".join(cut).rstrip(",;:") + "."):
        cut.pop()
    return (" ".join(cut).rstrip(",;:") + ".") if cut else "", True
