"""The fused shot detector: TransNetV2 on selected windows, the fusion rules, flashes told from cuts,
wipes and pixel dissolves found, and what the scan reports on a rendered video holding all of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.fusion import FusionConfig, fuse
from pipeline.samples import EventSpec, ShotSpec, TransitionSpec, make_video, source_names
from pipeline.scan import ScanConfig, scan_video
from pipeline.shotnet import STRIDE, ShotNetConfig, TransNetV2Net, TransNetV2Stream, predict_frames
from pipeline.signals import TransientScores
from pipeline.transitions import BlendSpan


@pytest.fixture(scope="module")
def small_net() -> TransNetV2Net:
    """A randomly initialised TransNetV2 of the real shape but few filters: the windowing is what is tested."""
    torch.manual_seed(0)
    return TransNetV2Net(ShotNetConfig(filters=2, hidden_dim=16, similarity_dim=8, similarity_out=8)).eval()


def test_selected_windows_get_the_probabilities_of_a_whole_video_run(small_net):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (237, 27, 48, 3), dtype=np.uint8)
    single_all, many_all = predict_frames(small_net, frames, batch_windows=3)
    stream = TransNetV2Stream(small_net, batch_windows=2, every_window=False, lag=40)
    pos = 0
    for size in (7, 33, 1, 64, 50, 82):  # uneven pushes; marks arrive late, within the lag
        stream.push(frames[pos : pos + size])
        pos += size
        if pos >= 60:
            stream.want(55, 57)  # window 1
        if pos >= 235:
            stream.want(230, 232)  # window 4, the last (end padding)
    single, many = stream.finish()
    wanted = np.zeros(len(frames), bool)
    wanted[STRIDE : 2 * STRIDE] = wanted[4 * STRIDE :] = True
    assert np.allclose(single[wanted], single_all[wanted], atol=1e-5)
    assert np.allclose(many[wanted], many_all[wanted], atol=1e-5)
    assert np.isnan(single[~wanted]).all() and stream.windows_run == 2


def test_all_windows_equal_the_reference_windowing(small_net):
    frames = np.random.default_rng(1).integers(0, 256, (120, 27, 48, 3), dtype=np.uint8)
    stream = TransNetV2Stream(small_net)
    for start in range(0, 120, 32):
        stream.push(frames[start : start + 32])
    single, _ = stream.finish()
    assert np.allclose(single, predict_frames(small_net, frames)[0], atol=1e-5)


def test_fuse_keeps_what_transnet_confirms_drops_what_it_denies_and_adds_its_own():
    n = 300
    single, many = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    single[0:200], many[0:200] = 0.001, 0.001
    single[49] = 0.4  # confirms the cut at 50 (marked on the old shot's last frame)
    single[150] = 0.9  # its own cut at 151, which the cheap detectors missed
    blends = [BlendSpan(100, 110, 1.0, 20.0, 0.1), BlendSpan(250, 260, 1.0, 20.0, 0.1)]
    cuts, kept, added = fuse([50, 80, 220], blends, single, many, FusionConfig(verify_cut=0.03, verify_span=0.1, add=0.5))
    assert cuts == [50, 220]  # 80 denied (a flash, a whip pan), 220 not scored: kept
    assert [(b.start, b.end) for b in kept] == [(250, 260)]  # (100, 110) denied, (250, 260) not scored
    assert added == [(151, 151)]


def test_a_flash_returns_to_the_old_picture_a_cut_does_not():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(40, 200, 64).astype(np.float32), rng.uniform(40, 200, 64).astype(np.float32)
    frames = np.stack([a] * 10 + [np.minimum(a + 120, 255)] * 2 + [a] * 10 + [b] * 10)
    scores = TransientScores(3)
    scores.push(frames[:13])
    scores.push(frames[13:])
    ratio = scores.finish()
    assert len(ratio) == len(frames)
    assert ratio[10] < 0.2  # the flash: the old picture is back two frames later
    assert ratio[22] > 0.9  # the cut to b: it never comes back


@pytest.fixture(scope="module")
def hard_video(tmp_path_factory):
    """A rendered video with a flash, a whip pan and fast motion inside shots, joined by a pixel dissolve,
    a wipe and a cut between two crops of one photo."""
    names = source_names()
    shots = [
        ShotSpec("still", names[0], 60, events=[EventSpec("flash", 20, 2)]),
        ShotSpec("pan", names[1], 60, events=[EventSpec("whip", 20, 6)]),
        ShotSpec("still", names[2], 60, events=[EventSpec("motion", 10, 30, names[3])]),
        ShotSpec("zoom", names[4], 60, crop=0.9),
        ShotSpec("still", names[4], 60, crop=0.4),
    ]
    joins = [TransitionSpec("dissolve", 16, pixels=True), TransitionSpec("wipe", 12), TransitionSpec("cut"),
             TransitionSpec("cut")]
    return make_video(tmp_path_factory.mktemp("hard") / "hard.mp4", shots, joins, fps=24, size=(320, 180), seed=3)


def test_scan_finds_the_transitions_and_none_on_the_events(hard_video):
    """Cuts within a frame; each gradual transition reported once, overlapping the truth, and covering it
    up to the plan's margin (0.25 s: 6 frames here), so no clip reaches into it; nothing on the flash, the
    whip pan or the fast object."""
    result = scan_video(hard_video.path, ScanConfig(learned="off"))
    found = [(t.start, t.end, t.kind) for t in result.transitions]
    truth = hard_video.transitions
    assert len(found) == len(truth), (found, truth)
    margin = 6
    for (start, end, kind), t in zip(found, truth):
        if t.kind == "cut":
            assert kind == "cut" and abs(start - t.start) <= 1, (found, truth)
        else:
            assert kind in ("dissolve", "wipe", "gradual") and start < t.end and t.start < end, (found, truth)
            assert start - margin <= t.start and t.end <= end + margin, (found, truth)


def _wipe_frames(a: np.ndarray, b: np.ndarray, frames: int) -> list[np.ndarray]:
    """``a`` uncovered by ``b`` from the left over ``frames`` frames (a hard edge)."""
    h, w = a.shape
    out = []
    for k in range(frames):
        edge = round((k + 1) / (frames + 1) * w)
        f = a.copy()
        f[:, :edge] = b[:, :edge]
        out.append(f)
    return out


def test_a_wipe_is_found_by_its_sweeping_edge_and_a_pan_is_not():
    from pipeline.transitions import BlendSpanDetector

    rng = np.random.default_rng(4)
    h, w = 18, 32
    a = cv2_blur(rng.uniform(20, 230, (h, w + 40)).astype(np.float32))
    b = cv2_blur(rng.uniform(20, 230, (h, w)).astype(np.float32))
    wipe = [a[:, :w]] * 12 + _wipe_frames(a[:, :w], b, 10) + [b] * 12
    pan = [a[:, k : k + w] for k in range(0, 34)]  # one shot, the camera sweeping right
    for frames, expected in ((wipe, [(12, 22)]), (pan, [])):
        detector = BlendSpanDetector(switch_max_residual=0.25, frame_shape=(h, w))
        for f in frames:
            detector.push(f.reshape(-1), 100.0)  # flat sharpness: no dissolve's dip, only the switch fit
        spans = detector.finish()
        assert [(s.start, s.end) for s in spans] == expected
        assert all(s.kind == "switch" for s in spans)


def cv2_blur(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (5, 5), 1.5)


@pytest.mark.parametrize("weights", ["missing", "truncated"])
def test_curate_with_missing_transnet_weights_stops_before_reading_a_video(hard_video, tmp_path, capsys, weights):
    from pipeline.cli import main

    path = tmp_path / "weights.pth"
    if weights == "truncated":
        path.write_bytes(b"PK\x03\x04 not a whole torch file")
    out = tmp_path / "out"
    rc = main([hard_video.path, "-o", str(out), "--set", "scan.learned=all", "--set", f"scan.learned_weights={path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(path) in err[0] and "vidforge[shotnet]" in err[0] and "scan.learned=all" in err[0]
    assert not (out / "manifest").exists()  # no video was read, nothing written


def test_the_real_footage_labels_follow_the_protocol_and_doubtful_is_dont_care():
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent / "bench"
    sys.path.insert(0, str(bench))
    try:
        from evalsets import Label, match
        from label_shots import check
    finally:
        sys.path.remove(str(bench))
    assert check(bench / "labels" / "real_footage.json") == []
    truth = [Label(10, 10, "cut", doubtful=True), Label(50, 50, "cut"), Label(80, 90, "dissolve")]
    score, false_alarms, missed = match([(11, 11), (84, 84), (200, 200)], truth)
    assert (score.tp, score.fp, score.fn) == (1, 1, 1)  # 11 meets the doubtful cut: neither hit nor false alarm
    assert false_alarms == [2] and missed == [1]


def test_curated_manifest_lists_the_transitions_and_no_clip_reaches_into_one(hard_video, tmp_path):
    """``vidforge curate`` on the rendered video with a pixel dissolve, a wipe, a flash, a whip pan and a
    same-photo cut: ``videos.parquet``'s ``transitions`` (read back by pyarrow) covers every true transition,
    and no candidate clip of ``clips.parquet``, kept or not, holds a frame of one."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vidforge", "curate", hard_video.path, "-o", str(out), "--num-cpus", "1", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (video,) = pq.read_table(out / "manifest/videos.parquet").to_pylist()
    found = video["transitions"]
    assert video["status"] == "ok" and video["num_transitions"] == len(found) == len(hard_video.transitions), found
    for got, truth in zip(found, hard_video.transitions):
        assert (got["start_frame"] == got["end_frame"]) == (truth.kind == "cut"), (got, truth)
        assert got["start_frame"] - 6 <= truth.start and truth.end <= got["end_frame"] + 6, (got, truth)
    clips = pq.read_table(out / "manifest/clips.parquet").to_pylist()
    assert len(clips) >= 3
    for clip in clips:
        s, e = clip["start_frame"], clip["end_frame"]
        for t in hard_video.transitions:
            inside = s < t.start < e if t.kind == "cut" else s < t.end and t.start < e
            assert not inside, (clip["clip_id"], s, e, t)


def test_auto_on_a_machine_without_a_gpu_is_off_without_importing_torch():
    """The scan's CPU workers resolve ``learned: auto`` without paying for torch where there is no GPU."""
    import subprocess
    import sys

    code = "import sys; from pipeline.scan import ScanConfig; print(ScanConfig().learned_mode(), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if torch.cuda.is_available():
        pytest.skip("a GPU machine: auto is all there")
    assert out == ["off", "False"]


def test_scenes_with_missing_transnet_weights_says_so_before_reading_a_video(hard_video, tmp_path, capsys):
    from pipeline.scenes import main

    path = tmp_path / "nope.pth"
    rc = main([hard_video.path, "--set", "scan.learned=all", "--set", f"scan.learned_weights={path}"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(path) in err[0] and "vidforge[shotnet]" in err[0], err
    assert captured.out == ""  # not even the CSV header: nothing was scanned
