"""The single-pass scan on generated videos with known shots and transitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.scan import ScanConfig, ScanError, scan_video
from pipeline.transitions import BlendSpan, resolve_transitions


@pytest.fixture(scope="module")
def scans(sample_corpus):
    config = ScanConfig()
    return [(video, scan_video(video.path, config)) for video in sample_corpus]


def test_per_frame_arrays_cover_every_frame(scans):
    for video, scan in scans:
        n = video.num_frames
        assert scan.num_frames == n
        assert (scan.width, scan.height) == (320, 180)
        assert scan.analysis_size == (160, 90)
        assert scan.fps == pytest.approx(24.0)
        for arr in (scan.frame_times, scan.luma, scan.sharpness, scan.motion):
            assert arr.shape == (n,)
        assert scan.global_motion.shape == (n, 2)
        assert all(v.shape == (n,) for v in scan.cut_scores.values()) and scan.cut_scores
        np.testing.assert_allclose(scan.frame_times, np.arange(n) / 24.0, atol=1e-3)
        assert scan.seconds > 0 and scan.decode_error is None


def test_every_transition_found_and_no_false_ones(scans):
    for video, scan in scans:
        found = list(scan.transitions)
        for truth in video.transitions:
            if truth.kind == "cut":
                match = [t for t in found if t.kind == "cut" and abs(t.start - truth.start) <= 1]
            else:
                match = [t for t in found if t.kind == truth.kind and t.start < truth.end and truth.start < t.end]
            assert len(match) == 1, (video.path, truth, found)
            found.remove(match[0])
        # pans, zooms and shaky shots are not transitions
        assert found == [], (video.path, found)


def test_shots_exclude_transitions(scans):
    for video, scan in scans:
        pos = 0
        spans = sorted([(s, e) for s, e in scan.shots] + [(t.start, t.end) for t in scan.transitions])
        for s, e in spans:
            assert s == pos
            pos = e
        assert pos == video.num_frames
        assert len(scan.shots) == len(video.shots)
        for (s, e), truth in zip(scan.shots, video.shots):
            assert abs(s - truth.start) <= 3 and abs(e - truth.end) <= 3


def test_motion_tells_still_from_moving_shots(scans):
    by_kind: dict[str, list[float]] = {}
    for video, scan in scans:
        for (s, e), truth in zip(scan.shots, video.shots):
            by_kind.setdefault(truth.kind, []).append(scan.shot_mean(scan.motion, (s, e)))
            if truth.kind == "still":
                assert np.abs(scan.global_motion[s:e]).max() < 0.02  # codec noise, e.g. at I-frames
    assert max(by_kind["still"]) < 0.002
    for kind in ("pan", "panzoom", "shaky"):
        assert min(by_kind[kind]) > 0.03, (kind, by_kind)
    assert min(by_kind["zoom"]) > 0.005
    assert min(by_kind["shaky"]) > max(by_kind["pan"])


def test_motion_is_zero_across_cuts_and_in_transitions(scans):
    for _, scan in scans:
        for t in scan.transitions:
            assert np.all(scan.motion[t.start : t.end + 1] == 0)
        assert scan.motion[0] == 0


def test_luma_and_sharpness(scans):
    for video, scan in scans:
        for (s, e), truth in zip(scan.shots, video.shots):
            if truth.kind == "dark":
                assert 15 < scan.luma[s:e].mean() < 50
            else:
                assert scan.luma[s:e].mean() > 40
        assert np.all(scan.sharpness >= 0)
        for t in scan.transitions:
            if t.kind == "fade":
                assert scan.luma[t.start : t.end].min() < 12


def test_keyframes_on_the_time_grid(scans):
    for video, scan in scans:
        duration = video.num_frames / video.fps
        ticks = np.arange(0.0, duration - 1e-9, ScanConfig().keyframe_interval_s)
        ticks = ticks[ticks <= scan.frame_times[-1] + 1e-6]
        expected = [int(np.searchsorted(scan.frame_times, t - 1e-6)) for t in ticks]
        assert [k.frame_index for k in scan.keyframes] == expected
        for k in scan.keyframes:
            assert k.time_s == pytest.approx(scan.frame_times[k.frame_index])
        img = scan.keyframes[0].image()
        # never upscaled: a 320x180 video gives 320x180 keyframes
        assert img.shape == (180, 320, 3) and img.dtype == np.uint8


def test_keyframes_wait_on_disk_and_leave_with_their_bytes(scans):
    """A long video's keyframe JPEGs are not held in memory: they wait in the scan's spool (a
    temporary file) and are read back when used or pickled (as a record leaves its worker)."""
    import pickle

    _, scan = scans[0]
    assert scan.keyframes and all(k.spooled for k in scan.keyframes)
    for key in scan.keyframes[:3]:
        sent = pickle.loads(pickle.dumps(key))
        assert not sent.spooled and sent == key and sent.jpeg[:2] == b"\xff\xd8"  # a JPEG, read back whole
        assert sent.image().shape == key.image().shape


def test_keyframe_size_and_analysis_width_follow_config(sample_corpus):
    video = sample_corpus[0]
    scan = scan_video(video.path, ScanConfig(keyframe_short_side=90, keyframe_interval_s=2.0, analysis_width=96, flow_method="farneback"))
    assert scan.keyframes[0].image().shape == (90, 160, 3)
    assert len(scan.keyframes) == math.ceil(video.num_frames / video.fps / 2.0)
    assert scan.analysis_size == (96, 54)


def test_remote_uri_reads_through_a_file_object(sample_corpus):
    fsspec = pytest.importorskip("fsspec")
    video = sample_corpus[1]
    fs = fsspec.filesystem("memory")
    with open(video.path, "rb") as src, fs.open("/vidforge-test/v.mp4", "wb") as dst:
        dst.write(src.read())
    remote = scan_video("memory://vidforge-test/v.mp4", ScanConfig(gradual=False))
    local = scan_video(video.path, ScanConfig(gradual=False))
    assert remote.num_frames == local.num_frames
    np.testing.assert_allclose(remote.luma, local.luma)


def test_broken_inputs_raise_clear_errors(broken_inputs):
    for name in ("empty", "not_video", "truncated_no_index"):
        with pytest.raises(ScanError, match=str(broken_inputs[name].name)):
            scan_video(str(broken_inputs[name]))
    with pytest.raises(ScanError, match="no video stream"):
        scan_video(str(broken_inputs["audio_only"]))
    one = scan_video(str(broken_inputs["one_frame"]))
    assert one.num_frames == 1 and one.shots == [(0, 1)] and len(one.keyframes) == 1
    part = scan_video(str(broken_inputs["truncated"]))
    assert 0 < part.num_frames < 48 and len(part.luma) == part.num_frames


def test_config_is_validated():
    with pytest.raises(ValueError, match="analysis_width"):
        ScanConfig(analysis_width=15)
    with pytest.raises(ValueError, match="flow_width"):
        ScanConfig(analysis_width=64, flow_width=96)
    with pytest.raises(ConfigError, match="flow_method"):
        load_config(ScanConfig, overrides=["flow_method=lucas"])
    assert load_config(ScanConfig, overrides=["blend_width=24"]).blend_width == 24
    with pytest.raises(ValueError, match="^compensated_threshold: expected > 1 or null, got 0.5$"):
        ScanConfig(compensated_threshold=0.5)
    assert load_config(ScanConfig, overrides=["compensated_threshold=null"]).compensated_threshold is None
    with pytest.raises(ValueError, match="^compensated_min_change: expected >= 0, got -1.0$"):
        ScanConfig(compensated_min_change=-1.0)


@pytest.mark.parametrize("key", ["threads", "decode_threads"])
def test_thread_counts_are_validated(key):
    from pipeline.extract import ExtractConfig

    with pytest.raises(ValueError, match=f"^{key}: expected >= 0 .*got -1$"):
        ExtractConfig(**{key: -1})
    with pytest.raises(ValueError, match="^decode_threads: expected >= 0, got -1$"):
        ScanConfig(decode_threads=-1)
    assert ExtractConfig(**{key: 0}) and ScanConfig(decode_threads=0)


def test_scan_stage_runs_opencv_on_the_decoder_threads(sample_corpus, monkeypatch):
    """The scan stage's OpenCV calls get ``decode_threads`` threads (a one-CPU worker would otherwise
    start one per core); 0 leaves OpenCV's default; the setting is restored after."""
    from types import SimpleNamespace

    import cv2

    import pipeline.curate as curate
    from pipeline.decoding import DecodeReport
    from pipeline.records import VideoRecord

    seen = []

    def fake_scan(path, config, frame_cache=None, hdr_intent=None, deinterlace=True):
        seen.append(cv2.getNumThreads())
        return SimpleNamespace(keyframes=[], num_frames=0, decode_report=DecodeReport(), decode_error=None)

    monkeypatch.setattr(curate, "scan_video", fake_scan)
    default = cv2.getNumThreads()
    for threads in (1, 0):
        curate.ScanStage((ScanConfig(decode_threads=threads), None)).process_record(VideoRecord(path=sample_corpus[0].path))
        assert cv2.getNumThreads() == default
    assert seen == [1, default]


