"""The synthetic corpus: real H.264 files whose ground truth matches their pixels."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from pipeline.samples import (
    SHOT_KINDS,
    ShotSpec,
    TransitionSpec,
    corpus_specs,
    load_ground_truth,
    make_video,
    source_family,
)


def decode_gray(path: str) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)])


def test_videos_are_h264_with_expected_frames_and_size(sample_corpus):
    assert len(sample_corpus) == 3
    for video in sample_corpus:
        with av.open(video.path) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert float(stream.average_rate) == pytest.approx(video.fps)
            frames = list(container.decode(stream))
        assert len(frames) == video.num_frames
        assert (frames[0].width, frames[0].height) == (video.width, video.height) == (320, 180)
        assert 5.0 <= video.num_frames / video.fps <= 20.0


def test_ground_truth_tiles_each_video(sample_corpus):
    for video in sample_corpus:
        spans = sorted([(s.start, s.end, "shot") for s in video.shots] + [(t.start, t.end, t.kind) for t in video.transitions])
        pos = 0
        for start, end, kind in spans:
            assert start == pos, (video.path, spans)
            assert end >= start
            pos = end
        assert pos == video.num_frames
        assert len(video.transitions) == len(video.shots) - 1
        for t in video.transitions:
            if t.kind == "cut":
                assert t.start == t.end
            elif t.kind == "dissolve":
                assert 8 <= t.end - t.start <= 24
            else:
                assert t.kind == "fade" and t.end - t.start >= 12
        for a, b in zip(video.shots, video.shots[1:]):
            assert source_family(a.source) != source_family(b.source)


def test_corpus_covers_every_kind(sample_corpus):
    shots = {s.kind for v in sample_corpus for s in v.shots}
    transitions = {t.kind for v in sample_corpus for t in v.transitions}
    assert shots == set(SHOT_KINDS)
    assert transitions == {"cut", "dissolve", "fade"}


def test_ground_truth_matches_pixels(sample_corpus):
    video = next(v for v in sample_corpus if any(t.kind == "fade" for t in v.transitions))
    gray = decode_gray(video.path)
    luma = gray.mean(axis=(1, 2))
    for shot in video.shots:
        frames = gray[shot.start : shot.end]
        step = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
        if shot.kind == "still":
            assert step.max() < 1.0, shot
        elif shot.kind in ("pan", "zoom", "panzoom", "shaky"):
            assert step.mean() > 1.0, shot
        if shot.kind == "dark":
            assert 15 < luma[shot.start : shot.end].mean() < 50
    for t in video.transitions:
        if t.kind == "fade":
            assert luma[t.start : t.end].min() < 0.25 * min(luma[t.start - 1], luma[t.end])
        if t.kind == "cut":  # a real cut: the picture changes far more than within the shots
            assert np.abs(gray[t.start] - gray[t.start - 1]).mean() > 15


def test_ground_truth_file_round_trip(sample_corpus_dir, sample_corpus):
    data = json.loads((sample_corpus_dir / "ground_truth.json").read_text())
    assert [v["path"] for v in data["videos"]] == ["video_000.mp4", "video_001.mp4", "video_002.mp4"]
    again = load_ground_truth(sample_corpus_dir / "ground_truth.json")
    assert again == sample_corpus
    with pytest.raises(FileNotFoundError, match="ground truth file not found"):
        load_ground_truth(sample_corpus_dir / "missing.json")


def test_corpus_plan_is_deterministic_by_seed():
    assert corpus_specs(4, seed=3) == corpus_specs(4, seed=3)
    assert corpus_specs(4, seed=3) != corpus_specs(4, seed=4)


def test_make_video_custom_plan(tmp_path):
    video = make_video(
        tmp_path / "v.mp4",
        [ShotSpec("still", "hopper:", 10), ShotSpec("pan", "dem:terrain", 12)],
        [TransitionSpec("fade", frames=4, black=2, frames_in=3)],
        fps=30,
        size=(96, 64),
    )
    assert video.num_frames == 10 + 9 + 12
    assert [(t.start, t.end, t.kind) for t in video.transitions] == [(10, 19, "fade")]
    gray = decode_gray(video.path)
    assert len(gray) == 31 and gray.shape[1:] == (64, 96)
    assert gray[14:16].mean() < 3.0  # the black frames


@pytest.mark.parametrize(
    "shots, transitions, message",
    [
        ([], None, "at least one shot"),
        ([ShotSpec("orbit", "hopper:", 5)], None, "shot kind"),
        ([ShotSpec("pan", "hopper:", 5)] * 2, [], "expected 1 transitions"),
        ([ShotSpec("pan", "hopper:", 5)] * 2, [TransitionSpec("wipe", 3)], "transition kind"),
        ([ShotSpec("pan", "nowhere:", 5)], None, "unknown sample source"),
    ],
)
def test_make_video_rejects_bad_specs(tmp_path, shots, transitions, message):
    with pytest.raises(ValueError, match=message):
        make_video(tmp_path / "bad.mp4", shots, transitions, size=(64, 48))


def test_broken_inputs_are_what_they_claim(broken_inputs):
    assert broken_inputs["empty"].stat().st_size == 0
    for name in ("empty", "not_video", "truncated_no_index"):
        with pytest.raises(av.error.FFmpegError):
            av.open(str(broken_inputs[name]))
    with av.open(str(broken_inputs["audio_only"])) as c:
        assert len(c.streams.video) == 0 and len(c.streams.audio) == 1
        assert c.streams.audio[0].codec_context.name == "aac"
    with av.open(str(broken_inputs["one_frame"])) as c:
        assert len(list(c.decode(video=0))) == 1
    with av.open(str(broken_inputs["truncated"])) as c:
        announced = c.streams.video[0].frames
        decoded = 0
        try:
            for _ in c.decode(video=0):
                decoded += 1
        except av.error.FFmpegError:
            pass
    assert announced == 48 and 0 < decoded < announced
