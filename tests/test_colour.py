"""HDR and wide-gamut frames to SDR BT.709 (pipeline.colour): the anchors of the mappings, checked
against the transfer functions' own formulas, and which frames are converted at all."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.colour import SdrConverter, UnsupportedColourError, describe, needs_sdr_conversion, sdr_converter
from pipeline.config import ConfigError, load_config
from pipeline.curate import CurateConfig
from pipeline.samples import hdr_frames

PQ, HLG, BT2020, BT709, BT601 = 16, 18, 9, 1, 6


def pq_code(nits: float) -> int:
    """10-bit limited-range code of ``nits`` cd/m² (SMPTE ST 2084 inverse EOTF)."""
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    y = (nits / 10000.0) ** m1
    return round(64 + 876 * ((c1 + c2 * y) / (1 + c3 * y)) ** m2)


def flat_frame(luma_code: int, transfer: int, primaries: int = BT2020, size=(64, 36)) -> av.VideoFrame:
    """A 10-bit grey frame (neutral chroma) tagged with ``transfer`` and ``primaries``."""
    frame = av.VideoFrame(*size, "yuv420p10le")
    for plane, value in zip(frame.planes, (luma_code, 512, 512)):
        np.frombuffer(plane, np.uint16)[:] = value
    frame.color_trc, frame.color_primaries, frame.colorspace, frame.color_range = transfer, primaries, BT2020, 1
    frame.pts, frame.time_base = 0, Fraction(1, 25)
    return frame


def sdr_luma(frame: av.VideoFrame, intent: str = "relative_colorimetric") -> float:
    out = sdr_converter(intent)(frame, 32, 18, "yuv420p")  # the process's converter: graphs set up once
    assert (out.color_trc, out.color_primaries, out.colorspace, out.color_range) == (BT709, BT709, BT709, 1)
    return float(out.to_ndarray()[:18].mean())  # the luma plane (limited range: 16 black, 235 white)


def test_reference_white_becomes_sdr_white():
    """HDR reference white (BT.2408: 203 cd/m² in PQ, 75 % of the HLG signal) is SDR white, black
    stays black; brighter PQ is clipped by the relative intent and rolled off by the perceptual one."""
    assert pq_code(203) == 573  # the formula's value, as BT.2408 tabulates it (58 % of the range)
    assert sdr_luma(flat_frame(pq_code(203), PQ)) == pytest.approx(235, abs=3)
    assert sdr_luma(flat_frame(64 + round(0.75 * 876), HLG)) == pytest.approx(235, abs=3)
    assert sdr_luma(flat_frame(64, PQ)) == pytest.approx(16, abs=1)
    assert sdr_luma(flat_frame(pq_code(1000), PQ)) == pytest.approx(235, abs=3)
    mid, bright = (sdr_luma(flat_frame(pq_code(nits), PQ), "perceptual") for nits in (203, 1000))
    assert 60 < mid < bright < 232, (mid, bright)


@pytest.mark.parametrize("transfer", ["PQ", "HLG"])
@pytest.mark.parametrize("format", ["bgr24", "yuv420p"])
def test_colours_survive_a_trip_through_hdr(transfer, format):
    """Saturated and skin colours made HDR (as a phone records them) come back as they were, into
    RGB (the scan's analysis frames, keyframes) and into YUV (the clips). swscale's own conversion
    straight into RGB was off by 11 levels in green on the magenta (now converted through YUV)."""
    colours = [(230, 30, 30), (30, 200, 40), (40, 40, 220), (150, 56, 143), (224, 172, 140), (128, 128, 128)]
    rgb = np.repeat(np.asarray(colours, np.uint8)[None, :, None], 16, axis=0).repeat(16, axis=2).reshape(16, -1, 3)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.colorspace = BT709
    frame = frame.reformat(format="yuv444p", dst_colorspace=BT709)  # as a camera records: BT.709 YUV
    for tag in ("colorspace", "color_primaries", "color_trc"):
        setattr(frame, tag, BT709)
    frame.pts, frame.time_base = 0, Fraction(1, 25)
    [hdr] = hdr_frames([frame], transfer)
    assert (hdr.color_trc, hdr.color_primaries) == ((PQ if transfer == "PQ" else HLG), BT2020)
    back = sdr_converter()(hdr, hdr.width, hdr.height, format).to_ndarray(format="rgb24").astype(float)
    patches = back.reshape(16, len(colours), 16, 3)[4:12, :, 4:12].mean(axis=(0, 2))  # patch centres
    # magenta, skin and grey within 3 levels; the saturated primaries' small components move more
    # (30 comes back 19-34, 40 as 39-46: the round trip through swscale's look-up tables)
    np.testing.assert_allclose(patches[3:], colours[3:], atol=3.0)
    np.testing.assert_allclose(patches[:3], colours[:3], atol=12.0)


def test_only_hdr_and_wide_gamut_frames_are_converted():
    assert needs_sdr_conversion(flat_frame(500, PQ)) and needs_sdr_conversion(flat_frame(500, HLG))
    assert needs_sdr_conversion(flat_frame(500, BT709, primaries=BT2020))  # SDR in BT.2020 colours
    sdr = flat_frame(500, BT709, primaries=BT709)
    assert not needs_sdr_conversion(sdr)
    sdr.color_trc = sdr.color_primaries = 2  # untagged
    assert not needs_sdr_conversion(sdr)
    assert describe(flat_frame(500, HLG)) == "HLG BT.2020" and describe(sdr) == "SDR"


def test_one_converter_serves_frames_of_any_size():
    convert = SdrConverter()
    for size, out_size in (((64, 36), (32, 18)), ((48, 64), (24, 32)), ((64, 36), (64, 36))):
        out = convert(flat_frame(pq_code(203), PQ, size=size), *out_size, "bgr24")
        assert (out.width, out.height, out.format.name) == (*out_size, "bgr24")
        assert np.abs(out.to_ndarray().astype(int) - 255).max() <= 4  # white


def test_intent_is_validated():
    with pytest.raises(ValueError, match="intent: expected one of relative_colorimetric, perceptual"):
        SdrConverter("clip")
    with pytest.raises(ConfigError, match="extract: hdr_to_sdr: expected one of relative_colorimetric, perceptual or null"):
        load_config(CurateConfig, None, ["extract.hdr_to_sdr=tonemap"])
    assert load_config(CurateConfig, None, ["extract.hdr_to_sdr=null"]).extract.hdr_to_sdr is None


def test_a_matrix_ffmpeg_cannot_convert_is_a_clear_error():
    """ICtCp (and BT.2020 constant-luminance) pictures: FFmpeg's colour management cannot convert them;
    the error says which pictures, every time (the failed set-up is not tried again)."""
    frame = flat_frame(pq_code(203), PQ)
    frame.colorspace = 14  # ICtCp
    convert = SdrConverter()
    for _ in range(2):
        with pytest.raises(UnsupportedColourError, match=r"cannot convert PQ BT.2020 pictures \(matrix ICtCp\) to SDR BT.709"):
            convert(frame, 32, 18, "yuv420p")
