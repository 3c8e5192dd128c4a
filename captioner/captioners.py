"""The three model wrappers: frame captioner (VLM), summariser (LLM), one-stage video captioner (VLM).

Each loads its model once and generates for many inputs at a time (left-padded batches of
``batch_size``). Outputs are ``(text, hit_token_limit)`` pairs; judging them is the caller's job.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from captioner.config import DecodingConfig, HFModelConfig
from captioner.hf import generate, load_llm, load_vlm
from captioner.keyframes import FrameSample
from captioner.prompts import Prompts

Output = tuple[str, bool]


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class FrameCaptioner:
    """One dense caption per image with an image-text-to-text model."""

    def __init__(self, cfg: HFModelConfig, prompt: str) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.model, self.processor, self.provenance = load_vlm(cfg)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        self.text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def caption(self, images: Sequence[np.ndarray], decoding: DecodingConfig | None = None) -> list[Output]:
        decoding = decoding or self.cfg.decoding
        results: list[Output] = []
        for chunk in _chunks(list(images), self.cfg.batch_size):
            inputs = self.processor(
                text=[self.text] * len(chunk),
                images=[[Image.fromarray(img)] for img in chunk],
                return_tensors="pt",
                padding=True,
            )
            results += generate(self.model, self.processor.tokenizer, dict(inputs), self.cfg.max_new_tokens, decoding)
        return results


class Summariser:
    """Timestamped frame captions (plus an optional short caption) into one dense video caption."""

    def __init__(self, cfg: HFModelConfig, prompts: Prompts) -> None:
        self.cfg = cfg
        self.prompts = prompts
        self.model, self.tokenizer, self.provenance = load_llm(cfg)

    def summarise(
        self,
        items: Sequence[tuple[Sequence[tuple[float, str]], str | None]],
        decoding: DecodingConfig | None = None,
    ) -> list[Output]:
        """``items``: (frame captions as (seconds from clip start, caption), short caption or None)."""
        decoding = decoding or self.cfg.decoding
        texts = [
            self.tokenizer.apply_chat_template(
                self.prompts.summary_messages(frames, short), add_generation_prompt=True, tokenize=False
            )
            for frames, short in items
        ]
        results: list[Output] = []
        for chunk in _chunks(texts, self.cfg.batch_size):
            inputs = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            results += generate(self.model, self.tokenizer, dict(inputs), self.cfg.max_new_tokens, decoding)
        return results


def _same_size(frames: list[np.ndarray]) -> np.ndarray:
    import cv2

    h, w = frames[0].shape[:2]
    return np.stack([f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


class VideoCaptioner:
    """One-stage mode: a video-capable VLM writes the dense caption from the keyframes.

    The keyframes go in as a video (with their timestamps) when the processor has a video
    processor, otherwise as several images in one message.
    """

    def __init__(self, cfg: HFModelConfig, prompt: str) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.model, self.processor, self.provenance = load_vlm(cfg)
        self.as_video = getattr(self.processor, "video_processor", None) is not None
        self.provenance["input"] = "video" if self.as_video else "images"

    def _text(self, num_frames: int) -> str:
        media = [{"type": "video"}] if self.as_video else [{"type": "image"}] * num_frames
        messages = [{"role": "user", "content": media + [{"type": "text", "text": self.prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def caption(
        self, clips: Sequence[tuple[list[FrameSample], float, float]], decoding: DecodingConfig | None = None
    ) -> list[Output]:
        """``clips``: (frames in time order, clip start_s, clip end_s)."""
        decoding = decoding or self.cfg.decoding
        results: list[Output] = []
        for chunk in _chunks(list(clips), self.cfg.batch_size):
            texts = [self._text(len(frames)) for frames, _, _ in chunk]
            if self.as_video:
                fps = 10.0
                metadata = [
                    {
                        "total_num_frames": max(1, round((end - start) * fps)),
                        "fps": fps,
                        "duration": end - start,
                        "frames_indices": [round((f.time_s - start) * fps) for f in frames],
                    }
                    for frames, start, end in chunk
                ]
                inputs = self.processor(
                    text=texts,
                    videos=[_same_size([f.image for f in frames]) for frames, _, _ in chunk],
                    video_metadata=metadata,
                    return_tensors="pt",
                    padding=True,
                )
            else:
                inputs = self.processor(
                    text=texts,
                    images=[[Image.fromarray(f.image) for f in frames] for frames, _, _ in chunk],
                    return_tensors="pt",
                    padding=True,
                )
            results += generate(self.model, self.processor.tokenizer, dict(inputs), self.cfg.max_new_tokens, decoding)
        return results
