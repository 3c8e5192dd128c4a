"""Validation videos: sample fixed prompts with the EMA weights and log them through the Lightning logger.

Files go to ``<log dir>/videos/step-NNNNNN/``: one mp4 per prompt and ``grid.png`` (one row per
prompt, up to 8 frames each). With a TensorBoard logger the videos are also added with ``add_video``
(when TensorBoard can encode them). Runs on global rank 0 at the end of each validation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch

logger = logging.getLogger(__name__)


def frame_grid(videos: np.ndarray, max_frames: int = 8) -> np.ndarray:
    """``(B, F, H, W, 3)`` in [0, 1] -> one uint8 image, a row of evenly spaced frames per video."""
    b, f, h, w, _ = videos.shape
    picks = np.linspace(0, f - 1, min(f, max_frames)).round().astype(int)
    rows = [np.concatenate([videos[i, j] for j in picks], axis=1) for i in range(b)]
    return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)


class ValidationVideos(L.Callback):
    """Sample ``prompts`` (seeded) after each validation and save/log them."""

    def __init__(self, prompts: list[str], num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 6.0, seed: int = 42, fps: float = 8.0,
                 use_ema: bool = True):
        if not prompts:
            raise ValueError("ValidationVideos: prompts must not be empty")
        self.prompts, self.num_frames, self.height, self.width = list(prompts), num_frames, height, width
        self.num_inference_steps, self.guidance_scale, self.seed, self.fps = num_inference_steps, guidance_scale, seed, fps
        self.use_ema = use_ema

    def sample(self, module) -> np.ndarray:
        from model.pipeline import TextToVideoPipeline

        pipe = TextToVideoPipeline(module.vae(), module.transformer, module.text_encoder(), module.objective.scheduler)
        was_training = module.transformer.training
        try:
            videos = pipe(self.prompts, num_frames=self.num_frames, height=self.height, width=self.width,
                          num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                          generator=torch.Generator().manual_seed(self.seed), output_type="np")
        finally:
            module.transformer.train(was_training)
        return videos

    def on_validation_epoch_end(self, trainer: L.Trainer, module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not module.pretrained:
            logger.info("validation videos skipped: no model.pretrained folder with a VAE and text encoder")
            return
        if module.ema is not None and self.use_ema:
            with module.ema.swapped(module.transformer):
                videos = self.sample(module)
        else:
            videos = self.sample(module)
        self.save(trainer, videos)

    def save(self, trainer: L.Trainer, videos: np.ndarray) -> Path:
        from PIL import Image

        from model.video_io import write_video

        root = Path(trainer.log_dir or trainer.default_root_dir) / "videos" / f"step-{trainer.global_step:06d}"
        root.mkdir(parents=True, exist_ok=True)
        for i, video in enumerate(videos):
            write_video(root / f"prompt-{i}.mp4", video, fps=self.fps)
        Image.fromarray(frame_grid(videos)).save(root / "grid.png")
        (root / "prompts.txt").write_text("\n".join(self.prompts) + "\n")
        for log in trainer.loggers:
            experiment = getattr(log, "experiment", None)
            if hasattr(experiment, "add_video"):
                try:
                    tensor = torch.from_numpy(videos).permute(0, 1, 4, 2, 3)  # (B, F, 3, H, W) in [0, 1]
                    experiment.add_video("validation/videos", tensor, trainer.global_step, fps=int(self.fps))
                    experiment.add_image("validation/grid", frame_grid(videos), trainer.global_step, dataformats="HWC")
                except Exception as exc:  # noqa: BLE001 - add_video needs moviepy; the files are saved regardless
                    logger.warning("TensorBoard add_video failed (%s); videos are in %s", exc, root)
        return root
