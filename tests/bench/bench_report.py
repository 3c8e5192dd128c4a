"""Benchmark: time and peak memory of ``vidforge report`` over synthetic manifests of growing size.

    python tests/bench/bench_report.py                  # 10k, 100k, 1M clips
    python tests/bench/bench_report.py --sizes 10000 100000

Each size gets a synthetic output folder (manifests written with pyarrow in batches: realistic
captions of 30-70 words from a 3,000-word vocabulary (20k base captions, each row made unique by
its clip index), frame captions, scores, ~2% failed and ~1% degenerate captions, ~10% exact
duplicates; row groups of 10k rows at every size) and one fresh report process (``main`` of
``captioner.report.cli``, as ``python -m captioner.report`` runs it) that prints its own peak RSS
(``VmHWM``). Memory must stay flat as the manifest grows: the last line prints the largest/smallest
ratios of time and peak RSS (peak RSS includes the ~110 MiB of the interpreter and its libraries,
and the two 16 MiB duplicate filters).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.manifest import CLIP_SCHEMA, CLIPS_FILE, VIDEO_SCHEMA, VIDEOS_FILE

BATCH = 50_000
ROW_GROUP = 10_000  # the same row-group size at every manifest size (a reader holds one row group)
POOL = 20_000  # distinct base captions; each row appends its own index, so captions stay unique
CLIPS_PER_VIDEO = 20
CLIPS_PER_SHARD = 1000


def _vocab(rng: np.random.Generator, size: int = 3000) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(size)])


def _captions(rng, vocab, n: int, lo: int, hi: int) -> list[str]:
    lengths = rng.integers(lo, hi, n)
    words = vocab[rng.zipf(1.3, lengths.sum()) % len(vocab)]
    out, pos = [], 0
    for length in lengths:
        out.append(" ".join(words[pos : pos + length]).capitalize() + ".")
        pos += length
    return out


def _clip_batch(rng, pools, start: int, n: int) -> pa.Table:
    caption_pool, frame_pool = pools
    ids = np.arange(start, start + n)
    kept = rng.random(n) < 0.7
    status = np.where(kept, np.where(rng.random(n) < 0.02, "failed", "ok"), None)
    picks = rng.integers(0, len(caption_pool), n)
    captions = [f"{caption_pool[p]} Clip {i} ends here." for p, i in zip(picks, ids)]
    dup = rng.random(n) < 0.10
    for i in np.nonzero(dup)[0]:
        captions[i] = captions[max(0, i - 1)]
    short = rng.random(n) < 0.01
    provenance = json.dumps({"models": {"vlm": "vlm-x", "llm": "llm-y"}, "prompt_version": 1})
    duration = rng.uniform(2.0, 12.0, n)
    cols = {
        "clip_id": [f"c{i:09d}" for i in ids],
        "source": [f"in/v{i // CLIPS_PER_VIDEO:07d}.mp4" for i in ids],
        "start_s": (ids % CLIPS_PER_VIDEO) * 10.0,
        "end_s": (ids % CLIPS_PER_VIDEO) * 10.0 + duration,
        "duration_s": duration,
        "fps": rng.choice([24.0, 25.0, 30.0], n),
        "width": rng.choice([640, 1280, 1920], n).astype(np.int32),
        "height": rng.choice([360, 720, 1080], n).astype(np.int32),
        "motion": rng.gamma(2.0, 0.2, n),
        "shake": rng.gamma(1.5, 0.05, n),
        "sharpness": rng.normal(150, 40, n),
        "brightness": rng.beta(5, 5, n),
        "aesthetic": rng.normal(5.0, 0.6, n),
        "clip_score": np.where(kept, rng.normal(0.28, 0.03, n), np.nan),
        "kept": kept,
        "reject_reason": np.where(kept, None, rng.choice(["low_motion", "too_blurry", "too_dark", "duplicate"], n)),
        "shard": np.where(kept, np.char.add(np.char.add("shard-", np.char.zfill((ids // CLIPS_PER_SHARD).astype(str), 6)), ".tar"), None),
        "caption": [c if s == "ok" else None for c, s in zip(np.where(short, "A video.", captions), status)],
        "caption_status": status,
        "caption_error": np.where(status == "failed", "timeout: VLM did not answer", None),
        "frame_captions": [frame_pool[p] if s == "ok" else None for p, s in zip(picks, status)],
        "caption_provenance": np.where(kept, provenance, None),
    }
    arrays = []
    for field in CLIP_SCHEMA:
        if field.name in cols:
            value = cols[field.name]
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                arrays.append(pa.array(value, field.type, mask=np.isnan(value)))
            else:
                arrays.append(pa.array(list(value) if isinstance(value, np.ndarray) and value.dtype == object else value, field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=CLIP_SCHEMA)


def make_folder(root: Path, clips: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    frames = _captions(rng, vocab, 3 * POOL, 6, 14)
    pools = (
        _captions(rng, vocab, POOL, 30, 70),
        [json.dumps([{"time_s": float(j), "caption": frames[3 * i + j]} for j in range(3)]) for i in range(POOL)],
    )
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(root / CLIPS_FILE, CLIP_SCHEMA) as writer:
        for start in range(0, clips, BATCH):
            writer.write_table(_clip_batch(rng, pools, start, min(BATCH, clips - start)), row_group_size=ROW_GROUP)
    videos = -(-clips // CLIPS_PER_VIDEO)
    failed = rng.random(videos) < 0.03
    cols = {
        "path": [f"in/v{i:07d}.mp4" for i in range(videos)],
        "status": np.where(failed, "failed", "ok"),
        "error": np.where(failed, rng.choice(["cannot decode: moov atom not found", "too short: 0.5 s"], videos), None),
        "duration_s": rng.uniform(150, 250, videos),
        "num_scenes": rng.integers(5, 30, videos).astype(np.int32),
    }
    arrays = [pa.array(list(cols[f.name]) if f.name in cols and isinstance(cols[f.name], np.ndarray) and cols[f.name].dtype == object
                       else cols[f.name], f.type) if f.name in cols else pa.nulls(videos, f.type) for f in VIDEO_SCHEMA]
    pq.write_table(pa.Table.from_arrays(arrays, schema=VIDEO_SCHEMA), root / VIDEOS_FILE)


# The report runs in a fresh process that prints its own peak RSS (VmHWM: the high-water mark of its
# own address space). Not os.wait4's ru_maxrss: Linux folds into it the peak of the address space
# the child had before exec, which, with subprocess's vfork, is this process's (the generator's).
CHILD = """
import re, sys
from captioner.report.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as f:
    print("VmHWM_KiB", re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1), file=sys.stderr)
