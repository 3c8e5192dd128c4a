"""``vidforge report`` on a small, realistic output folder built here (manifests that follow
pipeline/manifest.py's schemas, a shard tar of real H.264 clips made with PyAV), and on the output
of ``vidforge demo`` (the session's ``demo_output`` fixture, see conftest.py).

Every expected number is computed in this file, plainly, from the fixture's own rows or from the
demo's manifests read with pyarrow.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest import CLIP_SCHEMA, CLIPS_FILE, VIDEO_SCHEMA, VIDEOS_FILE, conform, write_table_atomic
from vidforge.cli import main as vidforge_main

SECTIONS = ["verdict", "funnel", "clip-stats", "caption-quality", "samples", "shards"]

VIDEOS = [
    dict(path="in/a.mp4", status="ok", duration_s=30.0, fps=24.0, width=640, height=360, num_scenes=3, num_transitions=2, codec="h264"),
    dict(path="in/b.mp4", status="ok", duration_s=20.0, fps=30.0, width=1280, height=720, num_scenes=2, num_transitions=1, codec="h264"),
    dict(path="in/c.mp4", status="ok", duration_s=10.0, fps=25.0, width=640, height=480, num_scenes=1, num_transitions=0, codec="hevc"),
    dict(path="in/d.mp4", status="failed", error="cannot decode: moov atom not found"),
    dict(path="in/e.mp4", status="failed", error="cannot decode: Invalid data found when processing input"),
    dict(path="in/f.mp4", status="failed", error="too short: 0.4 s < 1 s"),
]  # fmt: skip

LONG = (
    "The camera slowly pans over a quiet harbor where small fishing boats rest on calm water while seagulls "
    "circle above the wooden pier and an old lighthouse stands on the rocky shore under a pale morning sky "
    "with thin clouds drifting east"
)
# kept clips: (caption, status, error, frame captions, clip_score, shard)
KEPT = {
    "k00": ("A brown dog runs across the green grass in a sunny park.", "ok", None,
            ["a dog running on grass", "a dog in a park"], 0.31, 0),
    "k01": ("A woman in a red coat walks along a snowy street at night.", "ok", None,
            ["a woman walking on a street"], 0.22, 0),
    "k02": ("a brown dog runs across the green grass in a SUNNY park", "ok", None,
            ["a dog running on grass", "a dog in a park"], 0.30, 0),
    "k03": (LONG, "ok", None, [], 0.27, 0),
    "k04": (LONG[: -len("east")] + "west", "ok", None, [], 0.26, 0),
    "k05": ("A video.", "ok", None, ["a cat"], 0.12, 0),
    "k06": ("the cat sleeps on the mat the cat sleeps on the mat the cat sleeps on the mat", "ok", None,
            ["a cat on a mat"], 0.18, 1),
    "k07": (None, "failed", "timeout: VLM did not answer in 30 s", [], None, 1),
    "k08": (None, "failed", "out of memory: CUDA OOM while captioning", [], None, 1),
    "k09": (None, None, None, [], None, 1),
    "k10": ("A man in a blue shirt cooks pasta in a small kitchen.", "ok", None,
            ["a man cooking in a kitchen", "a pot of pasta on a stove"], 0.29, 1),
}  # fmt: skip
# the approximate nouns the report documents (lexicon-based), written out by hand for the ok captions
NOUNS = {
    "k00": {"dog", "grass", "park"},
    "k01": {"woman", "coat", "street", "night"},
    "k02": {"dog", "grass", "park"},
    "k06": {"cat", "mat"},
    "k10": {"man", "shirt", "pasta", "kitchen"},
}
REJECTED = ["low_motion", "low_motion", "low_motion", "too_blurry", "too_blurry", "duplicate_of: k00"]
DURATIONS = {f"k{i:02d}": 2.0 + 0.5 * i for i in range(11)}


def _mp4(seed: int, frames: int = 8, width: int = 64, height: int = 48) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 255, size=3)
        for i in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[:] = (base + 20 * i) % 255
            img[:, (i * 6) % width : (i * 6) % width + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _clip_rows(captions: dict, provenance: dict) -> list[dict]:
    rows = []
    for i, reason in enumerate(REJECTED):
        rows.append(dict(clip_id=f"r{i:02d}", source="in/a.mp4", start_s=float(i), end_s=i + 3.0, duration_s=3.0,
                         fps=24.0, width=640, height=360, motion=0.05 + 0.01 * i, shake=0.1, sharpness=40.0 + i,
                         brightness=0.2, kept=False, reject_reason=reason))
    for i, (cid, (caption, status, error, frames, score, shard)) in enumerate(captions.items()):
        rows.append(dict(
            clip_id=cid, source="in/b.mp4" if i < 6 else "in/c.mp4", start_s=float(i), end_s=i + DURATIONS[cid],
            duration_s=DURATIONS[cid], fps=8.0, width=64, height=48, num_frames=8, motion=0.3 + 0.05 * i,
            shake=0.05, sharpness=120.0 + 10 * i, brightness=0.45 + 0.02 * i, aesthetic=4.5 + 0.1 * i,
            clip_score=score, kept=True, shard=f"shard-{shard:06d}.tar", caption=caption, caption_status=status,
            caption_error=error,
            frame_captions=json.dumps([{"time_s": 0.5 * j, "caption": c} for j, c in enumerate(frames)])
            if status else None,
            caption_provenance=json.dumps(provenance) if status else None,
        ))  # fmt: skip
    return rows


def _write_folder(root: Path, captions: dict, provenance: dict) -> Path:
    write_table_atomic(conform(VIDEOS, VIDEO_SCHEMA), root / VIDEOS_FILE)
    write_table_atomic(conform(_clip_rows(captions, provenance), CLIP_SCHEMA), root / CLIPS_FILE)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    for shard in (0, 1):
        with tarfile.open(root / "shards" / f"shard-{shard:06d}.tar", "w") as tar:
            for i, (cid, item) in enumerate(captions.items()):
                if item[5] != shard:
                    continue
                for ext, data in (("mp4", _mp4(i)), ("json", json.dumps({"clip_id": cid}).encode()),
                                  ("txt", (item[0] or "").encode())):
                    info = tarfile.TarInfo(f"{cid}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    a = _write_folder(base / "a", KEPT, {"models": {"vlm": "tiny-vlm", "llm": "tiny-llm"}, "smoke_test": False})
    other = {cid: ((f"Smoke caption number {i} about a scene with things.",) + v[1:] if v[1] == "ok" else v)
             for i, (cid, v) in enumerate(KEPT.items())}
    b = _write_folder(base / "b", other, {"models": {"vlm": "smoke"}, "smoke_test": True})
    # a tiny word-level tokenizer standing in for T5's, saved and loaded the way a real one is
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0}
    for caption, *_ in KEPT.values():
        for w in re.findall(r"\w+|[^\w\s]+", caption or ""):
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    (base / "tok").mkdir()
    tok.save(str(base / "tok" / "tokenizer.json"))
    return {"a": a, "b": b, "tok": base / "tok", "base": base}


def _run(*args) -> int:
    return vidforge_main(["report", *map(str, args)])


def _words(text):
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)*", (text or "").lower())


@pytest.fixture(scope="module")
def report_a(folders):
    assert _run(folders["a"], "--samples", 3, "--seed", 7, "--tokenizer", folders["tok"],
                "--set", "captions.max_tokens=10") == 0
    return json.loads((folders["a"] / "report" / "report.json").read_text())


def test_funnel_matches_the_manifests(report_a):
    f = report_a["funnel"]
    assert f["inputs"] == len(VIDEOS)
    assert f["failed_inputs"] == sum(v["status"] == "failed" for v in VIDEOS)
    assert f["failed_by_reason"] == {"cannot decode": 2, "too short": 1}
    assert f["scenes"] == sum(v.get("num_scenes") or 0 for v in VIDEOS)
    assert f["clips"] == len(REJECTED) + len(KEPT)
    assert f["kept_clips"] == len(KEPT)
    assert f["rejected_by_reason"] == {"low_motion": 3, "too_blurry": 2, "duplicate_of": 1}
    assert f["hours_in"] == pytest.approx(sum(v.get("duration_s") or 0 for v in VIDEOS) / 3600)
    assert f["hours_out"] == pytest.approx(sum(DURATIONS.values()) / 3600)
    assert f["hours_candidates"] == pytest.approx((sum(DURATIONS.values()) + 3.0 * len(REJECTED)) / 3600)


def test_caption_numbers_match_an_independent_computation(report_a):
    c = report_a["caption"]
    attempted = {k: v for k, v in KEPT.items() if v[1] is not None}
    ok = {k: v for k, v in attempted.items() if v[1] == "ok"}
    assert c["attempted"] == len(attempted) and c["ok"] == len(ok) and c["uncaptioned_kept"] == 1
    assert c["failed"] == 2 and c["failed_rate"] == pytest.approx(2 / len(attempted))
    assert c["failed_by_reason"] == {"timeout": 1, "out of memory": 1}

    words = {k: _words(v[0]) for k, v in ok.items()}
    # degenerate: fewer than 5 words, or more than 30% of the 3-grams repeat an earlier one
    degenerate = {}
    for k, w in words.items():
        grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
        if len(w) < 5:
            degenerate[k] = "too_short"
        elif grams and 1 - len(set(grams)) / len(grams) > 0.3:
            degenerate[k] = "repetitive"
    assert degenerate == {"k05": "too_short", "k06": "repetitive"}
    assert c["degenerate_by_reason"] == {"too_short": 1, "repetitive": 1}
    assert c["degenerate_rate"] == pytest.approx(2 / len(attempted))
    assert c["words"]["mean"] == pytest.approx(np.mean([len(w) for w in words.values()]))

    all_words = [w for ws in words.values() for w in ws]
    bigrams = [tuple(ws[i : i + 2]) for ws in words.values() for i in range(len(ws) - 1)]
    assert c["lexical"]["distinct_1"] == pytest.approx(len(set(all_words)) / len(all_words))
    assert c["lexical"]["distinct_2"] == pytest.approx(len(set(bigrams)) / len(bigrams))
    assert c["lexical"]["type_token_ratio"] == pytest.approx(np.mean([len(set(w)) / len(w) for w in words.values()]))

    # exact duplicates on the normalised text; near duplicates: word-3-gram Jaccard >= 0.8 with an earlier caption
    seen, exact = set(), 0
    for w in words.values():
        exact += " ".join(w) in seen
        seen.add(" ".join(w))
    shingles = [set(tuple(w[i : i + 3]) for i in range(len(w) - 2)) or {tuple(w)} for w in words.values()]
    near = sum(any(len(s & t) / len(s | t) >= 0.8 for t in shingles[:i]) for i, s in enumerate(shingles))
    assert (exact, near) == (1, 2)
    assert c["duplicate_rate"] == pytest.approx(exact / len(ok))
    assert c["near_duplicate_rate"] == pytest.approx(near / len(ok))

    openers = {}
    for w in words.values():
        openers[" ".join(w[:3])] = openers.get(" ".join(w[:3]), 0) + 1
    top = max(openers.values())
    assert c["top_opener_share"] == pytest.approx(top / len(ok))
    assert {o["opener"] for o in c["openers"] if o["count"] == top} == {k for k, v in openers.items() if v == top}

    frame_lemmas = {k: {w[:-1] if w.endswith("s") and not w.endswith("ss") else w for fc in ok[k][3] for w in _words(fc)} for k in NOUNS}
    expected = [len(NOUNS[k] & frame_lemmas[k]) / len(NOUNS[k]) for k in NOUNS]
    assert c["grounding"]["count"] == len(NOUNS)
    assert c["grounding"]["mean"] == pytest.approx(np.mean(expected))
    assert c["grounding"]["approximate"] is True
    assert c["grounding"]["no_frame_captions"] == 2 and c["grounding"]["no_nouns"] == 1

    scores = [v[4] for v in ok.values()]
    assert c["clip_score"]["mean"] == pytest.approx(np.mean(scores))
    tokens = [len(re.findall(r"\w+|[^\w\s]+", v[0])) for v in ok.values()]
    assert c["tokens"]["available"] is True
    assert c["tokens"]["mean"] == pytest.approx(np.mean(tokens))
    assert c["tokens"]["truncated"] == sum(t > 10 for t in tokens)
    assert c["smoke_test"] is False


def test_shards_samples_and_page(report_a, folders):
    shards = {s["shard"]: s for s in report_a["shards"]}
    for n in (0, 1):
        mine = [v for v in KEPT.values() if v[5] == n]
        s = shards[f"shard-{n:06d}.tar"]
        assert s["clips"] == len(mine)
        scored = [v[4] for v in mine if v[4] is not None]
        assert s["mean_clip_score"] == pytest.approx(np.mean(scored))
        assert s["hours"] == pytest.approx(sum(DURATIONS[k] for k, v in KEPT.items() if v[5] == n) / 3600)
    by_score = sorted((v[4], k) for k, v in KEPT.items() if v[4] is not None)
    assert [s["clip_id"] for s in report_a["samples"]["worst"]] == [k for _, k in by_score[:3]]
    random_ids = [s["clip_id"] for s in report_a["samples"]["random"]]
    assert len(random_ids) == 3 and set(random_ids) <= set(KEPT)
    html = (folders["a"] / "report" / "index.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html
    assert html.count("data:image/jpeg;base64,") >= 3 * 4  # a 4-frame strip per sample
    assert "thumbnails:" not in html  # no thumbnail error
    assert "smoke-banner" not in html
    assert "<details>" in html


def test_gates_and_exit_codes(folders, tmp_path, capsys):
    def config(text):
        path = tmp_path / f"c{abs(hash(text))}.yaml"
        path.write_text(text)
        return path

    a = folders["a"]
    assert _run(a, "--samples", 1, "--config", config("gates: [{metric: funnel.kept_clips, min: 1}]")) == 0
    assert "PASS funnel.kept_clips" in capsys.readouterr().out
    # one failing gate fails the run; a null metric (no tokenizer: no token numbers) fails its gate
    assert _run(a, "--samples", 1, "--config", config(
        "gates: [{metric: caption.degenerate_rate, max: 0.02}, {metric: funnel.kept_clips, min: 1},"
        " {metric: caption.tokens.mean, max: 100}]")) == 1
    out = capsys.readouterr().out
    assert "FAIL caption.degenerate_rate" in out and "PASS funnel.kept_clips" in out
    assert "FAIL caption.tokens.mean is not available" in out
    report = json.loads((a / "report" / "report.json").read_text())
    assert [g["passed"] for g in report["gates"]] == [False, True, False]
    assert report["verdict"]["level"] == "fail"
    # usage errors: exit 2 with a clear message
    assert _run(a, "--config", config("gates: [{metric: caption.nope, max: 1}]")) == 2
    assert "caption.nope" in capsys.readouterr().err
    assert _run(a, "--config", config("sampels: 3")) == 2
    assert "sampels: unknown key" in capsys.readouterr().err
    assert _run(tmp_path / "missing") == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty") == 2
    assert "not a vidforge output folder" in capsys.readouterr().err
    assert _run(a, "--tokenizer", tmp_path / "no-tokenizer") == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_compare_and_smoke_banner(folders, tmp_path):
    a, b = folders["a"], folders["b"]
    assert _run(a, "--samples", 2, "--compare", b) == 0
    report = json.loads((a / "report" / "report.json").read_text())
    cmp = report["compare"]
    assert cmp["b_smoke_test"] is True and cmp["b"]["caption"]["smoke_test_clips"] == 10
    assert cmp["joined"] == len(cmp["pairs"]) > 0
    for pair in cmp["pairs"]:
        assert pair["a"]["clip_id"] == pair["b"]["clip_id"]
        if pair["a"]["caption_status"] == "ok":
            assert pair["b"]["caption"].startswith("Smoke caption number")
    metrics = {m["metric"]: m for m in cmp["metrics"]}
    assert metrics["funnel.kept_clips"]["a"] == metrics["funnel.kept_clips"]["b"] == len(KEPT)
    assert metrics["caption.smoke_test_clips"]["b"] == 10
    html = (a / "report" / "index.html").read_text()
    assert 'id="compare"' in html and "Smoke caption number" in html

    assert _run(b, "--samples", 1) == 0
    smoke = json.loads((b / "report" / "report.json").read_text())
    assert smoke["caption"]["smoke_test"] is True and smoke["verdict"]["level"] == "fail"
    assert 'id="smoke-banner"' in (b / "report" / "index.html").read_text()


def test_curate_config_thresholds_and_seeded_samples(folders, report_a, tmp_path):
    curate = tmp_path / "curate.yaml"
    curate.write_text("filter:\n  min_motion: 0.25\n  min_sharpness: 100\n  unrelated_key: true\nscan:\n  width: 160\n")
    cfg = tmp_path / "report.yaml"
    cfg.write_text(f"curate_config: {curate}\nthumbnails: 0\n")
    copy = tmp_path / "a"
    shutil.copytree(folders["a"], copy)
    assert _run(copy, "--config", cfg, "--samples", 3, "--seed", 7) == 0
    report = json.loads((copy / "report" / "report.json").read_text())
    thresholds = report["clips"]["thresholds"]
    assert thresholds["min_motion"] == 0.25 and thresholds["min_sharpness"] == 100.0
    assert thresholds["min_duration_s"] == 2.0  # the report config's default, not in the curate config
    # the same seed draws the same random clips
    assert [s["clip_id"] for s in report["samples"]["random"]] == [s["clip_id"] for s in report_a["samples"]["random"]]
    assert report["caption"]["tokens"]["available"] is False and "tokenizer" in report["caption"]["tokens"]["reason"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


def check_page_in_chromium(page: Path, workdir: Path) -> Path:
    """Load ``page`` in headless Chromium: every section is in the rendered DOM, and a screenshot of
    it is not blank. Returns the screenshot."""
    from PIL import Image

    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={workdir / 'profile'}"]  # fmt: skip
    uri = page.resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", uri], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    missing = [section for section in SECTIONS if f'id="{section}"' not in dom.stdout]
    assert not missing, f"{page}: sections missing from the rendered page: {missing}"
    shot = workdir / "page.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,2000", uri],
                   capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"Chromium wrote no screenshot of {page}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10, f"the screenshot of {page} is blank"
    return shot


@needs_chromium
def test_page_renders_in_headless_chromium(report_a, folders, tmp_path):
    shot = check_page_in_chromium(folders["a"] / "report" / "index.html", tmp_path)
    shutil.copy(shot, folders["base"] / "page.png")


def test_manifest_batches_stream_in_bounded_arrow_memory(tmp_path):
    """Reading a manifest of many row groups holds about one batch of Arrow memory, not every row group
    read so far (pyarrow's default pre-buffering does the latter)."""
    from captioner.report.collect import _batches

    rng = np.random.default_rng(0)
    path = tmp_path / "long.parquet"
    with pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as writer:
        for _ in range(30):  # 30 row groups of 2,000 incompressible 200-character strings: ~12 MB
            writer.write_table(pa.table({"text": [rng.bytes(100).hex() for _ in range(2000)]}), row_group_size=2000)
    before = pa.total_allocated_bytes()
    rows = peak = 0
    for batch in _batches(path, ["text"], 1000):
        assert batch.num_rows <= 1000
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - before)
    assert rows == 30 * 2000
    size = path.stat().st_size
    assert peak < size / 4, f"{peak:,} bytes of Arrow memory held while reading a {size:,}-byte file"