def test_scan_stage_analyses_frames_as_the_extraction_writes_them(sample_corpus, monkeypatch):
    """The scan stage hands the extraction's rendering intent and deinterlacing to the scan (the
    defaults' where the chain has no extraction): interlaced frames are analysed from their top field
    only where the probe found fields and the clips are deinterlaced."""
    from types import SimpleNamespace

    import pipeline.curate as curate
    from pipeline.decoding import DecodeReport
    from pipeline.extract import ExtractConfig
    from pipeline.records import VideoRecord

    seen = []

    def fake_scan(path, config, frame_cache, hdr_intent, deinterlace):
        seen.append((hdr_intent, deinterlace))
        return SimpleNamespace(keyframes=[], num_frames=0, decode_report=DecodeReport(), decode_error=None)

    monkeypatch.setattr(curate, "scan_video", fake_scan)
    fields = SimpleNamespace(interlaced=True)
    for extract, probe in [
        (None, fields),
        (ExtractConfig(hdr_to_sdr="perceptual", deinterlace=False), fields),
        (ExtractConfig(hdr_to_sdr=None), fields),
        (ExtractConfig(), SimpleNamespace(interlaced=False)),
    ]:
        curate.ScanStage((ScanConfig(), extract)).process_record(VideoRecord(path=sample_corpus[0].path, probe=probe))
    assert seen == [("relative_colorimetric", True), ("perceptual", False), ("relative_colorimetric", True), ("relative_colorimetric", False)]