sys.exit(code)
"""


def run_report(root: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one fresh report process."""
    cmd = [sys.executable, "-c", CHILD, str(root), "--set", "thumbnails=0"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"VmHWM_KiB (\d+)", proc.stderr)
    if proc.returncode not in (0, 1) or not found:
        raise RuntimeError(f"report failed on {root} (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, int(found.group(1)) / 1024.0, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        for size in args.sizes:
            root = Path(tmp) / f"out_{size}"
            t0 = time.perf_counter()
            make_folder(root, size)
            gen = time.perf_counter() - t0
            seconds, rss, code = run_report(root)
            report = json.loads((root / "report" / "report.json").read_text())
            rows.append((size, gen, seconds, rss, report))
            print(f"{size:>9,} clips: generated in {gen:6.1f} s, report {seconds:6.1f} s "
                  f"({size / seconds:,.0f} clips/s), peak RSS {rss:7.1f} MiB", flush=True)
    print()
    print(f"{'clips':>10} {'report s':>9} {'clips/s':>9} {'peak RSS MiB':>13} {'kept':>9} {'dup rate':>9} {'near-dup':>9} {'distinct-2':>10}")
    for size, _, seconds, rss, r in rows:
        c = r["caption"]
        print(f"{size:>10,} {seconds:>9.1f} {size / seconds:>9,.0f} {rss:>13.1f} {r['funnel']['kept_clips']:>9,} "
              f"{c['duplicate_rate']:>9.4f} {c['near_duplicate_rate']:>9.4f} {c['lexical']['distinct_2']:>10.4f}")
    (small, _, t_small, _, _), (big, _, t_big, _, _) = rows[0], rows[-1]
    peaks = [rss for _, _, _, rss, _ in rows]
    print(f"\nratio {big:,} / {small:,} clips: time x{t_big / t_small:.1f}, peak RSS x{peaks[-1] / peaks[0]:.2f}; "
          f"largest/smallest peak RSS over all sizes x{max(peaks) / min(peaks):.2f}")


if __name__ == "__main__":
    main()
