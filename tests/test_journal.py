"""The output journal: commits, recovery after a crash at any point, final manifests."""

import errno
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

import pipeline.journal as journal_module
from pipeline.journal import OutputError, OutputJournal, output_folder, writing_to
from pipeline.manifest import write_atomic, write_table_atomic
from pipeline.records import ClipRecord
from pipeline.shards import ShardWriter


def _video(path, status="ok"):
    return {"path": path, "status": status, "error": None if status == "ok" else "empty file"}


def _clip(clip_id, source, kept=True):
    return ClipRecord(
        row={"clip_id": clip_id, "source": source, "kept": kept, "reject_reason": None if kept else "static", "start_frame": 0, "end_frame": 10},
        mp4=b"\x00\x00\x00\x18ftypmp42" + clip_id.encode() if kept else None,
    )


def _commit_video(journal, path, ids):
    clips = [_clip(i, path) for i in ids]
    writer = ShardWriter(journal.shards_dir, journal.new_shard_index())
    for c in clips:
        writer.add(c)
    journal.commit([_video(path)], [c.row for c in clips], writer)


def test_commit_and_finalize(tmp_path):
    journal = OutputJournal(tmp_path)
    _commit_video(journal, "a.mp4", ["a-1", "a-2"])
    journal.commit([_video("bad.mp4", "failed")], [], None)
    videos, clips = journal.finalize()
    assert sorted(videos.column("path").to_pylist()) == ["a.mp4", "bad.mp4"]
    assert clips.column("shard").to_pylist() == ["shard-000000.tar"] * 2
    keys = [s["__key__"] for s in wds.WebDataset(str(tmp_path / "shards/shard-000000.tar"), shardshuffle=False)]
    assert keys == ["a-1", "a-2"]
    assert pq.read_table(tmp_path / "manifest/clips.parquet").num_rows == 2


def test_recovery_removes_uncommitted_work(tmp_path):
    journal = OutputJournal(tmp_path)
    _commit_video(journal, "a.mp4", ["a-1"])
    # crash 1: a shard renamed into place but its manifest never committed
    orphan = ShardWriter(journal.shards_dir, journal.new_shard_index())
    orphan.add(_clip("b-1", "b.mp4"))
    orphan.commit()
    # crash 2: a half-written shard under its temporary name
    half = ShardWriter(journal.shards_dir, 7)
    half.add(_clip("c-1", "c.mp4"))
    # crash 3: a clips part without its videos marker
    (journal.parts_dir / "part-000005-clips.parquet").write_bytes(b"junk")
    journal.close()  # the crashed run's process is gone, and its lock with it

    resumed = OutputJournal(tmp_path)
    assert resumed.done_paths == {"a.mp4"}
    assert sorted(p.name for p in resumed.shards_dir.iterdir()) == ["shard-000000.tar"]
    assert not (resumed.parts_dir / "part-000005-clips.parquet").exists()
    assert resumed.next_shard == 1 and resumed.next_part == 1
    assert resumed.committed_clip_ids == {"a-1"}
    half.abort()


def test_overwrite_starts_over(tmp_path):
    journal = OutputJournal(tmp_path)
    _commit_video(journal, "a.mp4", ["a-1"])
    (tmp_path / "notes.txt").write_text("mine")
    journal.close()
    fresh = OutputJournal(tmp_path, overwrite=True)
    assert fresh.done_paths == set() and not list(fresh.shards_dir.iterdir())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="output folder is not writable"):
        OutputJournal(blocker / "out")


def test_one_run_at_a_time_in_a_folder(tmp_path):
    """A second run on a folder a live run holds is refused, naming the holder, and removes nothing
    (its recovery would have taken the live run's open shard for a leftover); once the first run
    ends, however it ends, the folder is free."""
    first = OutputJournal(tmp_path)
    open_shard = ShardWriter(first.shards_dir, first.new_shard_index())
    open_shard.add(_clip("a-1", "a.mp4"))
    with pytest.raises(OutputError, match=rf"another vidforge run is writing this folder \(pid {os.getpid()} on "):
        OutputJournal(tmp_path, overwrite=True)
    assert open_shard.tmp_path.exists()
    open_shard.commit()
    first.commit([_video("a.mp4")], [_clip("a-1", "a.mp4").row | {"shard": open_shard.name}], None)
    first.close()
    with OutputJournal(tmp_path) as second:
        assert second.done_paths == {"a.mp4"} and not second.recovered_orphans


@pytest.mark.parametrize("uri", ["s3://bucket/curated", "gs://bucket/curated?retry_limit_seconds=5"])
def test_a_remote_output_is_refused_before_anything_is_written(tmp_path, monkeypatch, uri):
    monkeypatch.chdir(tmp_path)  # Path("s3://bucket/x") would be a local folder "s3:" here
    with pytest.raises(OutputError, match="remote URIs .* are read as inputs but not written to") as info:
        output_folder(uri)
    assert uri in str(info.value)
    assert not list(tmp_path.iterdir())


