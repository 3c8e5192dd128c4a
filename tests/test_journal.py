"""The output journal: commits, recovery after a crash at any point, final manifests."""

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipeline.journal import OutputError, OutputJournal
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
    fresh = OutputJournal(tmp_path, overwrite=True)
    assert fresh.done_paths == set() and not list(fresh.shards_dir.iterdir())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="output folder is not writable"):
        OutputJournal(blocker / "out")
