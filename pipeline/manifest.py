"""The data contract: the Parquet manifests' schemas, and reading and writing them.

``manifest/videos.parquet``: one row per input video. ``manifest/clips.parquet``: one row per
candidate clip, kept or not. Columns filled by later stages (aesthetic score, captions) are
null until those stages run. See ARCHITECTURE.md ("The data contract").

Frame numbers, in both manifests, count the frames that decode, from 0, in the order the decoder
gives them (presentation order): the scan's numbering (:mod:`pipeline.decoding`), which
``vidforge scenes`` and the contact sheets (:mod:`pipeline.sheets`) print too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

TRANSITION_TYPE = pa.struct(
    [
        # "cut" | "dissolve" | "fade" | "wipe" | "gradual" (found by TransNetV2 alone: scan.learned)
        pa.field("kind", pa.string()),
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
    ]
)
"""One transition of ``videos.parquet``'s ``transitions`` list, in the clips' frame numbering. A cut:
``start_frame == end_frame`` == the first frame of the new shot. A gradual transition (dissolve,
fade): frames ``[start_frame, end_frame)``, which belong to neither shot (nor to any clip)."""

VIDEO_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # "ok" | "failed"
        pa.field("error", pa.string()),  # one-line reason when failed
        pa.field("content_hash", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),  # average frame rate (frames / duration for variable frame rate)
        pa.field("vfr", pa.bool_()),  # variable frame rate detected
        pa.field("frame_count", pa.int64()),  # frames that decode (the scan's count; the probe's packet count if it failed first)
        pa.field("width", pa.int32()),  # display size, after rotation
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("interlaced", pa.bool_()),  # fields, not frames: the clips are deinterlaced (extract.deinterlace)
        pa.field("colour", pa.string()),  # "SDR", "HLG BT.2020", "PQ BT.2020"...: the clips are SDR BT.709 (extract.hdr_to_sdr)
        pa.field("damaged_frames", pa.int64()),  # frames left out of clips: decoded from damaged packets (pipeline.decoding)
        pa.field("warning", pa.string()),  # one line when an ok video decoded only in part (packets skipped, decoding stopped early)
        pa.field("num_scenes", pa.int32()),
        pa.field("num_transitions", pa.int32()),  # len(transitions)
        # the scan's transitions in frame order (TRANSITION_TYPE). [] when the video failed before its scan
        # finished (or has none); a video failing later keeps the scan's, as num_scenes and num_transitions do.
        # null only in rows committed by a vidforge older than this column (a resumed run: see pipeline.journal)
        pa.field("transitions", pa.list_(TRANSITION_TYPE)),
        pa.field("num_clips", pa.int32()),
        pa.field("num_kept", pa.int32()),
        pa.field("seconds", pa.float64()),  # wall time spent on this video by the CPU stages
    ]
)

CLIP_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_hash", pa.string()),
        pa.field("scene_index", pa.int32()),
        # [start_frame, end_frame): the source's frames numbered in presentation order from the first one
        # that decodes (a recording cut mid-GOP starts at its first keyframe); start_s: seconds from that frame
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),  # of the extracted clip
        pa.field("width", pa.int32()),  # of the extracted clip
        pa.field("height", pa.int32()),
        pa.field("num_frames", pa.int64()),  # of the extracted clip
        pa.field("source_fps", pa.float64()),
        pa.field("source_width", pa.int32()),
        pa.field("source_height", pa.int32()),
        # scores from the scan (see pipeline/filters.py for units)
        pa.field("motion", pa.float64()),
        pa.field("motion_p95", pa.float64()),
        pa.field("shake", pa.float64()),
        pa.field("sharpness", pa.float64()),
        pa.field("brightness", pa.float64()),
        # scores from model stages (captioner/)
        pa.field("aesthetic", pa.float64()),
        pa.field("clip_score", pa.float64()),
        pa.field("duplicate_of", pa.string()),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("reject_reason", pa.string()),
        pa.field("error", pa.string()),
        pa.field("shard", pa.string()),
        pa.field("keyframe_times", pa.list_(pa.float64())),
        # captions (captioner/)
        pa.field("caption", pa.string()),
        pa.field("caption_status", pa.string()),  # "ok" | "failed" | null when not captioned
        pa.field("caption_error", pa.string()),
        pa.field("frame_captions", pa.string()),  # JSON list of {"time_s", "caption"}
        pa.field("caption_provenance", pa.string()),  # JSON: models, revisions, prompt version, decoding, seconds
    ]
)

VIDEOS_FILE = "manifest/videos.parquet"
CLIPS_FILE = "manifest/clips.parquet"

ADDED_COLUMNS = frozenset({"transitions"})
"""Columns added to the contract after manifests were first written: a manifest (or a manifest part of
an interrupted run) written before has none, and reads as null there (:func:`read_manifest`,
:meth:`pipeline.journal.OutputJournal.finalize`)."""


def conform(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows to a table with exactly ``schema``'s columns (missing ones null, extra keys an error)."""
    rows = list(rows)
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"manifest row has columns outside the schema: {sorted(extra)}")
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file under a temporary name (``write(file)``), flush it to disk, then rename it into
    place: readers never see half a file, and a failed write (a full disk) leaves nothing behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_table_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a Parquet file atomically (:func:`write_atomic`); readers stream its row groups in bounded memory."""
    write_atomic(path, lambda f: pq.write_table(table, f, row_group_size=65536))


def missing_columns(names: Iterable[str], schema: pa.Schema) -> tuple[list[str], list[str]]:
    """``schema``'s columns not in ``names``: (the contract's own, the :data:`ADDED_COLUMNS` an older
    vidforge did not write yet)."""
    present = set(names)
    missing = [n for n in schema.names if n not in present]
    return [n for n in missing if n not in ADDED_COLUMNS], [n for n in missing if n in ADDED_COLUMNS]


def read_manifest(path: str | Path, schema: pa.Schema) -> pa.Table:
    """Read a manifest as ``schema`` (its columns, in its order). A column of :data:`ADDED_COLUMNS`
    that an older vidforge did not write reads as null; any other missing column is an error."""
    names = pq.ParquetFile(path).schema_arrow.names
    missing, added = missing_columns(names, schema)
    if missing:
        raise ValueError(f"{path}: not a vidforge manifest, missing columns {missing}")
    return pq.read_table(path, schema=schema)
