"""Extraction is frame-accurate whatever the source's container and codec: every kept clip holds
exactly the frames [start_frame, end_frame) of the scan's numbering (presentation order), also
where timestamps are odd (Matroska's 1/1000 time base, AVI's pts-less B-frames, MPEG program
streams whose seeks land late, a raw H.264 stream with no timestamps at all, variable frame
rate); non-square pixels come out square, full-range pictures limited-range, BT.709 pictures
tagged BT.709, HDR pictures SDR, interlaced pictures progressive."""

from __future__ import annotations

import io
import itertools
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from pipeline.colour import COLOUR_TAGS
from pipeline.records import VideoRecord
from pipeline.samples import ShotSpec, make_hdr_copy, make_interlaced_copy, make_video, set_display_rotation, source_names
from pipeline.scan import rotate_upright, scan_video

from curation_helpers import gray_frames, run_on, sample_stages

VARIANTS = {
    # file name: (format, codec, encoder options)
    "h264.mkv": ("matroska", "libx264", {"preset": "ultrafast", "bf": "2"}),
    "vp9.webm": ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
    "hevc.mp4": ("mp4", "libx265", {"preset": "ultrafast", "x265-params": "log-level=error:bframes=3"}),  # phones
    "av1.mp4": ("mp4", "libsvtav1", {"preset": "12", "svtav1-params": "keyint=48"}),  # YouTube's default download
    "mpeg4_bframes.avi": ("avi", "mpeg4", {"bf": "2", "b": "4000000"}),
    "mpeg2_bframes.mpg": ("mpeg", "mpeg2video", {"bf": "2", "b": "4000000"}),
    "raw.h264": ("h264", "libx264", {"preset": "ultrafast", "bf": "2"}),
    "vfr.mp4": ("mp4", "libx264", {"preset": "ultrafast"}),
}
FRAME_MS = {"vfr.mp4": [30, 50, 40]}  # variable frame rate: frame i lasts FRAME_MS[i % 3] ms
BT709 = 1  # the value of AVCOL_SPC_BT709, AVCOL_PRI_BT709 and AVCOL_TRC_BT709


def assert_constant_rate(mp4: bytes, fps: float) -> None:
    """The clip's frames are shown 1/fps apart from time 0, and its stream says so."""
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        times = np.array([float(f.time) for f in container.decode(stream)])
        assert abs(float(stream.average_rate) - fps) < 1e-3, (stream.average_rate, fps)
    np.testing.assert_allclose(times, np.arange(len(times)) / fps, atol=1e-3)


def reencode(
    source: str,
    path,
    fmt: str,
    codec: str,
    options: dict,
    frame_ms: list[int] | None = None,
    *,
    size: tuple[int, int] | None = None,
    sample_aspect: Fraction | None = None,
    pix_fmt: str = "yuv420p",
    color_range: int | None = None,
    bt709: bool = False,
) -> None:
    """Re-encode ``source``; with ``frame_ms``, frame i lasts ``frame_ms[i % len]`` ms (variable rate);
    ``size`` stores the pictures at another size (with ``sample_aspect`` to show them at the old one);
    ``color_range`` 2 writes full-range (JPEG) values; ``bt709`` converts with the BT.709 matrix and
    says so in the stream (matrix, primaries and transfer), as HD cameras do."""
    with av.open(source) as src:
        stream = src.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
    width, height = size or (frames[0].shape[1], frames[0].shape[0])
    with av.open(str(path), "w", format=fmt) as out:
        encoder = out.add_stream(codec, rate=Fraction(rate))
        encoder.width, encoder.height, encoder.pix_fmt = width, height, pix_fmt
        encoder.options = options
        if sample_aspect:
            encoder.codec_context.sample_aspect_ratio = sample_aspect
        if color_range:
            encoder.codec_context.color_range = color_range
        if bt709:
            for tag in COLOUR_TAGS:
                setattr(encoder.codec_context, tag, BT709)
        if frame_ms:
            encoder.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if bt709:
                for tag in COLOUR_TAGS:
                    setattr(frame, tag, BT709)
            if size or color_range or bt709:
                frame = frame.reformat(width, height, format=pix_fmt, interpolation="AREA", dst_color_range=color_range)
            if frame_ms:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += frame_ms[i % len(frame_ms)]
            out.mux(encoder.encode(frame))
        out.mux(encoder.encode())


