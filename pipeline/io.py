"""Input discovery and file access, local or remote, through one code path (``pyarrow.fs``).

Local paths and ``s3://``/``gs://``/``hdfs://`` URIs are both resolved with
``pyarrow.fs.FileSystem.from_uri``; local files are handed to PyAV by path (fastest), remote ones
as seekable file objects.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Iterable

import pyarrow.fs as pafs

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


class InputError(ValueError):
    """An input path that does not exist or cannot be read; the message names it."""


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and in-filesystem path of a local path or URI."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).absolute())
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:
        raise InputError(f"{uri}: cannot open this URI's filesystem: {exc}") from None


def _join(uri: str, fs_path: str) -> str:
    """Re-attach the scheme of ``uri`` to a path listed by its filesystem."""
    if not is_remote(uri):
        return fs_path
    scheme = uri.split("://", 1)[0]
    return f"{scheme}://{fs_path}"


def _read_list(fs: pafs.FileSystem, fs_path: str, uri: str) -> list[str]:
    with fs.open_input_stream(fs_path) as f:
        text = f.read().decode("utf-8", errors="replace")
    base = os.path.dirname(uri) if not is_remote(uri) else uri.rsplit("/", 1)[0]
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not is_remote(line) and not os.path.isabs(line) and not is_remote(uri):
            line = os.path.join(base, line)
        out.append(line)
    return out


def resolve_inputs(inputs: Iterable[str], extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Expand video files, folders (recursively, by extension) and text files listing paths.

    Returns unique paths/URIs in a stable order. A missing path raises :class:`InputError`.
    Files named explicitly (or listed) are kept whatever their extension, so a broken or
    mislabelled file ends as ``failed`` in the manifest instead of vanishing.
    """
    exts = tuple(e.lower() for e in extensions)
    seen: dict[str, None] = {}
    stack = list(inputs)
    while stack:
        item = str(stack.pop(0))
        fs, fs_path = filesystem(item)
        info = fs.get_file_info(fs_path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{item}: input path not found")
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(fs_path, recursive=True)
            found = sorted(
                i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File and i.path.lower().endswith(exts)
            )
            for p in found:
                seen.setdefault(_join(item, p), None)
        elif fs_path.lower().endswith(LIST_EXTENSIONS):
            stack[:0] = _read_list(fs, fs_path, item)
        else:
            seen.setdefault(item if is_remote(item) else fs_path, None)
    return list(seen)


def open_for_decode(uri: str) -> str | IO[bytes]:
    """What PyAV should open: the path itself when local, a seekable file object when remote."""
    if not is_remote(uri):
        return uri.removeprefix("file://")
    try:
        fs, fs_path = pafs.FileSystem.from_uri(uri)
        return fs.open_input_file(fs_path)
    except Exception:  # fall back to fsspec, which knows more protocols
        import fsspec

        return fsspec.open(uri, "rb").open()


def file_size(uri: str) -> int:
    fs, fs_path = filesystem(uri)
    return int(fs.get_file_info(fs_path).size or 0)


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
