"""The synthetic corpus: real H.264 files whose ground truth matches their pixels."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from pipeline.samples import (
    EVENT_KINDS,
    HARD_JOINS,
    SHOT_KINDS,
    EventSpec,
    EventTruth,
    SampleVideo,
    ShotSpec,
    TransitionSpec,
    TransitionTruth,
    corpus_specs,
    hard_corpus_specs,
    load_ground_truth,
    make_hard_corpus,
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
        ([ShotSpec("pan", "hopper:", 5)] * 2, [TransitionSpec("iris", 3)], "transition kind"),
        ([ShotSpec("pan", "hopper:", 5)] * 2, [TransitionSpec("wipe", 3, direction="in")], "wipe direction"),
        ([ShotSpec("pan", "hopper:", 5)] * 2, [TransitionSpec("wipe", 3, pixels=True)], "dissolves only"),
        ([ShotSpec("pan", "nowhere:", 5)], None, "unknown sample source"),
        ([ShotSpec("pan", "hopper:", 5, events=[EventSpec("strobe", 1, 2)])], None, "event kind"),
        ([ShotSpec("pan", "hopper:", 5, events=[EventSpec("flash", 4, 2)])], None, "inside the shot"),
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


# --------------------------------------------------------------------------------------------
# The hard corpus: events inside shots, pixel dissolves, wipes, cuts within one photo
# --------------------------------------------------------------------------------------------


def two_stills(path, transition: TransitionSpec):
    """An 8-frame still of one photo joined by ``transition`` to an 8-frame still of another."""
    shots = [ShotSpec("still", "hopper:", 8), ShotSpec("still", "dem:terrain", 8)]
    return make_video(path, shots, [transition], size=(160, 96))


def b_side(gray: np.ndarray, transition: TransitionTruth, threshold: float = 40.0):
    """Per frame of ``transition``, which pixels are nearer shot B's (still) picture than A's, the
    pixels whose two pictures differ by over ``threshold`` (a mask), and how far each frame's
    pixels are from the nearer picture relative to the two's difference."""
    a, b = gray[transition.start - 1], gray[transition.end]
    span = gray[transition.start : transition.end]
    differ = np.abs(a - b) > threshold
    nearer_b = np.abs(span - b) < np.abs(span - a)
    off = np.minimum(np.abs(span - a), np.abs(span - b)) / np.maximum(np.abs(a - b), 1.0)
    return nearer_b, differ, off


def test_pixel_dissolve_turns_each_pixel_from_a_to_b_at_its_own_time(tmp_path):
    video = two_stills(tmp_path / "pixels.mp4", TransitionSpec("dissolve", 10, pixels=True))
    (tr,) = video.transitions
    assert (tr.start, tr.end, tr.kind) == (8, 18, "dissolve")
    nearer_b, differ, off = b_side(decode_gray(video.path), tr)
    # every pixel shows A's or B's picture (up to codec noise), never a blend of the two
    assert all((o[differ] < 0.25).mean() > 0.95 for o in off)
    share = np.array([n[differ].mean() for n in nearer_b])
    assert np.all(np.diff(share) > 0.04), share
    np.testing.assert_allclose(share, np.arange(1, 11) / 11, atol=0.08)
    # once a pixel has turned to B it stays B
    turned_back = nearer_b[:-1] & ~nearer_b[1:]
    assert turned_back[:, differ].mean() < 0.01