def test_output_folder_is_local_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert output_folder("out") == tmp_path / "out"
    assert output_folder(f"file://{tmp_path}/out") == tmp_path / "out"


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_commit_leaves_only_what_was_committed(tmp_path, monkeypatch):
    """The disk fills while the manifest part is written: the shard already renamed into place is
    removed with the clips part (nothing the manifests do not name stays), earlier commits stand,
    and the message says what failed and how to go on."""
    journal = OutputJournal(tmp_path)
    _commit_video(journal, "a.mp4", ["a-1"])
    writer = ShardWriter(journal.shards_dir, journal.new_shard_index())
    clip = _clip("b-1", "b.mp4")
    writer.add(clip)
    real_write = journal_module.write_table_atomic

    def units_part_fails(table, path):
        if Path(path).name.endswith("-units.parquet"):
            _disk_full()
        real_write(table, path)

    monkeypatch.setattr(journal_module, "write_table_atomic", units_part_fails)
    with pytest.raises(OutputError, match=f"{tmp_path}: writing the output failed: No space left on device.*rerun the same command"):
        with writing_to(tmp_path):
            journal.commit([_video("b.mp4")], [clip.row], writer)
    monkeypatch.undo()
    journal.close()
    assert sorted(p.name for p in journal.shards_dir.iterdir()) == ["shard-000000.tar"]
    assert sorted(p.name for p in journal.parts_dir.iterdir()) == ["part-000000-clips.parquet", "part-000000-units.parquet"]
    resumed = OutputJournal(tmp_path)
    assert resumed.done_paths == {"a.mp4"} and not resumed.recovered_orphans


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_failed_shard_is_removed_even_when_closing_it_fails(tmp_path):
    """The disk is full: the shard's last writes fail (its file now writes to /dev/full, which
    answers ENOSPC), so committing fails, and so does closing it; abort still removes it."""
    writer = ShardWriter(tmp_path, 0)
    writer.add(_clip("a-1", "a.mp4"))
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, writer._file.fileno())
    os.close(full)
    with pytest.raises(OSError, match="No space left"):
        writer.commit()
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_a_failed_rewrite_keeps_the_file_it_replaces(tmp_path):
    path = tmp_path / "manifest.parquet"
    write_table_atomic(pa.table({"x": [1, 2]}), path)

    def half_then_full(f):
        f.write(b"PAR1 half a file")
        _disk_full()

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, half_then_full)
    assert pq.read_table(path).column("x").to_pylist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.parquet"]


def test_resuming_refuses_another_config_but_not_other_resources(tmp_path):
    """A rerun in the same folder with settings that change what is written is refused, naming the
    keys; threads, memory and task sizes (other machines) may change."""
    from pipeline.config import ConfigError
    from pipeline.curate import CurateConfig, check_config_matches

    check_config_matches(tmp_path, CurateConfig())  # first run: saves the config
    saved = (tmp_path / "curate_config.yaml").read_text()
    other_machines = CurateConfig()
    other_machines.ray.num_cpus_per_video = 2
    other_machines.scan.decode_threads = other_machines.extract.decode_threads = 2
    other_machines.extract.frame_cache_mb = 0
    other_machines.extract.part_bytes = 2**20
    check_config_matches(tmp_path, other_machines)
    assert (tmp_path / "curate_config.yaml").read_text() == saved  # the first run's config stays on record
    other_output = CurateConfig()
    other_output.filter.min_motion = 0.5
    other_output.extract.max_short_side = 720
    other_output.extract.frame_cache_mb = 0
    with pytest.raises(ConfigError, match=r"extract\.max_short_side, filter\.min_motion changed.*--overwrite"):
        check_config_matches(tmp_path, other_output)


def test_parts_of_an_older_vidforge_merge_with_null_transitions(tmp_path, caplog):
    """A run interrupted by a vidforge older than ``videos.parquet``'s ``transitions`` column, resumed by
    this one: its videos are not redone, their rows read the column as null (one warning says so);
    the rows this run commits keep their lists."""
    import logging

    from pipeline.manifest import VIDEO_SCHEMA, VIDEOS_FILE, read_manifest

    old_schema = pa.schema([f for f in VIDEO_SCHEMA if f.name != "transitions"])
    old = OutputJournal(tmp_path, unit_schema=old_schema)
    old.commit([_video("old.mp4") | {"num_transitions": 2}], [], None)
    old.close()
    assert "transitions" not in pq.read_schema(next(old.parts_dir.glob("part-*-units.parquet"))).names

    resumed = OutputJournal(tmp_path)
    assert resumed.done_paths == {"old.mp4"}
    cut = {"kind": "cut", "start_frame": 40, "end_frame": 40}
    fade = {"kind": "fade", "start_frame": 90, "end_frame": 110}
    resumed.commit([_video("new.mp4") | {"num_transitions": 2, "transitions": [cut, fade]}], [], None)
    with caplog.at_level(logging.WARNING, logger="pipeline.journal"):
        videos, _ = resumed.finalize()
    resumed.close()
    assert videos.schema.field("transitions").type == VIDEO_SCHEMA.field("transitions").type
    rows = {r["path"]: r for r in pq.read_table(tmp_path / VIDEOS_FILE).to_pylist()}
    assert rows["old.mp4"]["transitions"] is None and rows["old.mp4"]["num_transitions"] == 2
    assert rows["new.mp4"]["transitions"] == [cut, fade]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 row(s) of manifest/videos.parquet" in warnings[0] and "without transitions" in warnings[0]
    assert "--overwrite" in warnings[0]

    # a whole manifest written before the column reads the same way; one missing a contract column is refused
    pq.write_table(pq.read_table(tmp_path / VIDEOS_FILE).drop_columns(["transitions"]), tmp_path / "old-videos.parquet")
    assert read_manifest(tmp_path / "old-videos.parquet", VIDEO_SCHEMA).column("transitions").to_pylist() == [None, None]
    pq.write_table(pq.read_table(tmp_path / VIDEOS_FILE).drop_columns(["num_transitions"]), tmp_path / "bad-videos.parquet")
    with pytest.raises(ValueError, match=r"not a vidforge manifest, missing columns \['num_transitions'\]"):
        read_manifest(tmp_path / "bad-videos.parquet", VIDEO_SCHEMA)
