"""FlowDirector editing (model/editing): exactness of the flow-edit loop, masks, DAG, windows, v-pred conversion.

Everything here runs on small tensors or a tiny random model; no quality claim is made.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.editing.config import EditConfig, GuidanceConfig, MaskConfig, edit_config_from_dict
from model.editing.dag import differential_average
from model.editing.flowedit import edit_sigmas, flow_edit
from model.editing.masks import binarize_maps, distance_to_mask, soften, union, word_attention_maps
from model.editing.velocity import FlowTime, v_prediction_to_flow
from model.editing.windows import frame_windows, windowed
from model.schedulers import DDIMScheduler, FlowMatchScheduler


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------
# Analytic oracle: a point-mass velocity model v(z, t, c) = (z - mu_c) / t
# ------------------------------------------------------------------------------------------------


class PointMassField:
    """CFG velocity of point masses: ``v_cfg = v_u + s (v_c - v_u) = (z - mu') / t`` with ``mu' = mu_u + s (mu_c - mu_u)``."""

    def __init__(self, mus: dict[str, tuple[torch.Tensor, torch.Tensor]], scales: dict[str, float]):
        self.mus, self.scales = mus, scales
        self.calls = 0

    def guided_mean(self, branch: str) -> torch.Tensor:
        mu_u, mu_c = self.mus[branch]
        return mu_u + self.scales[branch] * (mu_c - mu_u)

    def __call__(self, z, t, branch, with_mask):
        self.calls += 1
        mu_u, mu_c = self.mus[branch]
        v_u, v_c = (z - mu_u) / t, (z - mu_c) / t
        return v_u + self.scales[branch] * (v_c - v_u), None


def _oracle_setup(seed: int = 0, shape=(1, 3, 2, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    x_src = torch.randn(shape, generator=g)
    mus = {b: (torch.randn(shape, generator=g), torch.randn(shape, generator=g)) for b in ("source", "target")}
    return x_src, PointMassField(mus, {"source": 3.5, "target": 10.5})


@pytest.mark.parametrize("candidates,outliers,weight,noise_seed", [(1, 1, 0.0, 0), (4, 2, 2.75, 1), (3, 1, 7.0, 2)])
@pytest.mark.parametrize("hard_mask", [False, True])
def test_point_mass_oracle_edit_is_exact(candidates, outliers, weight, noise_seed, hard_mask):
    x_src, field = _oracle_setup()
    mask = None
    if hard_mask:
        mask = torch.rand(x_src.shape[1], x_src.shape[3], x_src.shape[4], generator=torch.Generator().manual_seed(5)) > 0.5
    out = flow_edit(
        field, x_src, edit_sigmas(12, 3.0), n_max=9, n_min=0, generator=torch.Generator().manual_seed(noise_seed),
        num_candidates=candidates, num_outliers=outliers, dag_weight=weight, mask_override=mask,
    )
    delta = field.guided_mean("target") - field.guided_mean("source")
    m = torch.ones(()) if mask is None else mask.float()[None, :, None]
    expected = x_src + m * delta
    assert out.edit_steps == 9
    torch.testing.assert_close(out.latents, expected, rtol=1e-4, atol=1e-4)
    if hard_mask:  # outside the mask nothing moves, bit for bit
        outside = ~mask[None, :, None].expand_as(x_src)
        assert torch.equal(out.latents[outside], x_src[outside])


def test_point_mass_n_min_finishes_with_target_sampling():
    """With n_min > 0 the last steps are ordinary target sampling, which lands exactly on mu'_tar."""
    x_src, field = _oracle_setup(seed=3)
    out = flow_edit(field, x_src, edit_sigmas(10, 2.0), n_max=8, n_min=3, generator=torch.Generator().manual_seed(0))
    assert out.edit_steps == 5
    torch.testing.assert_close(out.latents, field.guided_mean("target"), rtol=1e-4, atol=1e-4)
    assert field.calls == 2 * 5 + 3


def test_schedule_window_and_validation():
    sig = edit_sigmas(50, 12.0)
    assert sig[0] == 1.0 and sig[-1] == 0.0 and len(sig) == 51 and np.all(np.diff(sig) < 0)
    x_src, field = _oracle_setup()
    out = flow_edit(field, x_src, sig, n_max=0)
    assert torch.equal(out.latents, x_src) and field.calls == 0
    with pytest.raises(ValueError, match="n_min <= n_max"):
        flow_edit(field, x_src, sig, n_max=10, n_min=11)
    with pytest.raises(ValueError, match="n_min <= n_max"):
        EditConfig(n_max=60).validate()
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['typo'\]"):
        edit_config_from_dict({"dag": {"typo": 1}})
    with pytest.raises(ValueError, match="num_outliers"):
        EditConfig(dag=GuidanceConfig(num_candidates=4, num_outliers=4)).validate()
    with pytest.raises(ValueError, match="pool_kernel"):
        EditConfig(mask=MaskConfig(pool_kernel=4)).validate()


def test_default_config_file_matches_dataclass_defaults():
    from pathlib import Path

    from model.editing.config import load_edit_config

    path = Path(__file__).resolve().parents[1] / "configs" / "edit" / "default.yaml"
    assert load_edit_config(path) == EditConfig()


# ------------------------------------------------------------------------------------------------
# v-prediction -> flow
# ------------------------------------------------------------------------------------------------


def test_v_prediction_point_mass_gives_the_flow_velocity():
    """A v-prediction that is exact for a point mass mu converts to the flow velocity (z - mu) / t."""
    sched = DDIMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=3.0)
    time_map = FlowTime(sched)
    g = torch.Generator().manual_seed(0)
    mu, z = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    for step in (10, 250, 600, 998):
        ab = float(sched.alphas_cumprod[step])
        a, s = math.sqrt(ab), math.sqrt(1 - ab)
        t = s / (a + s)
        inp = time_map.model_input(t)
        assert inp.timestep == pytest.approx(step, abs=1e-6)  # the integer timestep whose alpha_bar this is
        assert inp.alpha == pytest.approx(a, rel=1e-9) and inp.sigma == pytest.approx(s, rel=1e-9)
        x_s = inp.scale * z
        eps = (x_s - a * mu) / s
        v_pred = a * eps - s * mu
        torch.testing.assert_close(time_map.to_velocity(v_pred, x_s, inp), (z - mu) / t, rtol=1e-5, atol=1e-5)
    # between table entries the timestep is interpolated
    lo, hi = time_map.model_input(0.3).timestep, time_map.model_input(0.31).timestep
    assert 0 < lo < hi < 999 and lo != round(lo)