@pytest.mark.parametrize("direction", ["right", "up"])
def test_wipe_edge_moves_monotonically(tmp_path, direction):
    video = two_stills(tmp_path / "wipe.mp4", TransitionSpec("wipe", 8, direction=direction))
    (tr,) = video.transitions
    assert (tr.start, tr.end, tr.kind) == (8, 16, "wipe")
    nearer_b, differ, off = b_side(decode_gray(video.path), tr)
    axis = 0 if direction == "right" else 1  # profile across the edge, from where B comes in
    edges = []
    for n in nearer_b:
        with np.errstate(invalid="ignore"):
            profile = (n & differ).sum(axis=axis) / differ.sum(axis=axis)
        profile = profile if direction == "right" else profile[::-1]
        is_b = profile[~np.isnan(profile)] > 0.5
        edge = int(is_b.sum())
        assert is_b[:edge].all() and not is_b[edge:].any(), (direction, is_b.astype(int))  # one straight edge
        edges.append(edge / len(is_b))
    assert np.all(np.diff(edges) > 0.05), edges
    np.testing.assert_allclose(edges, np.arange(1, 9) / 9, atol=0.05)


@pytest.mark.parametrize("kind", ["still", "dark"])
def test_flash_is_an_event_not_a_transition(tmp_path, kind):
    shots = [ShotSpec(kind, "hopper:", 24, events=[EventSpec("flash", 10, 2)]), ShotSpec("still", "dem:terrain", 8)]
    video = make_video(tmp_path / "flash.mp4", shots, size=(160, 96))
    assert video.events == [EventTruth(10, 12, "flash")]
    assert video.transitions == [TransitionTruth(24, 24, "cut")]
    assert video.shots[0].start <= 10 and 12 <= video.shots[0].end
    luma = decode_gray(video.path).mean(axis=(1, 2))
    assert luma[10] > luma[9] + 60 and luma[10] > luma[12] + 60, luma[8:14]
    assert luma[9] + 15 < luma[11] < luma[10]  # the flash dies away
    assert abs(luma[12] - luma[9]) < 2


def test_whip_pan_swings_the_view_with_motion_blur(tmp_path):
    shots = [ShotSpec("still", "hopper:", 36, events=[EventSpec("whip", 12, 6)])]
    video = make_video(tmp_path / "whip.mp4", shots, size=(160, 96))
    assert video.events == [EventTruth(12, 18, "whip")] and video.transitions == []
    gray = decode_gray(video.path)
    step = np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))
    assert step[:11].max() < 1.5 and step[18:].max() < 1.5, step  # still before and after
    assert step[11:18].min() > 4, step
    sharpness = np.abs(np.diff(gray, axis=2)).mean(axis=(1, 2))  # horizontal detail
    assert sharpness[13:17].max() < 0.5 * sharpness[:12].min(), sharpness
    assert np.abs(gray[30] - gray[5]).mean() > 15  # a new view after the swing


def test_fast_object_crosses_a_still_background(tmp_path):
    shots = [ShotSpec("still", "dem:terrain", 30, events=[EventSpec("motion", 8, 14, source="minduka:")])]
    video = make_video(tmp_path / "motion.mp4", shots)
    assert video.events == [EventTruth(8, 22, "motion")] and video.transitions == []
    gray = decode_gray(video.path)
    moved = np.abs(gray - gray[0]) > 25
    share = moved.mean(axis=(1, 2))
    assert share[:8].max() < 0.01 and share[22:].max() < 0.01, share
    assert share[8:22].all() and share[9:21].min() > 0.01 and share.max() < 0.3, share  # it enters, crosses, leaves
    x = np.array([np.nonzero(m)[1].mean() for m in moved[8:22]])
    speed = np.diff(x)
    assert np.all(np.sign(speed) == np.sign(speed[0])), x  # one way across
    assert np.abs(x[-1] - x[0]) / (len(x) - 1) > 15, x  # over 15 px a frame


@pytest.fixture(scope="module")
def hard_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("hard_corpus")
    videos = make_hard_corpus(out, num_videos=2, seed=3, size=(160, 96), shot_seconds=(1.5, 2.0))
    return out, videos


