"""Remote inputs (s3:// on a local S3 server): discovery, list files, and the local staging that
makes a video task download its input once."""

from __future__ import annotations

import glob
import logging
import os
import tempfile

import pytest

from pipeline.io import _join, content_hash, file_size, open_for_decode, resolve_inputs, staged_locally


@pytest.fixture(scope="module")
def remote_corpus(s3_server, sample_corpus):
    """The sample videos under ``s3://vidforge/raw/`` and a list file beside them: {uri: local path}."""
    uris = {}
    for video in sample_corpus:
        with open(video.path, "rb") as f:
            uris[s3_server.put(f"raw/{os.path.basename(video.path)}", f.read())] = video.path
    return uris


def test_folders_and_list_files_resolve_to_uris(s3_server, remote_corpus):
    first, second = sorted(remote_corpus)[:2]
    listing = f"# a relative line is relative to the list's folder\n{first.rsplit('/', 1)[1]}\n{second}\n"
    list_uri = s3_server.put("raw/videos.txt", listing.encode())
    assert resolve_inputs([f"s3://{s3_server.bucket}/raw"]) == sorted(remote_corpus)
    assert resolve_inputs([list_uri]) == [first, second]
    # the query string (per-URI filesystem options) travels with every listed file
    with_query = resolve_inputs([f"s3://{s3_server.bucket}/raw?region=us-east-1"])
    assert with_query == [f"{u}?region=us-east-1" for u in sorted(remote_corpus)]
    assert content_hash(with_query[0]) == content_hash(sorted(remote_corpus)[0])


def test_join_keeps_the_authority_of_filesystems_whose_paths_lack_it():
    assert _join("hdfs://namenode:8020/data", "/data/a.mp4") == "hdfs://namenode:8020/data/a.mp4"
    assert _join("s3://bucket/raw?region=eu-west-1", "bucket/raw/a.mp4") == "s3://bucket/raw/a.mp4?region=eu-west-1"
    assert _join("/local/raw", "/local/raw/a.mp4") == "/local/raw/a.mp4"


def test_staged_locally_reads_a_local_copy_and_removes_it(remote_corpus, s3_server, caplog):
    uri, local = sorted(remote_corpus.items())[0]
    missing = f"s3://{s3_server.bucket}/raw/missing.mp4"
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
