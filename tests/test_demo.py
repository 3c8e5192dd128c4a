"""`vidforge demo`: the main job runs the whole system on a generated corpus."""

import json
import subprocess
import sys

import av
import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "demo", "--output", str(out), "--videos", "3", "--train-steps", "4", "--num-cpus", "2"],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke-test" in proc.stdout or "laptop" in proc.stdout
    report = json.loads((out / "curated" / "report" / "report.json").read_text())
    assert report["funnel"]["inputs"] == 3 + 6 and report["funnel"]["kept_clips"] >= 1
    assert (out / "model" / "transformer" / "config.json").is_file()
    with av.open(str(out / "sample.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
