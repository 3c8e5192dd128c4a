"""Unit tests of clip planning and the filter thresholds (no video decoding)."""

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.filters import FilterConfig, clip_scores, reject_reason
from pipeline.plan import PlanConfig, clip_id_for, split_scene


def test_split_scene_trims_margins_and_respects_max():
    cfg = PlanConfig(margin_s=0.5, min_duration_s=2.0, max_duration_s=10.0)
    fps = 24.0
    windows = split_scene(0, 24 * 33, fps, cfg)  # a 33 s scene
    assert windows[0][0] == 12 and windows[-1][1] == 24 * 33 - 12
    lengths = [b - a for a, b in windows]
    assert max(lengths) <= 10 * fps and min(lengths) >= 2 * fps
    assert all(w1[1] == w2[0] for w1, w2 in zip(windows, windows[1:]))  # contiguous, non-overlapping
    assert sum(lengths) == 24 * 33 - 24


def test_split_scene_fixed_mode_leaves_a_remainder():
    cfg = PlanConfig(margin_s=0.0, min_duration_s=2.0, max_duration_s=10.0, split="fixed")
    windows = split_scene(0, 250, 10.0, cfg)
    assert windows == [(0, 100), (100, 200), (200, 250)]


def test_split_scene_too_short_after_margin():
    assert split_scene(100, 110, 24.0, PlanConfig(margin_s=0.25)) == []
    assert split_scene(100, 140, 24.0, PlanConfig(margin_s=0.25)) == [(106, 134)]


def test_clip_id_is_stable_and_dot_free():
    a = clip_id_for("0123456789abcdef", 12, 240)
    assert a == clip_id_for("0123456789abcdef", 12, 240)
    assert "." not in a and a != clip_id_for("0123456789abcdef", 12, 241)


def _scan(n=48, fps=24.0, motion=0.1, luma=120.0, sharp=100.0, gm=None):
    return SimpleNamespace(
        fps=fps,
        motion=np.full(n, motion),
        global_motion=np.zeros((n, 2)) if gm is None else gm,
        sharpness=np.full(n, sharp),
        luma=np.full(n, luma),
    )


def _row(scan, w=320, h=180):
    row = {"source_width": w, "source_height": h}
    row.update(clip_scores(scan, 0, len(scan.motion)))
    return row


@pytest.mark.parametrize(
    "scan_kwargs, size, reason",
    [
        ({}, (320, 180), None),
        ({}, (200, 120), "too_small"),
        ({}, (900, 300), "wrong_aspect"),
        ({"motion": 0.0}, (320, 180), "static"),
        ({"motion": 3.0}, (320, 180), "too_fast"),
        ({"sharp": 2.0}, (320, 180), "blurry"),
        ({"luma": 5.0}, (320, 180), "too_dark"),
        ({"luma": 250.0}, (320, 180), "too_bright"),
    ],
)
def test_reject_reasons(scan_kwargs, size, reason):
    assert reject_reason(_row(_scan(**scan_kwargs), *size), FilterConfig()) == reason


def test_shake_measures_jitter_not_smooth_pans():
    n = 96
    smooth = np.tile([[0.2, 0.0]], (n, 1))
    jitter = smooth + np.stack([np.where(np.arange(n) % 2, 0.6, -0.6), np.zeros(n)], axis=1)
    cfg = FilterConfig()
    assert reject_reason(_row(_scan(n, gm=smooth)), cfg) is None
    assert reject_reason(_row(_scan(n, gm=jitter)), cfg) == "shaky"


def test_null_threshold_switches_a_check_off():
    row = _row(_scan(motion=0.0))
    assert reject_reason(row, FilterConfig(min_motion=None)) is None


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("filter:\n  min_motion: fast\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: filter.min_motion: expected a number"):
        load_config(SimpleConfig, bad)
    with pytest.raises(ConfigError, match=r"filter.min_motoin: unknown key"):
        load_config(SimpleConfig, None, ["filter.min_motoin=0.1"])
    with pytest.raises(ConfigError, match=r"plan: need 0 < min_duration_s <= max_duration_s"):
        load_config(SimpleConfig, None, ["plan.min_duration_s=20"])


from dataclasses import dataclass, field  # noqa: E402


@dataclass
class SimpleConfig:
    filter: FilterConfig = field(default_factory=FilterConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)


def test_error_inside_an_optional_section_names_the_inner_key():
    from pipeline.curate import CurateConfig

    with pytest.raises(ConfigError, match=r"caption\.dedup\.threshhold: unknown key"):
        load_config(CurateConfig, None, ["caption.dedup.threshhold=0.9"])
