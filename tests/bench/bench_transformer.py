"""Benchmark ExpertTransformer3D against diffusers' CogVideoXTransformer3DModel on the same config (CPU, fp32).

    python tests/bench/bench_transformer.py [--layers 4 --heads 4 --head-dim 64 --frames 4 --height 24 --width 32 --rope 1]

Time: median of ``--repeats`` interleaved runs after one warm-up, both models in this process, same
weights and inputs (wall clock: on a loaded machine, compare ratios of repeated runs). Memory: each
measurement runs in a fresh subprocess: one warm-up step, then the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs`` = 5) and the figure is ``VmHWM`` after one more step minus ``VmRSS``
before it, i.e. the activations and temporaries of one forward (or forward+backward), not weights.
Also prints the model FLOPs per step formula used for MFU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from peak_rss import peak_rss_growth, reset_peak_rss


def build(args, which: str):
    from diffusers import CogVideoXTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    from model.transformer import ExpertTransformer3D

    cfg = dict(
        num_attention_heads=args.heads, attention_head_dim=args.head_dim, in_channels=16, out_channels=16,
        time_embed_dim=512, text_embed_dim=args.text_dim, num_layers=args.layers, sample_height=args.height,
        sample_width=args.width, sample_frames=(args.frames - 1) * 4 + 1, max_text_seq_length=args.text_len,
        use_rotary_positional_embeddings=bool(args.rope),
    )
    torch.manual_seed(0)
    ref = CogVideoXTransformer3DModel(**cfg)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(args.batch, args.frames, 16, args.height, args.width, generator=g)
    text = torch.randn(args.batch, args.text_len, args.text_dim, generator=g)
    t = torch.tensor([500.0] * args.batch)
    if which == "diffusers":
        rot = None
        if args.rope:
            gh, gw = args.height // 2, args.width // 2
            crops = get_resize_crop_region_for_grid((gh, gw), args.width // 2, args.height // 2)
            rot = get_3d_rotary_pos_embed(args.head_dim, crops, (gh, gw), args.frames)
        return ref, lambda: ref(latents, text, t, image_rotary_emb=rot, return_dict=False)[0]
    ours = ExpertTransformer3D.from_config(cfg)
    ours.load_state_dict(ref.state_dict())
    del ref
    return ours, lambda: ours(latents, text, t)


def step(model, call, backward: bool):
    if backward:
        model.zero_grad(set_to_none=True)
        call().square().mean().backward()
    else:
        with torch.no_grad():
            call()


def measure_memory(args, which: str, backward: bool) -> int:
    """Run in a fresh subprocess: peak RSS growth of one step (bytes)."""
    cmd = [sys.executable, __file__, *args.passthrough, "--_memory", which, "--_backward", str(int(backward))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["delta"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--height", type=int, default=24)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--text-dim", type=int, default=256)
    p.add_argument("--rope", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--_memory", default=None)
    p.add_argument("--_backward", type=int, default=0)
    args = p.parse_args()
    args.passthrough = sys.argv[1:]  # the benchmark's own options, forwarded to memory subprocesses

    if args._memory:
        model, call = build(args, args._memory)
        step(model, call, bool(args._backward))  # warm-up: lazy caches, thread pools, kernels
        model.zero_grad(set_to_none=True)
        before = reset_peak_rss()
        step(model, call, bool(args._backward))
        print(json.dumps({"delta": peak_rss_growth(before)}))
        return

    torch.set_num_threads(max(1, torch.get_num_threads()))
    models = {w: build(args, w) for w in ("diffusers", "ours")}
    tokens_video = args.frames * (args.height // 2) * (args.width // 2)
    print(f"config: layers={args.layers} heads={args.heads}x{args.head_dim} batch={args.batch} latent=({args.frames},16,{args.height},{args.width}) "
          f"tokens={args.text_len}+{tokens_video} rope={bool(args.rope)} threads={torch.get_num_threads()}")
    times: dict[tuple[str, bool], float] = {}
    for backward in (False, True):
        for which in ("diffusers", "ours"):
            model, call = models[which]
            step(model, call, backward)
        runs: dict[str, list[float]] = {"diffusers": [], "ours": []}
        for _ in range(args.repeats):  # interleave to share machine noise
            for which in ("diffusers", "ours"):
                model, call = models[which]
                t0 = time.perf_counter()
                step(model, call, backward)
                runs[which].append(time.perf_counter() - t0)
        for which in runs:
            times[(which, backward)] = statistics.median(runs[which])
    for backward in (False, True):
        name = "fwd+bwd" if backward else "forward"
        d, o = times[("diffusers", backward)], times[("ours", backward)]
        md, mo = measure_memory(args, "diffusers", backward), measure_memory(args, "ours", backward)
        print(f"{name:8s} time diffusers {d * 1e3:8.1f} ms  ours {o * 1e3:8.1f} ms  ratio {o / d:5.2f}x | "
              f"peak RSS growth diffusers {md / 2**20:7.1f} MiB  ours {mo / 2**20:7.1f} MiB  ratio {mo / max(md, 1):5.2f}x")
    ours = models["ours"][0]
    flops = ours.forward_flops(tokens_video, args.text_len, args.batch)
    print("FLOPs/forward = batch * (layers * (24*S*D^2 + 4*S^2*D + 24*Dt*D) + 2*N*Cin*p^2*pt*D + 2*L*Dtext*D + 2*N*D*Dout); "
          "training step = 3x forward")
    print(f"  here: {flops / 1e9:.2f} GFLOP forward, {3 * flops / 1e9:.2f} GFLOP train step; "
          f"ours fwd {flops / times[('ours', False)] / 1e9:.1f} GFLOP/s, fwd+bwd {3 * flops / times[('ours', True)] / 1e9:.1f} GFLOP/s")
    print("  CogVideoX-5b, 49 frames 720x480 (S=226+17550, D=3072, 42 layers): "
          f"{_full_size_flops() / 1e12:.1f} TFLOP forward")


def _full_size_flops() -> int:
    from model.transformer import ExpertTransformer3D

    with torch.device("meta"):
        m = ExpertTransformer3D(num_attention_heads=48, attention_head_dim=64, num_layers=42, use_rotary_positional_embeddings=True)
    return m.forward_flops(13 * 30 * 45, 226)


if __name__ == "__main__":
    main()