def kept_clips_rgb(record: VideoRecord) -> dict[tuple[int, int], np.ndarray]:
    """The RGB frames of each kept clip of a curated ``record`` as PyAV reads them, by span."""
    clips = {}
    for clip in (c for c in record.clips if c.kept):
        with av.open(io.BytesIO(clip.mp4)) as container:
            rgb = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
        clips[(clip.row["start_frame"], clip.row["end_frame"])] = np.stack(rgb)
    return clips


def curate(path, **extract) -> VideoRecord:
    """One video through every CPU stage, as a Ray task runs them."""
    return run_on(VideoRecord(path=str(path)), sample_stages(**extract))


@pytest.mark.parametrize("seeks", ["none: from the frame cache", "at keyframes", "before every clip"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_clips_hold_exactly_their_frames_in_any_container(sample_corpus, tmp_path, name, seeks):
    """Extraction takes the clips from the scan's frame cache, or with the cache off decodes them
    again, seeking where the probe's keyframe index says that decodes less, or (index dropped,
    ``seek_gap_s`` 0) before every clip: the same frames every way."""
    path = tmp_path / name
    reencode(sample_corpus[1].path, path, *VARIANTS[name], frame_ms=FRAME_MS.get(name))
    cached = seeks.startswith("none")
    stages = sample_stages(seek_gap_s=0.0, frame_cache_mb=512 if cached else 0)
    record = run_on(VideoRecord(path=str(path)), stages[:-1])
    assert record.video["status"] == "ok", record.video.get("error")
    assert (record.frame_cache is not None) == cached
    if seeks == "before every clip":
        record.probe.keyframe_times_s = None
    record = run_on(record, stages[-1:])
    assert record.video["status"] == "ok", record.video.get("error")
    kept = record.kept_clips()
    assert kept, "no clip kept: nothing to check"
    source = gray_frames(path)  # the decoder's own order: what the scan numbered
    for clip in kept:
        a, b = clip.row["start_frame"], clip.row["end_frame"]
        frames = gray_frames(clip.mp4)
        assert len(frames) == b - a == clip.row["num_frames"]
        assert_constant_rate(clip.mp4, clip.row["fps"])
        for k in (0, len(frames) // 2, len(frames) - 1):
            errors = {d: np.abs(frames[k] - source[a + k + d]).mean() for d in (-1, 0, 1) if 0 <= a + k + d < len(source)}
            assert min(errors, key=errors.get) == 0, (name, a, b, k, errors)


def test_stream_cut_mid_gop_counts_the_frames_that_decode(sample_corpus, tmp_path):
    """An MPEG-TS recording cut in the middle of a GOP: the frames before the first keyframe do not
    decode. ``frame_count`` is the frames that do (the clips' numbering), not the packets."""
    whole = tmp_path / "whole.ts"
    reencode(sample_corpus[1].path, whole, "mpegts", "libx264", {"preset": "ultrafast", "g": "24"})
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[len(data) // 3 // 188 * 188 :])  # whole 188-byte transport packets
    with av.open(str(cut)) as container:
        decodable = sum(1 for _ in container.decode(video=0))
    with av.open(str(cut)) as container:
        packets = sum(1 for p in container.demux(video=0) if p.size)
    record = curate(cut)
    assert record.video["status"] == "ok", record.video.get("error")
    assert packets > decodable and record.video["frame_count"] == decodable


def with_cover_picture(source: str, path) -> None:
    """``source`` remuxed into Matroska behind a cover picture: a one-frame MJPEG video stream listed
    first, as a thumbnail embedded by a downloader or tagger can be."""
    with av.open(source) as src, av.open(str(path), "w") as out:
        video_in = src.streams.video[0]
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 160, 90, "yuvj420p"
        video = out.add_stream_from_template(video_in)
        picture = av.VideoFrame.from_ndarray(np.full((90, 160, 3), 200, np.uint8), format="rgb24")
        picture = picture.reformat(format="yuvj420p")
        picture.pts, picture.time_base = 0, Fraction(1, 1)
        for packet in [*cover.encode(picture), *cover.encode()]:
            out.mux(packet)
        for packet in src.demux(video_in):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)


def test_cover_picture_listed_first_is_not_the_video(sample_corpus, tmp_path):
    """The video stream curated is the moving one (FFmpeg's best stream), not a cover picture that
    comes first: before, such files failed as "1 frame: not a video"."""
    from model.video_io import read_video

    path = tmp_path / "with_cover.mkv"
    with_cover_picture(sample_corpus[1].path, path)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
    original, covered = curate(sample_corpus[1].path), curate(path)
    assert covered.video["status"] == "ok", covered.video.get("error")
    assert covered.video["frame_count"] == original.video["frame_count"] == sample_corpus[1].num_frames
    spans = lambda record: [(c.row["start_frame"], c.row["end_frame"], c.row["num_frames"]) for c in record.kept_clips()]  # noqa: E731
    assert spans(covered) == spans(original) and spans(original)
    frames, _ = read_video(path)  # the editing command's reader
    assert len(frames) == sample_corpus[1].num_frames


def test_variable_frame_rate_source_resampled_to_a_fixed_rate(sample_corpus, tmp_path):
    """A VFR source is probed as VFR; resampled to 8 fps, each output frame is the source frame
    nearest its time, and the clip lasts as long as its span in the source."""
    path = tmp_path / "vfr.mp4"
    reencode(sample_corpus[0].path, path, *VARIANTS["vfr.mp4"], frame_ms=FRAME_MS["vfr.mp4"])
    with av.open(str(path)) as container:
        times = np.array([float(f.time) for f in container.decode(video=0)])
    times -= times[0]  # the scan's times count from the first frame
    assert set(np.round(np.diff(times) * 1000).astype(int)) == {30, 40, 50}  # really VFR
    record = curate(path, fps=8.0)
    assert record.video["status"] == "ok", record.video.get("error")
    assert record.video["vfr"]
    kept = record.kept_clips()
    assert kept
    source = gray_frames(path)
    for clip in kept:
        frames = gray_frames(clip.mp4)
        duration = clip.row["end_s"] - clip.row["start_s"]
        assert clip.row["fps"] == 8.0 and len(frames) == clip.row["num_frames"]
        assert_constant_rate(clip.mp4, 8.0)
        assert abs(len(frames) - duration * 8) <= 1, (len(frames), duration)
        for k, frame in enumerate(frames):
            nearest = int(np.argmin(np.abs(times - (clip.row["start_s"] + k / 8))))
            errors = np.array([np.abs(frame - s).mean() for s in source])
            assert errors[nearest] <= errors.min() + 1e-3, (k, nearest, int(errors.argmin()))


def test_anamorphic_source_is_extracted_with_square_pixels(sample_corpus, tmp_path):
    """Non-square pixels (stored 240x180, shown 320x180: sample aspect 4:3, as DVDs and HDV store
    wide pictures) are probed, analysed and extracted at the shown size: the clips equal the
    square-pixel original, frame for frame."""
    original = sample_corpus[0].path
    path = tmp_path / "anamorphic.mp4"
    options = {"preset": "ultrafast", "crf": "12"}
    reencode(original, path, "mp4", "libx264", options, size=(240, 180), sample_aspect=Fraction(4, 3))
    stages = sample_stages()
    record = run_on(VideoRecord(path=str(path)), stages[:-1])
    assert (record.video["width"], record.video["height"]) == (320, 180)
    assert record.scan.analysis_size == (160, 90) and (record.scan.width, record.scan.height) == (320, 180)
    record = run_on(record, stages[-1:])
    assert record.video["status"] == "ok", record.video.get("error")
    kept = record.kept_clips()
    assert kept
    reference = gray_frames(original)
    for clip in kept:
        assert (clip.row["width"], clip.row["height"]) == (320, 180)
        a = clip.row["start_frame"]
        for k, frame in enumerate(gray_frames(clip.mp4)):
            assert frame.shape == (180, 320)
            assert np.abs(frame - reference[a + k]).mean() < 8.0


def test_full_range_source_comes_out_limited_range(sample_corpus, tmp_path):
    """A full-range source (luma 0-255, as some phones and MJPEG record) is converted to the limited
    range every decoder assumes of the clips: they look like the clips of the limited-range original
    (without the conversion their contrast was stretched by 255/219)."""
    original = sample_corpus[1].path
    path = tmp_path / "full_range.mp4"
    options = {"preset": "ultrafast", "crf": "12"}
    reencode(original, path, "mp4", "libx264", options, pix_fmt="yuvj420p", color_range=2)  # 2: full (JPEG) range
    reference, full = kept_clips_rgb(curate(original)), kept_clips_rgb(curate(path))
    assert reference and full.keys() == reference.keys()
    for span, clip in full.items():
        assert np.abs(clip - reference[span]).mean() < 6.0, span
        assert 0.95 < clip.std() / reference[span].std() < 1.05, span


@pytest.mark.parametrize("rotation", [0, -90])
def test_bt709_source_keeps_its_colours(sample_corpus, tmp_path, rotation):
    """An HD camera's BT.709 pictures, tagged so in the stream, come out tagged BT.709: readers see
    the source's colours (untagged, they were read as BT.601, which shifts every colour). Also
    through the rotation path, which turns the pictures in RGB and converts them back."""
    import decord

    original = sample_corpus[1].path
    path = tmp_path / "bt709.mp4"
    reencode(original, path, "mp4", "libx264", {"preset": "ultrafast", "crf": "12"}, bt709=True)
    if rotation:
        set_display_rotation(path, rotation)
    record = curate(path)
    reference, tagged = kept_clips_rgb(curate(original)), kept_clips_rgb(record)
    common = tagged.keys() & reference.keys()  # the colour change can move a cut by a frame
    assert len(tagged) == len(reference) and len(common) >= len(reference) - 1, (tagged.keys(), reference.keys())
    for span in common:
        clip = tagged[span]
        expected = np.stack([rotate_upright(frame, rotation) for frame in reference[span]])
        # mean change per channel: re-encoding darkens all three alike by 1-2 levels; read as BT.601
        # the clip was off by (-7.8, -15.0, -3.8), mean absolute difference 9.9 (4.2 now)
        shift = (clip - expected).mean(axis=(0, 1, 2))
        assert np.ptp(shift) < 2.0 and np.abs(clip - expected).mean() < 6.0, (span, shift)
    clip = next(c for c in record.clips if c.kept)
    with av.open(io.BytesIO(clip.mp4)) as container:
        stream = container.streams.video[0].codec_context
        assert [getattr(stream, tag) for tag in COLOUR_TAGS] == [BT709] * 3
    first = decord.VideoReader(io.BytesIO(clip.mp4))[0].asnumpy().astype(np.float32)  # as training reads it
    assert np.abs(first - tagged[(clip.row["start_frame"], clip.row["end_frame"])][0]).mean() < 1.0


@pytest.mark.parametrize("transfer, rotation", [("PQ", 0), ("HLG", 0), ("HLG", -90)])
def test_hdr_source_comes_out_sdr(sample_corpus, tmp_path, transfer, rotation):
    """A phone's HDR video (10-bit BT.2020, PQ or HLG; iPhones film portrait HLG) comes out as SDR
    BT.709 clips that look like the clips of the SDR original, and the scan's brightness and
    sharpness are those of the SDR pictures. Kept as HDR (``hdr_to_sdr: null``), the clips say PQ/HLG,
    which decord and most readers ignore: every colour off (mean absolute difference 36 for PQ)."""
    original = sample_corpus[1].path
    path = tmp_path / f"{transfer}.mp4"
    make_hdr_copy(original, path, transfer)
    if rotation:
        set_display_rotation(path, rotation)
    reference_record, record = curate(original), curate(path)
    reference, converted = kept_clips_rgb(reference_record), kept_clips_rgb(record)
    common = converted.keys() & reference.keys()
    assert len(converted) == len(reference) and len(common) >= len(reference) - 1, (converted.keys(), reference.keys())
    for span in common:
        expected = np.stack([rotate_upright(frame, rotation) for frame in reference[span]])
        shift = (converted[span] - expected).mean(axis=(0, 1, 2))  # ~0.3 levels (2.6 mean absolute)
        assert np.abs(shift).max() < 2.0 and np.abs(converted[span] - expected).mean() < 6.0, (span, shift)
    by_span = {(c.row["start_frame"], c.row["end_frame"]): c.row for c in reference_record.clips}
    for clip in record.clips:
        row = by_span.get((clip.row["start_frame"], clip.row["end_frame"]))
        if row is not None:
            assert abs(clip.row["brightness"] - row["brightness"]) < 4.0
            assert 0.7 < clip.row["sharpness"] / row["sharpness"] < 1.4  # unconverted PQ: 0.33
    clip = next(c for c in record.clips if c.kept)
    with av.open(io.BytesIO(clip.mp4)) as container:
        stream = container.streams.video[0].codec_context
        assert [getattr(stream, tag) for tag in COLOUR_TAGS] == [BT709] * 3
    if transfer == "PQ":
        kept_hdr = kept_clips_rgb(curate(path, hdr_to_sdr=None))
        assert any(np.abs(kept_hdr[span] - reference[span]).mean() > 20.0 for span in common & kept_hdr.keys())


@pytest.mark.parametrize("intent", ["relative_colorimetric", "perceptual"])
def test_hdr_brightness_is_the_clips_whatever_the_intent(sample_corpus, tmp_path, intent):
    """The brightness the filters judge (the clip row's) is the mean luma of the clip as written, with
    either rendering intent: analysed as relative while the clips were perceptual (darker), a PQ clip
    showing mean luma 98 had brightness 153 in its row."""
    path = tmp_path / "PQ.mp4"
    make_hdr_copy(sample_corpus[1].path, path, "PQ")
    record = curate(path, hdr_to_sdr=intent)
    kept = record.kept_clips()
    assert kept
    for clip in kept:
        luma = np.mean([frame.mean() for frame in gray_frames(clip.mp4)])
        assert abs(clip.row["brightness"] - luma) < 3.0, (intent, clip.row["start_frame"], clip.row["brightness"], luma)


def test_hdr_source_ffmpeg_cannot_convert_fails_with_the_reason(sample_corpus, tmp_path):
    """PQ pictures with the ICtCp matrix: FFmpeg's colour management cannot make them SDR, so the video
    ends failed, the reason saying so (the swscale error was reported as "cannot decode any frame")."""
    hdr, ictcp = tmp_path / "pq.mp4", tmp_path / "ictcp.mp4"
    make_hdr_copy(sample_corpus[1].path, hdr, "PQ")
    with av.open(str(hdr)) as src, av.open(str(ictcp), "w") as out:
        stream = src.streams.video[0]
        encoder = out.add_stream("libx264", rate=stream.average_rate)
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p10le"
        encoder.options = {"preset": "ultrafast"}
        context = encoder.codec_context
        context.color_primaries, context.color_trc, context.colorspace, context.color_range = 9, 16, 14, 1
        for frame in itertools.islice(src.decode(stream), 60):
            frame.colorspace = 14
            out.mux(encoder.encode(frame))
        out.mux(encoder.encode())
    record = curate(ictcp)
    assert record.video["status"] == "failed"
    assert "cannot convert PQ BT.2020 pictures (matrix ICtCp) to SDR BT.709" in record.video["error"]


def combing(gray: np.ndarray) -> float:
    """How combed a picture is: lines against their neighbours' mean, over lines against those two
    away (the same field). Progressive pictures ~0.4; two fields of a moving picture woven: > 1."""
    g = gray.astype(np.float32)
    adjacent = np.abs(g[1:-1] - 0.5 * (g[:-2] + g[2:])).mean()
    same_field = np.abs(g[2:-2] - 0.5 * (g[:-4] + g[4:])).mean()
    return float(adjacent / max(same_field, 1e-6))


@pytest.fixture(scope="module")
def interlaced_video(tmp_path_factory):
    """A camcorder-style 50i video (top field first, a keyframe every second) made from two 50p pans,
    and the 50p original: interlaced frame k = 50p frames 2k (top field) and 2k + 1."""
    folder = tmp_path_factory.mktemp("interlaced")
    names = source_names()
    shots = [ShotSpec("pan", names[0], 160), ShotSpec("pan", names[3], 160)]
    progressive = make_video(folder / "p50.mp4", shots, fps=50, size=(320, 180), seed=3)
    make_interlaced_copy(progressive.path, folder / "i25.mp4")
    return folder / "i25.mp4", gray_frames(progressive.path)


@pytest.mark.parametrize("seeks", ["at keyframes", "before every clip"])
def test_interlaced_source_comes_out_progressive(interlaced_video, seeks):
    """Interlaced frames are deinterlaced (bwdif), one progressive frame per frame: each clip frame
    is the top field's instant (50p frame 2k, not 2k + 1) without the comb, the numbering exact, after
    a seek to a keyframe too (the deinterlacer restarts there; index dropped: a seek before every
    clip). Without deinterlacing the clips are combed."""
    path, progressive = interlaced_video
    stages = sample_stages(seek_gap_s=0.0)
    record = run_on(VideoRecord(path=str(path)), stages[:-1])
    assert record.frame_cache is None  # bwdif is fed from each seek: no frame cache
    if seeks == "before every clip":
        record.probe.keyframe_times_s = None
    record = run_on(record, stages[-1:])
    assert record.video["interlaced"] and record.video["status"] == "ok"
    kept = record.kept_clips()
    assert len(kept) == 2, [(c.row["start_frame"], c.row["reject_reason"]) for c in record.clips]
    reference_combing = np.mean([combing(frame) for frame in progressive[::2]])  # ~0.4
    combed = {c.row["start_frame"]: gray_frames(c.mp4) for c in curate(path, deinterlace=False).kept_clips()}
    for clip in kept:
        a = clip.row["start_frame"]
        frames = gray_frames(clip.mp4)
        assert len(frames) == clip.row["end_frame"] - a == clip.row["num_frames"]
        assert np.mean([combing(f) for f in frames]) < 1.3 * reference_combing
        assert np.mean([combing(f) for f in combed[a]]) > 1.6 * reference_combing  # the source is combed
        top = np.mean([np.abs(f - progressive[2 * (a + j)]).mean() for j, f in enumerate(frames)])
        bottom = np.mean([np.abs(f - progressive[2 * (a + j) + 1]).mean() for j, f in enumerate(frames)])
        assert top < 4.0 and top < 0.6 * bottom, (a, top, bottom)


def test_keyframes_of_interlaced_frames_show_one_instant(interlaced_video):
    """The scan's keyframes of interlaced frames come from their top field: the picture at one
    instant (50p frame 2k), not two fields blended into a double image."""
    path, progressive = interlaced_video
    scan = scan_video(str(path))
    assert scan.keyframes
    for key in scan.keyframes:
        image = cv2.imdecode(np.frombuffer(key.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        size = (image.shape[1], image.shape[0])
        top, bottom = (
            np.abs(image - cv2.resize(progressive[2 * key.frame_index + d], size, interpolation=cv2.INTER_AREA)).mean()
            for d in (0, 1)
        )
        assert top < 0.6 * bottom, (key.frame_index, top, bottom)


@pytest.mark.parametrize("name", ["h264.mkv", "mpeg2_bframes.mpg", "raw.h264"])
def test_probe_lists_the_keyframes(sample_corpus, tmp_path, name):
    """The probe's keyframe times (where a seek can land) are the times of the frames the decoder
    marks as keyframes; none for a stream without timestamps (never seeked)."""
    from pipeline.probe import probe_video

    path = tmp_path / name
    reencode(sample_corpus[1].path, path, *VARIANTS[name])
    with av.open(str(path)) as container:
        keyframes = [float(f.time) for f in container.decode(video=0) if f.key_frame and f.time is not None]
    listed = probe_video(str(path)).keyframe_times_s
    if name == "raw.h264":
        assert listed is None
    else:
        assert len(keyframes) >= 2
        np.testing.assert_allclose(listed, keyframes, atol=1e-6)


def test_seek_only_where_it_saves_decoding():
    """With the keyframes known, seek iff one lies after the next frame to decode and at or before
    the clip's first frame; without them, iff the gap exceeds ``seek_gap_s``."""
    from pipeline.extract import _seek_saves_decoding

    times = np.arange(100) / 25.0  # 25 fps, 4 s
    keyframes = np.array([0.0, 1.0, 2.0])  # frames 0, 25, 50
    assert _seek_saves_decoding(times, 10, 30, keyframes, 2.0)  # keyframe 25 lies between: start there
    assert not _seek_saves_decoding(times, 30, 45, keyframes, 2.0)  # nearest keyframe (25) already passed
    assert not _seek_saves_decoding(times, 24, 30, keyframes, 2.0)  # keyframe 25 is the next frame anyway
    assert _seek_saves_decoding(times, 23, 30, keyframes, 2.0)  # one frame saved
    assert _seek_saves_decoding(times, 10, 50, keyframes, 2.0)  # the clip starts on keyframe 50
    assert not _seek_saves_decoding(times, 10, 99, None, 4.0) and _seek_saves_decoding(times, 10, 99, None, 3.0)
