"""FFmpeg filter chains (libavfilter, through PyAV) over decoded frames."""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter


def filter_chain(
    width: int, height: int, format: str, *filters: tuple[str, str], time_base: Fraction | None = None
) -> av.filter.Graph:
    """A configured graph: a source of ``width x height`` frames in pixel format ``format``, then the
    ``filters`` (name, arguments) in order, then a sink. Push a frame, pull what comes out."""
    graph = av.filter.Graph()
    nodes = [graph.add_buffer(width=width, height=height, format=format, time_base=time_base or Fraction(1, 1000))]
    nodes += [graph.add(name, arguments) for name, arguments in filters]
    nodes.append(graph.add("buffersink"))
    graph.link_nodes(*nodes).configure()
    return graph