def test_resolve_transitions_joins_fades_and_drops_cuts_inside():
    luma = np.full(100, 120.0, np.float32)
    luma[40:44] = 3.0  # black frames between a fade-out and a fade-in
    blends = [BlendSpan(30, 40, 50.0, 80.0, 0.1), BlendSpan(44, 52, 50.0, 80.0, 0.1), BlendSpan(70, 80, 40.0, 60.0, 0.1)]
    transitions, shots = resolve_transitions(100, [10, 42, 81, 95], blends, [(40, 44)], luma)
    assert [(t.start, t.end, t.kind) for t in transitions] == [
        (10, 10, "cut"), (30, 52, "fade"), (70, 80, "dissolve"), (95, 95, "cut")
    ]
    assert shots == [(0, 10), (10, 30), (52, 70), (80, 95), (95, 100)]


def test_black_runs_come_from_pyscenedetects_threshold_detector():
    """Black frames (mean below ``black_luma``), at the start, inside and at the end, as
    ``ThresholdDetector`` sees them: its fade-out and fade-in points bound each run."""
    from fractions import Fraction

    from pipeline.signals import FrameSignals

    frames = np.full((30, 90, 160, 3), 120, np.uint8)
    frames[:3] = 2
    frames[10:14] = 5
    frames[14, :, :, 0] = 30  # dark blue: the frame's mean (10) is below the threshold too
    frames[14, :, :, 1:] = 0
    frames[27:] = 0
    signals = FrameSignals(ScanConfig(gradual=False), Fraction(24), (96, 54), (32, 18))
    signals.add(frames[:16], list(np.arange(16) / 24))  # two batches: a run may span them
    signals.add(frames[16:], list(np.arange(16, 30) / 24))
    signals.finish()
    assert signals.black_runs == [(0, 3), (10, 15), (27, 30)]


