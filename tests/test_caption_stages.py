"""The caption job on a small local Ray: actor pools over VideoRecords with real H.264 clips."""

import dataclasses
import io
import json

import av
import cv2
import numpy as np
import pytest

from pipeline.records import ClipRecord, Keyframe, VideoRecord
from pipeline.stage import from_batch, map_stages, to_batch

from captioner.smoke import build_smoke_models
from captioner.stages import CaptionStage, build_stages


def make_mp4(seed: int, seconds: float = 3.0, fps: int = 8, size=(48, 64)) -> bytes:
    """A tiny H.264 clip (moving colour blocks) built in memory with PyAV."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        base = rng.integers(0, 255, (size[0], size[1], 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            frame = np.roll(base, 2 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def make_record(name: str, seed: int, with_keyframes: bool) -> VideoRecord:
    mp4 = make_mp4(seed)
    keyframes = []
    if with_keyframes:  # like the curation scan: a regular grid inside the clip
        with av.open(io.BytesIO(mp4)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i % 4 == 0:
                    rgb = frame.to_ndarray(format="rgb24")
                    keyframes.append(Keyframe(i, float(frame.time), cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes()))
    row = {"clip_id": f"{name}-0", "start_s": 0.0, "end_s": 3.0, "kept": True}
    return VideoRecord(f"{name}.mp4", video={"status": "ok"}, clips=[ClipRecord(row=row, mp4=mp4, keyframes=keyframes)])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return build_smoke_models(tmp_path_factory.getbasetemp() / "caption-smoke-models")


def test_caption_stage_writes_contract_columns_and_decodes_mp4(smoke):
    import torch

    threads = torch.get_num_threads()
    try:
        records = [make_record("a", 0, with_keyframes=False), make_record("b", 1, with_keyframes=True)]
        CaptionStage(smoke).process(records)
    finally:
        torch.set_num_threads(threads)
    for record in records:
        row = record.clips[0].row
        assert row["caption_status"] in ("ok", "failed")
        assert (row["caption"] is not None) == (row["caption_status"] == "ok")
        prov = json.loads(row["caption_provenance"])
        assert prov["smoke_test"] is True
        assert prov["keyframes"]["times_s"] == [1.0]
    sources = [json.loads(r.clips[0].row["caption_provenance"])["keyframes"]["sources"] for r in records]
    assert sources == [["mp4"], ["scan"]]


def test_caption_stage_isolates_a_broken_clip(smoke):
    good = make_record("good", 2, with_keyframes=False)
    broken = make_record("broken", 3, with_keyframes=False)
    broken.clips[0].mp4 = b"\x00\x00 not an mp4"
    stage = CaptionStage(smoke)
    stage.process([good, broken])
    assert good.clips[0].row["caption_status"] in ("ok", "failed") and good.clips[0].row.get("caption_provenance")
    row = broken.clips[0].row
    assert row["caption_status"] == "failed" and row["caption_error"].startswith("keyframes:")
    assert broken.clips[0].kept  # kept unless guards.reject_clip_on_failure


@pytest.mark.slow
def test_two_actor_caption_pool_on_local_ray(smoke):
    """The caption stage as a two-actor pool, run the way the driver runs every stage."""
    ray = pytest.importorskip("ray")
    job = dataclasses.replace(smoke, caption=dataclasses.replace(smoke.caption, num_cpus=0.5, concurrency=2, batch_size=1))
    records = [make_record(f"v{i}", i, with_keyframes=i % 2 == 0) for i in range(4)]
    records[3].clips[0].mp4 = b"broken"  # fails alone
    stages = [(cls, cfg) for cls, cfg in build_stages(job) if cls is CaptionStage]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"record": to_batch([r])["record"][0]} for r in records], override_num_blocks=4)
        ds = map_stages(ds, stages)
        out = {r.path: r for batch in ds.iter_batches(batch_format="numpy", batch_size=None) for r in from_batch(batch)}
    finally:
        ray.shutdown()
    assert sorted(out) == sorted(r.path for r in records)
    for path, record in out.items():
        row = record.clips[0].row
        assert record.clips[0].kept
        if path == "v3.mp4":
            assert row["caption_status"] == "failed" and row["caption_error"].startswith("keyframes:")
        else:
            assert row["caption_status"] in ("ok", "failed") and json.loads(row["caption_provenance"])["smoke_test"]
