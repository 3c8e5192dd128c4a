"""``vidforge scenes`` (also ``python -m pipeline.scenes``): the scene list of videos, from the scan.

Each video is scanned as ``vidforge curate`` scans it (:func:`pipeline.scan.scan_video` with the
curate config's ``scan`` section; HDR analysed as SDR with ``extract.hdr_to_sdr``'s intent,
interlaced video from its top field where ``extract.deinterlace`` deinterlaces the clips), and its
shots (scenes) and transitions are printed:

- ``--format csv`` (default): one table for all the videos: a ``Video`` column (the path), then
  exactly the columns of PySceneDetect's ``scenedetect list-scenes`` CSV and its conventions
  (``scenedetect.output.write_scene_list``): ``Scene Number`` from 1, ``Start Frame`` 1-based,
  ``End Frame`` the scene's last frame, 1-based (inclusive: the 0-based exclusive end), timecodes
  ``HH:MM:SS.nnn`` of the start frame and of the frame after the last one, lengths ``end - start``.
  No ``Timecode List:`` row above the header (as ``list-scenes --skip-cuts``): plain RFC 4180 CSV,
  its header first even when no video could be listed, each video's rows printed once it is scanned.
  Times are the frames' presentation times from the first frame (variable frame rate safe), as
  ``clips.parquet``'s ``start_s``; for constant frame rate video that is PySceneDetect's
  ``frame / fps``. A scene is a shot: transition frames (a dissolve's, a fade's) and damaged frames
  are in none, so scenes need not abut.
- ``--format json``: a JSON array, one object per video: ``path``, ``fps``, ``num_frames``, ``shots``
  ``[{start_frame, end_frame, start_s, end_s}]`` and ``transitions`` ``[{kind, start_frame, end_frame,
  start_s, end_s}]``, in the manifests' convention: frames 0-based in decode order, ``[start, end)``,
  a cut ``start_frame == end_frame`` (the new shot's first frame); the numbers ``clips.parquet`` and
  ``videos.parquet``'s ``transitions`` use.

``--sheet DIR`` also writes, per video, contact sheets of the frames around each transition
(:func:`pipeline.sheets.transition_strips`: one row per transition, the pictures the labelling tool
shows): ``DIR/<video stem>_transitions_NNN.png``.

Exit status: 0 every video listed; 1 some listed, others not (each named on stderr, one line); 2
none listed, or a usage error (bad option, config or ``--set``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

CSV_COLUMNS = [
    "Video",
    "Scene Number",
    "Start Frame",
    "Start Timecode",
    "Start Time (seconds)",
    "End Frame",
    "End Timecode",
    "End Time (seconds)",
    "Length (frames)",
    "Length (timecode)",
    "Length (seconds)",
]
"""``Video``, then PySceneDetect's ``list-scenes`` columns (``scenedetect.output.write_scene_list``)."""

PROG = "vidforge scenes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Scan videos as `vidforge curate` does and print their scenes (shots) and transitions. "
        "CSV (default): one table, a Video column (the path) then exactly the columns of PySceneDetect's "
        "`scenedetect list-scenes` CSV, with its conventions (Start Frame 1-based, End Frame the last frame, "
        "inclusive; HH:MM:SS.nnn timecodes), without its 'Timecode List:' row: one header row, then one row per scene. JSON: an array, one object per "
        "video (path, fps, num_frames, shots, transitions) with frames 0-based and [start, end) as in the "
        "manifests (a cut: start_frame == end_frame, the new shot's first frame). "
        "Exit status: 0 all listed, 1 some videos failed (each named on stderr), 2 none listed or bad usage.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, folders (recursive) or text files listing paths; local or s3://, gs://")
    parser.add_argument("--format", "-f", choices=("csv", "json"), default="csv", help="output format on stdout (default: csv)")
    parser.add_argument("--sheet", metavar="DIR", help="also write contact sheets of the frames around each transition: DIR/<stem>_transitions_NNN.png")
    parser.add_argument("--config", "-c", metavar="YAML", help="curate config whose scan (and extract.hdr_to_sdr, extract.deinterlace) settings to use (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a curate config key, e.g. --set scan.cut_detector=both (repeatable)")
    return parser


