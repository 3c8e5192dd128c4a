"""Benchmark: CausalVideoVAE against diffusers' AutoencoderKLCogVideoX, CPU, fp32, same config and run.

    python tests/bench/bench_vae.py                       # small channels, 128x128, 17 and 65 frames
    python tests/bench/bench_vae.py --preset 2b --height 64 --width 64   # CogVideoX-2B VAE channels

Each measurement runs in a fresh subprocess: build the model (random weights, same seed for both),
make the input, run encode+decode once to warm up, then reset the kernel's peak-RSS mark
(``/proc/self/clear_refs``), take the resident set size, run encode+decode (``torch.no_grad``) and
read the peak (``VmHWM``). "Peak memory" is that peak minus the resident size just before the run,
i.e. everything the forward allocates (activations, caches, output). glibc is told to mmap every
allocation above 128 KiB (``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave the resident set at
once, for both implementations. Time is the best of ``--repeats`` runs (wall clock and process CPU
time; torch runs ``--threads`` threads, 1 by default so that CPU time is meaningful on a shared
machine); runs of the two implementations are interleaved so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from peak_rss import peak_rss_growth, reset_peak_rss

PRESETS = {
    "2b": dict(block_out_channels=(128, 256, 256, 512), layers_per_block=3, norm_num_groups=32),
    "small": dict(block_out_channels=(32, 64, 64, 128), layers_per_block=2, norm_num_groups=8),
}


def worker(impl: str, preset: str, frames: int, height: int, width: int, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = dict(PRESETS[preset], latent_channels=16)
    if impl == "ours":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from model.vae import CausalVideoVAE

        model = CausalVideoVAE(**config).eval()

        def run(x):
            return model.decode(model.encode(x).mode())

    else:
        from diffusers import AutoencoderKLCogVideoX

        model = AutoencoderKLCogVideoX(**config).eval()

        def run(x):
            return model.decode(model.encode(x).latent_dist.mode()).sample

    x = torch.rand(1, 3, frames, height, width) * 2 - 1
    libc = ctypes.CDLL("libc.so.6")
    times, cpu_times, peaks = [], [], []
    with torch.no_grad():
        run(x)  # warm-up: one-off allocations (kernels, thread pools)
        for _ in range(repeats):
            libc.malloc_trim(0)
            before = reset_peak_rss()
            start, cpu_start = time.perf_counter(), time.process_time()
            out = run(x)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            peaks.append(peak_rss_growth(before))
            del out
    return {
        "impl": impl, "frames": frames,
        "time_s": min(times), "cpu_s": min(cpu_times), "peak_mib": min(peaks) / 2**20,
    }


def measure(impl: str, args: argparse.Namespace, frames: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    cmd = [sys.executable, __file__, "--worker", impl, "--preset", args.preset, "--frames", str(frames),
           "--height", str(args.height), "--width", str(args.width), "--repeats", "1", "--threads", str(args.threads)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--frames", type=int, default=17, help="frames for the ours-vs-diffusers comparison")
    parser.add_argument("--long-frames", type=int, default=65, help="frames for the memory-vs-length check")
    parser.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per implementation")
    parser.add_argument("--worker", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.preset, args.frames, args.height, args.width, args.repeats, args.threads)
        print(json.dumps(result))
        return

    print(f"config {args.preset} {PRESETS[args.preset]}, input {args.height}x{args.width}, CPU fp32, "
          f"{args.threads} torch thread(s), {args.repeats} interleaved fresh processes per implementation")
    results: dict[str, list[dict]] = {"ours": [], "diffusers": []}
    for _ in range(args.repeats):
        for impl in ("diffusers", "ours"):
            results[impl].append(measure(impl, args, args.frames))
    best = {
        impl: {key: min(r[key] for r in rs) for key in ("time_s", "cpu_s", "peak_mib")} for impl, rs in results.items()
    }
    for impl, b in best.items():
        print(f"{impl:>9} encode+decode {args.frames} frames: wall {b['time_s']:.2f} s, CPU {b['cpu_s']:.2f} s, "
              f"peak {b['peak_mib']:.0f} MiB")
    ours, ref = best["ours"], best["diffusers"]
    print(f"ours / diffusers: wall time {ours['time_s'] / ref['time_s']:.2f}x, "
          f"CPU time {ours['cpu_s'] / ref['cpu_s']:.2f}x, "
          f"peak memory {ours['peak_mib'] / ref['peak_mib']:.2f}x")

    long = [measure("ours", args, args.long_frames) for _ in range(max(1, args.repeats - 1))]
    long_peak = min(r["peak_mib"] for r in long)
    print(f"     ours encode+decode {args.long_frames} frames: wall {min(r['time_s'] for r in long):.2f} s, "
          f"CPU {min(r['cpu_s'] for r in long):.2f} s, peak {long_peak:.0f} MiB")
    print(f"ours peak memory {args.long_frames} / {args.frames} frames "
          f"({args.long_frames / args.frames:.1f}x frames): {long_peak / best['ours']['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
