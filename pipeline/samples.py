"""Synthetic H.264 videos with ground truth, for tests, benchmarks and ``vidforge demo``.

Frames are rendered from images that ship with matplotlib (``mpl-data/sample_data``: a photo of
Grace Hopper, the Minduka pack, the matplotlib logo, terrain and MRI arrays rendered through
colormaps with hill shading), seen through a virtual camera that pans, zooms, shakes or holds
still. Shots are joined by hard cuts, dissolves (cross-fades, or per-pixel dithers), wipes and
fades through black, and the exact frame ranges of every shot and transition are recorded.

:func:`make_hard_corpus` adds what fools shot detectors: camera flashes, whip pans and fast
objects inside shots (recorded as events, not transitions), cuts between two crops of one photo,
pixel dissolves, wipes and 0.5 s shots.

Conventions (shared with :mod:`pipeline.scan`): frame ranges are ``[start, end)``; a cut has
``start == end`` (the cut lies just before frame ``start``); frames inside a dissolve, wipe or
fade belong to no shot.

Command line: ``python -m pipeline.samples OUT_DIR [--num-videos N] [--seed S] [--hard]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.colour import HDR_TRANSFERS
from pipeline.filtergraph import filter_chain

SHOT_KINDS = ("pan", "zoom", "panzoom", "still", "shaky", "dark")
TRANSITION_KINDS = ("cut", "dissolve", "fade", "wipe")
WIPE_DIRECTIONS = ("right", "left", "down", "up")  # the way a wipe's edge moves
EVENT_KINDS = ("flash", "whip", "motion")
DARK_LUMA = 20.0  # mean luma of "dark" shots: under the too-dark threshold, above fades' black


# --------------------------------------------------------------------------------------------
# Ground truth records
# --------------------------------------------------------------------------------------------


@dataclass
class ShotTruth:
    """A shot: frames ``[start, end)`` filmed with one camera move (``kind``) over ``source``."""

    start: int
    end: int
    kind: str
    source: str


@dataclass
class TransitionTruth:
    """A transition: ``cut`` (``start == end``: the cut is just before frame ``start``),
    ``dissolve``, ``wipe`` or ``fade``; frames ``[start, end)`` belong to no shot."""

    start: int
    end: int
    kind: str


@dataclass
class EventTruth:
    """Frames ``[start, end)`` inside a shot that are no transition but may pass for one: a camera
    ``flash``, a ``whip`` pan or an object crossing the frame fast (``motion``)."""

    start: int
    end: int
    kind: str


@dataclass
class SampleVideo:
    """A generated video file and its ground truth."""

    path: str
    fps: float
    width: int
    height: int
    num_frames: int
    shots: list[ShotTruth] = field(default_factory=list)
    transitions: list[TransitionTruth] = field(default_factory=list)
    events: list[EventTruth] = field(default_factory=list)

    def to_dict(self, relative_to: Path | None = None) -> dict:
        data = dataclasses.asdict(self)
        if not self.events:
            del data["events"]  # files without events read as before events were recorded
        if relative_to is not None:
            try:
                data["path"] = str(Path(self.path).resolve().relative_to(Path(relative_to).resolve()))
            except ValueError:
                pass
        return data

    @classmethod
    def from_dict(cls, data: dict, base: Path | None = None) -> SampleVideo:
        path = Path(data["path"])
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return cls(
            path=str(path),
            fps=float(data["fps"]),
            width=int(data["width"]),
            height=int(data["height"]),
            num_frames=int(data["num_frames"]),
            shots=[ShotTruth(**s) for s in data["shots"]],
            transitions=[TransitionTruth(**t) for t in data["transitions"]],
            events=[EventTruth(**e) for e in data.get("events", [])],
        )


# --------------------------------------------------------------------------------------------
# Specs: what to render
# --------------------------------------------------------------------------------------------


@dataclass
class EventSpec:
    """An event inside a shot (see :class:`EventTruth`): ``kind`` in :data:`EVENT_KINDS` over the
    shot's frames ``[start, start + frames)``; a ``motion`` object is cut out of ``source``."""

    kind: str
    start: int
    frames: int
    source: str = ""


@dataclass
class ShotSpec:
    """One shot to render: ``kind`` in :data:`SHOT_KINDS`, a source name from :func:`source_names`,
    and its own length in frames (transition frames come on top). ``crop``: the view's size as a
    fraction of the largest that fits the source (still, pan, dark, shaky; default random 0.55-0.75)."""

    kind: str
    source: str
    frames: int
    crop: float | None = None
    events: list[EventSpec] = field(default_factory=list)

    def check(self) -> None:
        if self.kind not in SHOT_KINDS:
            raise ValueError(f"shot kind: expected one of {SHOT_KINDS}, got {self.kind!r}")
        if self.frames < 1:
            raise ValueError(f"shot frames: expected >= 1, got {self.frames}")
        for event in self.events:
            if event.kind not in EVENT_KINDS:
                raise ValueError(f"event kind: expected one of {EVENT_KINDS}, got {event.kind!r}")
            if event.frames < 1 or event.start < 0 or event.start + event.frames > self.frames:
                raise ValueError(f"event {event}: expected frames >= 1 inside the shot's {self.frames}")


