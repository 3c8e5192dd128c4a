"""Versioned prompt templates (``configs/caption/prompts.yaml``) and the messages built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline.config import ConfigError, read_yaml

from captioner.config import resolve_path

_REQUIRED = ("version", "frame", "summary_system", "summary_user", "short_caption_line", "video")


@dataclass(frozen=True)
class Prompts:
    version: str
    frame: str
    summary_system: str
    summary_user: str
    short_caption_line: str
    video: str
    path: str

    @classmethod
    def load(cls, path: str | Path) -> "Prompts":
        resolved = resolve_path(str(path))
        data = read_yaml(resolved)
        missing = [k for k in _REQUIRED if not isinstance(data.get(k), str) or not str(data.get(k)).strip()]
        if missing:
            raise ConfigError(f"{resolved}: missing or empty prompt keys {missing} (each a string)")
        unknown = sorted(set(data) - set(_REQUIRED))
        if unknown:
            raise ConfigError(f"{resolved}: unknown keys {unknown} (known: {list(_REQUIRED)})")
        return cls(path=str(resolved), **{k: str(data[k]).strip() for k in _REQUIRED})

    def summary_messages(self, frame_captions: Sequence[tuple[float, str]], short_caption: str | None = None) -> list[dict]:
        """Chat messages for the summariser: frame captions keyed by the second they show (from clip start)."""
        lines = "\n".join(f"Second {int(round(t))}: {c}" for t, c in frame_captions)
        short = self.short_caption_line.format(short_caption=short_caption.strip()) + "\n" if short_caption else ""
        user = self.summary_user.format(short_caption_line=short, frame_captions=lines)
        return [{"role": "system", "content": self.summary_system}, {"role": "user", "content": user}]
