"""Numerical equivalence of model/schedulers.py with diffusers' CogVideoX DDIM and flow-match Euler schedulers."""

from __future__ import annotations

import json

import pytest
import torch

from model.schedulers import DDIMScheduler, FlowMatchScheduler, load_scheduler

diffusers = pytest.importorskip("diffusers")

REL = 1e-4

COGVIDEOX_2B = {  # CogVideoX-2b/scheduler/scheduler_config.json
    "_class_name": "CogVideoXDDIMScheduler",
    "_diffusers_version": "0.30.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 3.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}
COGVIDEOX_5B = {**COGVIDEOX_2B, "snr_shift_scale": 1.0}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def write_config(folder, config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scheduler_config.json").write_text(json.dumps(config))


@pytest.fixture(params=[("2b", COGVIDEOX_2B), ("5b", COGVIDEOX_5B), ("eps", {**COGVIDEOX_2B, "prediction_type": "epsilon",
                        "rescale_betas_zero_snr": False, "timestep_spacing": "leading", "set_alpha_to_one": False})],
                ids=lambda p: p[0])
def ddim_pair(request, tmp_path):
    _, config = request.param
    write_config(tmp_path / "scheduler", config)
    ours = DDIMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    ref = diffusers.CogVideoXDDIMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    return ours, ref


def test_ddim_alphas_and_timesteps(ddim_pair):
    ours, ref = ddim_pair
    assert rel_err(ours.alphas_cumprod, ref.alphas_cumprod) <= REL
    for n in (1, 7, 25, 50, 1000):
        ours.set_timesteps(n)
        ref.set_timesteps(n)
        assert torch.equal(ours.timesteps, ref.timesteps), n
    if ours.config.rescale_betas_zero_snr:
        assert float(ours.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-12)  # zero terminal SNR


def test_ddim_step_sequence(ddim_pair):
    ours, ref = ddim_pair
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 6, generator=g)
    ours.set_timesteps(12)
    ref.set_timesteps(12)
    x_ours, x_ref = x.clone(), x.clone()
    for t in ours.timesteps:
        out = torch.randn(x.shape, generator=g)
        prev, x0 = ours.step(out, t, x_ours)
        ref_out = ref.step(out, t, x_ref)
        assert rel_err(prev, ref_out.prev_sample) <= REL
        assert rel_err(x0, ref_out.pred_original_sample) <= REL
        x_ours, x_ref = prev, ref_out.prev_sample


def test_ddim_add_noise_and_velocity(ddim_pair):
    ours, ref = ddim_pair
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 2, 3, 8, 8, generator=g), torch.randn(4, 2, 3, 8, 8, generator=g)
    t = torch.tensor([0, 17, 500, 999])
    assert rel_err(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t)) <= REL
    assert rel_err(ours.get_velocity(x0, noise, t), ref.get_velocity(x0, noise, t)) <= REL
    # the v-target and the v-step agree: stepping from x_t with the true v recovers x0 exactly
    if ours.config.prediction_type == "v_prediction":
        xt = ours.add_noise(x0, noise, t[1:2].repeat(4))
        pred_x0 = ours.predict_original_sample(ours.get_velocity(x0, noise, 17), ours.alphas_cumprod[17], xt)
        assert rel_err(pred_x0, x0) <= 1e-4


def test_ddim_save_load_roundtrip(tmp_path):
    s = DDIMScheduler(snr_shift_scale=1.0)
    s.save_pretrained(tmp_path / "scheduler")
    loaded = load_scheduler(tmp_path, "scheduler")
    assert isinstance(loaded, DDIMScheduler) and loaded.config == s.config
    ref = diffusers.CogVideoXDDIMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert rel_err(loaded.alphas_cumprod, ref.alphas_cumprod) <= REL


def test_bad_config_is_a_clear_error(tmp_path):
    write_config(tmp_path, {**COGVIDEOX_2B, "prediction_type": "x0"})
    with pytest.raises(ValueError, match="prediction_type"):
        DDIMScheduler.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="scheduler_config.json"):
        DDIMScheduler.from_pretrained(tmp_path / "missing")
    write_config(tmp_path / "x", {"_class_name": "EulerAncestralDiscreteScheduler"})
    with pytest.raises(ValueError, match="not supported"):
        load_scheduler(tmp_path / "x")
    with pytest.raises(RuntimeError, match="set_timesteps"):
        DDIMScheduler().step(torch.zeros(1), 999, torch.zeros(1))


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_flow_matches_diffusers(tmp_path, shift):
    write_config(tmp_path, {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": shift})
    ours = load_scheduler(tmp_path)
    assert isinstance(ours, FlowMatchScheduler)
    ref = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path)
    assert rel_err(ours.sigmas, ref.sigmas) <= REL
    for n in (1, 4, 28, 50):
        ours.set_timesteps(n)
        ref.set_timesteps(n)
        assert rel_err(ours.timesteps, ref.timesteps) <= REL
        assert rel_err(ours.sigmas, ref.sigmas) <= REL
        assert float(ours.sigmas[-1]) == 0.0
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 4, 6, 6, generator=g)
    x_ours, x_ref = x.clone(), x.clone()
    for t in ours.timesteps:  # n = 50 from the loop above
        v = torch.randn(x.shape, generator=g)
        prev, x0 = ours.step(v, t, x_ours)
        ref_prev = ref.step(v, t, x_ref).prev_sample
        assert rel_err(prev, ref_prev) <= REL
        assert rel_err(x0, x_ours - float(t) / 1000 * v) <= REL
        x_ours, x_ref = prev, ref_prev
    x0, noise = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    t = ours.timesteps[[3, 40]]
    assert rel_err(ours.scale_noise(x0, t, noise), ref.scale_noise(x0, t, noise)) <= REL
    # straight path: z_t = x0 + sigma (eps - x0), i.e. noise minus velocity scaled
    sigma = (t / 1000).view(2, 1, 1)
    assert rel_err(ours.add_noise(x0, noise, t), x0 + sigma * ours.get_velocity(x0, noise, t)) <= REL
    assert torch.equal(ours.add_noise(x0, noise, torch.tensor([1000.0, 0.0])), torch.stack([noise[0], x0[1]]))


def test_flow_shift_formula_and_errors(tmp_path):
    s = FlowMatchScheduler(shift=3.0)
    s.set_timesteps(10)
    unshifted = torch.linspace(1.0, s.sigma_min, 10, dtype=torch.float64)
    expected = 3.0 * unshifted / (1 + 2.0 * unshifted)
    assert rel_err(s.sigmas[:-1], expected) <= REL
    assert s.sigmas[0] == pytest.approx(1.0)
    assert torch.all(s.sigmas[:-1][1:] < s.sigmas[:-1][:-1])  # strictly decreasing
    with pytest.raises(ValueError, match="not one of"):
        s.step(torch.zeros(1), 123.456, torch.zeros(1))
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
        FlowMatchScheduler(use_dynamic_shifting=True)