@dataclass
class TransitionSpec:
    """How two shots are joined: ``cut``; ``dissolve`` over ``frames`` frames (an alpha blend, or
    with ``pixels`` a dither as FFmpeg xfade's ``dissolve``: each pixel turns from A to B at its own
    random time); ``wipe`` over ``frames`` frames (an edge moving ``direction`` uncovers B); ``fade``
    out over ``frames`` frames, ``black`` black frames, then in over ``frames_in`` (defaults to ``frames``)."""

    kind: str
    frames: int = 0
    black: int = 0
    frames_in: int | None = None
    pixels: bool = False
    direction: str = "right"

    @property
    def length(self) -> int:
        if self.kind == "cut":
            return 0
        if self.kind in ("dissolve", "wipe"):
            return self.frames
        return self.frames + self.black + self.fade_in_frames

    @property
    def fade_in_frames(self) -> int:
        return self.frames if self.frames_in is None else self.frames_in

    @property
    def tail(self) -> int:
        """Frames the outgoing shot's camera rolls on into the transition."""
        return 0 if self.kind == "cut" else self.frames

    @property
    def head(self) -> int:
        """Frames the incoming shot's camera rolls before its shot starts."""
        return {"cut": 0, "fade": self.fade_in_frames}.get(self.kind, self.frames)

    def check(self) -> None:
        if self.kind not in TRANSITION_KINDS:
            raise ValueError(f"transition kind: expected one of {TRANSITION_KINDS}, got {self.kind!r}")
        if self.kind != "cut" and self.frames < 1:
            raise ValueError(f"{self.kind}: expected frames >= 1, got {self.frames}")
        if self.pixels and self.kind != "dissolve":
            raise ValueError(f"{self.kind}: pixels is for dissolves only")
        if self.direction not in WIPE_DIRECTIONS:
            raise ValueError(f"wipe direction: expected one of {WIPE_DIRECTIONS}, got {self.direction!r}")


# --------------------------------------------------------------------------------------------
# Source images
# --------------------------------------------------------------------------------------------

_SOURCE_MIN_SIDE = 480  # sources are resized so their short side is this many pixels


