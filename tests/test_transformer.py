"""ExpertTransformer3D: equivalence with diffusers' CogVideoXTransformer3DModel (test-only oracle),
checkpoint round trips, Frame Pack packing, attention-probability extraction, checkpointing, autocast."""

from __future__ import annotations

import math

import pytest
import torch

from model.attention import AttentionProbeRequest, attention_probs_for_keys
from model.checkpoint import CheckpointError
from model.packing import pack
from model.transformer import ExpertTransformer3D

diffusers = pytest.importorskip("diffusers")
from diffusers import CogVideoXTransformer3DModel  # noqa: E402
from diffusers.models.embeddings import get_3d_rotary_pos_embed  # noqa: E402
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid  # noqa: E402

BASE = dict(
    num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=32,
    text_embed_dim=24, num_layers=2, sample_width=8, sample_height=6, sample_frames=9, max_text_seq_length=5,
)
CONFIGS = {
    "2b_sincos": dict(BASE),
    "5b_rope": dict(BASE, use_rotary_positional_embeddings=True),
    "5b_i2v_learned": dict(BASE, use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True),
    "1.5_patch_t": dict(BASE, use_rotary_positional_embeddings=True, patch_size_t=2, ofs_embed_dim=32),
}
# latent shapes (F, H, W) per config; the first is the config's default size
SHAPES = {
    "2b_sincos": [(3, 6, 8), (4, 4, 10)],
    "5b_rope": [(3, 6, 8), (4, 4, 10)],
    "5b_i2v_learned": [(3, 6, 8), (2, 6, 8)],  # default frames use the learned table, others fall back to sin-cos
    "1.5_patch_t": [(4, 6, 8), (2, 4, 6)],
}


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter (and the learned position table) random: zero-initialised gates hide bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if n in model.state_dict()]:
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * noise)
            else:
                p.copy_(noise * (0.5 / math.sqrt(p.shape[-1]) if p.ndim > 1 else 0.3))


