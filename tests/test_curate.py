"""End to end: a generated corpus (real H.264, known shots) → `vidforge curate` → manifests and shards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipeline.samples import load_ground_truth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def curated_output(tmp_path_factory):
    """A generated corpus plus broken inputs, curated once by the real CLI: (out, corpus, broken)."""
    from pipeline.samples import make_broken_inputs, make_corpus

    root = tmp_path_factory.mktemp("curate")
    corpus = root / "corpus"
    make_corpus(corpus, num_videos=4, seed=3)
    broken = make_broken_inputs(corpus / "broken")
    out = root / "out"
    run_curate(str(corpus), "--output", str(out))
    return out, corpus, broken


def run_curate(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vidforge", "curate", "--num-cpus", "2", "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_clips(out: Path):
    return pq.read_table(out / "manifest/clips.parquet").to_pylist()


def video_transitions(out: Path) -> dict[str, list]:
    """Each video's (by file name) ``transitions`` in ``videos.parquet``."""
    return {Path(r["path"]).name: r["transitions"] for r in pq.read_table(out / "manifest/videos.parquet").to_pylist()}


def shard_samples(out: Path) -> list[dict]:
    tars = sorted(str(p) for p in (out / "shards").glob("shard-*.tar"))
    return list(wds.WebDataset(tars, shardshuffle=False)) if tars else []


def test_manifests_and_shards(curated_output):
    out, corpus, broken = curated_output
    videos = {Path(r["path"]).name: r for r in pq.read_table(out / "manifest/videos.parquet").to_pylist()}
    truth = load_ground_truth(corpus / "ground_truth.json")
    assert len(videos) == len(truth) + len(broken)
    for name in ("empty.mp4", "not_video.mp4", "truncated.mp4", "audio_only.mp4", "one_frame.mp4"):
        assert videos[name]["status"] == "failed" and videos[name]["error"], name
    assert "no video stream" in videos["audio_only.mp4"]["error"]
    assert videos["empty.mp4"]["error"] == "empty file"
    for video in truth:
        row = videos[Path(video.path).name]
        assert row["status"] == "ok", row["error"]
        assert row["frame_count"] == video.num_frames and (row["width"], row["height"]) == (video.width, video.height)
        assert (row["colour"], row["interlaced"]) == ("SDR", False)  # the samples: untagged 8-bit, progressive
        assert (row["damaged_frames"], row["warning"]) == (0, None)  # decoded whole, nothing skipped

    clips = read_clips(out)
    kept = [c for c in clips if c["kept"]]
    assert kept and len(kept) < len(clips)
    assert all(c["reject_reason"] is None for c in kept)
    assert all(c["reject_reason"] for c in clips if not c["kept"])
    # shards hold exactly the kept clips, each readable, its json its manifest row
    samples = shard_samples(out)
    assert sorted(s["__key__"] for s in samples) == sorted(c["clip_id"] for c in kept)
    by_id = {c["clip_id"]: c for c in kept}
    for sample in samples:
        row = json.loads(sample["json"])
        assert row["clip_id"] == sample["__key__"] and row["shard"] == by_id[row["clip_id"]]["shard"]
        assert row == by_id[row["clip_id"]]  # the json is the clip's manifest row, every column


def test_every_kept_clip_lies_inside_one_true_shot(curated_output):
    out, corpus, _ = curated_output
    truth = {Path(v.path).name: v for v in load_ground_truth(corpus / "ground_truth.json")}
    for clip in read_clips(out):
        video = truth.get(Path(clip["source"]).name)
        if video is None:
            continue
        inside = [s for s in video.shots if s.start <= clip["start_frame"] and clip["end_frame"] <= s.end]
        assert len(inside) == 1, f"{clip['clip_id']} [{clip['start_frame']}, {clip['end_frame']}) crosses a transition"
        if inside[0].kind == "still":
            assert not clip["kept"] and clip["reject_reason"] in ("static", "too_short")
        if inside[0].kind == "dark":
            assert not clip["kept"] and clip["reject_reason"] in ("too_dark", "too_short")