def _rgba_to_rgb(img: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4]
        img = img[:, :, :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
    return img[:, :, :3]


def _shaded(elevation: np.ndarray, cmap: str, vert_exag: float) -> np.ndarray:
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    elevation = np.asarray(elevation, np.float64)
    light = LightSource(azdeg=315, altdeg=45)
    return light.shade(elevation, cmap=colormaps[cmap], blend_mode="overlay", vert_exag=vert_exag)[:, :, :3]


def _load_source(name: str) -> np.ndarray:
    """Render source ``name`` as an RGB float image in [0, 1] (full size, before resizing)."""
    import matplotlib.image as mpimg
    from matplotlib import cbook, colormaps

    family, _, variant = name.partition(":")
    if family == "hopper":
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            rgb = _rgba_to_rgb(mpimg.imread(f, format="jpg"), (0, 0, 0))
        if variant == "":
            return rgb
        gray = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
        return colormaps[variant](gray)[:, :, :3]
    if family == "dem":
        elevation = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]
        return _shaded(elevation, variant, vert_exag=0.05)
    if family == "topo":
        topo = cbook.get_sample_data("topobathy.npz")["topo"]
        return _shaded(cv2.resize(topo.astype(np.float32), (480, 364), interpolation=cv2.INTER_CUBIC), variant, 0.02)
    if family == "mri":
        import gzip

        with gzip.open(cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as f:
            raw = f.read()
        im = np.frombuffer(raw, np.uint16).astype(np.float32).reshape(256, 256)
        im = im / max(float(im.max()), 1.0)
        return colormaps[variant](np.clip(im * 1.6, 0, 1))[:, :, :3]
    if family == "minduka":
        with cbook.get_sample_data("Minduka_Present_Blue_Pack.png") as f:
            img = _rgba_to_rgb(mpimg.imread(f, format="png"), (0.95, 0.85, 0.55))
        return np.tile(img, (2, 3, 1))  # a wall of packs
    if family == "logo":
        with cbook.get_sample_data("logo2.png") as f:
            logo = _rgba_to_rgb(mpimg.imread(f, format="png"), (0.15, 0.2, 0.35))
        return np.concatenate([logo, logo[:, ::-1], logo], axis=0)
    raise ValueError(f"unknown sample source {name!r} (known: {', '.join(source_names())})")


def source_names() -> list[str]:
    """Names of the renderable sources, ``family:variant``. Shots from different families share
    no image content."""
    return [
        "hopper:",
        "hopper:viridis",
        "hopper:copper",
        "dem:gist_earth",
        "dem:terrain",
        "dem:magma",
        "dem:cividis",
        "topo:ocean",
        "topo:summer",
        "mri:bone",
        "mri:inferno",
        "minduka:",
        "logo:",
    ]


def source_family(name: str) -> str:
    return name.partition(":")[0]


@lru_cache(maxsize=32)
def load_source(name: str) -> np.ndarray:
    """Source ``name`` as an RGB ``uint8`` image whose short side is 480 pixels (cached)."""
    img = np.clip(_load_source(name), 0.0, 1.0)
    h, w = img.shape[:2]
    scale = _SOURCE_MIN_SIDE / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    out = cv2.resize((img * 255.0).astype(np.float32), size, interpolation=interp)
    out = np.clip(out, 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


# --------------------------------------------------------------------------------------------
# Camera paths and rendering
# --------------------------------------------------------------------------------------------


class _Event:
    """An event's effect on a shot at shot-local frame ``t``: how far it turns the camera
    (``shift``, output pixels), what the camera sees (``scene``) and how it is lit (``light``,
    after a dark shot's exposure)."""

    def __init__(self, spec: EventSpec):
        self.spec = spec

    def active(self, t: int) -> bool:
        return self.spec.start <= t < self.spec.start + self.spec.frames

    def shift(self, t: int) -> np.ndarray:
        return np.zeros(2)

    def scene(self, frame: np.ndarray, t: int) -> np.ndarray:
        return frame

    def light(self, frame: np.ndarray, t: int) -> np.ndarray:
        return frame


class _Flash(_Event):
    """A photographer's flash: the picture washed toward white, most on the first frame."""

    def __init__(self, spec: EventSpec, size, rng: np.random.Generator):
        super().__init__(spec)
        self.peak = rng.uniform(0.6, 0.85)

    def light(self, frame, t):
        if not self.active(t):
            return frame
        return frame + (255.0 - frame) * (self.peak * 0.6 ** (t - self.spec.start))


class _Whip(_Event):
    """A whip pan: the camera swings about a frame width sideways (eased in and out), blurred
    along the swing, and holds the new view for the rest of the shot."""

    def __init__(self, spec: EventSpec, size, rng: np.random.Generator):
        super().__init__(spec)
        self.distance = size[0] * rng.uniform(0.8, 1.2) * (1.0 if rng.random() < 0.5 else -1.0)

    def _progress(self, t: float) -> float:
        u = min(max((t - self.spec.start + 1) / (self.spec.frames + 1), 0.0), 1.0)
        return (1.0 - math.cos(math.pi * u)) / 2.0

    def shift(self, t):
        return np.array([self.distance * self._progress(t), 0.0])

    def scene(self, frame, t):
        if not self.active(t):
            return frame
        streak = abs(self.distance) * (self._progress(t + 0.5) - self._progress(t - 0.5))
        return cv2.blur(frame, (max(1, round(streak)), 1))


class _Motion(_Event):
    """An object (an oval cut out of another source) crossing the frame side to side in
    ``frames`` frames, blurred along its path."""

    def __init__(self, spec: EventSpec, size, rng: np.random.Generator):
        super().__init__(spec)
        width, height = size
        h = max(4, round(height * rng.uniform(0.35, 0.5)))
        w = max(4, round(h * rng.uniform(0.8, 1.3)))
        image = load_source(spec.source)
        side = min(image.shape[:2]) // 2
        y, x = (rng.integers(0, n - side + 1) for n in image.shape[:2])
        patch = cv2.resize(image[y : y + side, x : x + side], (w, h), interpolation=cv2.INTER_AREA)
        yy, xx = np.mgrid[:h, :w]
        oval = (((xx + 0.5) / w - 0.5) ** 2 + ((yy + 0.5) / h - 0.5) ** 2 <= 0.25).astype(np.float32)
        speed = (width + w) / spec.frames
        streak = max(1, round(speed / 2))  # a half-frame shutter
        pad = ((0, 0), (streak, streak))
        alpha = cv2.blur(np.pad(oval, pad), (streak, 1))
        self.alpha = alpha[:, :, None]
        self.rgb = cv2.blur(np.pad(patch * oval[:, :, None], pad + ((0, 0),)), (streak, 1))  # premultiplied
        travel = np.array([-self.alpha.shape[1], width], np.float64)
        self.x = travel if rng.random() < 0.5 else travel[::-1]
        self.y = rng.uniform(0, height - h, size=2)

    def scene(self, frame, t):
        if not self.active(t):
            return frame
        u = (t - self.spec.start + 0.5) / self.spec.frames
        x, y = (round(a + (b - a) * u) for a, b in (self.x, self.y))
        h, w = self.alpha.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
        if x0 < x1 and y0 < y1:
            alpha = self.alpha[y0 - y : y1 - y, x0 - x : x1 - x]
            frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1.0 - alpha) + self.rgb[y0 - y : y1 - y, x0 - x : x1 - x]
        return frame


_EVENTS = {"flash": _Flash, "whip": _Whip, "motion": _Motion}


class _Camera:
    """A crop window over a source image as a function of the shot-local frame index ``t``.

    ``t`` runs over ``[t0, t1)``: shot frames are ``[0, frames)``; frames before 0 and after
    ``frames`` are rendered for transitions (the camera keeps moving through a dissolve).
    """

    def __init__(self, spec: ShotSpec, t0: int, t1: int, size: tuple[int, int], rng: np.random.Generator):
        self.spec = spec
        self.image = load_source(spec.source)
        self.size = size
        self.t0, self.t1 = t0, max(t1, t0 + 1)
        width, height = size
        src_h, src_w = self.image.shape[:2]
        fit = min(src_w / width, src_h / height)  # largest scale (source px per output px) that fits
        kind = spec.kind
        n = self.t1 - self.t0
        if kind in ("still", "pan", "dark", "shaky"):
            s0 = s1 = fit * (rng.uniform(0.55, 0.75) if spec.crop is None else spec.crop)
        elif kind == "zoom":
            s0, s1 = fit * 0.9, fit * rng.uniform(0.45, 0.6)
            if rng.random() < 0.5:
                s0, s1 = s1, s0
        else:  # panzoom
            s0, s1 = fit * 0.8, fit * 0.5
            if rng.random() < 0.5:
                s0, s1 = s1, s0
        self.s0, self.s1 = s0, s1
        smax = max(s0, s1)
        lo = np.array([smax * width / 2, smax * height / 2])
        hi = np.array([src_w - smax * width / 2, src_h - smax * height / 2])
        room = np.maximum(hi - lo, 0.0)
        self.lo, self.hi = lo, hi
        if kind in ("still", "zoom"):
            c0 = c1 = lo + room * rng.uniform(0.3, 0.7, size=2)
        elif kind in ("pan", "dark", "panzoom"):
            # 1.2 .. 3 output pixels per frame, mostly horizontal, clamped to the room available
            speed = rng.uniform(1.2, 3.0) * smax
            angle = rng.uniform(-0.5, 0.5) + (math.pi if rng.random() < 0.5 else 0.0)
            direction = np.array([math.cos(angle), math.sin(angle)])
            dist = np.minimum(speed * n * np.abs(direction), room * 0.95)
            mid = lo + room * 0.5
            c0 = mid - np.sign(direction) * dist / 2
            c1 = mid + np.sign(direction) * dist / 2
        else:  # shaky: fast back-and-forth pan plus hand-held jitter
            c0 = lo + room * 0.5
            c1 = c0
        self.c0, self.c1 = c0, c1
        self.room = room
        if kind == "shaky":
            self.period = rng.uniform(18, 30)  # frames per sweep
            self.amp = room * np.array([0.45, 0.25])
            self.jitter = rng.normal(0.0, 2.5 * smax, size=(n, 2))
        # a dark shot is a dim (not black) picture: every frame scaled to mean luma DARK_LUMA
        self.dark = kind == "dark"
        self.events = [_EVENTS[event.kind](event, size, rng) for event in spec.events]

    def render(self, t: int) -> np.ndarray:
        """The RGB float32 frame at shot-local index ``t``."""
        n = self.t1 - self.t0
        u = (t - self.t0) / max(n - 1, 1)
        s = self.s0 + (self.s1 - self.s0) * u
        c = self.c0 + (self.c1 - self.c0) * u
        if self.spec.kind == "shaky":
            phase = (t - self.t0) / self.period
            tri = 2.0 * abs(2.0 * (phase - math.floor(phase + 0.5)))  - 1.0  # triangle wave in [-1, 1]
            c = c + self.amp * np.array([tri, math.sin(phase * 2.3)])
            c = c + self.jitter[min(max(t - self.t0, 0), n - 1)]
        c = np.clip(c, self.lo, self.hi) if np.all(self.hi >= self.lo) else c
        for event in self.events:
            c = c + s * event.shift(t)
        width, height = self.size
        matrix = np.array([[s, 0.0, c[0] - s * width / 2], [0.0, s, c[1] - s * height / 2]], np.float64)
        frame = cv2.warpAffine(
            self.image, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        ).astype(np.float32)
        for event in self.events:
            frame = event.scene(frame, t)
        if self.dark:
            luma = float((frame.reshape(-1, 3) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
            frame *= DARK_LUMA / max(luma, 1.0)
        for event in self.events:
            frame = event.light(frame, t)
        return frame


def _mix_weights(tr: TransitionSpec, size, rng: np.random.Generator):
    """Shot B's weight in each frame of a dissolve or wipe: a number (alpha dissolve) or a 0/1
    mask ``(height, width, 1)`` (pixel dissolve, wipe)."""
    width, height = size
    if tr.kind == "wipe":
        x = (np.arange(width, dtype=np.float32) + 0.5) / width
        y = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
        ramp = {"right": x, "left": 1.0 - x, "down": y, "up": 1.0 - y}[tr.direction]
        switch = np.broadcast_to(ramp, (height, width))
    else:  # a dissolve: each pixel turns at its own random time, or all at once
        switch = rng.random((height, width), dtype=np.float32) if tr.pixels else None
    for k in range(tr.frames):
        a = (k + 1) / (tr.frames + 1)
        yield a if switch is None else (switch < a).astype(np.float32)[:, :, None]


def _render_frames(shots: list[ShotSpec], transitions: list[TransitionSpec], size, rng):
    """Yield the RGB float32 frames of the whole video."""
    cameras = []
    for i, spec in enumerate(shots):
        pre = transitions[i - 1].head if i > 0 else 0
        post = transitions[i].tail if i < len(transitions) else 0
        cameras.append(_Camera(spec, -pre, spec.frames + post, size, rng))
    black = np.zeros((size[1], size[0], 3), np.float32)
    for i, (spec, cam) in enumerate(zip(shots, cameras)):
        for t in range(spec.frames):
            yield cam.render(t)
        if i == len(shots) - 1:
            break
        tr, nxt = transitions[i], cameras[i + 1]
        if tr.kind in ("dissolve", "wipe"):
            for k, w in enumerate(_mix_weights(tr, size, rng)):
                yield (1.0 - w) * cam.render(spec.frames + k) + w * nxt.render(k - tr.frames)
        elif tr.kind == "fade":
            for k in range(tr.frames):
                yield cam.render(spec.frames + k) * ((tr.frames - k) / (tr.frames + 1))
            for _ in range(tr.black):
                yield black
            fin = tr.fade_in_frames
            for k in range(fin):
                yield nxt.render(k - fin) * ((k + 1) / (fin + 1))


def _ground_truth(shots: list[ShotSpec], transitions: list[TransitionSpec]):
    shot_truth, transition_truth, event_truth = [], [], []
    pos = 0
    for i, spec in enumerate(shots):
        shot_truth.append(ShotTruth(pos, pos + spec.frames, spec.kind, spec.source))
        event_truth += [EventTruth(pos + e.start, pos + e.start + e.frames, e.kind) for e in spec.events]
        pos += spec.frames
        if i < len(transitions):
            tr = transitions[i]
            transition_truth.append(TransitionTruth(pos, pos + tr.length, tr.kind))
            pos += tr.length
    return shot_truth, transition_truth, event_truth, pos


def _open_h264(path: Path, fps, size, *, faststart: bool = False, crf: int = 18):
    options = {"movflags": "+faststart"} if faststart else {}
    container = av.open(str(path), mode="w", format="mp4", options=options)
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = max(1, int(round(float(fps) * 2)))
    stream.options = {"preset": "superfast", "crf": str(crf), "threads": "1"}
    return container, stream


def _write_frames(path: Path, frames, fps, size, **kwargs) -> int:
    container, stream = _open_h264(path, fps, size, **kwargs)
    count = 0
    try:
        for rgb in frames:
            arr = np.clip(rgb, 0, 255).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return count


def make_video(
    path: str | Path,
    shots: list[ShotSpec],
    transitions: list[TransitionSpec] | None = None,
    fps: float = 24,
    size: tuple[int, int] = (320, 180),
    seed: int = 0,
) -> SampleVideo:
    """Render ``shots`` joined by ``transitions`` (one fewer; default: hard cuts) into an H.264
    mp4 at ``path`` and return its ground truth."""
    transitions = list(transitions) if transitions is not None else [TransitionSpec("cut")] * (len(shots) - 1)
    if not shots:
        raise ValueError("make_video: expected at least one shot")
    if len(transitions) != len(shots) - 1:
        raise ValueError(f"make_video: expected {len(shots) - 1} transitions for {len(shots)} shots, got {len(transitions)}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"make_video: size must be even for yuv420p, got {size}")
    for spec in shots:
        spec.check()
    for tr in transitions:
        tr.check()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shot_truth, transition_truth, event_truth, total = _ground_truth(shots, transitions)
    written = _write_frames(path, _render_frames(shots, transitions, size, rng), fps, size)
    assert written == total, (written, total)
    return SampleVideo(str(path), float(fps), size[0], size[1], total, shot_truth, transition_truth, event_truth)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


HARD_JOINS = ("cut", "similar", "dissolve", "pixels", "wipe", "fade", "short")
"""How :func:`hard_corpus_specs` joins two shots: a cut; a cut to another crop of the same photo
(``similar``); an alpha or a ``pixels`` dissolve; a wipe; a fade; a 0.5 s shot between two cuts."""


class _Deck:
    """Kinds dealt from shuffled decks (one per tuple of kinds): each comes up once a round."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.decks: dict[tuple[str, ...], list[str]] = {}

    def deal(self, kinds: tuple[str, ...]) -> str:
        deck = self.decks.setdefault(kinds, [])
        if not deck:
            deck.extend(self.rng.permutation(list(kinds)).tolist())
        return deck.pop()


def _next_source(rng: np.random.Generator, previous: list[str]) -> str:
    """A source of another family than ``previous[-1]``, one not in ``previous`` where any is left."""
    allowed = [n for n in source_names() if not previous or source_family(n) != source_family(previous[-1])]
    unused = [n for n in allowed if n not in previous] or allowed
    return unused[rng.integers(len(unused))]


def _pick_sources(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` sources where consecutive ones come from different families."""
    out: list[str] = []
    for _ in range(count):
        out.append(_next_source(rng, out))
    return out


def _random_shot(deck: _Deck, rng: np.random.Generator, source: str, fps: float, shot_seconds) -> ShotSpec:
    kind = deck.deal(SHOT_KINDS)
    seconds = rng.uniform(*shot_seconds)
    if kind == "shaky":
        seconds = min(seconds, 3.5)
    return ShotSpec(kind, source, max(2, int(round(seconds * fps))))


def _random_transition(kind: str, rng: np.random.Generator) -> TransitionSpec:
    """A transition for plan ``kind`` (``cut``, ``dissolve``, ``pixels``, ``wipe``, ``fade``): dissolves
    8-24 frames, pixel dissolves and wipes 8-20, fades 6-16 out, 0-8 black, 6-16 in."""
    if kind == "dissolve":
        return TransitionSpec("dissolve", int(rng.integers(8, 25)))
    if kind == "pixels":
        return TransitionSpec("dissolve", int(rng.integers(8, 21)), pixels=True)
    if kind == "wipe":
        return TransitionSpec("wipe", int(rng.integers(8, 21)), direction=WIPE_DIRECTIONS[rng.integers(4)])
    if kind == "fade":
        return TransitionSpec("fade", int(rng.integers(6, 17)), int(rng.integers(0, 9)), int(rng.integers(6, 17)))
    return TransitionSpec("cut")


def _random_event(kind: str, shot: ShotSpec, rng: np.random.Generator) -> EventSpec:
    """An event of ``kind`` at least 6 frames inside ``shot`` (30 frames or more): a 1-3 frame
    flash, a 4-8 frame whip pan, or an object of another source crossing in 10-18 frames."""
    frames = int(rng.integers(*{"flash": (1, 4), "whip": (4, 9), "motion": (10, 19)}[kind]))
    start = int(rng.integers(6, shot.frames - frames - 5))
    return EventSpec(kind, start, frames, _next_source(rng, [shot.source]) if kind == "motion" else "")


def _reframe(first: ShotSpec, second: ShotSpec, rng: np.random.Generator) -> None:
    """Make ``second`` another view of ``first``'s photo, both lit alike (no dark shot): one crop wide,
    the other tight (2x or more)."""
    wide, tight = rng.uniform(0.85, 0.95), rng.uniform(0.35, 0.45)
    if first.crop is None:
        first.crop = wide if rng.random() < 0.5 else tight
    second.source, second.crop = first.source, tight if first.crop > 0.6 else wide
    for shot in (first, second):
        shot.kind = shot.kind if shot.kind in ("still", "pan", "shaky") else "still"


def corpus_specs(
    num_videos: int,
    seed: int = 0,
    fps: float = 24,
    shots_per_video: tuple[int, int] = (3, 6),
    shot_seconds: tuple[float, float] = (2.0, 6.0),
) -> list[tuple[list[ShotSpec], list[TransitionSpec]]]:
    """The shot and transition plan of a corpus; shot and transition kinds are dealt from
    shuffled decks so every kind occurs as soon as the corpus has enough shots."""
    rng = np.random.default_rng(seed)
    deck = _Deck(rng)
    plans = []
    for _ in range(num_videos):
        n_shots = int(rng.integers(shots_per_video[0], shots_per_video[1] + 1))
        shots = [_random_shot(deck, rng, src, fps, shot_seconds) for src in _pick_sources(rng, n_shots)]
        transitions = [_random_transition(deck.deal(("cut", "cut", "dissolve", "fade")), rng) for _ in shots[1:]]
        plans.append((shots, transitions))
    return plans


def hard_corpus_specs(
    num_videos: int = 8,
    seed: int = 0,
    fps: float = 24,
    joins_per_video: tuple[int, int] = (5, 7),
    shot_seconds: tuple[float, float] = (1.5, 3.5),
) -> list[tuple[list[ShotSpec], list[TransitionSpec]]]:
    """The plan of :func:`make_hard_corpus`: shots joined by :data:`HARD_JOINS`, each shot of 30
    frames or more holding one of :data:`EVENT_KINDS` or none; joins, events and shot kinds are dealt
    from shuffled decks, so every one occurs once the corpus has 7 joins and 4 such shots."""
    rng = np.random.default_rng(seed)
    deck = _Deck(rng)
    plans = []
    for _ in range(num_videos):
        shots = [_random_shot(deck, rng, _next_source(rng, []), fps, shot_seconds)]
        transitions: list[TransitionSpec] = []
        for _ in range(int(rng.integers(joins_per_video[0], joins_per_video[1] + 1))):
            join = deck.deal(HARD_JOINS)
            if join == "short":
                shots.append(_random_shot(deck, rng, _next_source(rng, [s.source for s in shots]), fps, (0.5, 0.5)))
                transitions.append(TransitionSpec("cut"))
            shot = _random_shot(deck, rng, _next_source(rng, [s.source for s in shots]), fps, shot_seconds)
            if join == "similar":
                _reframe(shots[-1], shot, rng)
            shots.append(shot)
            transitions.append(_random_transition("cut" if join in ("short", "similar") else join, rng))
        for shot in shots:
            kind = deck.deal(EVENT_KINDS + ("",)) if shot.frames >= 30 else ""
            shot.events = [_random_event(kind, shot, rng)] if kind else []
        plans.append((shots, transitions))
    return plans


def _write_corpus(out_dir: str | Path, plans, fps: float, size: tuple[int, int], seed: int) -> list[SampleVideo]:
    """Render ``plans`` as ``video_NNN.mp4`` in ``out_dir`` and write ``ground_truth.json`` beside them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = []
    for i, (shots, transitions) in enumerate(plans):
        path = out_dir / f"video_{i:03d}.mp4"
        videos.append(make_video(path, shots, transitions, fps=fps, size=size, seed=seed * 1000 + i))
    write_ground_truth(out_dir / "ground_truth.json", videos)
    return videos


def make_corpus(
    out_dir: str | Path,
    num_videos: int = 6,
    seed: int = 0,
    fps: float = 24,
    size: tuple[int, int] = (320, 180),
    shots_per_video: tuple[int, int] = (3, 6),
    shot_seconds: tuple[float, float] = (2.0, 6.0),
) -> list[SampleVideo]:
    """Write ``num_videos`` videos ``video_NNN.mp4`` to ``out_dir`` plus ``ground_truth.json``.

    Deterministic for a given ``seed``. Defaults give videos of 3-6 shots of 2-6 s (about 8-40 s)
    at 24 fps, joined by a mix of cuts, dissolves (8-24 frames) and fades through black (6-16
    frames out, 0-8 black, 6-16 in); all six shot kinds occur once the corpus has six shots.
    """
    plans = corpus_specs(num_videos, seed, fps, shots_per_video, shot_seconds)
    return _write_corpus(out_dir, plans, fps, size, seed)


def make_hard_corpus(
    out_dir: str | Path,
    num_videos: int = 8,
    seed: int = 0,
    fps: float = 24,
    size: tuple[int, int] = (320, 180),
    joins_per_video: tuple[int, int] = (5, 7),
    shot_seconds: tuple[float, float] = (1.5, 3.5),
) -> list[SampleVideo]:
    """Like :func:`make_corpus`, a corpus that is harder on shot detectors (see :func:`hard_corpus_specs`).

    Defaults give 8 videos of about 15-25 s: 5-7 joins each (cuts, cuts between two crops of one
    photo, alpha and pixel dissolves, wipes, fades, 0.5 s shots between cuts), with flashes, whip
    pans and fast objects inside shots recorded as ``events``; each kind occurs several times.
    """
    plans = hard_corpus_specs(num_videos, seed, fps, joins_per_video, shot_seconds)
    return _write_corpus(out_dir, plans, fps, size, seed)


def write_ground_truth(path: str | Path, videos: list[SampleVideo]) -> None:
    """Write the ground truth of ``videos`` as JSON; video paths are stored relative to it."""
    path = Path(path)
    data = {"videos": [v.to_dict(relative_to=path.parent) for v in videos]}
    path.write_text(json.dumps(data, indent=1))


def load_ground_truth(path: str | Path) -> list[SampleVideo]:
    """Read a ``ground_truth.json`` written by :func:`make_corpus`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return [SampleVideo.from_dict(v, base=path.parent) for v in data["videos"]]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: ground truth file not found") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a vidforge ground truth file ({exc})") from None


# --------------------------------------------------------------------------------------------
# Rotated inputs (phone videos: the picture is stored sideways, a display matrix turns it upright)
# --------------------------------------------------------------------------------------------

# the mp4 track-header matrix (a b u c d v x y w, 16.16 / 2.30 fixed point) for each rotation as
# FFmpeg reports it (counter-clockwise degrees; phones' portrait videos show -90)
_TKHD_MATRICES = {
    0: (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30),
    -90: (0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30),
    90: (0, -(1 << 16), 0, 1 << 16, 0, 0, 0, 0, 1 << 30),
    180: (-(1 << 16), 0, 0, 0, -(1 << 16), 0, 0, 0, 1 << 30),
}


def _find_box(data: bytes | bytearray, path: list[str], start: int = 0, end: int | None = None) -> int:
    """Offset of the mp4 box at ``path`` (e.g. ``["moov", "trak", "tkhd"]``), first match at each level."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size < 8:
            break
        if kind.decode("latin-1") == path[0]:
            return pos if len(path) == 1 else _find_box(data, path[1:], pos + 8, pos + size)
        pos += size
    raise ValueError(f"no mp4 box {'/'.join(path)}")


def set_display_rotation(path: str | Path, rotation: int) -> None:
    """Rewrite the first track's display matrix in place so that players (and FFmpeg) rotate the
    picture by ``rotation`` degrees counter-clockwise: one of 0, 90, 180, -90."""
    if rotation not in _TKHD_MATRICES:
        raise ValueError(f"rotation: expected one of {sorted(_TKHD_MATRICES)}, got {rotation}")
    path = Path(path)
    data = bytearray(path.read_bytes())
    try:
        tkhd = _find_box(data, ["moov", "trak", "tkhd"])
    except ValueError as exc:
        raise ValueError(f"{path}: not an mp4 with a track header ({exc})") from None
    version = data[tkhd + 8]
    # header, version+flags, times/track id/reserved/duration, reserved, layer/group/volume/reserved
    matrix = tkhd + 8 + 4 + (32 if version == 1 else 20) + 8 + 8
    data[matrix : matrix + 36] = struct.pack(">9i", *_TKHD_MATRICES[rotation])
    path.write_bytes(bytes(data))


FFMPEG_TRANSFER_NAMES = {"PQ": "smpte2084", "HLG": "arib-std-b67"}
"""FFmpeg's names of the HDR transfers :func:`make_hdr_copy` writes (their values: ``colour.HDR_TRANSFERS``)."""


def hdr_frames(frames, transfer: str):
    """SDR frames (BT.709 colours; untagged ones read as BT.601 YUV, as every reader does) as 10-bit
    BT.2020 HDR frames with ``transfer`` (``PQ`` or ``HLG``), SDR white at HDR reference white:
    FFmpeg's colour management (the ``scale`` filter), the inverse of what phones' SDR exports do."""
    name = FFMPEG_TRANSFER_NAMES[transfer]
    graph = None
    for frame in frames:
        if graph is None:
            convert = ("scale", f"out_color_matrix=bt2020nc:out_primaries=bt2020:out_transfer={name}:out_range=tv")
            graph = filter_chain(frame.width, frame.height, frame.format.name, convert, ("format", "yuv420p10le"))
        if frame.colorspace == 2:  # unspecified
            frame.colorspace = 6 if frame.format.name.startswith("yuv") else 1  # BT.601 YUV (RGB has no matrix)
        frame.color_primaries = frame.color_trc = 1  # BT.709
        graph.push(frame)
        yield graph.pull()


def make_hdr_copy(source: str | Path, path: str | Path, transfer: str) -> None:
    """An HDR copy of an SDR video, as phones record (iPhones HLG, many Androids PQ): 10-bit H.264,
    BT.2020 primaries and matrix, ``transfer``, all said in the stream (see :func:`hdr_frames`)."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = src.streams.video[0]
        encoder = out.add_stream("libx264", rate=stream.average_rate)
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p10le"
        encoder.options = {"preset": "ultrafast", "crf": "12"}
        context = encoder.codec_context
        context.color_primaries, context.colorspace, context.color_range = 9, 9, 1
        context.color_trc = next(value for value, name in HDR_TRANSFERS.items() if name == transfer)
        for i, hdr in enumerate(hdr_frames(src.decode(stream), transfer)):
            hdr.pts, hdr.time_base = i, 1 / stream.average_rate
            out.mux(encoder.encode(hdr))
        out.mux(encoder.encode())


def make_interlaced_copy(source: str | Path, path: str | Path, gop: int = 25) -> None:
    """An interlaced (top field first) H.264 copy of a progressive video at half its frame rate, as
    a camcorder shooting 50i would record it: frame k holds source frame 2k on its even lines (the top
    field, shown first) and frame 2k + 1 on its odd lines; flagged interlaced, top field first."""
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        rate = stream.average_rate / 2
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    height, width = frames[0].shape[:2]
    # the flags an interlaced camera's frames carry
    graph = filter_chain(width, height, "yuv420p", ("setfield", "tff"), time_base=1 / rate)
    with av.open(str(path), "w") as out:
        encoder = out.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.codec_context.gop_size = gop
        encoder.options = {"preset": "ultrafast", "crf": "14", "flags": "+ildct+ilme"}  # field-aware coding
        for k in range(len(frames) // 2):
            woven = frames[2 * k].copy()
            woven[1::2] = frames[2 * k + 1][1::2]
            frame = av.VideoFrame.from_ndarray(woven, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = k, 1 / rate
            graph.push(frame)
            out.mux(encoder.encode(graph.pull()))
        out.mux(encoder.encode())


def make_damaged_copy(source: str | Path, path: str | Path, packets: list[int]) -> list[float]:
    """A copy of an H.264/HEVC mp4 with the given packets (decode order, 0 = first) damaged as a bad
    sector or a broken download leaves them: each packet's first NAL length field is overwritten
    (0xFFFFFFFF), so the decoder rejects the packet and the frames predicted from it show the hole.
    Returns the damaged packets' presentation times (seconds, the stream's clock)."""
    data = bytearray(Path(source).read_bytes())
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        found = {i: (p.pos, float(p.pts * p.time_base)) for i, p in enumerate(container.demux(stream)) if p.size}
    times = []
    for index in packets:
        if index not in found:
            raise ValueError(f"{source}: no packet {index} (it has {len(found)})")
        position, pts = found[index]
        data[position : position + 4] = b"\xff\xff\xff\xff"
        times.append(pts)
    Path(path).write_bytes(data)
    return times


def make_lossy_ts_copy(source: str | Path, path: str | Path, lost: int = 3) -> None:
    """An MPEG-TS copy of a video (stream copy) with ``lost`` consecutive 188-byte transport packets
    missing from the middle, as a broadcast capture or a UDP stream loses them: the demuxer sees the
    continuity counter jump and flags the frame's packet corrupt."""
    buffer = io.BytesIO()
    with av.open(str(source)) as src, av.open(buffer, "w", format="mpegts") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.size:
                packet.stream = copy
                out.mux(packet)
    data = bytearray(buffer.getvalue())
    middle = len(data) // 188 // 2 * 188
    del data[middle : middle + lost * 188]
    Path(path).write_bytes(data)


# --------------------------------------------------------------------------------------------
# Broken inputs
# --------------------------------------------------------------------------------------------


def make_broken_inputs(out_dir: str | Path) -> dict[str, Path]:
    """Files a curation run must survive, each ending as ``failed`` (or, for ``one_frame``,
    too short to make a clip):

    - ``empty``: a zero-byte ``empty.mp4``;
    - ``not_video``: a text file named ``not_video.mp4``;
    - ``truncated``: an H.264 mp4 whose header (moov first) announces 48 frames but whose file
      stops halfway through the frame data;
    - ``truncated_no_index``: the first half of an mp4 whose index (moov) was at the end, so it
      cannot be opened at all;
    - ``audio_only``: ``audio_only.mp4`` holding one AAC audio stream and no video;
    - ``one_frame``: a valid H.264 mp4 of a single frame.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    paths["empty"] = out_dir / "empty.mp4"
    paths["empty"].write_bytes(b"")

    paths["not_video"] = out_dir / "not_video.mp4"
    paths["not_video"].write_text("This is a text file, not a video.\n" * 20)

    size = (160, 96)
    cam = _Camera(ShotSpec("pan", "hopper:", 48), 0, 48, size, np.random.default_rng(0))
    frames = [cam.render(t) for t in range(48)]

    full = out_dir / "_full_faststart.mp4"
    _write_frames(full, frames, 24, size, faststart=True)
    data = full.read_bytes()
    full.unlink()
    paths["truncated"] = out_dir / "truncated.mp4"
    paths["truncated"].write_bytes(data[: len(data) // 2])

    full = out_dir / "_full.mp4"
    _write_frames(full, frames, 24, size)
    data = full.read_bytes()
    full.unlink()
    paths["truncated_no_index"] = out_dir / "truncated_no_index.mp4"
    paths["truncated_no_index"].write_bytes(data[: len(data) // 2])

    paths["audio_only"] = out_dir / "audio_only.mp4"
    _write_audio(paths["audio_only"])

    paths["one_frame"] = out_dir / "one_frame.mp4"
    _write_frames(paths["one_frame"], frames[:1], 24, size)
    return paths


def _write_audio(path: Path, seconds: float = 1.0, rate: int = 44100) -> None:
    container = av.open(str(path), mode="w", format="mp4")
    stream = container.add_stream("aac", rate=rate)
    stream.layout = "mono"
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    frame_size = stream.codec_context.frame_size or 1024
    try:
        for i in range(0, len(samples), frame_size):
            chunk = samples[i : i + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num-videos", type=int, default=None, help="default: 6, or 8 with --hard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=24)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--broken", action="store_true", help="also write broken inputs to OUT_DIR/broken")
    parser.add_argument("--hard", action="store_true", help="the harder corpus of make_hard_corpus")
    args = parser.parse_args(argv)
    make = make_hard_corpus if args.hard else make_corpus
    num_videos = args.num_videos or (8 if args.hard else 6)
    videos = make(args.out_dir, num_videos, args.seed, args.fps, (args.width, args.height))
    for v in videos:
        kinds = ", ".join(t.kind for t in v.transitions)
        events = f"; events: {', '.join(e.kind for e in v.events)}" if v.events else ""
        print(f"{v.path}: {v.num_frames} frames, {len(v.shots)} shots ({kinds}){events}")
    if args.broken:
        for name, p in make_broken_inputs(Path(args.out_dir) / "broken").items():
            print(f"{p}: {name}")
    print(f"ground truth: {Path(args.out_dir) / 'ground_truth.json'}")


if __name__ == "__main__":
    main()
