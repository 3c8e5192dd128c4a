"""Benchmark FlowDirector editing (CPU, fp32).

    python tests/bench/bench_edit.py [--layers 4 --heads 4 --head-dim 32 --latent-size 24 --steps 10 --n-max 8 --candidates 2]
                                     [--probe-heads 1 --probe-video-tokens 17550] [--threads 1]

1. One edit against the inversion baseline at the same number of model evaluations, same run, same
   random model and source latents: DDIM inversion of the source with the source prompt (conditional
   only, N steps) then regeneration with the target prompt (CFG, N steps): 3N evaluations, N chosen to
   match the edit's ``n_max * 2 branches * 2 CFG rows * L draws``. Only the latent loops are compared
   (VAE encode/decode are common to both). Time: median of ``--repeats`` interleaved runs after a
   warm-up; memory: each in a fresh subprocess, peak-RSS growth of one (cold) run over the RSS after
   loading (``/proc/self/clear_refs`` resets ``VmHWM``).
2. Peak memory of extracting one block's attention map onto a few word tokens: chunked
   (:func:`model.attention.attention_probs_for_keys`) against materialising ``softmax(Q K^T)``, at
   CogVideoX's full-size sequence (226 text + 17550 video tokens) with ``--probe-heads`` heads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from peak_rss import peak_rss_growth, reset_peak_rss

SOURCE, TARGET = "a cat sits on a table in a garden", "a dog sits on a table in a garden"


# ------------------------------------------------------------------------------------------------
# edit vs inversion
# ------------------------------------------------------------------------------------------------


def build_model(args, folder: Path) -> Path:
    from model.testing import build_tiny_model

    return build_tiny_model(
        folder, style="5b", objective="v_prediction", num_layers=args.layers, text_dim=64, sample_size=args.latent_size,
        extra_transformer={"num_attention_heads": args.heads, "attention_head_dim": args.head_dim, "time_embed_dim": 64},
    )


def inversion_steps(args) -> int:
    edit_evals = args.n_max * 2 * 2 * args.candidates
    return max(1, round(edit_evals / 3))


@torch.no_grad()
def ddim_invert(pipe, x0: torch.Tensor, cond: torch.Tensor, steps: int) -> torch.Tensor:
    """Deterministic DDIM inversion (v-prediction, conditional only): clean latents -> noise over ``steps`` steps."""
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    ab = sched.alphas_cumprod
    x, a_prev, t_prev = x0, torch.tensor(1.0, dtype=torch.float64), 0
    for t in reversed(sched.timesteps.tolist()):
        v = pipe.transformer(x, cond, torch.tensor([float(t_prev)])).float()
        a, s = a_prev.sqrt().item(), (1 - a_prev).sqrt().item()
        x0_hat, eps_hat = a * x - s * v, s * x + a * v
        x = ab[t].sqrt().item() * x0_hat + (1 - ab[t]).sqrt().item() * eps_hat
        a_prev, t_prev = ab[t], t
    return x


def make_runner(args, folder: str, which: str):
    from model.editing.config import EditConfig, GuidanceConfig
    from model.editing.editor import FlowDirectorEditor
    from model.pipeline import TextToVideoPipeline

    pipe = TextToVideoPipeline.from_pretrained(folder)
    x_src = torch.randn(1, 3, 4, args.latent_size, args.latent_size, generator=torch.Generator().manual_seed(0))
    if which == "edit":
        cfg = EditConfig(steps=args.steps, n_max=args.n_max, dag=GuidanceConfig(num_candidates=args.candidates, num_outliers=1))
        editor = FlowDirectorEditor(pipe, cfg)

        def run() -> int:
            before = editor.velocity.evaluations
            editor.edit_latents(x_src, SOURCE, TARGET, ["cat"], ["dog"])
            return editor.velocity.evaluations - before

        return run
    n = inversion_steps(args)
    counter = {"n": 0}
    forward = pipe.transformer.forward

    def counted(hidden_states, *a, **k):
        counter["n"] += hidden_states.shape[0]
        return forward(hidden_states, *a, **k)

    pipe.transformer.forward = counted

    def run() -> int:
        counter["n"] = 0
        cond, neg = pipe.encode_prompt([SOURCE]), pipe.encode_prompt([""])
        noise = ddim_invert(pipe, x_src, cond, n)
        pipe.denoise(noise, pipe.encode_prompt([TARGET]), neg, n, guidance_scale=6.0)
        return counter["n"]

    return run


# ------------------------------------------------------------------------------------------------
# attention-map extraction
# ------------------------------------------------------------------------------------------------


def probe_inputs(args):
    g = torch.Generator().manual_seed(0)
    s = 226 + args.probe_video_tokens
    q = torch.randn(1, args.probe_heads, args.probe_video_tokens, 64, generator=g)
    k = torch.randn(1, args.probe_heads, s, 64, generator=g)
    return q, k, [3, 4, 5]


def probe_run(args, which: str):
    from model.attention import attention_probs_for_keys

    q, k, keys = probe_inputs(args)
    if which == "chunked":
        return lambda: attention_probs_for_keys(q, k, keys, chunk_size=1024)
    return lambda: torch.softmax(q @ k.transpose(-1, -2) * 64**-0.5, dim=-1)[..., keys]


# ------------------------------------------------------------------------------------------------


def worker(args) -> None:
    which = args._worker
    torch.set_num_threads(args.threads)
    run = probe_run(args, which) if which in ("chunked", "full") else make_runner(args, args._folder, which)
    before = reset_peak_rss()  # cold run: the peak includes the first call's one-time allocations, alike for both
    t0 = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - t0
    delta = peak_rss_growth(before)
    evals = result if isinstance(result, int) else None
    if which in ("chunked", "full"):
        result_check = result.sum().item()
    else:
        result_check = None
    print(json.dumps({"delta": delta, "time": elapsed, "evals": evals, "check": result_check}))


def in_subprocess(args, which: str, folder: str = "") -> dict:
    cmd = [sys.executable, __file__, *args.passthrough, "--_worker", which, "--_folder", folder]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--latent-size", type=int, default=24, help="latent height = width (pixels / 8); 3 latent frames")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--n-max", type=int, default=8)
    p.add_argument("--candidates", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--probe-heads", type=int, default=1)
    p.add_argument("--probe-video-tokens", type=int, default=13 * 30 * 45)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1: stable timings on a shared machine)")
    p.add_argument("--_worker", default=None)
    p.add_argument("--_folder", default="")
    args = p.parse_args()
    args.passthrough = [a for a in sys.argv[1:]]
    torch.set_num_threads(args.threads)
    if args._worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(build_model(args, Path(tmp) / "model"))
        tokens = 3 * (args.latent_size // 2) ** 2
        print(f"model: {args.layers} layers, {args.heads}x{args.head_dim} heads, latent (3, 4, {args.latent_size}, {args.latent_size}) "
              f"-> {tokens} video + 226 text tokens; threads={torch.get_num_threads()}")
        runners = {w: make_runner(args, folder, w) for w in ("edit", "inversion")}
        evals = {w: r() for w, r in runners.items()}  # warm-up and count
        times: dict[str, list[float]] = {"edit": [], "inversion": []}
        for _ in range(args.repeats):
            for w, r in runners.items():
                t0 = time.perf_counter()
                r()
                times[w].append(time.perf_counter() - t0)
        mem = {w: in_subprocess(args, w, folder)["delta"] for w in runners}
        n = inversion_steps(args)
        print(f"edit: T={args.steps}, n_max={args.n_max}, L={args.candidates} draws -> {evals['edit']} evaluations | "
              f"inversion baseline: {n} DDIM inversion steps + {n} CFG sampling steps -> {evals['inversion']} evaluations")
        te, ti = statistics.median(times["edit"]), statistics.median(times["inversion"])
        print(f"time  edit {te:7.2f} s  inversion {ti:7.2f} s  ratio {te / ti:5.2f}x  "
              f"(per evaluation: {te / evals['edit'] * 1e3:.1f} vs {ti / evals['inversion'] * 1e3:.1f} ms)")
        print(f"peak RSS growth  edit {mem['edit'] / 2**20:8.1f} MiB  inversion {mem['inversion'] / 2**20:8.1f} MiB  "
              f"ratio {mem['edit'] / max(mem['inversion'], 1):5.2f}x")

    s = 226 + args.probe_video_tokens
    full_bytes = args.probe_heads * args.probe_video_tokens * s * 4
    print(f"mask extraction: {args.probe_heads} head(s), {args.probe_video_tokens} video queries x {s} keys "
          f"(one score matrix = {full_bytes / 2**30:.2f} GiB), 3 word tokens")
    res = {w: in_subprocess(args, w) for w in ("chunked", "full")}
    rel = abs(res["chunked"]["check"] - res["full"]["check"]) / max(abs(res["full"]["check"]), 1e-12)
    print(f"peak RSS growth  chunked {res['chunked']['delta'] / 2**20:8.1f} MiB  full {res['full']['delta'] / 2**20:8.1f} MiB  "
          f"ratio {res['chunked']['delta'] / max(res['full']['delta'], 1):.4f}x | time chunked {res['chunked']['time']:.2f} s "
          f"full {res['full']['time']:.2f} s | sums agree to {rel:.1e}")
    print(f"  (CogVideoX-5B has 48 heads: the full matrix would be {48 * full_bytes / args.probe_heads / 2**30:.1f} GiB per sample)")


if __name__ == "__main__":
    main()
