"""Input discovery and file access, local or remote, through one code path (``pyarrow.fs``).

Every path or URI resolves to a ``pyarrow.fs`` filesystem (:func:`filesystem`): local paths, the
schemes pyarrow implements (``s3://``, ``gs://``, ``hdfs://``, ``abfs://``), and any other fsspec
protocol wrapped by pyarrow. Local files are handed to PyAV by path (fastest). A video task copies
its remote input once to a node-local temporary file (:func:`staged_locally`), which every reader
then uses; outside one, remote files are read as seekable file objects.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import deque
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Iterable, Iterator
from urllib.parse import parse_qsl

import pyarrow.fs as pafs

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
STAGE_CHUNK_BYTES = 8 << 20

log = logging.getLogger(__name__)
_staged: dict[str, str] = {}  # remote URI -> its local copy, inside staged_locally()


class InputError(ValueError):
    """An input path that does not exist or cannot be read; the message names it."""


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> Path:
    """The absolute path a local path or ``file://`` URI names."""
    return Path(uri.removeprefix("file://")).absolute()


PYARROW_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
"""URI schemes pyarrow.fs implements itself; any other goes through fsspec (wrapped by pyarrow)."""


def remote_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a remote URI.

    ``pyarrow.fs.FileSystem.from_uri`` for the schemes pyarrow implements; other schemes
    (``http://``, ``az://``, ``memory://``...) through fsspec, wrapped in a pyarrow filesystem so
    every caller sees one interface. With ``STORAGE_EMULATOR_HOST`` set (``http://host:port``, the
    variable Google's client libraries and gcsfs read), ``gs://`` URIs go to that GCS emulator
    (fake-gcs-server, storage-testbench) without credentials: pyarrow's URI parsing always asks
    Google for credentials, which an emulator cannot give. Raises ValueError (bad URI or query,
    unknown protocol) or ImportError (fsspec backend not installed).
    """
    scheme, _, rest = uri.partition("://")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if scheme in ("gs", "gcs") and emulator:
        path, _, query = rest.partition("?")
        options = dict(parse_qsl(query))
        unknown = sorted(set(options) - {"retry_limit_seconds"})
        if unknown:
            raise ValueError(f"unexpected query parameter(s) {unknown} for the GCS emulator at {emulator}")
        endpoint_scheme, _, host = emulator.rpartition("://")
        fs = pafs.GcsFileSystem(
            anonymous=True,
            endpoint_override=host.rstrip("/"),
            scheme=endpoint_scheme or "http",
            retry_time_limit=timedelta(seconds=float(options.get("retry_limit_seconds", 15))),
        )
        return fs, path.rstrip("/")
    if scheme in PYARROW_SCHEMES:
        return pafs.FileSystem.from_uri(uri)
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and in-filesystem path of a local path or URI (of its local copy, when
    :func:`staged_locally` staged it)."""
    uri = _staged.get(uri, uri)
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(local_path(uri))
    try:
        return remote_filesystem(uri)
    except (ValueError, ImportError, OSError) as exc:
        raise InputError(f"{uri}: cannot open this URI's filesystem: {exc}") from None


def _join(uri: str, fs_path: str, fs: pafs.FileSystem | None = None) -> str:
    """The URI of ``fs_path``, a path listed by ``fs``, the filesystem of ``uri``: its scheme, the
    authority when the filesystem's paths lack it (``hdfs://host:port/...``) and its query
    (``?region=...``); fsspec's own rule for the filesystems it provides."""
    if not is_remote(uri):
        return fs_path
    scheme, rest = uri.split("://", 1)
    rest, _, query = rest.partition("?")
    if isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, pafs.FSSpecHandler):
        return fs.handler.fs.unstrip_protocol(fs_path) + (f"?{query}" if query else "")
    if fs_path.startswith("/"):
        fs_path = rest.split("/", 1)[0] + fs_path
    return f"{scheme}://{fs_path}" + (f"?{query}" if query else "")


def _sibling(uri: str, relative: str) -> str:
    """``relative`` resolved against the folder of ``uri`` (a list file), local or remote."""
    if not is_remote(uri):
        return os.path.join(os.path.dirname(uri), relative)
    base, _, query = uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{relative}" + (f"?{query}" if query else "")


def _read_list(fs: pafs.FileSystem, fs_path: str, uri: str) -> list[str]:
    with fs.open_input_stream(fs_path) as f:
        text = f.read().decode("utf-8", errors="replace")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not is_remote(line) and not os.path.isabs(line):  # relative to the list's folder
            line = _sibling(uri, line)
        out.append(line)
    return out


def resolve_inputs(
    inputs: Iterable[str], extensions: Iterable[str] = VIDEO_EXTENSIONS, sizes: dict[str, int | None] | None = None
) -> list[str]:
    """Expand video files, folders (recursively, by extension) and text files listing paths.

    Returns unique paths/URIs in a stable order. A missing path given here raises
    :class:`InputError`. Files named explicitly (or listed) are kept whatever their extension, so a
    broken or mislabelled file ends as ``failed`` in the manifest instead of vanishing. A video a
    list names (by its extension) is taken as it is, unchecked: one request per entry would hold a
    list of a million videos in the bucket up for hours before the run starts; a missing one ends
    ``failed`` like a broken one. With ``sizes``, each checked file's size in bytes goes into it
    (from the listing or the check that it exists: no request more).
    """
    sizes = {} if sizes is None else sizes
    exts = tuple(e.lower() for e in extensions)
    seen: dict[str, None] = {}
    stack = deque((str(item), False) for item in inputs)  # (path or URI, named by a list file)
    while stack:
        item, listed = stack.popleft()
        if listed and item.partition("?")[0].lower().endswith(exts):
            seen.setdefault(item if is_remote(item) else str(local_path(item)), None)
            continue
        fs, fs_path = filesystem(item)
        info = fs.get_file_info(fs_path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{item}: input path not found")
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(fs_path, recursive=True)
            found = sorted(
                (i.path, i.size) for i in fs.get_file_info(selector) if i.type == pafs.FileType.File and i.path.lower().endswith(exts)
            )
            for p, size in found:
                uri = _join(item, p, fs)
                seen.setdefault(uri, None)
                sizes.setdefault(uri, size)
        elif fs_path.lower().endswith(LIST_EXTENSIONS):
            stack.extendleft((line, True) for line in reversed(_read_list(fs, fs_path, item)))  # in place of the list, in order
        else:
            uri = item if is_remote(item) else fs_path
            seen.setdefault(uri, None)
            sizes.setdefault(uri, info.size)
    return list(seen)


@contextmanager
def staged_locally(uris: Iterable[str]) -> Iterator[None]:
    """Copy the remote ones of ``uris`` to node-local temporary files for the duration of the block.

    Inside it every reader of a staged URI (content hash, probe, scan, extraction) reads the local
    copy: one download per video in large requests, where each pass would otherwise fetch the whole
    file again, 32 KB per request (PyAV's reads through a file object). Copies go to ``$TMPDIR``
    and are removed on exit. A URI that cannot be copied stays remote: its readers then fail on it
    with their usual message.
    """
    remote = [u for u in dict.fromkeys(uris) if is_remote(u) and u not in _staged]
    if not remote:
        yield
        return
    folder = tempfile.mkdtemp(prefix="vidforge-staged-")
    try:
        for index, uri in enumerate(remote):
            local = os.path.join(folder, f"{index}{Path(uri.partition('?')[0]).suffix}")
            try:
                with decode_source(uri) as src, open(local, "wb") as dst:
                    while block := src.read(STAGE_CHUNK_BYTES):
                        dst.write(block)
            except (OSError, ValueError) as exc:  # a missing object, a full disk, a URI no filesystem takes (InputError)
                log.warning("%s: not copied locally (%s); reading it remotely", uri, exc)
                continue
            _staged[uri] = local
        yield
    finally:
        for uri in remote:
            _staged.pop(uri, None)
        shutil.rmtree(folder, ignore_errors=True)


def open_for_decode(uri: str) -> str | IO[bytes]:
    """What PyAV should open: a local path (the file's, or its staged copy's), else a seekable file object."""
    uri = _staged.get(uri, uri)
    if not is_remote(uri):
        return uri.removeprefix("file://")
    fs, fs_path = filesystem(uri)
    return fs.open_input_file(fs_path)


@contextmanager
def decode_source(uri: str) -> Iterator[str | IO[bytes]]:
    """:func:`open_for_decode` as a context: a file object it opened is closed on exit."""
    source = open_for_decode(uri)
    try:
        yield source
    finally:
        if not isinstance(source, str):
            source.close()


def file_size(uri: str) -> int:
    fs, fs_path = filesystem(uri)
    info = fs.get_file_info(fs_path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri}: not found")
    return int(info.size or 0)


def content_hash(uri: str, chunk: int = 1 << 20) -> str:
    """BLAKE2b of the file's bytes (16 hex chars): the stable source id in every clip_id."""
    fs, fs_path = filesystem(uri)
    digest = hashlib.blake2b(digest_size=8)
    with fs.open_input_stream(fs_path) as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()
