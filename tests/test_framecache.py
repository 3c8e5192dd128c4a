"""The frame cache (:mod:`pipeline.framecache`): the encoder gets from it exactly the frames that
decoding the kept spans again would give (rotated, HDR, variable-rate sources too); a video that fits
is decoded once; a longer one has the clips past the cache decoded again; a pickled record arrives
without frames and extraction decodes them."""

from __future__ import annotations

import pickle

import av
import numpy as np
import pytest

from pipeline import extract
from pipeline.extract import ExtractConfig, FramePreparer, output_size
from pipeline.framecache import FrameCache
from pipeline.records import VideoRecord
from pipeline.samples import make_hdr_copy, set_display_rotation

from curation_helpers import gray_frames, run_on, sample_stages


def scanned(path, **extract_settings) -> VideoRecord:
    """``path`` through probe, scan (filling the cache), plan and filter."""
    record = run_on(VideoRecord(path=str(path)), sample_stages(**extract_settings)[:-1])
    assert record.video["status"] == "ok", record.video.get("error")
    assert record.kept_clips(), "no clip kept: nothing to check"
    return record


def kept_spans(record: VideoRecord) -> list[tuple[int, int]]:
    return sorted((c.row["start_frame"], c.row["end_frame"]) for c in record.kept_clips())


@pytest.fixture
def decoded_spans(monkeypatch) -> list[tuple[int, int]]:
    """The spans extraction decodes again (from the source, not the cache), as it asks for them."""
    spans = []
    decode_spans = extract._decode_spans

    def recording(path, wanted, *args, **kwargs):
        spans.extend(wanted)
        yield from decode_spans(path, wanted, *args, **kwargs)

    monkeypatch.setattr(extract, "_decode_spans", recording)
    return spans


@pytest.mark.parametrize("rotation", [0, -90, 180])
def test_cache_holds_the_frames_decoding_again_gives(sample_corpus, tmp_path, rotation):
    """Every frame of every kept span, as the cache has it, is bit for bit the frame extraction makes
    by decoding the span again and preparing it (upright, output size), at the same time."""
    path = tmp_path / "source.mp4"
    path.write_bytes(open(sample_corpus[1].path, "rb").read())
    if rotation:
        set_display_rotation(path, rotation)
    record = scanned(path)
    config = ExtractConfig()
    scan, cache, spans = record.scan, record.frame_cache, kept_spans(record)
    rotation = int(record.video.get("rotation") or 0)
    assert cache.size == output_size(scan.width, scan.height, config.max_short_side)
    assert len(cache) == scan.num_frames and all(cache.holds(*span) for span in spans)
    per_frame = cache.nbytes / len(cache)
    cache.keep_only(spans)  # as extraction starts: what no clip needs is freed
    assert cache.nbytes == per_frame * sum(b - a for a, b in spans)
    keyframe_times = record.probe.keyframe_times_s - scan.time_origin_s
    decoded = extract._decode_spans(str(path), spans, scan.frame_times, scan.time_origin_s, 0.0, 1, keyframe_times)
    prepare = FramePreparer.for_config(config, cache.size, rotation)
    count = 0
    for (span, frame, t), (cached_span, cached, cached_t) in zip(decoded, cache.take(spans, scan.frame_times), strict=True):
        assert (span, t) == (cached_span, cached_t)
        np.testing.assert_array_equal(prepare(frame).to_ndarray(), cached.to_ndarray())
        count += 1
    assert count == sum(b - a for a, b in spans)
    assert cache.nbytes == 0  # taken frames are freed


def test_hdr_frames_are_not_cached(sample_corpus, tmp_path):
    """HDR frames are not cached (their SDR conversion costs several decodes a frame, and most frames
    are not kept): the clips are decoded again, as SDR (``tests/test_extract.py`` checks the colours)."""
    path = tmp_path / "hlg.mp4"
    make_hdr_copy(sample_corpus[1].path, path, "HLG")
    record = scanned(path)
    assert record.frame_cache.closed and len(record.frame_cache) == 0
    record = run_on(record, sample_stages()[-1:])
    assert record.kept_clips() and all(c.mp4 for c in record.kept_clips())


def test_video_in_the_cache_is_decoded_once(sample_corpus, tmp_path):
    """With the video in the cache, extraction never opens the source: its clips come out with the
    source gone. With the cache off, the same extraction needs the file (it decodes the spans again)."""
    for cache_mb in (512, 0):
        path = tmp_path / f"video-{cache_mb}.mp4"
        path.write_bytes(open(sample_corpus[1].path, "rb").read())
        record = scanned(path, frame_cache_mb=cache_mb)
        spans = kept_spans(record)
        reference = gray_frames(path)
        path.unlink()
        record = run_on(record, sample_stages(frame_cache_mb=cache_mb)[-1:])
        assert record.frame_cache is None and record.scan is None  # memory given back
        kept = record.kept_clips()
        if not cache_mb:
            failed = [c for c in record.clips if c.row.get("reject_reason") == "error:extract"]
            assert not kept and len(failed) == len(spans)
            continue
        assert kept_spans(record) == spans
        for clip in kept:
            a, b = clip.row["start_frame"], clip.row["end_frame"]
            frames = gray_frames(clip.mp4)
            assert len(frames) == b - a == clip.row["num_frames"]
            assert max(np.abs(f - reference[a + k]).mean() for k, f in enumerate(frames)) < 3.0