@pytest.mark.parametrize("rows", [1, 2, 7, 576])
def test_column_medians_equal_numpy(rows):
    from pipeline.signals import column_medians

    values = np.random.default_rng(rows).normal(size=(rows, 2)).astype(np.float32)
    np.testing.assert_allclose(column_medians(values), np.median(values, axis=0), rtol=1e-6)
    # as the scan uses it: a batch of frames, each with its grid of flow vectors
    batch = np.random.default_rng(rows).normal(size=(3, rows, 2)).astype(np.float32)
    np.testing.assert_allclose(column_medians(batch, axis=1), np.median(batch, axis=1), rtol=1e-6)


def test_blend_push_batch_equals_frame_by_frame():
    """The batched pre-test finds exactly the candidates of frame-by-frame pushes: a synthetic
    dissolve and a fade to black between noisy still shots, pushed in uneven batches."""
    from pipeline.transitions import BlendSpanDetector

    rng = np.random.default_rng(3)
    a, b = rng.uniform(40, 220, 576), rng.uniform(40, 220, 576)
    frames = [a] * 30 + [a + (b - a) * k / 13 for k in range(1, 13)] + [b] * 40
    frames += [b * (1 - k / 9) for k in range(1, 9)] + [np.zeros(576)] * 6 + [a] * 40
    frames = np.stack(frames).astype(np.float32) + rng.normal(0, 0.5, (len(frames), 576)).astype(np.float32)
    sharp = np.abs(frames[:, 1:] - frames[:, :-1]).mean(axis=1).astype(np.float64) ** 2
    one = BlendSpanDetector()
    for f, g in zip(frames, sharp):
        one.push(f, g)
    batched = BlendSpanDetector()
    for lo, hi in [(0, 5), (5, 37), (37, 40), (40, 130), (130, len(frames)), (len(frames), len(frames))]:  # one over 64 frames, one empty
        batched.push_batch(frames[lo:hi], sharp[lo:hi])
    assert batched.num_candidates == one.num_candidates > 0
    assert batched.finish() == one.finish()


def test_cut_out_of_a_shaky_shot_is_found(tmp_path):
    """A hard cut straight out of a shaky shot: the shaky frames change about as much as the cut, so
    AdaptiveDetector's ratio stays under its threshold and the cut is missed (the two shots would
    become one clip, rejected as shaky with the good shot in it); the motion-compensated difference
    (the shake warped away by the optical flow) still spikes there, and the cut is found."""
    from pipeline.samples import ShotSpec, make_video

    video = make_video(tmp_path / "shaky_cut.mp4", [ShotSpec("shaky", "minduka:", 48), ShotSpec("zoom", "dem:gist_earth", 48)])
    cut = video.transitions[0].start
    without = scan_video(video.path, ScanConfig(compensated_threshold=None))
    assert not any(abs(t.start - cut) <= 2 for t in without.transitions), without.transitions  # the detector alone
    found = scan_video(video.path)
    assert [(t.kind, t.start) for t in found.transitions] == [("cut", cut)]