def timecode(seconds: float) -> str:
    """``HH:MM:SS.nnn``, rounded to the millisecond, as PySceneDetect's ``FrameTimecode.get_timecode()``."""
    millis = int(round(max(0.0, seconds) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def scan_for_scenes(path: str, config) -> Any:
    """Scan ``path`` as the curate job's scan stage does (:class:`pipeline.curate.ScanStage`).
    Raises :class:`pipeline.probe.ProbeError` or :class:`pipeline.scan.ScanError` (one-line reasons)."""
    from pipeline.extract import scan_view
    from pipeline.probe import probe_video
    from pipeline.records import VideoRecord
    from pipeline.scan import opencv_threads, scan_video

    record = VideoRecord(path=path, probe=probe_video(path))  # what the scan needs to know: interlaced or not
    with opencv_threads(config.scan.decode_threads):
        return scan_video(path, config.scan, None, *scan_view(record, config.extract))


def scene_list(path: str, scan) -> dict[str, Any]:
    """The JSON object of one scanned video (the manifests' frame convention)."""
    from pipeline.plan import frame_time, transition_rows

    def times(start: int, end: int) -> dict[str, float]:
        return {"start_s": round(frame_time(scan, start), 6), "end_s": round(frame_time(scan, end), 6)}

    return {
        "path": path,
        "fps": scan.fps,
        "num_frames": scan.num_frames,
        "shots": [{"start_frame": int(s), "end_frame": int(e), **times(s, e)} for s, e in scan.shots],
        "transitions": [{**t, **times(t["start_frame"], t["end_frame"])} for t in transition_rows(scan.transitions)],
    }


def csv_rows(scenes: dict[str, Any]) -> list[list[str]]:
    """One video's rows of the CSV (:data:`CSV_COLUMNS`), PySceneDetect's conventions."""
    rows = []
    for number, shot in enumerate(scenes["shots"], 1):
        start, end = shot["start_frame"], shot["end_frame"]
        start_s, end_s = shot["start_s"], shot["end_s"]
        rows.append(
            [
                scenes["path"],
                f"{number:d}",
                f"{start + 1:d}",  # 1-based
                timecode(start_s),
                f"{start_s:.3f}",
                f"{end:d}",  # the last frame, 1-based: the 0-based exclusive end
                timecode(end_s),
                f"{end_s:.3f}",
                f"{end - start:d}",
                timecode(end_s - start_s),
                f"{end_s - start_s:.3f}",
            ]
        )
    return rows


def _error(path: str, message: str) -> None:
    message = " ".join(str(message).split())
    shown = message if message.startswith(str(path)) else f"{path}: {message}"
    print(f"{PROG}: error: {shown}", file=sys.stderr, flush=True)


def _sheet_dir(root: Path, path: str, used: set[str]) -> Path:
    """Where a video's sheets go: ``root``, or a subfolder when another video had the same stem."""
    stem = Path(path.partition("?")[0]).stem
    if stem not in used:
        used.add(stem)
        return root
    n = 2
    while f"{stem}-{n}" in used:
        n += 1
    used.add(f"{stem}-{n}")
    return root / f"{stem}-{n}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    from pipeline.config import ConfigError, load_config
    from pipeline.curate import CurateConfig
    from pipeline.io import InputError, resolve_inputs
    from pipeline.probe import ProbeError
    from pipeline.scan import ScanError

    try:
        config = load_config(CurateConfig, args.config, args.overrides)
        config.scan.require_learned_weights()  # before any video is read
    except ConfigError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    sheet_root = Path(args.sheet) if args.sheet else None
    if sheet_root is not None:
        try:
            sheet_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"{PROG}: error: --sheet {sheet_root}: cannot create the folder ({exc.strerror or exc})", file=sys.stderr)
            return 2

    writer = csv.writer(sys.stdout, lineterminator="\n") if args.format == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    listed: list[dict[str, Any]] = []  # JSON: printed at the end, one document
    done = failed = 0
    used_stems: set[str] = set()
    for item in args.videos:
        try:
            paths = resolve_inputs([item])
        except (InputError, OSError, ValueError) as exc:
            _error(item, exc)
            failed += 1
            continue
        if not paths:
            _error(item, "no videos found")
            failed += 1
            continue
        for path in paths:
            try:
                scan = scan_for_scenes(path, config)
            except (ProbeError, ScanError, OSError) as exc:
                _error(path, exc)
                failed += 1
                continue
            except Exception as exc:  # noqa: BLE001 - one broken video never stops the others
                _error(path, f"{type(exc).__name__}: {exc}")
                failed += 1
                continue
            scenes = scene_list(path, scan)
            done += 1
            if writer is not None:
                writer.writerows(csv_rows(scenes))
                sys.stdout.flush()
            else:
                listed.append(scenes)
            if sheet_root is not None and not _write_sheets(path, scenes, _sheet_dir(sheet_root, path, used_stems)):
                failed += 1
    if writer is None:
        json.dump(listed, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if not failed:
        return 0
    return 1 if done else 2


def _write_sheets(path: str, scenes: dict[str, Any], out_dir: Path) -> bool:
    """The transition strips of one video; False (the error said on stderr) when they fail."""
    from pipeline.sheets import transition_strips

    spans = [(t["start_frame"], t["end_frame"], t["kind"]) for t in scenes["transitions"]]
    try:
        transition_strips(path, spans, out_dir)
    except Exception as exc:  # noqa: BLE001 - the scene list is printed; only its sheet failed
        _error(path, f"contact sheet: {type(exc).__name__}: {exc}")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