def reference_rotary(cfg: dict, frames: int, height: int, width: int):
    """RoPE exactly as the public CogVideoX pipeline builds it (``_prepare_rotary_positional_embeddings``)."""
    if not cfg.get("use_rotary_positional_embeddings"):
        return None
    p, pt = 2, cfg.get("patch_size_t")
    gh, gw = height // p, width // p
    base_w, base_h = cfg["sample_width"] // p, cfg["sample_height"] // p
    if pt is None:
        crops = get_resize_crop_region_for_grid((gh, gw), base_w, base_h)
        return get_3d_rotary_pos_embed(cfg["attention_head_dim"], crops, (gh, gw), frames)
    return get_3d_rotary_pos_embed(
        cfg["attention_head_dim"], None, (gh, gw), (frames + pt - 1) // pt, grid_type="slice", max_size=(base_h, base_w)
    )


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each config saved by diffusers (random weights) in its own folder: {name: (folder, reference model)}."""
    out = {}
    for name, cfg in CONFIGS.items():
        ref = CogVideoXTransformer3DModel(**cfg).eval()
        randomise(ref)
        folder = tmp_path_factory.mktemp(name.replace(".", "_"))
        ref.save_pretrained(folder)
        out[name] = (folder, ref)
    return out


def inputs(cfg: dict, frames: int, height: int, width: int, batch: int = 2, text_len: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, frames, cfg["in_channels"], height, width, generator=g)
    text = torch.randn(batch, text_len, cfg["text_embed_dim"], generator=g)
    timesteps = torch.tensor([17.0, 803.0][:batch])
    ofs = torch.tensor([2.0]) if cfg.get("ofs_embed_dim") else None
    return latents, text, timesteps, ofs


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_diffusers(checkpoints, name):
    folder, ref = checkpoints[name]
    ours = ExpertTransformer3D.from_pretrained(folder)
    cfg = CONFIGS[name]
    for frames, height, width in SHAPES[name]:
        latents, text, t, ofs = inputs(cfg, frames, height, width)
        with torch.no_grad():
            expected = ref(latents, text, t, ofs=ofs, image_rotary_emb=reference_rotary(cfg, frames, height, width), return_dict=False)[0]
            got = ours(latents, text, t, ofs=ofs)
        assert got.shape == latents.shape
        assert rel_err(got, expected) <= 1e-4, (name, frames, height, width)


def test_round_trips(checkpoints, tmp_path):
    folder, ref = checkpoints["5b_rope"]
    ours = ExpertTransformer3D.from_pretrained(folder)
    latents, text, t, _ = inputs(CONFIGS["5b_rope"], 3, 6, 8)
    with torch.no_grad():
        expected = ours(latents, text, t)
    # ours -> ours, sharded into several safetensors files with an index
    ours.save_pretrained(tmp_path / "ours", max_shard_bytes=20_000)
    assert (tmp_path / "ours" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    again = ExpertTransformer3D.from_pretrained(tmp_path / "ours")
    # ours -> diffusers
    theirs = CogVideoXTransformer3DModel.from_pretrained(tmp_path / "ours").eval()
    rot = reference_rotary(CONFIGS["5b_rope"], 3, 6, 8)
    with torch.no_grad():
        assert torch.equal(again(latents, text, t), expected)
        assert rel_err(theirs(latents, text, t, image_rotary_emb=rot, return_dict=False)[0], expected) <= 1e-5
    # bf16 load
    assert ExpertTransformer3D.from_pretrained(tmp_path / "ours", torch_dtype=torch.bfloat16).proj_out.weight.dtype == torch.bfloat16


def test_weights_that_do_not_fit_are_rejected(checkpoints, tmp_path):
    folder, _ = checkpoints["2b_sincos"]
    model = ExpertTransformer3D.from_config(dict(CONFIGS["2b_sincos"], num_layers=3))
    model.save_pretrained(tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes((folder / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="transformer_blocks.2"):
        ExpertTransformer3D.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", ["2b_sincos", "5b_rope", "1.5_patch_t"])
@pytest.mark.parametrize("packed_attention", ["segments", "mask"])
def test_packed_equals_separate(checkpoints, name, packed_attention):
    cfg = CONFIGS[name]
    model = ExpertTransformer3D.from_pretrained(checkpoints[name][0])
    g = torch.Generator().manual_seed(3)
    shapes = [(4, 6, 8), (2, 4, 6), (2, 6, 4), (4, 4, 4)]
    text_lens = [5, 3, 5, 4]
    latents = [torch.randn(f, cfg["in_channels"], h, w, generator=g) for f, h, w in shapes]
    text = [torch.randn(n, cfg["text_embed_dim"], generator=g) for n in text_lens]
    timesteps = torch.tensor([5.0, 999.0, 400.0, 61.0])
    ofs = torch.full((4,), 2.0) if cfg.get("ofs_embed_dim") else None
    packed = pack(latents, text, timesteps, max_tokens=40 if cfg.get("patch_size_t") else 64, patch_size=2, patch_size_t=cfg.get("patch_size_t"), ofs=ofs)
    assert len(packed.rows) >= 2 and any(len(r) > 1 for r in packed.rows)
    assert min(packed.row_lengths()) < packed.seq_len  # at least one row is padded
    with torch.no_grad():
        outs = model.forward_packed(packed, packed_attention=packed_attention)
        for i, out in enumerate(outs):
            sample_ofs = None if ofs is None else ofs[i : i + 1]
            alone = model(latents[i][None], text[i][None], timesteps[i : i + 1], ofs=sample_ofs)[0]
            assert out.shape == latents[i].shape
            assert rel_err(out, alone) <= 1e-5, (name, i)


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="max_tokens"):
        pack([torch.zeros(2, 4, 8, 8)], [torch.zeros(5, 3)], torch.zeros(1), max_tokens=10)
    with pytest.raises(ValueError, match="patch_size_t"):
        pack([torch.zeros(3, 4, 8, 8)], [torch.zeros(5, 3)], torch.zeros(1), max_tokens=100, patch_size_t=2)


@pytest.mark.parametrize("name", ["2b_sincos", "5b_rope"])
def test_text_padding_mask(checkpoints, name):
    """Padded text + mask gives the video prediction of the unpadded text, whatever the padding holds."""
    cfg = CONFIGS[name]
    model = ExpertTransformer3D.from_pretrained(checkpoints[name][0])
    latents, text, t, _ = inputs(cfg, 3, 6, 8, text_len=3)
    padded = torch.cat([text, 100 * torch.randn(2, 2, cfg["text_embed_dim"])], dim=1)
    mask = torch.tensor([[1, 1, 1, 0, 0]] * 2)
    with torch.no_grad():
        expected = model(latents, text, t)
        got = model(latents, padded, t, attention_mask=mask)
        unmasked = model(latents, padded, t)
    assert rel_err(got, expected) <= 1e-5
    assert rel_err(unmasked, expected) > 1e-3  # the mask is what makes the padding invisible


def test_attention_probs_chunked_equals_full_softmax():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 37, 8, generator=g), torch.randn(2, 3, 29, 8, generator=g)
    keys = [0, 4, 28, 4]
    full = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    for chunk in (1, 5, 64):
        assert torch.allclose(attention_probs_for_keys(q, k, keys, chunk_size=chunk), full[..., keys], atol=1e-6)
    keep = torch.rand(2, 1, 1, 29, generator=g) > 0.3
    keep[..., 0] = True
    masked = torch.softmax((q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~keep, float("-inf")), dim=-1)
    assert torch.allclose(attention_probs_for_keys(q, k, keys, chunk_size=7, attn_bias=keep), masked[..., keys], atol=1e-6)


def test_forward_returns_requested_attention_probs(checkpoints):
    model = ExpertTransformer3D.from_pretrained(checkpoints["5b_rope"][0])
    latents, text, t, _ = inputs(CONFIGS["5b_rope"], 3, 6, 8)
    n_video, seq = 3 * 3 * 4, 5 + 3 * 3 * 4
    with torch.no_grad():
        plain = model(latents, text, t)
        out, probs = model(latents, text, t, return_attention_probs_for=AttentionProbeRequest(1, range(seq), chunk_size=8))
        _, text_probs = model(latents, text, t, return_attention_probs_for=AttentionProbeRequest(1, [0, 2], chunk_size=8))
    assert torch.equal(out, plain)
    assert probs.shape == (2, 2, n_video, seq)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 2, n_video), atol=1e-5)  # normalised over all keys
    assert torch.allclose(text_probs, probs[..., [0, 2]], atol=1e-6)


def test_gradient_checkpointing_same_gradients(checkpoints):
    model = ExpertTransformer3D.from_pretrained(checkpoints["5b_rope"][0]).train()
    latents, text, t, _ = inputs(CONFIGS["5b_rope"], 3, 6, 8)

    def grads():
        model.zero_grad()
        model(latents, text, t).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    assert model.gradient_checkpointing
    for n in plain:
        assert torch.allclose(plain[n], checkpointed[n], rtol=1e-5, atol=1e-7), n


def test_bf16_autocast_on_cpu(checkpoints):
    model = ExpertTransformer3D.from_pretrained(checkpoints["1.5_patch_t"][0])
    latents, text, t, ofs = inputs(CONFIGS["1.5_patch_t"], 4, 6, 8)
    with torch.no_grad():
        full = model(latents, text, t, ofs=ofs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(latents, text, t, ofs=ofs)
    assert low.shape == latents.shape and torch.isfinite(low).all()
    assert rel_err(low.float(), full) < 0.1


def test_bad_inputs_have_clear_errors(checkpoints):
    model = ExpertTransformer3D.from_pretrained(checkpoints["1.5_patch_t"][0])
    _, text, t, ofs = inputs(CONFIGS["1.5_patch_t"], 4, 6, 8)
    with pytest.raises(ValueError, match="patch_size_t"):
        model(torch.zeros(2, 3, 4, 6, 8), text, t, ofs=ofs)
    with pytest.raises(ValueError, match="ofs"):
        model(torch.zeros(2, 4, 4, 6, 8), text, t)
    with pytest.raises(ValueError, match="timestep"):
        model(torch.zeros(2, 4, 4, 6, 8), text, torch.zeros(3), ofs=ofs)
