"""`vidforge scenes`: the scene list of videos as CSV (PySceneDetect's columns and conventions) or JSON
(the manifests' convention), contact sheets of the transitions, and one-line errors for bad inputs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from pipeline.scenes import CSV_COLUMNS, main, timecode
from pipeline.sheets import LABEL_HEIGHT, SheetStyle


@pytest.fixture(scope="module")
def listed(sample_corpus, tmp_path_factory):
    """The sample corpus listed once as CSV and once as JSON with contact sheets (in-process)."""
    paths = [v.path for v in sample_corpus]
    sheets = tmp_path_factory.mktemp("sheets")
    runs = {}
    for name, extra in (("csv", []), ("json", ["--format", "json", "--sheet", str(sheets)])):
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            code = main([*paths, *extra])
        finally:
            sys.stdout, sys.stderr = saved
        runs[name] = (code, out.getvalue(), err.getvalue())
    return runs, sheets


def test_csv_has_pyscenedetects_columns_and_conventions(listed, sample_corpus):
    """The CSV parses with the csv module; after ``Video``, the header and every row are exactly what
    PySceneDetect's own ``write_scene_list`` (``list-scenes --skip-cuts``) writes for the same scenes:
    1-based start frames, inclusive end frames, its timecodes."""
    from scenedetect import FrameTimecode
    from scenedetect.output import write_scene_list

    (code, out, err) = listed[0]["csv"]
    assert code == 0 and err == ""
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == CSV_COLUMNS
    (_, json_out, _) = listed[0]["json"]
    videos = json.loads(json_out)
    for video in videos:
        mine = [row[1:] for row in rows[1:] if row[0] == video["path"]]
        assert len(mine) == len(video["shots"]) > 1
        reference = io.StringIO()
        scenes = [(FrameTimecode(s["start_frame"], video["fps"]), FrameTimecode(s["end_frame"], video["fps"])) for s in video["shots"]]
        write_scene_list(reference, scenes, include_cut_list=False)
        theirs = list(csv.reader(io.StringIO(reference.getvalue())))
        assert CSV_COLUMNS[1:] == theirs[0]
        assert mine == theirs[1:], video["path"]
    assert sum(len(v["shots"]) for v in videos) == len(rows) - 1
    # the scenes are the true shots (frames 1-based, ends inclusive)
    truth = {v.path: v for v in sample_corpus}
    for row in rows[1:]:
        shot = truth[row[0]].shots[int(row[1]) - 1]
        assert abs(int(row[2]) - 1 - shot.start) <= 3 and abs(int(row[5]) - shot.end) <= 3, (row, shot)
        assert int(row[8]) == int(row[5]) - int(row[2]) + 1


def test_json_round_trips_in_the_manifest_convention(listed, sample_corpus):
    (code, out, err) = listed[0]["json"]
    assert code == 0 and err == ""
    videos = json.loads(out)
    assert json.dumps(videos, indent=2) + "\n" == out
    assert [v["path"] for v in videos] == [v.path for v in sample_corpus]
    for video, truth in zip(videos, sample_corpus):
        assert set(video) == {"path", "fps", "num_frames", "shots", "transitions"}
        assert video["num_frames"] == truth.num_frames and video["fps"] == pytest.approx(truth.fps)
        assert [t["kind"] for t in video["transitions"]] == [t.kind for t in truth.transitions]
        for got, want in zip(video["transitions"], truth.transitions):
            assert set(got) == {"kind", "start_frame", "end_frame", "start_s", "end_s"}
            assert abs(got["start_frame"] - want.start) <= 2 and abs(got["end_frame"] - want.end) <= 2, (got, want)
            if want.kind == "cut":
                assert got["start_frame"] == got["end_frame"] and got["start_s"] == got["end_s"], got
        # shots and transitions tile the video (no damaged frames in the samples)
        spans = sorted([(s["start_frame"], s["end_frame"]) for s in video["shots"]] + [(t["start_frame"], t["end_frame"]) for t in video["transitions"]])
        pos = 0
        for s, e in spans:
            assert s == pos
            pos = e
        assert pos == video["num_frames"]
        for shot in video["shots"]:
            assert shot["start_s"] == pytest.approx(shot["start_frame"] / truth.fps, abs=1e-3)
            assert shot["end_s"] == pytest.approx(shot["end_frame"] / truth.fps, abs=1e-3)


def test_sheet_has_a_row_per_transition(listed):
    """``--sheet DIR``: one PNG page per video (up to 8 transitions a page) that cv2 reads, one strip a transition."""
    runs, sheets = listed
    videos = json.loads(runs["json"][1])
    style = SheetStyle()
    for video in videos:
        pages = sorted(sheets.glob(f"{Path(video['path']).stem}_transitions_*.png"))
        assert len(pages) == (len(video["transitions"]) + 7) // 8 == 1
        image = cv2.imread(str(pages[0]))
        assert image is not None
        thumb_height = round(style.thumb_width * 180 / 320)  # the samples are 320x180
        row = thumb_height + LABEL_HEIGHT + 2 + 6  # tile, label, grid gap, gap between strips
        assert image.shape[0] == len(video["transitions"]) * row, (image.shape, len(video["transitions"]))
        assert image.shape[1] == 4 * 3 * (style.thumb_width + 2)  # 4 x context tiles a strip


def test_timecodes_are_pyscenedetects():
    from scenedetect import FrameTimecode

    for frames, fps in ((0, 24.0), (49, 24.0), (1439, 24.0), (86399, 24.0), (49, 30000 / 1001), (107892, 30000 / 1001)):
        assert timecode(frames / fps) == FrameTimecode(frames, fps).get_timecode(), (frames, fps)


def _scenes(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vidforge", "scenes", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_bad_inputs_are_one_line_each_and_the_rest_is_listed(sample_corpus, broken_inputs, tmp_path):
    """A missing file, a file that is not a video: one line each on stderr naming it, no traceback; the
    good video still listed, exit 1 (2 when nothing is listed); a bad --set: one line, exit 2."""
    good = sample_corpus[0].path
    missing = tmp_path / "missing.mp4"
    not_video = broken_inputs["not_video"]
    proc = _scenes(str(missing), good, str(not_video))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == f"vidforge scenes: error: {missing}: input path not found"
    assert lines[1].startswith(f"vidforge scenes: error: {not_video}: not a video file"), lines[1]
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == CSV_COLUMNS and {r[0] for r in rows[1:]} == {good} and len(rows) == len(sample_corpus[0].shots) + 1

    proc = _scenes(str(missing), "--format", "json")
    assert proc.returncode == 2 and json.loads(proc.stdout) == []
    assert proc.stderr.strip() == f"vidforge scenes: error: {missing}: input path not found"

    proc = _scenes(good, "--set", "scan.analysis_width=wide")
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "scan.analysis_width" in proc.stderr