def test_videos_list_their_transitions(curated_output):
    """``videos.parquet``'s ``transitions``: list<struct<kind, start_frame, end_frame>> as read back by
    pyarrow, ``num_transitions`` its length, each within 2 frames of the generated corpus's ground truth
    (a cut: ``start_frame == end_frame``, the new shot's first frame), failed videos ``[]``, and no
    kept clip overlapping a transition of its video."""
    import pyarrow as pa

    out, corpus, _ = curated_output
    field = pq.read_schema(out / "manifest/videos.parquet").field("transitions")
    entry = pa.struct([("kind", pa.string()), ("start_frame", pa.int64()), ("end_frame", pa.int64())])
    assert field.type == pa.list_(entry), field.type
    rows = pq.read_table(out / "manifest/videos.parquet").to_pylist()
    videos = {Path(r["path"]).name: r for r in rows}
    for row in rows:
        assert row["transitions"] is not None and row["num_transitions"] == len(row["transitions"]), row["path"]
        if row["status"] == "failed":
            assert row["transitions"] == [], row["path"]
    for video in load_ground_truth(corpus / "ground_truth.json"):
        found = videos[Path(video.path).name]["transitions"]
        assert [t["kind"] == "cut" for t in found] == [t.kind == "cut" for t in video.transitions], (video.path, found)
        for got, truth in zip(found, video.transitions):
            assert got["kind"] == truth.kind, (video.path, got, truth)
            assert abs(got["start_frame"] - truth.start) <= 2 and abs(got["end_frame"] - truth.end) <= 2, (video.path, got, truth)
            if truth.kind == "cut":
                assert got["start_frame"] == got["end_frame"], got
            else:
                assert got["start_frame"] < got["end_frame"], got
    checked = 0
    for clip in read_clips(out):
        if not clip["kept"]:
            continue
        s, e = clip["start_frame"], clip["end_frame"]
        for t in videos[Path(clip["source"]).name]["transitions"]:
            if t["start_frame"] == t["end_frame"]:
                assert not s < t["start_frame"] < e, (clip["clip_id"], t)
            else:
                assert not (s < t["end_frame"] and t["start_frame"] < e), (clip["clip_id"], t)
            checked += 1
    assert checked


