"""open_clip-based stages with a tiny local open_clip model: aesthetic, dedup, caption–frame score."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from pipeline.records import ClipRecord, Keyframe, VideoRecord

from captioner.clip_models import AestheticHead, ClipEmbedder, DuplicateIndex
from captioner.config import AestheticConfig, ClipScoreConfig, DedupConfig
from captioner.smoke import build_aesthetic_head, build_tiny_clip
from captioner.stages import EMB_KEY, AestheticStage, ClipScoreStage, DuplicateStage, build_stages


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "clip-smoke"
    build_tiny_clip(folder / "clip")
    from captioner.config import CaptionJobConfig, ClipModelConfig, ClipStagesConfig

    return CaptionJobConfig(
        clip=ClipStagesConfig(model=ClipModelConfig(model=f"local-dir:{folder / 'clip'}", pretrained=None)),
        aesthetic=AestheticConfig(weights=str(build_aesthetic_head(folder / "head.safetensors")), threshold=None),
        dedup=DedupConfig(threshold=0.999),
        clip_score=ClipScoreConfig(),
    )


def _jpeg(image):
    return cv2.imencode(".jpg", image[:, :, ::-1])[1].tobytes()


def _clip(clip_id, seed, start=0.0, end=4.0):
    rng = np.random.default_rng(seed)
    keyframes = []
    for i, t in enumerate(np.arange(start, end, 0.5)):
        image = np.clip(rng.integers(0, 255, (1, 1, 3)) + rng.integers(-20, 20, (36, 48, 3)), 0, 255).astype(np.uint8)
        keyframes.append(Keyframe(i, float(t), _jpeg(image)))
    row = {"clip_id": clip_id, "start_s": start, "end_s": end, "kept": True}
    return ClipRecord(row=row, mp4=None, keyframes=keyframes)


def test_aesthetic_head_loads_both_weight_formats_and_scores(tmp_path):
    path = build_aesthetic_head(tmp_path / "head.safetensors")
    head = AestheticHead.load(path)
    pth = tmp_path / "head.pth"
    torch.save(head.state_dict(), pth)
    assert list(head.state_dict()) == [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]
    emb = np.random.default_rng(0).normal(size=(3, 768)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert np.allclose(head.score(emb), AestheticHead.load(pth).score(emb))
    assert head.score(emb).shape == (3,)
    with pytest.raises(ValueError, match="768-d"):
        head.score(emb[:, :512])
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="layers.0.weight"):
        AestheticHead.load(bad)


def test_aesthetic_stage_scores_and_rejects_below_threshold(job):
    record = VideoRecord("a.mp4", video={"status": "ok"}, clips=[_clip("c0", 0), _clip("c1", 1)])
    stage = AestheticStage(job)
    stage.process([record])
    scores = [c.row["aesthetic"] for c in record.clips]
    assert all(isinstance(s, float) for s in scores) and all(c.kept for c in record.clips)
    emb = record.clips[0].extras[EMB_KEY]["emb"]
    assert emb.shape == (2, 768) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert scores[0] != scores[1]
    threshold = (scores[0] + scores[1]) / 2
    cutoff = dataclasses.replace(job, aesthetic=dataclasses.replace(job.aesthetic, threshold=threshold))
    record2 = VideoRecord("a.mp4", video={"status": "ok"}, clips=[_clip("c0", 0), _clip("c1", 1)])
    AestheticStage(cutoff).process([record2])
    low = int(np.argmin(scores))
    assert not record2.clips[low].kept and record2.clips[low].row["reject_reason"] == "aesthetic"
    assert record2.clips[1 - low].kept


def test_dedup_rejects_a_duplicate_and_keeps_distinct_clips(job):
    a, b, copy = _clip("a", 0), _clip("b", 1), _clip("a-copy", 0)
    stage = DuplicateStage(job)
    stage.process([VideoRecord("v1.mp4", video={"status": "ok"}, clips=[a, b])])
    stage.process([VideoRecord("v2.mp4", video={"status": "ok"}, clips=[copy])])
    assert a.kept and b.kept
    assert not copy.kept and copy.row["reject_reason"] == "duplicate" and copy.row["duplicate_of"] == "a"
    assert DuplicateStage.resources(job).concurrency == 1


def test_duplicate_index_is_bounded():
    index = DuplicateIndex(threshold=0.99, capacity=3)
    vectors = np.eye(5, dtype=np.float32)
    for i in range(5):
        index.add(f"c{i}", vectors[i])
    assert len(index) == 3
    assert index.match(vectors[0]) is None  # forgotten
    assert index.match(vectors[4]) == ("c4", 1.0)


def test_sentence_wise_clip_score_handles_captions_over_77_tokens(job):
    embedder = ClipEmbedder(job.clip.model)
    long_sentence = "A " + " and ".join(f"red{i} ball" for i in range(60)) + " roll across the floor."
    caption = "A dog runs on the grass. " + long_sentence + " The camera pans left."
    assert embedder.count_tokens(long_sentence) > 75
    windows = embedder.text_windows(caption)
    assert windows[0] == ("A dog runs on the grass.", embedder.count_tokens("A dog runs on the grass."))
    assert len(windows) >= 4 and all(n <= 75 for _, n in windows)
    assert " ".join(t for t, _ in windows) == caption  # nothing dropped
    clip = _clip("c", 3)
    clip.row.update(caption=caption, caption_status="ok")
    record = VideoRecord("v.mp4", video={"status": "ok"}, clips=[clip])
    ClipScoreStage(job).process([record])
    assert -100.0 <= clip.row["clip_score"] <= 100.0


def test_a_stage_raising_on_one_clip_fails_that_clip_alone(job):
    good, broken, other = _clip("good", 0), _clip("broken", 1), _clip("other", 2)
    broken.keyframes = [Keyframe(0, 0.5, b"not a jpeg")]
    records = [VideoRecord("v1.mp4", video={"status": "ok"}, clips=[good, broken]),
               VideoRecord("v2.mp4", video={"status": "ok"}, clips=[other])]
    AestheticStage(job).process(records)
    assert good.kept and other.kept and good.row["aesthetic"] is not None
    assert not broken.kept and broken.row["reject_reason"] == "error:aesthetic" and "aesthetic" in broken.row["error"]
    assert all(r.ok for r in records)


def test_build_stages_order_and_skips(job):
    assert [cls.name for cls, _ in build_stages(job)] == ["aesthetic", "duplicate", "clip_score"]
    only = dataclasses.replace(job, aesthetic=None, dedup=None)
    assert [cls.name for cls, _ in build_stages(only)] == ["clip_score"]
