"""Small matplotlib (Agg) plots of the report's histograms, returned as PNG data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"all": "#b0b7c3", "kept": "#2f6fdf", "other": "#e07b39", "threshold": "#c62828"}


def _png(fig, tight: bool = False) -> str:
    buf = io.BytesIO()
    # fixed margins (set by the caller) render about a third faster than bbox_inches="tight"
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def histogram(
    series: list[tuple[str, dict[str, Any], str]],
    title: str,
    thresholds: list[tuple[str, float]] = (),
    xlabel: str = "",
) -> str | None:
    """Overlaid step/bar histograms of ``(label, histogram json, color)``; red lines at thresholds."""
    series = [s for s in series if s[1] and s[1].get("count")]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(4.4, 2.6))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.88)
    for label, hist, color in series:
        lo, hi = hist["range"]
        counts = np.asarray(hist["counts"], dtype=float)
        edges = np.linspace(lo, hi, len(counts) + 1)
        ax.stairs(counts, edges, fill=True, alpha=0.55, color=color, label=f"{label} (n={hist['count']:,})")
    for name, value in thresholds:
        ax.axvline(value, color=COLORS["threshold"], linestyle="--", linewidth=1.2)
        ax.text(value, ax.get_ylim()[1] * 0.97, f" {name}={value:g}", color=COLORS["threshold"], fontsize=7,
                va="top", rotation=90)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def bars(counts: dict[str, int], title: str, color: str = COLORS["other"], limit: int = 12) -> str | None:
    """Horizontal bar chart of the largest ``counts``."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    if not items:
        return None
    labels = [k if len(k) <= 40 else k[:37] + "..." for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(4.2, 0.45 + 0.28 * len(items)))
    ax.barh(labels, values, color=color)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,}", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig, tight=True)