def test_extraction_is_frame_accurate(curated_output):
    """Each extracted frame matches its own source frame better than its neighbours (no off-by-one)."""
    out, _, _ = curated_output
    sample = next(s for s in shard_samples(out))
    row = json.loads(sample["json"])
    with av.open(__import__("io").BytesIO(sample["mp4"])) as c:
        clip_frames = [f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)]
    assert len(clip_frames) == row["end_frame"] - row["start_frame"] == row["num_frames"]
    with av.open(row["source"]) as c:
        src = [f.to_ndarray(format="gray").astype(np.float32) for i, f in enumerate(c.decode(video=0)) if row["start_frame"] - 1 <= i <= row["end_frame"]]
    for i in (0, len(clip_frames) // 2, len(clip_frames) - 1):
        errors = [np.abs(clip_frames[i] - src[i + d]).mean() for d in (0, 1, 2)]  # src[i+1] is the same frame
        assert np.argmin(errors) == 1, (i, errors)


def test_clips_sent_in_parts_give_the_same_run(curated_output, tmp_path):
    """Every clip leaving its worker as a part of its own (``extract.part_bytes=1``, as a long
    video's do) and shards of two clips: the same manifests as the default run, each kept clip once
    in the shards, and a video's clips spread over several shards (closed between its parts)."""
    out, corpus, _ = curated_output
    parts = tmp_path / "parts"
    run_curate(str(corpus), "--output", str(parts), "--set", "extract.part_bytes=1", "--set", "shards.max_samples=2")

    def manifests(root: Path):
        videos = pq.read_table(root / "manifest/videos.parquet").to_pylist()
        return (
            sorted((v["path"], v["status"], v["num_clips"], v["num_kept"], str(v["transitions"])) for v in videos),
            sorted((c["clip_id"], c["kept"], c["reject_reason"]) for c in read_clips(root)),
        )

    assert manifests(parts) == manifests(out)
    kept = [c for c in read_clips(parts) if c["kept"]]
    assert sorted(s["__key__"] for s in shard_samples(parts)) == sorted(c["clip_id"] for c in kept)
    per_shard: dict[str, int] = {}
    shards_of: dict[str, set] = {}
    for clip in kept:
        per_shard[clip["shard"]] = per_shard.get(clip["shard"], 0) + 1
        shards_of.setdefault(clip["source"], set()).add(clip["shard"])
    assert max(per_shard.values()) <= 2 and max(map(len, shards_of.values())) > 1


def test_rerun_is_a_no_op_and_bad_usage_is_reported(curated_output, tmp_path):
    out, corpus, _ = curated_output
    before = read_clips(out)
    proc = run_curate(str(corpus), "--output", str(out))
    assert "already done" in proc.stdout
    assert read_clips(out) == before

    proc = run_curate(str(corpus), "--output", str(tmp_path / "o"), "--set", "filter.min_motion=fast", check=False)
    assert proc.returncode == 2 and "filter.min_motion: expected a number" in proc.stderr
    proc = run_curate(str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "missing.mp4: input path not found" in proc.stderr
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    proc = run_curate(str(corpus), "--output", str(blocker / "o"), check=False)
    assert proc.returncode == 2 and "not writable" in proc.stderr
    proc = run_curate(str(corpus), "--output", str(out), "--set", "plan.margin_s=0.5", check=False)
    assert proc.returncode == 2 and "plan.margin_s" in proc.stderr and "--overwrite" in proc.stderr
    from pipeline.journal import OutputJournal

    with OutputJournal(tmp_path / "busy"):  # a run already writing there (this process)
        proc = run_curate(str(corpus), "--output", str(tmp_path / "busy"), check=False)
    assert proc.returncode == 2 and f"another vidforge run is writing this folder (pid {os.getpid()} on" in proc.stderr
    proc = run_curate(str(corpus), "--output", str(tmp_path / "o"), "--num-cpus", "0", check=False)
    assert proc.returncode == 2 and "--num-cpus: expected an integer >= 1, got 0" in proc.stderr  # Ray hung on 0 CPUs
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = run_curate(str(corpus), "--output", str(tmp_path / "o"), "--ray-address", f"127.0.0.1:{port}", check=False)
    assert proc.returncode == 2 and f"Ray cluster at 127.0.0.1:{port} (--ray-address / RAY_ADDRESS): cannot connect" in proc.stderr
    proc = run_curate(str(corpus), "--output", "s3://bucket/curated", check=False, cwd=tmp_path)
    assert proc.returncode == 2 and "s3://bucket/curated: the output must be a folder on a local or shared filesystem" in proc.stderr
    assert not (tmp_path / "s3:").exists()


# The interrupted run: the real CLI, whose process group SIGKILLs itself (driver and embedded Ray, no clean-up)
# as soon as one commit is on disk. Killing from inside makes the moment exact: a kill sent from the test by
# watching the folder raced the run, which on a fast machine had finished and merged before the kill arrived.
_KILL_AFTER_FIRST_COMMIT = """
import os, signal, sys
import pipeline.curate as curate_module
from pathlib import Path
from pipeline.cli import main

run = curate_module.curate
out = Path(sys.argv[sys.argv.index("--output") + 1])

def kill_once_committed(record):
    if list((out / "manifest" / "parts").glob("part-*-units.parquet")):
        os.killpg(0, signal.SIGKILL)

curate_module.curate = lambda *args, **kwargs: run(*args, on_video=kill_once_committed, **kwargs)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("parts", [False, True], ids=["whole videos", "killed between a video's parts"])
def test_resume_after_sigkill_gives_the_same_clips(curated_output, tmp_path, parts):
    """Killed once a commit is on disk, then rerun. With every clip a part of its own
    (``extract.part_bytes=1``), the kill comes as the first video's last part arrives: its clips are
    committed, its row is not; the rerun redoes the video and must not write those clips again."""
    out, corpus, _ = curated_output
    reference = {c["clip_id"]: c["kept"] for c in read_clips(out)}
    resumed = tmp_path / "resumed"
    settings = ["--set", "shards.max_samples=1"] + (["--set", "extract.part_bytes=1"] if parts else [])
    cmd = [sys.executable, "-c", _KILL_AFTER_FIRST_COMMIT, str(corpus), "--output", str(resumed)]
    cmd += ["--num-cpus", "1", "--no-progress", *settings]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    committed = list((resumed / "manifest" / "parts").glob("part-*-units.parquet"))
    assert committed and not (resumed / "manifest" / "clips.parquet").exists()
    if parts:  # clips committed whose video has no row yet: what the rerun must not write again
        done = {path for p in committed for path in pq.read_table(p).column("path").to_pylist()}
        clip_parts = (resumed / "manifest" / "parts").glob("part-*-clips.parquet")
        sources = {c["source"] for p in clip_parts for c in pq.read_table(p).to_pylist() if c["kept"]}
        assert sources - done
    run_curate(str(corpus), "--output", str(resumed), *settings)
    clips = read_clips(resumed)
    assert {c["clip_id"]: c["kept"] for c in clips} == reference
    assert video_transitions(resumed) == video_transitions(out)  # rows committed before the kill and after it
    assert len(clips) == len(reference)  # nothing duplicated
    keys = [s["__key__"] for s in shard_samples(resumed)]
    assert sorted(keys) == sorted(k for k, kept in reference.items() if kept)
    assert not list((resumed / "shards").glob(".*"))  # no half-written shard left


_TERM_AFTER_FIRST_COMMIT = _KILL_AFTER_FIRST_COMMIT.replace("os.killpg(0, signal.SIGKILL)", "os.kill(os.getpid(), signal.SIGTERM)")


def test_sigterm_stops_cleanly_and_the_rerun_finishes(curated_output, tmp_path):
    """SIGTERM (what `ray job stop` sends the driver) once a commit is on disk: the videos received
    whole are committed, one line says so, exit 143 (Ray's own handler dumped a stack trace and
    aborted, exit 134); the rerun gives the clips of an uninterrupted run."""
    out, corpus, _ = curated_output
    reference = {c["clip_id"]: c["kept"] for c in read_clips(out)}
    stopped = tmp_path / "stopped"
    settings = ["--set", "shards.max_samples=1"]
    cmd = [sys.executable, "-c", _TERM_AFTER_FIRST_COMMIT, str(corpus), "--output", str(stopped), "--num-cpus", "1", "--no-progress", *settings]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stderr
    assert "stopped (SIGTERM); finished videos are committed" in proc.stderr and "SIGTERM received" not in proc.stderr
    assert list((stopped / "manifest" / "parts").glob("part-*-units.parquet"))
    assert not list((stopped / "shards").glob(".*"))
    run_curate(str(corpus), "--output", str(stopped), *settings)
    assert {c["clip_id"]: c["kept"] for c in read_clips(stopped)} == reference


# The disk fills once a commit is on disk: the shard being written (``shard``) or, after the shard is
# renamed into place, the manifest part that commits it (``manifest``) cannot be written.
_DISK_FULL_AFTER_FIRST_COMMIT = """
import errno, os, sys
from pathlib import Path
import pipeline.journal as journal
import pipeline.shards as shards
from pipeline.cli import main

where = sys.argv.pop(1)
out = Path(sys.argv[sys.argv.index("--output") + 1])

def disk_full_once_committed(name):
    if list((out / "manifest" / "parts").glob("part-*-units.parquet")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)

if where == "shard":
    add = shards.ShardWriter.add
    def failing_add(self, clip):
        disk_full_once_committed(str(self.tmp_path))
        add(self, clip)
    shards.ShardWriter.add = failing_add
else:
    write = journal.write_table_atomic
    def failing_write(table, path):
        if path.name.endswith("-units.parquet"):
            disk_full_once_committed(str(path))
        write(table, path)
    journal.write_table_atomic = failing_write
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("where", ["shard", "manifest"])
def test_a_full_disk_stops_the_run_cleanly_and_the_rerun_finishes(curated_output, tmp_path, where):
    """A write fails (the disk is full): one clear line and exit code 2, no traceback; the commits
    before stand, nothing uncommitted is left in place (no temporary file, no shard the manifests do
    not name); the rerun gives the clips of an uninterrupted run."""
    out, corpus, _ = curated_output
    reference = {c["clip_id"]: c["kept"] for c in read_clips(out)}
    failed = tmp_path / "failed"
    settings = ["--set", "shards.max_samples=1"]
    cmd = [sys.executable, "-c", _DISK_FULL_AFTER_FIRST_COMMIT, where, str(corpus), "--output", str(failed)]
    proc = subprocess.run(cmd + ["--num-cpus", "1", "--no-progress", *settings], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"vidforge curate: error: {failed}: writing the output failed: No space left on device")
    assert "rerun the same command" in error
    parts = failed / "manifest" / "parts"
    committed = sorted(parts.glob("part-*-units.parquet"))
    assert committed and len(list(parts.glob("part-*-clips.parquet"))) == len(committed)
    named = {c["shard"] for p in parts.glob("part-*-clips.parquet") for c in pq.read_table(p).to_pylist() if c["shard"]}
    assert {p.name for p in (failed / "shards").iterdir()} == named  # no temporary file, no orphan shard
    run_curate(str(corpus), "--output", str(failed), *settings)
    clips = read_clips(failed)
    assert {c["clip_id"]: c["kept"] for c in clips} == reference and len(clips) == len(reference)
    assert sorted(s["__key__"] for s in shard_samples(failed)) == sorted(k for k, kept in reference.items() if kept)


def test_two_node_cluster_survives_losing_a_worker_node(curated_output, tmp_path):
    """A Ray cluster of a head and two worker nodes; one worker node is removed mid-run."""
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.curate import CurateConfig, curate
    from pipeline.io import resolve_inputs

    out, corpus, _ = curated_output
    reference = {c["clip_id"]: c["kept"] for c in read_clips(out)}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    removed = []

    def remove_worker_after_first_video(record):
        if not removed:
            cluster.remove_node(doomed)
            removed.append(record.path)

    try:
        ray.init(address=cluster.address)
        summary = curate(resolve_inputs([str(corpus)]), tmp_path / "cluster-out", CurateConfig(), progress=False, on_video=remove_worker_after_first_video)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed, "the worker node was never removed"
    clips = read_clips(tmp_path / "cluster-out")
    assert {c["clip_id"]: c["kept"] for c in clips} == reference
    assert summary.inputs == summary.videos_ok + summary.videos_failed


def test_curate_remote_inputs_gives_the_clips_of_the_local_files(curated_output, object_store, tmp_path):
    """`vidforge curate s3://...` and `gs://...` (the stores found through AWS_ENDPOINT_URL, as with
    MinIO, and STORAGE_EMULATOR_HOST) give the clips of the same files read locally, and leave none
    of their staged copies behind."""
    import glob
    import tempfile

    out, corpus, _ = curated_output
    videos = {Path(r["path"]).name: r for r in pq.read_table(out / "manifest/videos.parquet").to_pylist()}
    for video in sorted(corpus.glob("*.mp4")):
        object_store.put(f"corpus/{video.name}", video.read_bytes())
    staged_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "vidforge-staged-*")))
    remote_out = tmp_path / "from-store"
    folder = f"{object_store.scheme}://{object_store.bucket}/corpus"
    missing = f"{object_store.scheme}://{object_store.bucket}/gone/video.mp4"  # listed, not there: fails, the run goes on
    listing = object_store.put("lists/more.txt", f"{missing}\n".encode())
    run_curate(folder, listing, "--output", str(remote_out))
    remote_videos = pq.read_table(remote_out / "manifest/videos.parquet").to_pylist()
    (gone,) = [r for r in remote_videos if r["path"] == missing]
    assert gone["status"] == "failed" and "not found" in gone["error"], gone["error"]
    remote_videos.remove(gone)
    assert sorted(r["path"] for r in remote_videos) == sorted(f"{folder}/{p.name}" for p in corpus.glob("*.mp4"))
    for row in remote_videos:
        local = videos[row["path"].rsplit("/", 1)[1]]
        assert (row["status"], row["content_hash"], row["num_kept"]) == (local["status"], local["content_hash"], local["num_kept"])
    reference = {c["clip_id"]: c["kept"] for c in read_clips(out)}
    assert {c["clip_id"]: c["kept"] for c in read_clips(remote_out)} == reference
    assert sorted(s["__key__"] for s in shard_samples(remote_out)) == sorted(k for k, kept in reference.items() if kept)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "vidforge-staged-*"))) == staged_before  # copies removed