def test_flow_objective_passes_through():
    time_map = FlowTime(FlowMatchScheduler(shift=3.0))
    inp = time_map.model_input(0.25)
    assert (inp.scale, inp.timestep) == (1.0, 250.0)
    out = torch.randn(3)
    assert time_map.to_velocity(out, torch.randn(3), inp) is out
    with pytest.raises(ValueError, match="prediction_type"):
        FlowTime(DDIMScheduler(prediction_type="epsilon"))
    x = torch.randn(4)
    assert torch.allclose(v_prediction_to_flow(torch.zeros(4), x, 1.0, 0.0), -x)


# ------------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------------


def test_distance_transform_and_softening_values():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 9, 11, generator=g) > 0.85
    mask[2] = False  # an empty frame
    d = distance_to_mask(mask)
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    for f in range(2):
        pts = mask[f].nonzero().float()
        brute = torch.cdist(torch.stack([ys, xs], -1).reshape(-1, 2), pts).min(dim=1).values.reshape(9, 11)
        torch.testing.assert_close(d[f], brute, rtol=1e-4, atol=1e-4)
    assert torch.isinf(d[2]).all()
    soft = soften(mask, 0.25)
    torch.testing.assert_close(soft[:2], torch.where(mask[:2], torch.ones(()), torch.exp(-0.25 * d[:2])))
    assert torch.equal(soft[2], torch.zeros(9, 11))
    one = torch.zeros(1, 5, 5, dtype=torch.bool)
    one[0, 2, 2] = True
    assert soften(one, 0.25)[0, 0, 0].item() == pytest.approx(math.exp(-0.25 * math.sqrt(8)), rel=1e-5)


