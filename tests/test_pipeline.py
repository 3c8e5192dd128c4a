"""Text encoder, text-to-video pipeline (vs diffusers' CogVideoXPipeline), save/load, and `vidforge sample`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from model.pipeline import TextToVideoPipeline
from model.schedulers import DDIMScheduler, FlowMatchScheduler
from model.testing import build_tiny_model
from model.text_encoder import TextEncoder
from model.video_io import read_video, write_video

PROMPT = "A red cat walks on the astronaut-beach at sunset"
SIZE = {"num_frames": 9, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        (style, objective): build_tiny_model(root / f"{style}-{objective}", style=style, objective=objective)
        for style, objective in [("2b", "v_prediction"), ("5b", "v_prediction"), ("2b", "flow")]
    }


@pytest.fixture(scope="module")
def tiny_2b(tiny_models):
    return tiny_models[("2b", "v_prediction")]


def test_tiny_model_folder_layout(tiny_models):
    for (style, objective), folder in tiny_models.items():
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == "CogVideoXPipeline"
        assert index["transformer"] == ["diffusers", "CogVideoXTransformer3DModel"]
        assert index["vae"] == ["diffusers", "AutoencoderKLCogVideoX"]
        assert index["scheduler"][1] == ("FlowMatchEulerDiscreteScheduler" if objective == "flow" else "CogVideoXDDIMScheduler")
        for sub in ("scheduler", "text_encoder", "tokenizer", "transformer", "vae"):
            assert (folder / sub).is_dir()
        config = json.loads((folder / "transformer" / "config.json").read_text())
        assert config["use_rotary_positional_embeddings"] == (style == "5b")


def test_text_encoder_padding_length_and_no_mask(tiny_2b):
    enc = TextEncoder.from_pretrained(tiny_2b)
    ids = enc.tokenize(["a cat", PROMPT * 40])
    assert ids.shape == (2, 226)
    n = int((ids[0] != enc.tokenizer.pad_token_id).sum())
    assert ids[0, n - 1] == enc.tokenizer.eos_token_id and torch.all(ids[0, n:] == enc.tokenizer.pad_token_id)
    assert ids[1, -1] == enc.tokenizer.eos_token_id  # truncated, still ends with </s>
    emb = enc.encode(["a cat", PROMPT * 40])
    assert emb.shape == (2, 226, enc.hidden_size)
    # no attention mask: padding positions are encoded and the result differs from a masked encoding
    masked = enc.model(ids[:1], attention_mask=(ids[:1] != 0).long())[0]
    assert torch.allclose(emb[:1], enc.model(ids[:1])[0], atol=1e-6)
    assert not torch.allclose(emb[:1], masked, atol=1e-4)
    with pytest.raises(TypeError, match="list of prompts"):
        enc.encode("a cat")


def test_token_spans(tiny_2b):
    enc = TextEncoder.from_pretrained(tiny_2b)
    ids = enc.tokenize([PROMPT])[0].tolist()
    cat, astronaut, red_cat, beach = enc.token_spans(PROMPT, ["cat", "astronaut", "red cat", "Beach"])
    assert len(cat) == 1 and enc.tokenizer.convert_ids_to_tokens(ids[cat[0]]) == "▁cat"
    assert len(astronaut) > 1 and astronaut == list(range(astronaut[0], astronaut[-1] + 1))
    assert enc.tokenizer.decode([ids[i] for i in astronaut]).strip() == "astronaut"
    assert red_cat == [cat[0] - 1, cat[0]]
    assert enc.tokenizer.decode([ids[i] for i in beach]).strip() == "beach"
    with pytest.raises(ValueError, match="'dog' does not occur"):
        enc.token_spans(PROMPT, ["dog"])
    with pytest.raises(ValueError, match="'ca' does not occur"):  # whole words only
        enc.token_spans(PROMPT, ["ca"])
    long_prompt = "a cat " * 150 + "dog"
    with pytest.raises(ValueError, match="'dog' lies beyond the first 226 tokens"):
        enc.token_spans(long_prompt, ["dog"])


@pytest.mark.parametrize("key", [("2b", "v_prediction"), ("5b", "v_prediction"), ("2b", "flow")], ids="-".join)
def test_matches_diffusers_cogvideox_pipeline(tiny_models, key):
    diffusers = pytest.importorskip("diffusers")
    folder = tiny_models[key]
    ours = TextToVideoPipeline.from_pretrained(folder)
    ref = diffusers.CogVideoXPipeline.from_pretrained(folder)
    ref.set_progress_bar_config(disable=True)
    if key[1] == "flow":
        assert isinstance(ours.scheduler, FlowMatchScheduler)
        # CogVideoXPipeline calls two DDIM-only hooks that the flow scheduler lacks (both are identities for flow)
        ref.scheduler.init_noise_sigma = 1.0
        ref.scheduler.scale_model_input = lambda sample, timestep=None: sample
    else:
        assert isinstance(ours.scheduler, DDIMScheduler)
    # same prompt embeddings as CogVideoXPipeline._get_t5_prompt_embeds
    ref_embeds = ref._get_t5_prompt_embeds([PROMPT, ""], device=torch.device("cpu"))
    assert torch.allclose(ours.encode_prompt([PROMPT, ""]), ref_embeds, atol=1e-5)
    latents = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    kwargs = dict(negative_prompt="blurry", num_inference_steps=3, guidance_scale=6.0, **SIZE)
    steps: list[torch.Tensor] = []
    frames = ours(PROMPT, latents=latents, output_type="np", callback=lambda i, t, x: steps.append(x), **kwargs)
    ref_latents = ref(prompt=PROMPT, latents=latents.clone(), output_type="latent", **kwargs).frames
    assert len(steps) == 3 and steps[-1].shape == ref_latents.shape == (1, 3, 4, 4, 4)
    assert (steps[-1] - ref_latents).abs().max() <= 1e-4 * ref_latents.abs().max()
    with torch.no_grad():
        ref_frames = ref.video_processor.postprocess_video(ref.decode_latents(ref_latents), output_type="np")
    assert frames.shape == ref_frames.shape == (1, 9, 32, 32, 3)
    assert np.abs(frames - ref_frames).max() <= 1e-4


def test_seeded_sampling_is_deterministic(tiny_models):
    pipe = TextToVideoPipeline.from_pretrained(tiny_models[("5b", "v_prediction")])
    a = pipe(PROMPT, num_inference_steps=2, seed=7, output_type="pt", **SIZE)
    b = pipe(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(7), output_type="pt", **SIZE)
    c = pipe(PROMPT, num_inference_steps=2, seed=8, output_type="pt", **SIZE)
    assert a.shape == (1, 9, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # guidance actually mixes in the negative branch
    d = pipe(PROMPT, negative_prompt="blurry", num_inference_steps=2, seed=7, output_type="pt", **SIZE)
    assert not torch.equal(a, d)


def test_bad_sizes_are_clear_errors(tiny_2b):
    pipe = TextToVideoPipeline.from_pretrained(tiny_2b)
    with pytest.raises(ValueError, match="num_frames: must be 1 \\+ 4"):
        pipe(PROMPT, num_frames=10, height=32, width=32, num_inference_steps=1)
    with pytest.raises(ValueError, match="13 gives 4 latent frames"):
        pipe(PROMPT, num_frames=13, height=32, width=32, num_inference_steps=1)
    with pytest.raises(ValueError, match="height: must be a positive multiple of 16"):
        pipe(PROMPT, num_frames=9, height=40, width=32, num_inference_steps=1)
    with pytest.raises(ValueError, match="latents: expected shape"):
        pipe(PROMPT, latents=torch.zeros(1, 2, 4, 4, 4), num_inference_steps=1, **SIZE)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        TextToVideoPipeline.from_pretrained(tiny_2b / "vae")


def test_save_load_roundtrip(tiny_models, tmp_path):
    pipe = TextToVideoPipeline.from_pretrained(tiny_models[("2b", "flow")])
    saved = pipe.save_pretrained(tmp_path / "copy")
    again = TextToVideoPipeline.from_pretrained(saved)
    assert json.loads((saved / "model_index.json").read_text()) == json.loads(
        (tiny_models[("2b", "flow")] / "model_index.json").read_text()
    )
    assert isinstance(again.scheduler, FlowMatchScheduler) and again.scheduler.config == pipe.scheduler.config
    for a, b in [(pipe.transformer, again.transformer), (pipe.vae, again.vae), (pipe.text_encoder.model, again.text_encoder.model)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = pipe(PROMPT, num_inference_steps=2, seed=1, **SIZE)
    y = again(PROMPT, num_inference_steps=2, seed=1, **SIZE)
    assert np.array_equal(x, y)


def test_video_io_roundtrip(tmp_path):
    frames = np.zeros((5, 32, 48, 3), dtype=np.uint8)
    frames[:, :, :24] = 200  # left half bright
    frames[np.arange(5), :, :, 1] = (np.arange(5) * 40)[:, None, None]
    path = write_video(tmp_path / "v.mp4", frames, fps=8)
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == pytest.approx(8)
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4
    with pytest.raises(ValueError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))


def test_vidforge_sample_writes_playable_mp4(tiny_2b, tmp_path, capsys):
    import av

    from vidforge.cli import main

    out = tmp_path / "clip.mp4"
    rc = main(["sample", "--model", str(tiny_2b), "--prompt", PROMPT, "--out", str(out), "--frames", "9",
               "--height", "48", "--width", "32", "--steps", "2", "--seed", "3", "--fps", "10"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
    frames, fps = read_video(out)
    assert frames.shape == (9, 48, 32, 3) and fps == pytest.approx(10)
    # same seed through the library gives the same video (up to H.264 loss)
    pipe = TextToVideoPipeline.from_pretrained(tiny_2b)
    ref = pipe(PROMPT, num_frames=9, height=48, width=32, num_inference_steps=2, seed=3)[0]
    assert np.abs(frames.astype(float) - ref * 255).mean() < 12


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{missing}"], "folder not found"),
        (["--frames", "10"], "--frames 10: must be 1 \\+ 4k"),
        (["--frames", "13"], "--frames 13: gives an even number of latent frames"),
        (["--height", "40"], "--height 40: must be a positive multiple of 16"),
        (["--out", "{tmp}/x.gif"], "expected a .mp4 path"),
        (["--dtype", "int8"], "invalid choice"),
    ],
)
def test_vidforge_sample_errors(tiny_2b, tmp_path, capsys, args, message):
    from vidforge.cli import main

    base = {"--model": str(tiny_2b), "--prompt": "a cat", "--out": str(tmp_path / "x.mp4")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value.format(missing=tmp_path / "nope", tmp=tmp_path)
    argv = ["sample"] + [item for pair in base.items() for item in pair]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "x.mp4").exists()
