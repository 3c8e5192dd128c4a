"""FlowDirector editing on tiny random models, through the loading path and the ``vidforge edit`` CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from model.attention import AttentionProbeRequest
from model.editing.config import EditConfig, GuidanceConfig, MaskConfig, WindowConfig
from model.editing.editor import FlowDirectorEditor
from model.pipeline import TextToVideoPipeline
from model.testing import build_tiny_model
from model.video_io import read_video, write_video

SMALL = EditConfig(steps=5, n_max=4, dag=GuidanceConfig(num_candidates=2, num_outliers=1, weight=2.75))
SOURCE, TARGET = "a cat sits on a table", "a fox sits on a table"  # "fox" is spelled out: a multi-token word


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edit_models")
    return {
        "v_prediction": build_tiny_model(root / "vpred", style="5b", objective="v_prediction"),
        "flow": build_tiny_model(root / "flow", style="2b", objective="flow"),
    }


@pytest.fixture(scope="module")
def pipes(model_dirs) -> dict[str, TextToVideoPipeline]:
    return {name: TextToVideoPipeline.from_pretrained(path) for name, path in model_dirs.items()}


def _latents(seed: int = 0, frames: int = 3) -> torch.Tensor:
    return torch.randn(1, frames, 4, 4, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("objective", ["v_prediction", "flow"])
def test_identity_same_prompt_returns_the_source_bit_for_bit(pipes, objective):
    cfg = dataclasses.replace(SMALL, source_guidance=6.0, target_guidance=6.0, negative_prompt="blurry")
    editor = FlowDirectorEditor(pipes[objective], cfg)
    x_src = _latents()
    out = editor.edit_latents(x_src, SOURCE, SOURCE, ["cat"], ["cat"])
    assert out.edit_steps == 4 and out.mask is not None
    assert torch.equal(out.latents, x_src)
    # nothing to edit: n_max = 0 also returns the input
    out = FlowDirectorEditor(pipes[objective], dataclasses.replace(SMALL, n_max=0)).edit_latents(x_src, SOURCE, TARGET, ["cat"], ["fox"])
    assert out.edit_steps == 0 and torch.equal(out.latents, x_src)


def test_hard_mask_leaves_the_outside_unchanged(pipes):
    editor = FlowDirectorEditor(pipes["v_prediction"], SMALL)
    x_src = _latents(1)
    mask = torch.zeros(3, 4, 4)
    mask[:, 1:3, :2] = 1.0
    out = editor.edit_latents(x_src, SOURCE, TARGET, ["cat"], ["fox"], mask_override=mask)
    inside = mask.bool()[None, :, None].expand_as(x_src)
    assert torch.equal(out.latents[~inside], x_src[~inside])
    assert (out.latents[inside] - x_src[inside]).abs().max() > 1e-4


def test_seeded_edits_are_deterministic(pipes):
    editor = FlowDirectorEditor(pipes["flow"], SMALL)
    x_src = _latents(2)
    runs = [editor.edit_latents(x_src, SOURCE, TARGET, ["cat"], ["fox"], torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(runs[0].latents, runs[1].latents) and torch.equal(runs[0].mask, runs[1].mask)
    assert not torch.equal(runs[0].latents, runs[2].latents)
    assert not torch.equal(runs[0].latents, x_src)
    assert runs[0].mask.shape == (1, 3, 4, 4) and runs[0].mask.min() >= 0 and runs[0].mask.max() == 1


def test_chunked_attention_map_equals_the_full_matrix(pipes):
    """The probed block's probabilities on the word's columns = softmax of the full Q K^T, selected."""
    pipe = pipes["v_prediction"]
    tr = pipe.transformer
    block = 1
    captured = {}

    def grab(module, args, kwargs):
        captured["x"], captured["rotary"] = args[0], args[1]

    handle = tr.transformer_blocks[block].attn1.register_forward_pre_hook(grab, with_kwargs=True)
    keys = pipe.text_encoder.token_spans(TARGET, ["fox"])[0]
    assert len(keys) > 1  # multi-token word
    text = pipe.encode_prompt([TARGET, ""])
    z = _latents(3).expand(2, -1, -1, -1, -1)
    try:
        _, probs = tr(z, text, torch.tensor([500.0, 500.0]), return_attention_probs_for=AttentionProbeRequest(block, keys, chunk_size=7))
    finally:
        handle.remove()
    attn = tr.transformer_blocks[block].attn1
    x, rot = captured["x"], captured["rotary"]
    b, s, _ = x.shape
    q, k = (proj(x).view(b, s, attn.heads, attn.head_dim).transpose(1, 2) for proj in (attn.to_q, attn.to_k))
    q, k = attn.norm_q(q), attn.norm_k(k)
    q, k = attn._rotate(q, rot), attn._rotate(k, rot)
    full = torch.softmax(q @ k.transpose(-1, -2) / attn.head_dim**0.5, dim=-1)  # (B, H, S, S)
    text_len = text.shape[1]
    expected = full[:, :, text_len:][..., keys]
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)


def test_multi_token_words_and_absent_words(pipes):
    encoder = pipes["flow"].text_encoder
    cat, fox = encoder.token_spans(TARGET.replace("fox", "cat fox"), ["cat", "fox"])
    assert len(cat) == 1 and len(fox) == 3 and fox == list(range(fox[0], fox[0] + 3))
    editor = FlowDirectorEditor(pipes["flow"], SMALL)
    with pytest.raises(ValueError, match="'dog' does not occur"):
        editor.edit_latents(_latents(), SOURCE, TARGET, ["cat"], ["dog"])
    with pytest.raises(ValueError, match="at least one edited word"):
        editor.edit_latents(_latents(), SOURCE, TARGET, [], ["fox"])


def test_windows_and_temporal_patches(tmp_path):
    """A 1.5-style model (time patched by 2) on 3 latent frames, in 2-frame windows with stride 2."""
    folder = build_tiny_model(tmp_path / "pt2", style="5b", objective="v_prediction",
                              extra_transformer={"patch_size_t": 2})
    pipe = TextToVideoPipeline.from_pretrained(folder)
    cfg = dataclasses.replace(SMALL, window=WindowConfig(frames=2, stride=2), mask=MaskConfig(pool_kernel=3))
    editor = FlowDirectorEditor(pipe, cfg)
    x_src = _latents(4)
    out = editor.edit_latents(x_src, SOURCE, TARGET, ["cat"], ["fox"])
    assert out.latents.shape == x_src.shape and out.mask.shape == (1, 3, 4, 4)
    assert torch.isfinite(out.latents).all() and not torch.equal(out.latents, x_src)


# ------------------------------------------------------------------------------------------------
# The CLI, end to end
# ------------------------------------------------------------------------------------------------


def _write_clip(path: Path, frames: int = 9) -> Path:
    t = np.arange(frames)[:, None, None]
    y, x = np.mgrid[0:32, 0:32]
    channels = np.broadcast_arrays((x * 8 + t * 10) % 256, (y * 8) % 256, ((x + y) * 4 + t * 5) % 256)
    return write_video(path, np.stack(channels, -1).astype(np.uint8), fps=8)


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("edit_cfg") / "small.yaml"
    path.write_text("steps: 4\nn_max: 3\ndag: {num_candidates: 2, num_outliers: 1}\nmask: {pool_kernel: 3}\n")
    return path


@pytest.mark.parametrize("objective", ["v_prediction", "flow"])
def test_cli_edits_a_video_end_to_end(model_dirs, small_config, tmp_path, objective, capsys):
    from vidforge.cli import main

    clip = _write_clip(tmp_path / "in.mp4")
    out, mask = tmp_path / "out.mp4", tmp_path / "mask.mp4"
    rc = main(["edit", "--model", str(model_dirs[objective]), "--video", str(clip), "--source-prompt", SOURCE,
               "--target-prompt", TARGET, "--source-words", "cat", "--target-words", "fox", "--out", str(out),
               "--mask-out", str(mask), "--config", str(small_config), "--seed", "3", "--device", "cpu"])
    assert rc == 0
    frames, fps = read_video(out)
    assert frames.shape == (9, 32, 32, 3) and fps == 8
    mask_frames, _ = read_video(mask)
    assert mask_frames.shape == (9, 32, 32, 3)
    # 3 edit steps x 2 branches x (2 noise draws x [unconditional, conditional])
    assert "24 model evaluations" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case,message",
    [
        ("absent_word", "'dog' does not occur"),
        ("unreadable", "cannot read video"),
        ("frames", "10 frames of 32x32 cannot be edited"),
        ("config", "unknown key"),
    ],
)
def test_cli_rejects_bad_input(model_dirs, small_config, tmp_path, capsys, case, message):
    from vidforge.cli import main

    clip = _write_clip(tmp_path / "in.mp4", frames=10 if case == "frames" else 9)
    if case == "unreadable":
        clip.write_bytes(b"this is not an mp4 file" * 10)
    config = small_config
    if case == "config":
        config = tmp_path / "bad.yaml"
        config.write_text("steps: 4\nwindows: {frames: 3}\n")
    target_words = "dog" if case == "absent_word" else "fox"
    with pytest.raises(SystemExit) as exc:
        main(["edit", "--model", str(model_dirs["flow"]), "--video", str(clip), "--source-prompt", SOURCE,
              "--target-prompt", TARGET, "--source-words", "cat", "--target-words", target_words,
              "--out", str(tmp_path / "out.mp4"), "--config", str(config), "--device", "cpu"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
