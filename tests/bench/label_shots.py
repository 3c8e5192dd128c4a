"""The labelling tool of the shot-boundary evaluation sets (how ``labels/real_footage.json`` was made).

1. ``candidates VIDEO OUT.json``: every place any detector might put a transition, so a person
   looks at each: the union of vidforge's scan (``learned: off``), PySceneDetect's
   ``ContentDetector`` at a low threshold (18) and ``AdaptiveDetector``, TransNetV2 above 0.1 (when
   the ``shotnet`` extra is installed) and peaks of the plain frame difference none of them reported;
   grouped within 3 frames, each placed on its largest frame difference (a cut's first new frame).
2. ``strips VIDEO CANDIDATES.json OUT_DIR``: a row of frames around each candidate
   (:func:`pipeline.sheets.transition_strips`, as ``vidforge scenes --sheet`` draws them); decide each
   by eye: a cut (the framed frame is the new shot's first), a gradual span, or nothing.
3. ``overview VIDEO OUT_DIR [--step N]``: every N-th frame, numbered, to look for what all missed.
4. ``check LABELS.json``: the label file follows the protocol (kinds, spans, order, frame range).

Frames are numbered as the scan numbers them: from 0, in decode order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import av  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.decoding import DecodeReport, decode_frames  # noqa: E402
from pipeline.probe import main_video_stream  # noqa: E402

KINDS = ("cut", "dissolve", "fade", "wipe", "gradual")


def frame_differences(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: mean |grey - previous grey| (0 for frame 0), and the 48x27 RGB frames (bicubic)."""
    grays, small = [], []
    with av.open(path) as container:
        for frame in decode_frames(container, main_video_stream(container), DecodeReport()):
            grays.append(frame.to_ndarray(format="gray").astype(np.float32))
            small.append(frame.to_ndarray(width=48, height=27, format="rgb24", interpolation="BICUBIC"))
    diff = np.r_[0.0, np.abs(np.diff(np.stack(grays), axis=0)).mean(axis=(1, 2))]
    return diff, np.stack(small)


def detector_candidates(path: str, small: np.ndarray) -> list[tuple[int, int, str]]:
    """``(start, end, tag)`` from each detector; cuts have ``start == end``."""
    from scenedetect import detect
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    from pipeline.scan import ScanConfig, scan_video

    found = [(t.start, t.end, f"scan-{t.kind}") for t in scan_video(path, ScanConfig(learned="off")).transitions]
    for tag, detector in (("content18", ContentDetector(threshold=18, min_scene_len=4)), ("adaptive", AdaptiveDetector())):
        found += [(s.frame_num, s.frame_num, tag) for s, _ in detect(path, detector, backend="pyav")[1:]]
    try:
        from pipeline.shotnet import load_transnetv2, predict_frames, transnet_transitions

        single, _ = predict_frames(load_transnetv2(device="cpu"), small)
        found += [(s, e, f"transnet{single[max(0, s - 1):e + 1].max():.2f}") for s, e in transnet_transitions(single, 0.1)]
    except RuntimeError as exc:  # no weights: say so, label with the others
        print(f"label_shots: TransNetV2 left out: {exc}", file=sys.stderr)
    return found


def group(found: list[tuple[int, int, str]], diff: np.ndarray, gap: int = 3) -> list[dict]:
    """Candidates within ``gap`` frames merged; each placed on its largest frame difference."""
    groups: list[list] = []
    for start, end, tag in sorted(found):
        if groups and start <= groups[-1][1] + gap:
            groups[-1][1] = max(groups[-1][1], end)
            groups[-1][2].append(tag)
        else:
            groups.append([start, end, [tag]])
    out = []
    for start, end, tags in groups:
        lo, hi = max(1, start - 1), min(len(diff) - 1, end + 2)
        frame = lo + int(np.argmax(diff[lo : hi + 1]))
        out.append({"frame": frame, "span": [start, end], "tags": tags, "difference": round(float(diff[frame]), 1)})
    return out


def unreported_peaks(diff: np.ndarray, groups: list[dict], window: int = 12) -> list[dict]:
    """Frame-difference peaks (above 12 and 3x the local median) no detector reported."""
    near = np.zeros(len(diff), bool)
    for g in groups:
        near[max(0, g["span"][0] - 4) : g["span"][1] + 5] = True
    peaks = []
    for i in range(1, len(diff)):
        local = float(np.median(diff[max(1, i - window) : i + window + 1]))
        if not near[i] and diff[i] > max(12.0, 3 * local) and (not peaks or i - peaks[-1]["frame"] > 3):
            peaks.append({"frame": i, "span": [i, i], "tags": ["difference-peak"], "difference": round(float(diff[i]), 1)})
    return peaks


def check(path: Path) -> list[str]:
    """Problems of a label file (empty: it follows the protocol)."""
    doc = json.loads(path.read_text())
    problems = []
    for v in doc["videos"]:
        last = -1
        for t in v["transitions"]:
            where = f"{v['name']}: {t}"
            if t["kind"] not in KINDS:
                problems.append(f"{where}: kind not one of {KINDS}")
            if (t["kind"] == "cut") != (t["start"] == t["end"]) or t["end"] < t["start"]:
                problems.append(f"{where}: a cut has start == end, a gradual span start < end")
            if not 0 <= t["start"] <= t["end"] <= v["num_frames"] or t["start"] < last:
                problems.append(f"{where}: outside 0..{v['num_frames']} or out of order")
            last = t["end"]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("candidates")
    c.add_argument("video")
    c.add_argument("out")
    s = sub.add_parser("strips")
    s.add_argument("video")
    s.add_argument("candidates")
    s.add_argument("out_dir")
    o = sub.add_parser("overview")
    o.add_argument("video")
    o.add_argument("out_dir")
    o.add_argument("--step", type=int, default=1)
    k = sub.add_parser("check")
    k.add_argument("labels")
    args = parser.parse_args()

    from pipeline.sheets import overview_pages, transition_strips

    if args.command == "candidates":
        diff, small = frame_differences(args.video)
        groups = group(detector_candidates(args.video, small), diff)
        groups += unreported_peaks(diff, groups)
        Path(args.out).write_text(json.dumps(sorted(groups, key=lambda g: g["frame"]), indent=1))
        print(f"{len(groups)} candidates -> {args.out}")
    elif args.command == "strips":
        groups = json.loads(Path(args.candidates).read_text())
        rows = [(g["frame"], g["frame"], " ".join(g["tags"])) for g in groups]
        for page in transition_strips(args.video, rows, args.out_dir, context=3, per_page=16):
            print(page)
    elif args.command == "overview":
        for page in overview_pages(args.video, args.out_dir, step=args.step):
            print(page)
    else:
        problems = check(Path(args.labels))
        print("\n".join(problems) or f"{args.labels}: follows the protocol")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
