"""Pictures of a video's frames for a person to check: contact sheets and frame strips.

The frames are numbered as the scan numbers them (0-based, in decode order: :mod:`pipeline.decoding`),
so the number printed under a thumbnail is the number a scene list or a label file uses.

- :func:`overview_pages`: every ``step``-th frame of a video on numbered pages, to look for
  transitions a detector missed;
- :func:`transition_strips`: one row per transition, the frames around it, the transition's own
  frames framed in colour (red: a cut's first new frame; orange: a gradual span), to check each one.

Both serve ``vidforge scenes --sheet`` and the labelling tool of the evaluation sets
(``tests/bench/label_shots.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from pipeline.decoding import DecodeReport, decode_frames
from pipeline.io import decode_source
from pipeline.probe import display_size, main_video_stream, quarter_turns
from pipeline.scan import rotate_upright

LABEL_HEIGHT = 14
CUT_COLOUR = (0, 0, 230)  # BGR red
SPAN_COLOUR = (0, 140, 255)  # BGR orange


@dataclass
class SheetStyle:
    """Thumbnail width (height follows the video's aspect) and thumbnails per row of an overview page."""

    thumb_width: int = 128
    columns: int = 10
    rows_per_page: int = 12


def iter_thumbnails(path: str | Path, width: int, keep=None, last: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame number, BGR thumbnail)`` of the frames of ``path`` that ``keep(number)`` accepts (all when
    None), up to frame ``last``: upright (display rotation applied) and in display aspect (non-square
    pixels widened), ``width`` pixels wide. Local paths and URIs (:func:`pipeline.io.decode_source`)."""
    with decode_source(str(path)) as source, av.open(source) as container:
        stream = main_video_stream(container)
        if stream is None:
            raise ValueError(f"{path}: no video stream")
        stream.thread_type = "AUTO"
        size = None
        for index, frame in enumerate(decode_frames(container, stream, DecodeReport())):
            if last is not None and index > last:
                break
            if keep is not None and not keep(index):
                continue
            if size is None:  # the coded frame's thumbnail size, from the upright display size
                rotation = quarter_turns(frame)
                dw, dh = display_size(frame.width, frame.height, stream.sample_aspect_ratio, rotation)
                height = max(2, round(width * dh / dw))
                size = (rotation, (height, width) if rotation in (90, 270) else (width, height))
            rotation, (tw, th) = size
            thumb = frame.to_ndarray(width=tw, height=th, format="bgr24")
            yield index, rotate_upright(thumb, rotation)


def read_thumbnails(path: str | Path, wanted: Iterable[int] | None, width: int) -> dict[int, np.ndarray]:
    """Frames ``wanted`` (all when None) of ``path`` as BGR thumbnails ``width`` pixels wide, by frame number
    (:func:`iter_thumbnails`)."""
    if wanted is None:
        return dict(iter_thumbnails(path, width))
    wanted_set = set(int(i) for i in wanted)
    if not wanted_set:
        return {}
    return dict(iter_thumbnails(path, width, wanted_set.__contains__, max(wanted_set)))


def _labelled(thumb: np.ndarray, text: str, colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """A thumbnail with ``text`` under it, framed in ``colour`` when given."""
    h, w = thumb.shape[:2]
    tile = np.full((h + LABEL_HEIGHT, w, 3), 255, np.uint8)
    tile[:h] = thumb
    if colour is not None:
        cv2.rectangle(tile, (0, 0), (w - 1, h - 1), colour, 3)
    cv2.putText(tile, text, (2, h + LABEL_HEIGHT - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def _grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles (one size) in rows of ``columns``, 2-pixel gaps, white where a row is short."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    page = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        page[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
    return page


def overview_pages(path: str | Path, out_dir: str | Path, step: int = 1, style: SheetStyle | None = None) -> list[Path]:
    """Every ``step``-th frame of ``path``, numbered, on PNG pages ``<stem>_overview_NNN.png`` in ``out_dir``.
    One page of thumbnails in memory at a time, however long the video."""
    style = style or SheetStyle()
    if step < 1:
        raise ValueError(f"step: expected >= 1, got {step}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_page = style.columns * style.rows_per_page
    pages: list[Path] = []
    tiles: list[np.ndarray] = []

    def write_page() -> None:
        page_path = out / f"{Path(str(path).partition('?')[0]).stem}_overview_{len(pages):03d}.png"
        cv2.imwrite(str(page_path), _grid(tiles, style.columns))
        pages.append(page_path)
        tiles.clear()

    for index, thumb in iter_thumbnails(path, style.thumb_width, lambda i: i % step == 0):
        tiles.append(_labelled(thumb, str(index)))
        if len(tiles) == per_page:
            write_page()
    if tiles:
        write_page()
    return pages


def transition_strips(
    path: str | Path,
    transitions: list[tuple[int, int, str]],
    out_dir: str | Path,
    context: int = 3,
    per_page: int = 8,
    style: SheetStyle | None = None,
) -> list[Path]:
    """For each ``(start, end, kind)`` transition, a row of frames ``[start - context, end + context)``
    (a cut: ``start == end``, its first new frame framed red; a gradual span's frames framed orange),
    ``per_page`` rows a PNG page ``<stem>_transitions_NNN.png`` in ``out_dir``. Long spans show their
    first and last ``context`` frames only."""
    style = style or SheetStyle()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_strip_frames(s, e, context) for s, e, _ in transitions]
    thumbs = read_thumbnails(path, {i for row in rows for i in row if i >= 0}, style.thumb_width) if rows else {}
    pages = []
    for p, first in enumerate(range(0, len(rows), per_page)):
        strips = []
        for (start, end, kind), row in zip(transitions[first : first + per_page], rows[first : first + per_page]):
            strips.append(_strip(thumbs, row, start, end, kind, 4 * context))
        page_path = out / f"{Path(str(path).partition('?')[0]).stem}_transitions_{p:03d}.png"
        cv2.imwrite(str(page_path), np.concatenate(strips, axis=0))
        pages.append(page_path)
    return pages


def _strip_frames(start: int, end: int, context: int) -> list[int]:
    """The frames a transition's row shows: ``context`` before, the span (ends only when long), ``context`` after."""
    if end - start <= 2 * context:
        return list(range(start - context, end + context))
    return list(range(start - context, start + context)) + list(range(end - context, end + context))


def _strip(thumbs: dict[int, np.ndarray], row: list[int], start: int, end: int, kind: str, width: int) -> np.ndarray:
    """One labelled row, padded to ``width`` tiles (a short video's missing frames are grey)."""
    some = next(iter(thumbs.values()), None)
    blank = np.full_like(some, 200) if some is not None else np.full((72, 128, 3), 200, np.uint8)
    tiles = []
    for i in row:
        colour = (CUT_COLOUR if i == start else None) if start == end else (SPAN_COLOUR if start <= i < end else None)
        tiles.append(_labelled(thumbs.get(i, blank), f"{i} {kind}" if i == start else str(i), colour))
    while len(tiles) < width:
        tiles.append(_labelled(blank, ""))
    strip = _grid(tiles, width)
    return np.concatenate([strip, np.full((6, strip.shape[1], 3), 255, np.uint8)], axis=0)
