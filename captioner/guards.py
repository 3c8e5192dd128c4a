"""Degenerate-caption detection: empty, cut off, looping, refusals, prompt echoes.

:func:`find_defect` returns a one-line reason (``"repetition: 'the camera pans' x5"``) or
``None`` for a usable caption. The caption stage retries a defective caption once with other
decoding settings and records ``caption_status="failed"`` with the reason if it is still bad.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable

_WORD = re.compile(r"[A-Za-z0-9']+")
_SENTENCE_END = re.compile(r"""[.!?…]["')\]]*\s*$""")

REFUSAL_PATTERNS = [
    r"\bI(?:'m| am)\s+(?:sorry|afraid|unable|not able)\b",
    r"\bI\s+(?:cannot|can't|can not|won't)\s+(?:help|assist|provide|describe|see|view|access|comply|process|identify)\b",
    r"\bas an (?:AI|artificial intelligence)(?: language)? model\b",
    r"\b(?:no|not an?) (?:image|video|picture|frame)s? (?:was|were|is|has been) (?:provided|attached|shared|uploaded)\b",
    r"\bI (?:don't|do not) (?:see|have access to) (?:an?|the|any) (?:image|video|picture)",
    r"\b(?:please|could you) (?:provide|upload|share) (?:an?|the) (?:image|video|picture)\b",
    r"\bunable to (?:view|see|process|analy[sz]e) (?:the|this|an?) (?:image|video|picture)\b",
]
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def check_empty(text: str, min_words: int = 3, **_) -> str | None:
    n = len(words(text))
    if n < min_words:
        return f"empty: {n} word(s)"
    return None


def check_cut_off(text: str, hit_token_limit: bool = False, **_) -> str | None:
    stripped = text.strip()
    if hit_token_limit and not _SENTENCE_END.search(stripped):
        return "cut_off: stopped at the token limit mid-sentence"
    if not _SENTENCE_END.search(stripped):
        tail = stripped[-30:]
        return f"cut_off: ends mid-sentence ({tail!r})"
    return None


def _ngrams(tokens: list[str], n: int) -> Iterable[tuple[str, ...]]:
    return zip(*(tokens[i:] for i in range(n)))


def check_repetition(text: str, max_ngram_repeats: int = 3, **_) -> str | None:
    tokens = words(text)
    # one word or a two-word phrase stuck in a loop: "the the the the", "is a is a is a"
    for n, limit in ((1, 4), (2, 3)):
        for i in range(len(tokens) - n * limit + 1):
            chunk = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == chunk for k in range(limit)):
                return f"repetition: {' '.join(chunk)!r} repeated {limit}+ times in a row"
    # a phrase of 3-6 words seen too often anywhere
    for n in range(6, 2, -1):
        counts = Counter(_ngrams(tokens, n))
        if counts:
            gram, count = counts.most_common(1)[0]
            if count > max_ngram_repeats:
                return f"repetition: {' '.join(gram)!r} x{count}"
    # the same sentence twice
    sentences = [" ".join(words(s)) for s in re.split(r"(?<=[.!?])\s+", text)]
    seen = Counter(s for s in sentences if len(s.split()) >= 4)
    if seen:
        sentence, count = seen.most_common(1)[0]
        if count > 1:
            return f"repetition: sentence {sentence[:60]!r} x{count}"
    return None


def check_refusal(text: str, **_) -> str | None:
    match = _REFUSAL.search(text)
    if match:
        return f"refusal: {match.group(0)!r}"
    return None


def check_prompt_echo(text: str, prompt: str | None = None, **_) -> str | None:
    """Most of the caption's 3-grams come from the prompt: it restates the instructions."""
    if not prompt:
        return None
    caption_grams = list(_ngrams(words(text), 3))
    if not caption_grams:
        return None
    prompt_grams = set(_ngrams(words(prompt), 3))
    share = sum(g in prompt_grams for g in caption_grams) / len(caption_grams)
    if share >= 0.5:
        return f"prompt_echo: {share:.0%} of its 3-word phrases are the prompt's"
    return None


CHECKS: dict[str, Callable[..., str | None]] = {
    "empty": check_empty,
    "cut_off": check_cut_off,
    "repetition": check_repetition,
    "refusal": check_refusal,
    "prompt_echo": check_prompt_echo,
}


def find_defect(
    text: str,
    prompt: str | None = None,
    checks: Iterable[str] = tuple(CHECKS),
    min_words: int = 3,
    max_ngram_repeats: int = 3,
    hit_token_limit: bool = False,
) -> str | None:
    """The first defect found by ``checks`` (in the order given), or ``None``."""
    for name in checks:
        reason = CHECKS[name](
            text, prompt=prompt, min_words=min_words, max_ngram_repeats=max_ngram_repeats, hit_token_limit=hit_token_limit
        )
        if reason:
            return reason
    return None
