"""train/: Frame Pack equivalence, explicit uniform sampling, data loading, overfitting, exact resume,
DDP on two CPU processes, and export to a folder diffusers loads. Tiny model, real H.264 shards."""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from model.testing import build_tiny_model
from model.transformer import ExpertTransformer3D
from train.data import VideoDataModule, expand_shards
from train.framepack import BatchingConfig, Planned, TokenShape, batches, predict
from train.timesteps import step_generator, stratified_timesteps, stratified_unit

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "train" / "tiny.yaml"
CAPTIONS = ["a red ball rolls on the grass", "a panda walks in the snow", "a car drives on a road at night", "a bird flies over the ocean"]


# ----------------------------------------------------------------------------------------------
# Fixtures: a tiny model folder and 4 real clips (two durations) in two shards
# ----------------------------------------------------------------------------------------------


def write_clips(folder: Path, corrupt: bool = False) -> Path:
    from pipeline.records import ClipRecord
    from pipeline.samples import ShotSpec, make_video, source_names
    from pipeline.shards import ShardWriter

    names = source_names()
    for s in range(2):
        writer = ShardWriter(folder / "shards", s)
        for j in range(2):
            i = 2 * s + j
            frames = 18 if i % 2 == 0 else 10  # 16 fps: 9 or 5 frames at 8 fps
            path = folder / f"v{i}.mp4"
            make_video(path, [ShotSpec("pan", names[i % len(names)], frames)], fps=16, size=(64, 48), seed=i)
            row = {"clip_id": f"clip{i}", "fps": 16.0, "width": 64, "height": 48, "num_frames": frames,
                   "duration_s": frames / 16, "caption": CAPTIONS[i]}
            writer.add(ClipRecord(row=row, mp4=path.read_bytes()))
            if corrupt and i == 1:
                bad = {"clip_id": "broken", "fps": 16.0, "num_frames": 18, "caption": "broken"}
                writer.add(ClipRecord(row=bad, mp4=b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20))
        writer.commit()
    return folder / "shards"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", style="2b")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_clips(tmp_path_factory.mktemp("clips"))


def fit_cli(*args: str):
    from train.cli import build_cli

    return build_cli(["fit", "--config", str(TINY_CONFIG), *args])


def read_losses(log_dir: Path) -> dict[int, float]:
    rows = list(csv.DictReader((log_dir / "metrics.csv").open()))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