@pytest.mark.parametrize("degrees, turns", [(None, 0), (0, 0), (-90, 270), (90.0, 90), (89.6, 90), (-179.9, 180), (44, 0), (136, 180)])
def test_rotation_is_read_as_quarter_turns(degrees, turns):
    """A display matrix off a quarter turn (muxer rounding) counts as the nearest one, alike in probe,
    scan and extraction (the probe took 89.6 as 89: a landscape size for a portrait scan)."""
    from types import SimpleNamespace

    from pipeline.probe import quarter_turns

    assert quarter_turns(SimpleNamespace(rotation=degrees)) == turns


@pytest.mark.parametrize("rotation", [-90, 180])
def test_rotated_video_is_curated_upright(sample_corpus, tmp_path, rotation):
    """A phone-style video (stored sideways + display matrix) is probed, scanned and extracted upright:
    its clips equal the unrotated video's clips turned the way a player turns them."""
    import shutil

    from pipeline.curate import CurateConfig, cpu_stages
    from pipeline.records import VideoRecord
    from pipeline.samples import set_display_rotation

    source = sample_corpus[0].path
    rotated = tmp_path / "rotated.mp4"
    shutil.copy(source, rotated)
    set_display_rotation(rotated, rotation)

    config = CurateConfig()
    config.filter.min_width = 128  # sizes are upright: the 320x180 sample stands 180 wide

    def curate(path) -> VideoRecord:
        record = VideoRecord(path=str(path))
        for stage_cls, stage_config in cpu_stages(config):
            [record] = stage_cls(stage_config).process([record])
        return record

    plain, turned = curate(source), curate(rotated)
    assert turned.video["status"] == "ok", turned.video.get("error")
    assert turned.video["rotation"] == rotation % 360
    quarter = rotation % 180 != 0
    expect_size = (plain.video["height"], plain.video["width"]) if quarter else (plain.video["width"], plain.video["height"])
    assert (turned.video["width"], turned.video["height"]) == expect_size

    # the analysis works at one scale whatever the orientation: same clips, same scores
    plain_kept = {(c.row["start_frame"], c.row["end_frame"]): c for c in plain.clips if c.kept}
    turned_kept = {(c.row["start_frame"], c.row["end_frame"]): c for c in turned.clips if c.kept}
    assert plain_kept and turned_kept.keys() == plain_kept.keys()
    for span, clip in turned_kept.items():
        assert clip.row["sharpness"] == pytest.approx(plain_kept[span].row["sharpness"], rel=0.05)
        assert clip.row["motion"] == pytest.approx(plain_kept[span].row["motion"], rel=0.25)
    common = list(turned_kept.values())

    def frames(mp4: bytes) -> list[np.ndarray]:
        import io

        with av.open(io.BytesIO(mp4)) as container:
            return [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]

    clip = common[0]
    got = frames(clip.mp4)
    want = frames(plain_kept[(clip.row["start_frame"], clip.row["end_frame"])].mp4)
    k = rotation // 90  # np.rot90 turns counter-clockwise, as FFmpeg's rotation angle does
    assert len(got) == len(want) and got[0].shape == np.rot90(want[0], k).shape
    right = np.mean([np.abs(g - np.rot90(w, k)).mean() for g, w in zip(got, want)])
    wrong = np.mean([np.abs(g - np.rot90(w, k + 2)).mean() for g, w in zip(got, want)])
    assert right < 6.0 and wrong > 4 * right  # encoded twice (and turned through RGB): ~3.5, (right, wrong)