def test_clips_past_the_cache_are_decoded_again(sample_corpus, tmp_path, decoded_spans):
    """A video longer than the cache: it holds the frames up to its budget, the clips inside come from
    there, the others are decoded again (only theirs), and every clip holds exactly its frames."""
    reference = gray_frames(sample_corpus[1].path)
    full = scanned(sample_corpus[1].path)
    spans = kept_spans(full)
    assert len(spans) >= 2
    frame_bytes = full.frame_cache.nbytes / len(full.frame_cache)
    budget_mb = (spans[0][1] + 1) * frame_bytes / 2**20  # up to just past the first clip
    record = scanned(sample_corpus[1].path, frame_cache_mb=budget_mb)
    assert len(record.frame_cache) == spans[0][1] + 1 and record.frame_cache.closed
    assert record.frame_cache.nbytes <= budget_mb * 2**20
    record = run_on(record, sample_stages(frame_cache_mb=budget_mb)[-1:])
    assert decoded_spans == spans[1:]
    assert kept_spans(record) == spans
    for clip in record.kept_clips():
        a, b = clip.row["start_frame"], clip.row["end_frame"]
        frames = gray_frames(clip.mp4)
        assert len(frames) == b - a == clip.row["num_frames"]
        for k in (0, len(frames) // 2, len(frames) - 1):
            errors = {d: np.abs(frames[k] - reference[a + k + d]).mean() for d in (-1, 0, 1) if 0 <= a + k + d < len(reference)}
            assert min(errors, key=errors.get) == 0, (a, b, k, errors)


def test_pickled_record_arrives_without_frames(sample_corpus):
    """A record that leaves its worker mid-chain carries no frames (they are not picklable, and far
    too big): its cache arrives empty and closed, and extraction decodes the clips again."""
    record = scanned(sample_corpus[1].path)
    assert len(record.frame_cache) > 0
    moved = pickle.loads(pickle.dumps(record))
    assert len(moved.frame_cache) == 0 and moved.frame_cache.closed and moved.frame_cache.nbytes == 0
    moved = run_on(moved, sample_stages()[-1:])
    assert kept_spans(moved) == kept_spans(record)
    assert all(c.mp4 and c.row["num_frames"] == c.row["end_frame"] - c.row["start_frame"] for c in moved.kept_clips())


def test_cache_takes_frames_in_order_only():
    """Frames must come in the scan's order from 0: anything else closes the cache (extraction then
    decodes), rather than numbering frames wrongly."""
    frame = av.VideoFrame.from_ndarray(np.zeros((180, 320, 3), np.uint8), format="rgb24")
    cache = FrameCache(ExtractConfig())
    cache.begin(320, 180)
    cache.add(0, frame)
    cache.add(2, frame)
    assert cache.closed and len(cache) == 1
    cache.add(1, frame)
    assert len(cache) == 1 and cache.holds(0, 1) and not cache.holds(0, 2)
    with pytest.raises(ValueError, match="frame_cache_mb"):
        ExtractConfig(frame_cache_mb=-1)
    assert FrameCache(ExtractConfig(frame_cache_mb=0)).closed


def test_budget_shrinks_where_memory_per_cpu_is_short(tmp_path, monkeypatch):
    """The cache takes ``frame_cache_mb``, but at most a quarter of the memory per CPU: a 12-core laptop
    with 16 GiB gets 341 MiB a video; a container's memory limit (cgroup v2 or v1) counts, not the host's."""
    import pipeline.framecache as framecache

    monkeypatch.setattr(framecache.os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    monkeypatch.setattr(framecache, "machine_memory", lambda: 16 * 2**30)
    assert framecache.cache_budget(ExtractConfig()) == int(16 * 2**30 / 4 / 12)
    assert FrameCache(ExtractConfig()).budget == int(16 * 2**30 / 4 / 12)
    monkeypatch.setattr(framecache, "machine_memory", lambda: 256 * 2**30)
    assert framecache.cache_budget(ExtractConfig()) == 512 * 2**20  # plenty: the setting holds
    assert FrameCache(ExtractConfig(frame_cache_mb=0)).budget == 0
    monkeypatch.undo()

    import psutil

    host = psutil.virtual_memory().total
    assert framecache.machine_memory(tmp_path) == host  # no cgroup files: the host
    (tmp_path / "memory.max").write_text("max\n")  # cgroup v2, no limit
    assert framecache.machine_memory(tmp_path) == host
    (tmp_path / "memory.max").write_text(f"{2**30}\n")
    assert framecache.machine_memory(tmp_path) == 2**30
    (tmp_path / "memory.max").unlink()
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{3 * 2**30}\n")  # cgroup v1
    assert framecache.machine_memory(tmp_path) == min(host, 3 * 2**30)


def test_cache_made_for_other_clips_is_not_used(sample_corpus, decoded_spans):
    """Extraction takes the cache only if it was made with its own settings: run with another output
    size than the scan's cache, it decodes every clip again, at its own size."""
    record = scanned(sample_corpus[1].path)
    spans = kept_spans(record)
    record = run_on(record, sample_stages(max_short_side=90)[-1:])
    assert decoded_spans == spans
    for clip in record.kept_clips():
        assert (clip.row["width"], clip.row["height"]) == (160, 90)
        assert len(gray_frames(clip.mp4)) == clip.row["end_frame"] - clip.row["start_frame"]