# ----------------------------------------------------------------------------------------------
# Explicit uniform sampling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [[8], [3, 2, 4], [1, 1], [5, 0, 2, 1]])
def test_explicit_uniform_sampling_covers_every_slice(counts):
    total, T = sum(counts), 1000
    for step in range(5):
        units = torch.cat([stratified_unit(counts, r, step_generator(7, step)) for r in range(len(counts))])
        slices = sorted((units * total).floor().long().tolist())
        assert slices == list(range(total))  # every slice of [0, 1) exactly once across all ranks
        ts = torch.cat([stratified_timesteps(counts, r, T, step_generator(7, step)) for r in range(len(counts))])
        assert ts.min() >= 0 and ts.max() < T
        assert sorted((ts * total // T).tolist()) == list(range(total))
    # different steps draw different assignments
    a = stratified_unit(counts, 0, step_generator(7, 0))
    b = stratified_unit(counts, 0, step_generator(7, 1))
    assert not torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
# Frame Pack: batching and the packed forward
# ----------------------------------------------------------------------------------------------


def test_pack_batcher_uses_rows_tightly():
    sizes = [(13, 4, 4), (3, 4, 4), (7, 4, 4), (1, 4, 4), (13, 4, 4), (5, 4, 4), (9, 4, 4), (2, 4, 4)] * 4
    items = [Planned(i, TokenShape(f, h, w, text_tokens=10)) for i, (f, h, w) in enumerate(sizes)]
    config = BatchingConfig("pack", max_tokens=80, rows=2, lookahead=8)
    out = list(batches(iter(items), config))
    assert sorted(p.item for batch in out for p in batch) == list(range(len(items)))  # nothing lost or repeated
    for batch in out:
        assert sum(p.shape.tokens for p in batch) <= 2 * 80
    bucket = list(batches(iter(items), BatchingConfig("bucket", batch_size=3)))
    assert all(len({p.shape.key for p in b}) == 1 for b in bucket)
    with pytest.raises(ValueError, match="max_tokens"):
        list(batches(iter([Planned(0, TokenShape(50, 4, 4, 10))]), config))


@pytest.mark.parametrize("style", ["2b", "5b"])
def test_packed_forward_equals_separate_forwards(style):
    from model.testing import TinyModelSpec, tiny_transformer_config

    torch.manual_seed(0)
    cfg = tiny_transformer_config(TinyModelSpec(style=style, max_text_seq_length=6))
    model = ExpertTransformer3D(**cfg).eval()
    with torch.no_grad():  # non-zero everywhere, so a mix-up between samples would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    frames = [3, 1, 2, 3, 2]
    latents = [torch.randn(f, 4, 4, 4) for f in frames]
    text = [torch.randn(6, 32) for _ in frames]
    t = torch.tensor([999, 10, 500, 250, 0])
    # plan as the loader does, then predict through the batching path
    planned = [Planned(i, TokenShape(f, 4, 4, 6)) for i, f in enumerate(frames)]
    order = [p.item for batch in batches(iter(planned), BatchingConfig("pack", max_tokens=40, rows=3, lookahead=8)) for p in batch]
    assert sorted(order) == list(range(len(frames)))
    with torch.no_grad():
        packed, stats = predict(model, [latents[i] for i in order], [text[i] for i in order], t[order], "pack", max_tokens=40)
        masked, _ = predict(model, [latents[i] for i in order], [text[i] for i in order], t[order], "pack", max_tokens=40,
                            packed_attention="mask")
        padded, _ = predict(model, latents, text, t, "pad")
        for j, i in enumerate(order):
            alone = model(latents[i][None], text[i][None], t[i : i + 1])[0]
            torch.testing.assert_close(packed[j], alone, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(masked[j], alone, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(padded[i], alone, rtol=1e-4, atol=1e-5)
    assert stats.useful <= stats.computed


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def test_pyav_fallback_decodes_the_frames_decord_does(sample_corpus):
    """Where decord fails on a clip, PyAV decodes the same frames (and names the frames it lacks)."""
    import decord
    import numpy as np

    from train.data import SampleError, _decode_with_pyav

    data = Path(sample_corpus[0].path).read_bytes()
    indices = [0, 5, 30]
    expected = decord.VideoReader(io.BytesIO(data)).get_batch(indices).asnumpy().astype(np.float32)
    frames = _decode_with_pyav(data, indices, RuntimeError("decord failed"))
    assert frames.shape == expected.shape and np.abs(frames - expected).mean() < 1.0
    with pytest.raises(SampleError, match="frames \\[100000\\] not decodable"):
        _decode_with_pyav(data, [0, 100000], RuntimeError("decord failed"))


def test_data_module_mixed_durations_and_corrupt_sample(tmp_path, tiny_model):
    shard_dir = write_clips(tmp_path, corrupt=True)
    # also a truncated tar: its readable members still come through, the rest is counted
    good = (shard_dir / "shard-000001.tar").read_bytes()
    (shard_dir / "shard-000002.tar").write_bytes(good[: len(good) // 2])
    dm = VideoDataModule(str(shard_dir / "*.tar"), tokenizer=str(tiny_model), num_frames=9, min_frames=5, height=32,
                         width=32, num_workers=0, batching=BatchingConfig("bucket", batch_size=2))
    loader = dm.train_dataloader()
    seen, shapes, skipped = [], set(), {}
    for batch in loader:
        if batch["position"]["epoch"] > 0:
            break
        seen += batch["keys"]
        shapes |= {tuple(v.shape) for v in batch["videos"]}
        assert batch["input_ids"].shape == (len(batch["keys"]), 226)
        assert all(v.min() >= -1 and v.max() <= 1 for v in batch["videos"])
        skipped = batch["skipped"]
    assert "broken" not in seen
    assert {"clip0", "clip1", "clip2", "clip3"} <= set(seen)
    assert shapes == {(3, 9, 32, 32), (3, 5, 32, 32)}  # two durations
    assert skipped.get("undecodable", 0) >= 1
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_shards(str(tmp_path / "nothing-*.tar"))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def test_encode_then_tiny_fit_overfits_four_clips(tmp_path, shards, tiny_model):
    """`vidforge encode` latent shards (posterior mean/std + T5), then a fit without VAE/T5 overfits 4 clips."""
    import lightning as L
    from safetensors.torch import load as load_safetensors

    from model.vae import CausalVideoVAE
    from train.encode import encode_shards
    from train.ema import EMAConfig
    from train.module import OptimConfig, VideoDiffusionModule
    from train.objective import ObjectiveConfig

    counts = encode_shards(str(tiny_model), str(shards / "*.tar"), tmp_path / "latents", num_frames=9, min_frames=5, height=32, width=32)
    assert counts == {"written": 4, "skipped": 0}
    with tarfile.open(tmp_path / "latents" / "shard-000000.tar") as tar:
        member = next(m for m in tar.getmembers() if m.name == "clip0.latents.safetensors")
        stored = load_safetensors(tar.extractfile(member).read())
    assert stored["latents_mean"].shape == (3, 4, 4, 4) and stored["prompt_embeds"].shape == (226, 32)
    # the stored mean is the VAE posterior mean of the same frames, scaled
    dm_pixels = VideoDataModule(str(shards / "*.tar"), num_frames=9, min_frames=5, height=32, width=32, num_workers=0,
                                batching=BatchingConfig("pad", batch_size=1))
    clip0 = next(b for b in dm_pixels.val_dataloader() if b["keys"] == ["clip0"])
    vae = CausalVideoVAE.from_pretrained(tiny_model, subfolder="vae")
    with torch.no_grad():
        expected = vae.encode(clip0["videos"][0][None]).mean[0].permute(1, 0, 2, 3) * vae.config["scaling_factor"]
    torch.testing.assert_close(stored["latents_mean"], expected, rtol=1e-4, atol=1e-5)

    dm = VideoDataModule(str(tmp_path / "latents" / "*.tar"), num_frames=9, min_frames=5, height=32, width=32,
                         num_workers=0, shuffle_buffer=4, val_batches=1,
                         batching=BatchingConfig("pack", max_tokens=1000, rows=1, lookahead=4))
    module = VideoDiffusionModule(str(tiny_model), objective=ObjectiveConfig(text_dropout=0.0, latent="mean"),
                                  optim=OptimConfig(lr=3e-3, warmup_steps=3, schedule="constant", weight_decay=0.0),
                                  ema=EMAConfig(enabled=False))
    batch = next(iter(dm.val_dataloader()))
    assert len(batch["keys"]) == 4  # all four clips in one packed row

    def eval_loss() -> float:
        with torch.no_grad():
            return float(torch.stack([module.compute_loss(batch, -100 - k, 0.0)[0] for k in range(8)]).mean())

    before = eval_loss()
    trainer = L.Trainer(accelerator="cpu", max_steps=60, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=dm)
    after = eval_loss()
    assert after <= 0.5 * before, (before, after)


def test_resume_repeats_losses_exactly_and_export_loads_in_diffusers(tmp_path, shards, tiny_model):
    common = ["--data.shards", str(shards / "*.tar"), "--model.pretrained", str(tiny_model), "--data.num_workers", "2",
              "--trainer.limit_val_batches", "0", "--trainer.max_steps", "6"]
    ckpt_cb = ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
               "--trainer.callbacks.every_n_train_steps=3", "--trainer.callbacks.save_top_k=-1",
               "--trainer.callbacks.dirpath", str(tmp_path / "ckpt")]
    full = fit_cli(*common, "--trainer.logger.init_args.save_dir", str(tmp_path / "full"), *ckpt_cb)
    losses_full = read_losses(Path(full.trainer.logger.log_dir))
    assert sorted(losses_full) == list(range(6))
    mid = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    assert mid.is_file(), sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    resumed = fit_cli(*common, "--trainer.logger.init_args.save_dir", str(tmp_path / "resumed"), "--ckpt_path", str(mid))
    losses_resumed = read_losses(Path(resumed.trainer.logger.log_dir))
    assert sorted(losses_resumed) == [3, 4, 5]
    for step in (3, 4, 5):
        assert losses_resumed[step] == losses_full[step], (step, losses_full, losses_resumed)
    # EMA survives the resume too
    ema_full = full.model.ema.state_dict()["shadow"]
    ema_resumed = resumed.model.ema.state_dict()["shadow"]
    for name in ema_full:
        torch.testing.assert_close(ema_full[name], ema_resumed[name], rtol=0, atol=0)

    # export (EMA weights) -> a folder diffusers loads
    from train.export import export

    diffusers = pytest.importorskip("diffusers")
    out = export(tmp_path / "ckpt" / "epoch=0-step=6.ckpt", tmp_path / "exported")
    theirs = diffusers.CogVideoXTransformer3DModel.from_pretrained(out / "transformer").eval()
    ours = ExpertTransformer3D.from_pretrained(out, subfolder="transformer")
    for name, value in ours.state_dict().items():
        torch.testing.assert_close(theirs.state_dict()[name], value)
        if name in ema_full:
            torch.testing.assert_close(value, ema_full[name])
    x, text, t = torch.randn(1, 3, 4, 4, 4), torch.randn(1, 226, 32), torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(theirs(x, text, t, return_dict=False)[0], ours(x, text, t), rtol=1e-4, atol=1e-4)
    from model.pipeline import TextToVideoPipeline

    video = TextToVideoPipeline.from_pretrained(out)("a cat", num_inference_steps=2, guidance_scale=1.0, seed=0)
    assert video.shape == (1, 9, 32, 32, 3)


def test_ddp_two_cpu_processes(tmp_path, shards, tiny_model):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "train", "fit", "--config", str(TINY_CONFIG), "--data.shards", str(shards / "*.tar"),
           "--model.pretrained", str(tiny_model), "--trainer.strategy", "ddp", "--trainer.devices", "2",
           "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--data.num_workers", "0",
           "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = next(tmp_path.rglob("metrics.csv"))
    losses = read_losses(metrics.parent)
    assert sorted(losses) == [0, 1, 2] and all(v == v for v in losses.values())
    assert "max_steps=3" in proc.stderr + proc.stdout


def test_bf16_mixed_fit_on_cpu(tmp_path, shards, tiny_model):
    """The GPU configs' precision (bf16-mixed) on CPU autocast: finite losses, fp32 master weights."""
    cli = fit_cli("--data.shards", str(shards / "*.tar"), "--model.pretrained", str(tiny_model), "--data.num_workers", "0",
                  "--trainer.limit_val_batches", "0", "--trainer.max_steps", "3", "--trainer.precision", "bf16-mixed",
                  "--trainer.logger.init_args.save_dir", str(tmp_path))
    losses = read_losses(Path(cli.trainer.logger.log_dir))
    assert sorted(losses) == [0, 1, 2] and all(math.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())


@pytest.mark.parametrize("name", ["cogvideox-2b", "cogvideox-5b"])
def test_documented_fsdp_strategy_builds(name):
    """The FSDP strategy the GPU configs document (Lightning runs FSDP on GPUs only) parses as the CLI
    parses ``trainer.strategy`` and builds, wrapping each transformer block."""
    import re

    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy

    from model.transformer import CogVideoXBlock

    text = (ROOT / "configs" / "train" / f"{name}.yaml").read_text()
    documented = re.search(r"^\s*strategy:.*?(\{class_path: .*\}\})\s*$", text, re.M)
    assert documented, f"{name}.yaml: no documented FSDP strategy next to trainer.strategy"
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--strategy", type=str | Strategy)
    parsed = parser.parse_object({"strategy": yaml.safe_load(documented.group(1))})
    strategy = parser.instantiate_classes(parsed).strategy
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {CogVideoXBlock}


def test_progressive_stages_chain_checkpoints(tmp_path, shards, tiny_model, monkeypatch):
    import yaml

    from vidforge.cli import main as vidforge_main

    monkeypatch.chdir(tmp_path)
    plan = yaml.safe_load((ROOT / "configs" / "train" / "progressive-tiny.yaml").read_text())
    plan["base"] = str(TINY_CONFIG)
    for stage in plan["stages"]:
        stage["config"]["trainer"]["max_steps"] = 2
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    rc = vidforge_main(["fit", "--config", "plan.yaml", "--data.shards", str(shards / "*.tar"),
                        "--model.pretrained", str(tiny_model), "--trainer.limit_val_batches", "0", "--data.num_workers", "0"])
    assert rc == 0
    stages = sorted((tmp_path / "runs" / "progressive-tiny").iterdir())
    assert [s.name for s in stages] == ["00-low-res-short", "01-full-res", "02-hq-finetune"]
    configs = [yaml.safe_load((s / "config.yaml").read_text()) for s in stages]
    assert configs[0]["data"]["height"] == 16 and configs[1]["data"]["height"] == 32
    assert "init_from" not in configs[0]["model"]
    assert configs[1]["model"]["init_from"] == str(stages[0] / "final.ckpt")
    assert configs[2]["model"]["init_from"] == str(stages[1] / "final.ckpt")
    assert configs[2]["model"]["optim"]["lr"] == 2.0e-4
    first = torch.load(stages[0] / "final.ckpt", map_location="cpu", weights_only=False)
    second = torch.load(stages[1] / "final.ckpt", map_location="cpu", weights_only=False)
    assert first["global_step"] == 2 and second["global_step"] == 2  # each stage counts its own steps
    key = "transformer.proj_out.weight"
    assert not torch.equal(first["state_dict"][key], second["state_dict"][key])