@pytest.mark.parametrize("first, source, seed", [("shaky", "dem:gist_earth", 0), ("pan", "mri:bone", 1)])
def test_cut_inside_a_moving_shot_is_not_taken_for_a_dissolve(tmp_path, first, source, seed):
    """Frames drifting through a shaky or panning shot, then a cut: the blend fit explains the span
    around the cut as a "dissolve" (its ``a`` flat, then a jump of 0.55-0.62 in one frame, then flat),
    which swallowed the cut and the frames around it (41-57, 33-61). A dissolve's ``a`` rises step by
    step: a jump rejects the fit, and the cut stands alone."""
    from pipeline.samples import ShotSpec, make_video

    shots = [ShotSpec(first, source, 48), ShotSpec("zoom", "hopper:" if seed == 0 else "dem:gist_earth", 48)]
    video = make_video(tmp_path / "moving_cut.mp4", shots, seed=seed)
    found = scan_video(video.path)
    assert [(t.kind, t.start) for t in found.transitions] == [("cut", video.transitions[0].start)], found.transitions


def test_compensated_cuts_need_a_spike_in_both_signals():
    from pipeline.signals import compensated_cuts

    n = 60
    differences = np.full(n, 10.0)  # a shaky shot: warped away, the shake leaves ~10 grey levels
    content = np.full(n, 35.0)  # ... but the detector's score is as high as a cut's
    differences[20], content[20] = 65.0, 60.0  # the cut: both jump
    content[21:] = 4.0  # a calm shot after it
    differences[21:] = 2.0
    differences[8] = 30.0  # a jitter spike: flow lost track, the detector's score does not jump
    differences[40], content[40] = 25.0, 60.0  # a second cut, 20 frames on
    kwargs = dict(window=2, ratio=4.0, min_change=20.0, content_ratio=1.5, min_content=15.0, min_gap=12)
    assert compensated_cuts(differences, content, known=set(), **kwargs) == [20, 40]
    assert compensated_cuts(differences, content, known={34}, **kwargs) == [20]  # 40 is 6 frames from a known cut
    assert compensated_cuts(differences, content, known={19}, **kwargs) == [40]  # the detector has it already
    differences[0], content[0] = 100.0, 100.0
    assert 0 not in compensated_cuts(differences, content, known=set(), **kwargs)  # no predecessor
    with pytest.raises(ValueError, match="60 differences but 59 detector scores"):
        compensated_cuts(differences, content[1:], known=set(), **kwargs)


def test_interlaced_frames_are_analysed_as_the_deinterlaced_clips_show_them(tmp_path):
    """A PAL-size 50i copy of a 50p video: its clips show each frame's top-field instant (50p frame 2k),
    and the scan reads them as sharp as those 50p frames. The woven frame (two instants a field apart,
    as clips made without deinterlacing keep them) reads otherwise wherever the picture moves: the
    comb adds detail, the double image blurs. Measured: top field 0.97 of the 50p sharpness (1.01 at
    720p); woven 1.15 here, 0.84 in slower motion; before, the woven reading either way."""
    from pipeline.samples import ShotSpec, make_interlaced_copy, make_video, source_names

    names = source_names()
    shots = [ShotSpec("pan", names[0], 48), ShotSpec("zoom", names[3], 48)]
    progressive = make_video(tmp_path / "p50.mp4", shots, fps=50, size=(720, 576), seed=3)
    make_interlaced_copy(progressive.path, tmp_path / "i25.mp4")
    reference = scan_video(progressive.path).sharpness[::2]  # the top field's instants
    ratios = {}
    for deinterlace in (True, False):
        scan = scan_video(str(tmp_path / "i25.mp4"), deinterlace=deinterlace)
        assert scan.num_frames == len(reference)
        ratios[deinterlace] = float(np.median(scan.sharpness / reference))
    assert 0.9 < ratios[True] < 1.1 and abs(ratios[False] - 1) > 0.1, ratios