def test_binarize_pool_and_union():
    maps = torch.zeros(1, 2, 2, 12, 12)
    maps[0, 0, :, 2:5, 2:5] = 3.0  # a blob in the corner
    maps[0, 1] = 1.0  # constant: everything is at the mean
    masks = binarize_maps(maps, pool_kernel=3)
    assert masks.dtype == torch.bool and masks.shape == maps.shape
    blob = masks[0, 0, 0]
    assert blob[3, 3] and not blob[10, 10] and blob[1:6, 1:6].all() and blob.sum() < 144
    assert masks[0, 1].all()
    a, b = torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    a[0], b[2] = True, True
    assert union([a, b]).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="shapes differ"):
        union([a, torch.zeros(3, dtype=torch.bool)])


def test_word_maps_land_on_the_right_latent_cells():
    t, gh, gw, p, pt = 2, 3, 4, 2, 2
    probs = torch.zeros(1, 2, t * gh * gw, 3)
    token = (1 * gh + 2) * gw + 1  # token frame 1, row 2, column 1
    probs[0, :, token, 0] = 1.0  # word 0 = column 0
    probs[0, :, token, 1] = 0.5  # word 1 = columns 1 and 2 (a two-token word)
    probs[0, :, token, 2] = 0.25
    maps = word_attention_maps(probs, [[0], [1, 2]], (t, gh, gw), p, pt)
    assert maps.shape == (1, 2, t * pt, gh * p, gw * p)
    hot = maps[0, 0].nonzero().tolist()
    assert sorted(hot) == sorted([f, y, x] for f in (2, 3) for y in (4, 5) for x in (2, 3))
    assert maps[0, 1].max().item() == pytest.approx(0.375)


# ------------------------------------------------------------------------------------------------
# DAG and windows
# ------------------------------------------------------------------------------------------------


def test_dag_identical_candidates_leave_the_mean():
    v = torch.randn(2, 3, 4)  # (B, ...)
    cands = v.expand(4, -1, -1, -1).clone()  # (L, B, ...)
    torch.testing.assert_close(differential_average(cands, 2, 2.75), v)


def test_dag_distinct_candidates_push_away_from_outliers():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 6, 5, generator=g)
    cands = torch.stack([base, base * 1.1, base * 0.9, torch.randn(2, 6, 5, generator=g), -base])
    out = differential_average(cands, num_outliers=2, weight=2.75)
    v_hq = cands.mean(0)
    assert (out - v_hq).abs().max() > 1e-3
    for b in range(2):  # the two least similar are the random one and the flipped one
        sims = torch.nn.functional.cosine_similarity(cands[:, b].flatten(1), v_hq[b].flatten()[None], dim=-1)
        worst = sims.argsort()[:2]
        assert set(worst.tolist()) == {3, 4}
        v_bl = cands[worst, b].mean(0)
        torch.testing.assert_close(out[b], v_hq[b] + 2.75 * (v_hq[b] - v_bl))
    torch.testing.assert_close(differential_average(cands, 2, 0.0), v_hq)


def test_frame_windows_cover_and_average():
    assert frame_windows(13, 11, 8) == [slice(0, 11), slice(2, 13)]
    assert frame_windows(30, 11, 8) == [slice(0, 11), slice(8, 19), slice(16, 27), slice(19, 30)]
    assert frame_windows(7, 11, 8) == [slice(0, 7)]
    assert frame_windows(14, 11, 8, multiple=2) == [slice(0, 10), slice(4, 14)]
    with pytest.raises(ValueError, match="temporal patch"):
        frame_windows(13, 11, 8, multiple=2)
    z = torch.randn(1, 13, 2, 3, 3)
    torch.testing.assert_close(windowed(lambda x, w: 2 * x, z, frame_windows(13, 5, 3)), 2 * z)
    # per-window constants: overlapping frames get their mean
    out = windowed(lambda x, w: torch.full_like(x, float(w.start)), z, [slice(0, 8), slice(5, 13)])
    assert out[0, 0, 0, 0, 0] == 0 and out[0, 6, 0, 0, 0] == 2.5 and out[0, 12, 0, 0, 0] == 5
