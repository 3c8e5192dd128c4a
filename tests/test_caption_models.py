"""Tiny random VLM/LLM captioners loaded through the real loading path (no downloads)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from captioner.config import GuardConfig, load_caption_config
from captioner.dense import ClipJob, DenseCaptioner
from captioner.keyframes import FrameSample
from captioner.smoke import build_smoke_models, resolve_preset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return build_smoke_models(tmp_path_factory.getbasetemp() / "caption-smoke-models")


@pytest.fixture(scope="module")
def captioner(smoke):
    return DenseCaptioner(smoke.caption, smoke_test=True)


def _frames(seed, n=3, start=0.0):
    rng = np.random.default_rng(seed)
    return [FrameSample(start + 1 + 2 * i, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "scan") for i in range(n)]


def test_batched_and_single_greedy_frame_captions_are_identical(captioner):
    images = [f.image for f in _frames(1, n=5)]
    fc = captioner.frame_captioner
    batched = fc.caption(images)
    single = [fc.caption([img])[0] for img in images]
    assert batched == single
    assert len({text for text, _ in batched}) > 1  # different images, different captions


def test_batched_and_single_greedy_summaries_are_identical(captioner):
    items = [
        ([(1.0, "A dog runs on the beach."), (3.0, "The dog jumps into the waves.")], None),
        ([(1.0, "A city street at night with cars.")], "night traffic"),
        ([(1.0, "A chef slices peppers."), (3.0, "The chef stirs a pan."), (5.0, "Steam rises.")], None),
    ]
    sm = captioner.summariser
    assert sm.summarise(items) == [sm.summarise([item])[0] for item in items]


def test_summary_prompt_keys_frame_captions_by_second(captioner):
    messages = captioner.prompts.summary_messages([(1.2, "A dog."), (3.0, "A cat.")], "pets")
    assert "Second 1: A dog.\nSecond 3: A cat." in messages[1]["content"]
    assert "pets" in messages[1]["content"]
    assert "The video shows" in messages[0]["content"]  # the instruction forbidding it


def test_dense_captions_record_status_and_provenance(captioner, smoke):
    jobs = [ClipJob(_frames(s, start=10.0), 10.0, 16.0) for s in range(3)]
    results = captioner.caption(jobs)
    assert len(results) == 3
    for result in results:
        assert result.status in ("ok", "failed")
        if result.status == "ok":
            assert result.caption and result.error is None
            assert len(result.caption.split()) <= 100
        else:
            assert result.caption is None and result.error
        prov = result.provenance
        assert prov["smoke_test"] is True and prov["prompt_version"]
        assert prov["models"]["frame_captioner"]["source"] == "folder"
        assert prov["keyframes"]["times_s"] == [11.0, 13.0, 15.0]
        assert "seconds" in prov and "decoding" in prov
        json.dumps(prov)
        assert [fc["time_s"] for fc in result.frame_captions] == [11.0, 13.0, 15.0][: len(result.frame_captions)]


def test_defective_outputs_are_retried_then_recorded_failed(smoke):
    cfg = dataclasses.replace(smoke.caption, guards=GuardConfig(checks=["empty"], min_words=10_000))
    results = DenseCaptioner(cfg, smoke_test=True).caption([ClipJob(_frames(7, n=2), 0.0, 4.0)])
    (result,) = results
    assert result.status == "failed" and result.caption is None
    assert result.error.startswith("frame captions: empty:") and "after retry" in result.error
    assert result.provenance["retried_frames"] == 2
    assert len(result.provenance["frame_failures"]) == 2


def test_one_stage_mode_takes_keyframes_as_a_video(tmp_path_factory, smoke):
    folder = tmp_path_factory.getbasetemp() / "caption-smoke-models"
    cfg = build_smoke_models(folder, mode="one_stage")
    captioner = DenseCaptioner(cfg.caption, smoke_test=True)
    assert captioner.video_captioner.as_video
    jobs = [ClipJob(_frames(s, n=3), 0.0, 6.0) for s in range(2)]
    results = captioner.caption(jobs)
    single = captioner.video_captioner.caption([(jobs[0].frames, 0.0, 6.0)])
    assert captioner.video_captioner.caption([(j.frames, 0.0, 6.0) for j in jobs])[0] == single[0]
    assert all(r.provenance["mode"] == "one_stage" and r.status in ("ok", "failed") for r in results)


def test_presets_load_and_resolve_offline(tmp_path_factory):
    for name in ("laptop", "gpu"):
        cfg = load_caption_config(f"configs/caption/{name}.yaml")
        assert cfg.caption is not None and cfg.aesthetic.threshold == 4.5
    config, is_smoke, message = resolve_preset("laptop", tmp_path_factory.getbasetemp() / "caption-smoke-models")
    if is_smoke:
        assert config.smoke_test and "RANDOM" in message
    else:
        assert not config.smoke_test
