"""Remote inputs (s3:// and gs:// on local S3 and GCS API servers, other schemes through fsspec):
discovery, list files, and the local staging that makes a video task download its input once."""

from __future__ import annotations

import glob
import logging
import os
import tempfile

import pytest

from pipeline.io import InputError, _join, content_hash, file_size, filesystem, open_for_decode, resolve_inputs, staged_locally


@pytest.fixture(scope="module")
def remote_corpus(object_store, sample_corpus):
    """The sample videos under ``raw/`` of each object store: {uri: local path}."""
    uris = {}
    for video in sample_corpus:
        with open(video.path, "rb") as f:
            uris[object_store.put(f"raw/{os.path.basename(video.path)}", f.read())] = video.path
    return uris


def test_folders_and_list_files_resolve_to_uris(object_store, remote_corpus):
    first, second = sorted(remote_corpus)[:2]
    listing = f"# a relative line is relative to the list's folder\n{first.rsplit('/', 1)[1]}\n{second}\n"
    list_uri = object_store.put("raw/videos.txt", listing.encode())
    folder = f"{object_store.scheme}://{object_store.bucket}/raw"
    sizes: dict[str, int] = {}
    assert resolve_inputs([folder], sizes=sizes) == sorted(remote_corpus)
    assert sizes == {uri: os.path.getsize(path) for uri, path in remote_corpus.items()}  # from the listing
    sizes.clear()
    assert resolve_inputs([list_uri], sizes=sizes) == [first, second]
    assert sizes == {}  # the videos a list names are taken unchecked: no request each
    # so a video a list names that is not there does not stop the run: the probe fails it (below)
    missing = f"{object_store.scheme}://{object_store.bucket}/gone/video.mp4"
    gone_list = object_store.put("raw/gone.txt", f"{missing}\n{second}\n".encode())
    assert resolve_inputs([gone_list]) == [missing, second]
    with pytest.raises(InputError, match="gone/video.mp4: input path not found"):
        resolve_inputs([missing])  # named on the command line: a typo is an error at once
    assert content_hash(first) == content_hash(remote_corpus[first]) and file_size(first) == os.path.getsize(remote_corpus[first])
    # the query string (per-URI filesystem options) travels with every listed file
    query = {"s3": "region=us-east-1", "gs": "retry_limit_seconds=5"}[object_store.scheme]
    with_query = resolve_inputs([f"{folder}?{query}"])
    assert with_query == [f"{u}?{query}" for u in sorted(remote_corpus)]
    assert content_hash(with_query[0]) == content_hash(sorted(remote_corpus)[0])
    with pytest.raises(InputError, match="cannot open this URI's filesystem.*colour"):
        filesystem(f"{folder}?colour=blue")


def test_other_schemes_go_through_fsspec(sample_corpus):
    """A scheme pyarrow lacks (here fsspec's ``memory://``) is listed, hashed and opened by the same
    functions, through fsspec wrapped in a pyarrow filesystem; an unknown one is a clear error."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for video in sample_corpus[:2]:
        with open(video.path, "rb") as f:
            memory.pipe(f"/vidforge-test/raw/{os.path.basename(video.path)}", f.read())
    memory.pipe("/vidforge-test/raw/videos.txt", os.path.basename(sample_corpus[1].path).encode())
    found = resolve_inputs(["memory://vidforge-test/raw"])
    assert [u.rsplit("/", 1)[1] for u in found] == sorted(os.path.basename(v.path) for v in sample_corpus[:2])
    assert resolve_inputs(["memory://vidforge-test/raw/videos.txt"])[0].endswith(os.path.basename(sample_corpus[1].path))
    assert content_hash(found[0]) == content_hash(sample_corpus[0].path)
    with open_for_decode(found[0]) as remote, open(sample_corpus[0].path, "rb") as local:
        assert remote.read() == local.read()
    with pytest.raises(InputError, match="nosuchscheme://b/a.mp4: cannot open this URI's filesystem"):
        resolve_inputs(["nosuchscheme://b/a.mp4"])


def test_the_largest_local_video_starts_first(tmp_path):
    """Sizes of listed and named files come with the paths; the run starts the largest first, so a
    long video does not start last and keep one worker busy after the rest are done."""
    from pipeline.curate import largest_first

    (tmp_path / "raw").mkdir()
    for name, size in [("a.mp4", 10), ("b.mp4", 30), ("c.mp4", 20)]:
        (tmp_path / "raw" / name).write_bytes(b"x" * size)
    (tmp_path / "big.mov").write_bytes(b"x" * 40)
    listing = tmp_path / "more.txt"
    listing.write_text("listed.mp4\n")  # not checked (and not there): its size is unknown
    sizes: dict[str, int] = {}
    paths = resolve_inputs([str(tmp_path / "raw"), str(listing), str(tmp_path / "big.mov")], sizes=sizes)
    assert [os.path.basename(p) for p in paths] == ["a.mp4", "b.mp4", "c.mp4", "listed.mp4", "big.mov"]
    assert [os.path.basename(p) for p in largest_first(paths, sizes)] == ["big.mov", "b.mp4", "c.mp4", "a.mp4", "listed.mp4"]
    assert largest_first(["x", "y", "z"], {"y": 5}) == ["y", "x", "z"]  # unknown sizes last, in their order


def test_list_files_expand_in_place_and_in_order(tmp_path):
    """A list's entries take its place, a list it names expands inside it, and a long list keeps its
    order (expanded from a queue: the front-of-list inserts before took ~2 min for a million entries)."""
    inner = tmp_path / "inner.lst"
    inner.write_text("b.mp4\nc.mp4\n")
    outer = tmp_path / "outer.txt"
    outer.write_text(f"a.mp4\n{inner.name}\nd.mp4\n")
    many = [f"v{i:06d}.mp4" for i in range(100_000)]
    long_list = tmp_path / "long.txt"
    long_list.write_text("".join(f"{name}\n" for name in many))
    paths = resolve_inputs([str(outer), str(long_list)])
    assert [os.path.basename(p) for p in paths] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4", *many]


def test_join_keeps_the_authority_of_filesystems_whose_paths_lack_it():
    assert _join("hdfs://namenode:8020/data", "/data/a.mp4") == "hdfs://namenode:8020/data/a.mp4"
    assert _join("s3://bucket/raw?region=eu-west-1", "bucket/raw/a.mp4") == "s3://bucket/raw/a.mp4?region=eu-west-1"
    assert _join("/local/raw", "/local/raw/a.mp4") == "/local/raw/a.mp4"


def test_staged_locally_reads_a_local_copy_and_removes_it(remote_corpus, object_store, caplog):
    uri, local = sorted(remote_corpus.items())[0]
    missing = f"{object_store.scheme}://{object_store.bucket}/raw/missing.mp4"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "vidforge-staged-*")))
    with caplog.at_level(logging.WARNING, logger="pipeline.io"), staged_locally([uri, missing, local]):
        copy = open_for_decode(uri)
        assert isinstance(copy, str) and os.path.isfile(copy) and copy != local
        with open(copy, "rb") as a, open(local, "rb") as b:
            assert a.read() == b.read()
        assert content_hash(uri) == content_hash(local) and file_size(uri) == os.path.getsize(local)
    assert "missing.mp4: not copied locally" in caplog.text
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        file_size(missing)  # so the probe reports a vanished input as missing, not as an empty file
    assert not os.path.exists(copy)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "vidforge-staged-*"))) == before
    remote = open_for_decode(uri)  # outside the block: a file object on the remote store
    try:
        assert not isinstance(remote, str) and remote.read(8)
    finally:
        remote.close()