# ---- the demo's output -------------------------------------------------------------------------
# `vidforge demo` runs once per session (conftest.py: demo_output). `vidforge report` is rerun, as a
# real process, on a copy of its curated folder; expected numbers come from the demo's manifests.


def _vidforge_report(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidforge", "report", str(folder), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def _reason(text: str | None) -> str:
    """The documented grouping of free-text reasons: the text before the first ':', ' (', ' - ' or
    ';', numbers written N."""
    if not text or not text.strip():
        return "(no reason given)"
    head = re.split(r":| \(| - |;", " ".join(text.split()))[0]
    return re.sub(r"\d+(\.\d+)?", "N", head).strip()


def _gates_config(path: Path, gates: list[tuple[str, str, float]]) -> Path:
    path.write_text("gates:\n" + "".join(f"  - {{metric: {m}, {bound}: {v}}}\n" for m, bound, v in gates))
    return path


@pytest.fixture(scope="module")
def demo(demo_output, tmp_path_factory):
    curated = demo_output.root / "curated"
    videos = pq.read_table(curated / VIDEOS_FILE).to_pylist()
    clips = pq.read_table(curated / CLIPS_FILE).to_pylist()
    kept = [c for c in clips if c["kept"]]
    failed = [v for v in videos if v["status"] != "ok"]
    base = tmp_path_factory.mktemp("demo_report")
    folder = base / "curated"
    shutil.copytree(curated, folder)
    shutil.rmtree(folder / "report")  # written by the demo; the test's own run must write it again
    # gates that pass exactly at the expected values
    config = _gates_config(base / "pass.yaml", [("funnel.kept_clips", "min", len(kept)),
                                                ("funnel.failed_inputs", "max", len(failed))])
    proc = _vidforge_report(folder, "--config", config)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((folder / "report" / "report.json").read_text())
    return {"folder": folder, "videos": videos, "clips": clips, "kept": kept, "failed": failed,
            "stdout": proc.stdout, "report": report}


@pytest.mark.slow
def test_demo_report_numbers_match_its_manifests(demo):
    videos, clips, kept, failed, r = demo["videos"], demo["clips"], demo["kept"], demo["failed"], demo["report"]
    f = r["funnel"]
    assert f["inputs"] == len(videos) == 3 + 6  # 3 generated videos and 6 broken files
    assert f["failed_inputs"] == len(failed) and f["ok_inputs"] == len(videos) - len(failed)
    assert f["failed_by_reason"] == dict(Counter(_reason(v["error"]) for v in failed))
    assert f["scenes"] == sum(v["num_scenes"] or 0 for v in videos)
    assert f["clips"] == len(clips) and f["kept_clips"] == len(kept) >= 1
    assert f["rejected_by_reason"] == dict(Counter(_reason(c["reject_reason"]) for c in clips if not c["kept"]))
    assert f["hours_in"] == pytest.approx(sum(v["duration_s"] or 0.0 for v in videos) / 3600)
    assert f["hours_candidates"] == pytest.approx(sum(c["duration_s"] for c in clips) / 3600)
    assert f["hours_out"] == pytest.approx(sum(c["duration_s"] for c in kept) / 3600)

    # clip statistics: count, mean, min and max of each plotted metric over all candidates and kept clips
    assert set(r["clips"]["metrics"]) >= {"duration_s", "short_side", "fps", "motion", "sharpness", "brightness",
                                          "aesthetic", "clip_score"}
    for name, stats in r["clips"]["metrics"].items():
        for subset, rows in (("all", clips), ("kept", kept)):
            if name == "short_side":  # rejected candidates were never extracted: no width or height
                values = [min(c["width"], c["height"]) for c in rows if c["width"] is not None and c["height"] is not None]
            else:
                values = [c[name] for c in rows]
            values = [float(v) for v in values if v is not None and math.isfinite(v)]
            assert stats[subset]["count"] == len(values), (name, subset)
            if values:
                got = (stats[subset]["mean"], stats[subset]["min"], stats[subset]["max"])
                assert got == pytest.approx((np.mean(values), min(values), max(values))), (name, subset)

    c = r["caption"]
    attempted = [k for k in kept if k["caption_status"] is not None]
    ok = [k for k in attempted if k["caption_status"] == "ok"]
    assert (c["attempted"], c["ok"], c["failed"]) == (len(attempted), len(ok), len(attempted) - len(ok))
    assert c["uncaptioned_kept"] == len(kept) - len(attempted)
    assert c["failed_by_reason"] == dict(Counter(_reason(k["caption_error"]) for k in attempted if k["caption_status"] != "ok"))
    words = [_words(k["caption"]) for k in ok]
    assert c["words"]["count"] == len(words) and c["words"]["mean"] == pytest.approx(np.mean([len(w) for w in words]))
    degenerate = [w for w in words if len(w) < 5 or (len(w) > 2 and 1 - len(set(zip(w, w[1:], w[2:]))) / (len(w) - 2) > 0.3)]
    assert c["degenerate"] == len(degenerate)
    texts = [" ".join(w) for w in words if w]
    assert c["duplicates"]["exact"] == len(texts) - len(set(texts))
    all_words = [x for w in words for x in w]
    assert c["lexical"]["distinct_1"] == pytest.approx(len(set(all_words)) / len(all_words))
    scores = [k["clip_score"] for k in ok if k["clip_score"] is not None and math.isfinite(k["clip_score"])]
    assert c["clip_score"]["count"] == len(scores) and c["clip_score"]["mean"] == pytest.approx(np.mean(scores))
    smoke = sum(json.loads(k["caption_provenance"]).get("smoke_test") is True for k in attempted if k["caption_provenance"])
    assert c["smoke_test_clips"] == smoke and c["smoke_test"] is (smoke > 0)

    shards = {s["shard"]: s for s in r["shards"]}
    assert set(shards) == {k["shard"] or "(no shard)" for k in kept}
    for name, s in shards.items():
        mine = [k for k in kept if (k["shard"] or "(no shard)") == name]
        assert s["clips"] == len(mine)
        assert s["hours"] == pytest.approx(sum(k["duration_s"] for k in mine) / 3600)

    n = r["config"]["samples"]
    scored = [k for k in kept if k["clip_score"] is not None and math.isfinite(k["clip_score"])]
    by_score = sorted((k["clip_score"], k["clip_id"]) for k in scored)
    assert [s["clip_id"] for s in r["samples"]["worst"]] == [cid for _, cid in by_score[:n]]
    assert len(r["samples"]["random"]) == min(n, len(kept))
    html = (demo["folder"] / "report" / "index.html").read_text()
    assert "thumbnails:" not in html  # no thumbnail error: every sample's keyframes came out of the shards
    assert html.count("data:image/jpeg;base64,") >= 4 * (len(r["samples"]["worst"]) + len(r["samples"]["random"]))


@pytest.mark.slow
def test_demo_report_gates_pass_and_fail_as_configured(demo, tmp_path):
    assert "PASS funnel.kept_clips" in demo["stdout"] and "PASS funnel.failed_inputs" in demo["stdout"]
    assert [g["passed"] for g in demo["report"]["gates"]] == [True, True]
    # one more kept clip than the demo has: the run fails, with exit code 1
    folder = tmp_path / "curated"
    shutil.copytree(demo["folder"], folder)
    config = _gates_config(tmp_path / "fail.yaml", [("funnel.kept_clips", "min", len(demo["kept"]) + 1),
                                                    ("funnel.failed_inputs", "max", len(demo["failed"]))])
    proc = _vidforge_report(folder, "--config", config, "--set", "thumbnails=0")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAIL funnel.kept_clips" in proc.stdout and "PASS funnel.failed_inputs" in proc.stdout
    report = json.loads((folder / "report" / "report.json").read_text())
    assert [g["passed"] for g in report["gates"]] == [False, True]
    assert report["verdict"]["gates_failed"] == 1 and report["verdict"]["level"] == "fail"


@pytest.mark.slow
@needs_chromium
def test_demo_report_page_renders_in_headless_chromium(demo, tmp_path):
    check_page_in_chromium(demo["folder"] / "report" / "index.html", tmp_path)
