"""`vidforge demo`: the main job runs the whole system on a generated corpus (the session's
``demo_output`` fixture runs it once, in a fresh process, and fails if it exits non-zero)."""

import json

import av
import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(demo_output):
    out = demo_output.root
    assert "smoke-test" in demo_output.stdout or "laptop" in demo_output.stdout
    report = json.loads((out / "curated" / "report" / "report.json").read_text())
    assert report["funnel"]["inputs"] == 3 + 6 and report["funnel"]["kept_clips"] >= 1
    assert (out / "model" / "transformer" / "config.json").is_file()
    with av.open(str(out / "sample.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
