"""Damaged packets: decoding goes on past them, and the frames they damage stay out of every clip."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from pipeline.curate import CurateConfig, cpu_stages
from pipeline.decoding import DecodeReport, decode_frames
from pipeline.records import VideoRecord
from pipeline.samples import ShotSpec, make_damaged_copy, make_lossy_ts_copy, make_video
from pipeline.scan import scan_video, shots_without


def _frames_by_time(path) -> dict[float, np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {round(float(f.time), 3): f.to_ndarray(format="rgb24").astype(np.float32) for f in decode_frames(container, stream)}


@pytest.fixture(scope="module")
def damaged_video(tmp_path_factory):
    """A 10 s pan (24 fps, a keyframe every 48 frames) and a copy whose largest predicted packet of
    the second GOP is damaged: the decoder rejects it, and the frames predicted from it are wrong."""
    root = tmp_path_factory.mktemp("damaged")
    clean = make_video(root / "clean.mp4", [ShotSpec("pan", "hopper:", 240)], fps=24, size=(320, 180))
    with av.open(clean.path) as container:
        packets = [(i, p.size, p.is_keyframe, float(p.pts * p.time_base)) for i, p in enumerate(container.demux(video=0)) if p.size]
    second_gop = [p for p in packets if 2.0 < p[3] < 3.5 and not p[2]]
    index = max(second_gop, key=lambda p: p[1])[0]  # a P-frame: later frames of its GOP are predicted from it
    (damaged_at,) = make_damaged_copy(clean.path, root / "damaged.mp4", [index])
    return clean.path, root / "damaged.mp4", damaged_at


def test_plain_pyav_decoding_stops_at_the_damaged_packet(damaged_video):
    """Why pipeline.decoding exists: ``container.decode`` gives up on the rest of the video."""
    _, damaged, _ = damaged_video
    with av.open(str(damaged)) as container, pytest.raises(av.error.InvalidDataError):
        for _ in container.decode(video=0):
            pass


def test_scan_goes_on_past_the_damage_and_marks_every_damaged_frame(damaged_video):
    clean, damaged, damaged_at = damaged_video
    scan = scan_video(str(damaged))
    assert scan.num_frames == 239  # one frame lost with its packet; the other 238 after it decoded
    assert scan.decode_report.rejected_packets == 1 and f"{damaged_at:.2f} s" in scan.decode_report.first_rejection
    ((start, end),) = scan.damaged
    # the frames that differ from the clean video's are exactly those predicted from the lost picture
    original = _frames_by_time(clean)
    times = np.round(scan.frame_times, 3)
    differs = np.array([np.abs(original[t] - f).mean() > 1.0 for t, f in zip(times, _frames_by_time(damaged).values())])
    wrong = np.flatnonzero(differs)
    assert len(wrong) > 10 and start <= wrong[0] and wrong[-1] < end
    assert times[end] == pytest.approx(4.0)  # the run ends at the next keyframe (frame 96 of the clean video)
    assert end - start <= len(wrong) + 3  # and starts no more than a few frames before the damage shows
    # no shot holds a damaged frame; the clean frames either side are shots; no made-up transition
    assert scan.shots == [(0, start), (end, 239)] and scan.transitions == []
    assert scan.decode_error is None


def test_curated_clips_after_the_damage_match_the_clean_video(damaged_video):
    clean, damaged, _ = damaged_video
    records = [VideoRecord(path=str(damaged))]
    for stage, config in cpu_stages(CurateConfig()):
        records = stage(config).process(records)
    (record,) = records
    ((start, end),) = scan_video(str(damaged)).damaged
    assert record.video["status"] == "ok" and record.video["damaged_frames"] == end - start
    assert "rejected" in record.video["warning"] and "left out of clips" in record.video["warning"]
    kept = record.kept_clips()
    assert any(c.row["start_s"] >= 4.0 for c in kept)  # the video goes on after the damage
    original = _frames_by_time(clean)
    for clip in kept:
        assert clip.row["end_frame"] <= start or clip.row["start_frame"] >= end
        with av.open(io.BytesIO(clip.mp4)) as container:
            frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
        first = clip.row["start_s"]
        for k, frame in enumerate(frames):
            reference = original[round(first + k / 24, 3)]
            assert np.abs(frame - reference).mean() < 6.0, (clip.clip_id, k)


def test_shots_without_cuts_runs_out():
    assert shots_without([(0, 100)], [(40, 60)]) == [(0, 40), (60, 100)]
    assert shots_without([(0, 30), (40, 100)], [(20, 50), (90, 120)]) == [(0, 20), (50, 90)]
    assert shots_without([(0, 10)], [(0, 10)]) == []
    assert shots_without([(10, 20)], []) == [(10, 20)]


def test_report_line_names_the_packets_and_frames():
    report = DecodeReport(rejected_packets=2, first_rejection="packet at 2.50 s: Invalid data", damaged=[(55, 95), (120, 121)])
    assert report.damaged_frames == 41
    assert report.summary() == (
        "2 packet(s) the decoder rejected were skipped (first: packet at 2.50 s: Invalid data); "
        "41 damaged frame(s) left out of clips (frames 55-94, 120)"
    )
    assert DecodeReport().summary() is None


def test_a_video_whose_first_keyframe_is_damaged_is_curated_from_the_next(damaged_video, tmp_path):
    """The probe no longer fails a video whose first packet the decoder rejects: frames come from the
    next keyframe on (the decoder shows none before it), and the video row says what was skipped."""
    clean, _, _ = damaged_video
    (at,) = make_damaged_copy(clean, tmp_path / "first.mp4", [0])
    records = [VideoRecord(path=str(tmp_path / "first.mp4"))]
    for stage, config in cpu_stages(CurateConfig()):
        records = stage(config).process(records)
    (record,) = records
    assert record.video["status"] == "ok", record.video["error"]
    assert record.video["frame_count"] == 192 and f"packet at {at:.2f} s" in record.video["warning"]
    assert record.kept_clips()  # times and frame numbers count from the first frame out (2 s into the stream)


def test_transport_stream_with_lost_packets_is_curated_around_the_loss(damaged_video, tmp_path):
    """A broadcast/UDP capture that lost transport packets: the demuxer flags the frame's packet
    corrupt. The video used to fail whole in the probe; now the damage up to the next keyframe is
    left out and the rest is curated."""
    clean, _, _ = damaged_video
    make_lossy_ts_copy(clean, tmp_path / "lossy.ts")
    with av.open(str(tmp_path / "lossy.ts")) as container:
        assert sum(p.is_corrupt for p in container.demux(video=0)) == 1
    records = [VideoRecord(path=str(tmp_path / "lossy.ts"))]
    for stage, config in cpu_stages(CurateConfig()):
        records = stage(config).process(records)
    (record,) = records
    assert record.video["status"] == "ok", record.video["error"]
    assert 0 < record.video["damaged_frames"] <= 48 and "damaged frame(s) left out of clips" in record.video["warning"]
    (start, end), = scan_video(str(tmp_path / "lossy.ts")).damaged
    kept = record.kept_clips()
    assert kept and all(c.row["end_frame"] <= start or c.row["start_frame"] >= end for c in kept)
