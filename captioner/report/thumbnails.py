"""Keyframe strips for the sample clips: read only the needed ``<clip_id>.mp4`` members of a shard,
decode a few evenly spaced frames with PyAV, return them as JPEG data URIs."""

from __future__ import annotations

import base64
import io
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def shard_path(root: Path, shard: str) -> Path | None:
    """Resolve a manifest ``shard`` value (a name or a path relative to the output folder)."""
    for candidate in (root / shard, root / "shards" / shard, root / "shards" / f"{shard}.tar"):
        if candidate.is_file():
            return candidate
    return None


def _jpeg_data_uri(image, height: int) -> str:
    width = max(1, round(image.width * height / image.height))
    image = image.resize((width, height))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def keyframes(mp4: bytes, count: int, height: int) -> list[str]:
    """``count`` evenly spaced frames of an mp4 as JPEG data URIs of the given height."""
    import av

    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        total = stream.frames
        if not total:
            total = sum(1 for _ in container.decode(stream))
            container.seek(0)
        if total <= 0:
            return []
        targets = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        last = max(targets)
        out = []
        for index, frame in enumerate(container.decode(stream)):
            if index in targets:
                out.append(_jpeg_data_uri(frame.to_image(), height))
            if index >= last:
                break
        return out


def attach_thumbnails(root: Path, samples: list[dict], count: int, height: int) -> None:
    """Add ``thumbnails`` (data URIs) or ``thumbnail_error`` to each sample, one tar open per shard."""
    if count <= 0:
        return
    by_shard: dict[str | None, list[dict]] = defaultdict(list)
    for sample in samples:
        by_shard[sample.get("shard")].append(sample)
    for shard, group in by_shard.items():
        path = shard_path(root, shard) if shard else None
        if path is None:
            for sample in group:
                sample["thumbnail_error"] = f"shard {shard!r} not found under {root / 'shards'}"
            continue
        try:
            with tarfile.open(path, "r:") as tar:
                for sample in group:
                    if "thumbnails" in sample:
                        continue
                    name = f"{sample['clip_id']}.mp4"
                    try:
                        member = tar.getmember(name)
                        data = tar.extractfile(member).read()
                        sample["thumbnails"] = keyframes(data, count, height)
                    except KeyError:
                        sample["thumbnail_error"] = f"{name} is not in {path.name}"
                    except Exception as exc:  # noqa: BLE001 - a broken clip is reported, not fatal
                        sample["thumbnail_error"] = f"cannot decode {name}: {exc}"
        except (OSError, tarfile.TarError) as exc:
            for sample in group:
                sample["thumbnail_error"] = f"cannot read {path}: {exc}"
