"""The output folder as a journal: commits, crash recovery and the final manifests.

A commit is a group of finished units (input videos for ``curate``, groups of input clips for
``caption``): their shard (if they kept clips) is renamed into place, then
``manifest/parts/part-NNNNNN-clips.parquet``, then ``part-NNNNNN-units.parquet`` (the commit
marker). On start, parts without a marker, shards no committed clip names and temporary files
are removed: the units they held were not committed and are processed again. So a run killed at
any point (Ctrl-C, SIGKILL, a lost node) and rerun with the same command skips finished videos,
never duplicates or loses a clip and never exposes half a shard. ``finalize`` merges the parts
into the units manifest (``manifest/videos.parquet`` for curation) and ``manifest/clips.parquet``.

A resumed run may find parts committed by an older vidforge, whose rows lack columns added to the
contract since (:data:`pipeline.manifest.ADDED_COLUMNS`: ``videos.parquet``'s ``transitions``). Their
videos are not redone: the merge reads those columns as null in their rows (one warning names them),
the rows of this run's parts have them. ``--overwrite`` redoes everything, filling them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import is_remote, local_path
from pipeline.manifest import CLIP_SCHEMA, CLIPS_FILE, VIDEO_SCHEMA, VIDEOS_FILE, conform, missing_columns, write_table_atomic
from pipeline.shards import shard_name

log = logging.getLogger(__name__)

LOCK_FILE = ".vidforge.lock"
_PART = re.compile(r"part-(\d{6})-(units|clips)\.parquet$")
_SHARD = re.compile(r"shard-(\d{6})\.tar$")


class OutputError(OSError):
    """The output folder cannot be used (not writable, not a vidforge folder, a write failed...)."""


def output_folder(output: str | Path) -> Path:
    """The local folder ``output`` names (a path or a ``file://`` URI), made absolute.

    The output is a folder on a filesystem the driver writes (local, or shared: NFS, a bucket
    mounted with s3fs or gcsfuse): its commits rely on atomic renames. A remote URI is refused here,
    before anything is written (``s3://b/x`` would otherwise become a local folder named ``s3:``)."""
    text = str(output)
    if is_remote(text):
        raise OutputError(
            f"{text}: the output must be a folder on a local or shared filesystem; remote URIs (s3://, gs://...) "
            "are read as inputs but not written to: mount the bucket (s3fs, gcsfuse...) or write locally and copy"
        )
    return local_path(text)


@contextlib.contextmanager
def writing_to(root: Path) -> Iterator[None]:
    """Report a failed write under ``root`` (a full disk, a quota, a lost mount) as an
    :class:`OutputError` that says what failed and how to go on."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(
            f"{root}: writing the output failed: {exc.strerror or exc}{where}; what was committed before is kept: "
            "fix this and rerun the same command to resume"
        ) from exc


class OutputLock:
    """One run at a time per output folder: an exclusive ``flock`` on ``OUT/.vidforge.lock``.

    A second run on a folder another is writing (a job submitted twice) would take the first
    one's open shard for an interrupted run's leftover and delete it. The kernel drops the lock
    when the process ends however it ends (SIGKILL included): a crashed run never leaves the
    folder locked. Filesystems without locks (some FUSE mounts) get a warning, not a refusal.
    """

    def __init__(self, root: Path) -> None:
        self._file = open(root / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "a process that has not said who it is yet"
            self._file.close()
            raise OutputError(
                f"{root}: another vidforge run is writing this folder ({holder}); wait for it to end or stop it "
                "(two runs in one folder delete each other's files)"
            ) from None
        except OSError as exc:
            log.warning("%s: cannot lock the output folder (%s); make sure no other run writes to it", root, exc.strerror or exc)
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self._file.flush()

    def release(self) -> None:
        self._file.close()  # closing the file drops the lock


class OutputJournal:
    def __init__(
        self,
        root: str | Path,
        overwrite: bool = False,
        unit_schema: pa.Schema = VIDEO_SCHEMA,
        units_file: str = VIDEOS_FILE,
        units_are_sources: bool = True,
    ) -> None:
        """``units_are_sources``: a unit's ``path`` is its clips' ``source`` (curation: one video), so
        the clips of units committed in parts before an interruption are known (:attr:`partial`)."""
        self.root = Path(root)
        self.unit_schema = unit_schema
        self.units_file = units_file
        self.shards_dir = self.root / "shards"
        self.parts_dir = self.root / "manifest" / "parts"
        self.lock: OutputLock | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.lock = OutputLock(self.root)  # before anything is removed: recovery, --overwrite
            if overwrite:
                self.clear()
            self.shards_dir.mkdir(parents=True, exist_ok=True)
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            if self.lock is not None:
                self.lock.release()
            if isinstance(exc, OutputError):  # another run holds the folder
                raise
            raise OutputError(f"{self.root}: output folder is not writable ({exc.strerror or exc})") from None
        self.done_paths: set[str] = set()
        self.committed_clip_ids: set[str] = set()
        self.partial: dict[str, dict[str, bool]] = {}
        """Clips (id → kept) committed before an interruption, of units not finished: a long video's
        parts (:attr:`pipeline.records.VideoRecord.final`). Redoing the unit skips them."""
        self.units_are_sources = units_are_sources
        self.next_part = 0
        self.next_shard = 0
        self.recovered_orphans: list[str] = []
        self._recover()

    def close(self) -> None:
        """End the run's hold on the folder (its lock)."""
        self.lock.release()

    def __enter__(self) -> "OutputJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clear(self) -> None:
        """Remove what an earlier run wrote (``--overwrite``); other files in the folder stay."""
        for sub in ("shards", "manifest", "report"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        for name in ("curate_config.yaml", "caption_config.yaml"):
            (self.root / name).unlink(missing_ok=True)

    def _part_path(self, index: int, kind: str) -> Path:
        return self.parts_dir / f"part-{index:06d}-{kind}.parquet"

    def _recover(self) -> None:
        temporary = [d.glob(".*.tmp-*") for d in (self.shards_dir, self.parts_dir, self.parts_dir.parent, self.root)]
        for tmp in [t for found in temporary for t in found]:
            tmp.unlink(missing_ok=True)
            self.recovered_orphans.append(tmp.name)
        markers = {int(m.group(1)) for p in self.parts_dir.iterdir() if (m := _PART.match(p.name)) and m.group(2) == "units"}
        committed_shards: set[str] = set()
        clip_parts = []
        for path in sorted(self.parts_dir.iterdir()):
            m = _PART.match(path.name)
            if not m:
                continue
            index = int(m.group(1))
            if index not in markers:  # a clips part whose commit never finished
                path.unlink()
                self.recovered_orphans.append(path.name)
                continue
            self.next_part = max(self.next_part, index + 1)
            if m.group(2) == "units":
                self.done_paths.update(pq.read_table(path, columns=["path"]).column("path").to_pylist())
            else:
                clip_parts.append(path)
        for path in clip_parts:  # once every finished unit is known
            table = pq.read_table(path, columns=["clip_id", "source", "shard", "kept"])
            for clip_id, source, shard, kept in zip(*(table.column(c).to_pylist() for c in ("clip_id", "source", "shard", "kept"))):
                if kept:
                    self.committed_clip_ids.add(clip_id)
                if shard:
                    committed_shards.add(shard)
                if self.units_are_sources and source not in self.done_paths:
                    self.partial.setdefault(source, {})[clip_id] = bool(kept)
        for tar in sorted(self.shards_dir.glob("shard-*.tar")):
            if tar.name not in committed_shards:  # renamed, but its manifest was never committed
                tar.unlink()
                self.recovered_orphans.append(tar.name)
        indices = [int(m.group(1)) for s in committed_shards if (m := _SHARD.match(s))]
        self.next_shard = max(indices) + 1 if indices else 0

    def new_shard_index(self) -> int:
        index = self.next_shard
        self.next_shard += 1
        return index

    def shard_path(self, index: int) -> Path:
        return self.shards_dir / shard_name(index)

    def commit(self, units: list[dict], clips: list[dict], shard=None) -> None:
        """Make a group of finished units durable: shard, then clips part, then the units marker.
        ``clips`` may include clips of units not finished yet (a long video's first parts); with no
        units it may hold only those (the marker is then empty)."""
        if not units and not clips:
            if shard is not None:
                shard.abort()
            return
        units_table = conform(units, self.unit_schema)
        clips_table = conform(clips, CLIP_SCHEMA)
        if shard is not None:
            shard.commit()
        index = self.next_part
        try:
            write_table_atomic(clips_table, self._part_path(index, "clips"))
            write_table_atomic(units_table, self._part_path(index, "units"))
        except Exception:  # a failed write (full disk): leave no shard or part the manifests do not commit
            if not self._part_path(index, "units").exists():
                self._part_path(index, "clips").unlink(missing_ok=True)
                if shard is not None:
                    shard.path.unlink(missing_ok=True)
            raise
        self.next_part += 1
        self.done_paths.update(u["path"] for u in units)
        self.committed_clip_ids.update(c["clip_id"] for c in clips if c.get("kept"))

    def finalize(self) -> tuple[pa.Table, pa.Table]:
        """Merge every committed part into the units and clips manifests (atomic writes); return them."""
        def merged(kind: str, schema: pa.Schema) -> pa.Table:
            paths = sorted(p for p in self.parts_dir.iterdir() if (m := _PART.match(p.name)) and m.group(2) == kind)
            tables = [pq.read_table(p, schema=schema) for p in paths]  # a column a part lacks reads as null
            older = {}  # parts an older vidforge committed (a resumed run): rows without the columns added since
            for path in paths:
                _, added = missing_columns(pq.ParquetFile(path).schema_arrow.names, schema)
                if added:
                    older[path.name] = added
            if older:
                columns = sorted({c for added in older.values() for c in added})
                rows = sum(pq.ParquetFile(self.parts_dir / name).metadata.num_rows for name in older)
                log.warning(
                    "%s: %d row(s) of %s, in %d part(s), were committed by an older vidforge without %s: null there "
                    "(rerun with --overwrite to fill them)",
                    self.root, rows, self.units_file if kind == "units" else CLIPS_FILE, len(older), ", ".join(columns),
                )
            return pa.concat_tables(tables) if tables else schema.empty_table()

        units = merged("units", self.unit_schema)
        clips = merged("clips", CLIP_SCHEMA)
        write_table_atomic(units, self.root / self.units_file)
        write_table_atomic(clips, self.root / CLIPS_FILE)
        return units, clips