def test_hard_corpus_covers_every_kind(hard_corpus):
    _, videos = hard_corpus
    plans = hard_corpus_specs(2, seed=3, shot_seconds=(1.5, 2.0))
    assert [len(v.shots) for v in videos] == [len(shots) for shots, _ in plans]
    assert {t.kind for v in videos for t in v.transitions} == {"cut", "dissolve", "wipe", "fade"}
    assert {e.kind for v in videos for e in v.events} == set(EVENT_KINDS)
    assert {t.pixels for _, transitions in plans for t in transitions if t.kind == "dissolve"} == {True, False}
    for v in videos:
        cuts = {t.start for t in v.transitions if t.kind == "cut"}
        assert any(s.end - s.start == 12 and s.start in cuts and s.end in cuts for s in v.shots)  # 0.5 s shots
    # the default corpus: every join and event several times, by shuffled decks
    plans = hard_corpus_specs()
    assert plans == hard_corpus_specs(seed=0) and plans != hard_corpus_specs(seed=1)
    joins = [
        "similar" if a.source == b.source else "pixels" if t.pixels else "short" if b.frames == 12 else t.kind
        for shots, transitions in plans
        for a, b, t in zip(shots, shots[1:], transitions)
    ]
    assert all(joins.count(k) >= 6 for k in HARD_JOINS), {k: joins.count(k) for k in HARD_JOINS}
    events = [e.kind for shots, _ in plans for s in shots for e in s.events]
    assert all(events.count(k) >= 10 for k in EVENT_KINDS)


def test_similar_cut_shows_another_crop_of_the_same_photo(hard_corpus):
    _, videos = hard_corpus
    found = 0
    for video in videos:
        gray = decode_gray(video.path)
        for a, b, t in zip(video.shots, video.shots[1:], video.transitions):
            if a.source == b.source:
                assert t.kind == "cut"
                assert np.abs(gray[t.start] - gray[t.start - 1]).mean() > 10  # a real cut
                found += 1
    assert found >= 2
    pairs = [(a, b, t) for shots, transitions in hard_corpus_specs() for a, b, t in zip(shots, shots[1:], transitions)]
    similar = [(a, b, t) for a, b, t in pairs if a.source == b.source]
    assert len(similar) >= 6
    for a, b, t in similar:
        assert t.kind == "cut" and "dark" not in (a.kind, b.kind)  # lit alike
        assert max(a.crop, b.crop) / min(a.crop, b.crop) > 1.8  # one wide, one tight


def test_hard_corpus_ground_truth_tiles_and_round_trips(hard_corpus):
    out, videos = hard_corpus
    for video in videos:
        spans = sorted([(s.start, s.end) for s in video.shots] + [(t.start, t.end) for t in video.transitions])
        assert [s for s, _ in spans] == [0] + [e for _, e in spans[:-1]] and spans[-1][1] == video.num_frames
        for e in video.events:  # every event lies inside one shot
            assert any(s.start <= e.start < e.end <= s.end for s in video.shots), e
    with av.open(videos[0].path) as c:
        assert sum(1 for _ in c.decode(video=0)) == videos[0].num_frames
    data = json.loads((out / "ground_truth.json").read_text())
    assert all(v["events"] for v in data["videos"])
    assert load_ground_truth(out / "ground_truth.json") == videos


def test_ground_truth_without_events_reads_and_writes_as_before(tmp_path):
    old = {"path": "a.mp4", "fps": 24, "width": 64, "height": 48, "num_frames": 10,
           "shots": [{"start": 0, "end": 10, "kind": "still", "source": "hopper:"}], "transitions": []}
    (tmp_path / "ground_truth.json").write_text(json.dumps({"videos": [old]}))
    (video,) = load_ground_truth(tmp_path / "ground_truth.json")
    assert video.events == [] and video.num_frames == 10
    assert video.to_dict(relative_to=tmp_path) == old | {"fps": 24.0}  # no "events" key: make_corpus's files unchanged
    video.events.append(EventTruth(2, 4, "flash"))
    assert SampleVideo.from_dict(video.to_dict()) == video
