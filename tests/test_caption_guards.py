"""Degenerate-caption detection, the length budget and keyframe timing (no models)."""

import pytest

from captioner.config import KeyframeConfig
from captioner.guards import find_defect
from captioner.keyframes import keyframe_times
from captioner.length import enforce_length, estimate_t5_tokens, split_sentences, strip_opener

FRAME_PROMPT = (
    "Describe this image in detail: the main subjects and their appearance, what they are doing, "
    "the setting and background, the lighting and colours, and the camera's framing and angle."
)

GOOD = [
    "A woman in a blue raincoat walks a brown dog along a wet cobblestone street at dusk. "
    "Warm light spills from shop windows, and the camera tracks her from behind at shoulder height.",
    "Close-up of a chef's hands slicing red peppers on a wooden board; steam rises from a pan in the background.",
    "An aerial shot drifts over a pine forest toward a lake, where a small red boat leaves a white wake!",
    'A boy shouts "Look!" and points at the sky.',
]

DEFECTIVE = [
    ("", "empty"),
    ("   \n ", "empty"),
    ("Dog.", "empty"),
    ("A man in a grey suit stands next to a", "cut_off"),
    ("The image shows a kitchen with white cabinets, a steel fridge and a window that looks out onto", "cut_off"),
    ("A cat sits on a sofa. The cat sits on a sofa. The cat sits on a sofa. The cat sits on a sofa.", "repetition"),
    ("The scene shows a street with cars, cars, cars, cars, cars and more cars parked along it.", "repetition"),
    ("A beach at sunset with waves and the the the the the the the sand.", "repetition"),
    ("A red car on the road and a red car on the road and a red car on the road and a red car on the road.", "repetition"),
    ("A bird flies over a lake. Trees line the shore. A bird flies over a lake.", "repetition"),
    ("I'm sorry, but I can't help with identifying people in this image.", "refusal"),
    ("As an AI language model, I cannot see images, but I can help you write a caption.", "refusal"),
    ("I don't see an image attached to your message. Could you please share it?", "refusal"),
    ("It seems no image was provided. Please upload the picture you want described.", "refusal"),
    (
        "Describe this image in detail: the main subjects and their appearance, what they are doing, "
        "the setting and background.",
        "prompt_echo",
    ),
]


@pytest.mark.parametrize("text", GOOD)
def test_good_captions_pass(text):
    assert find_defect(text, FRAME_PROMPT) is None


@pytest.mark.parametrize("text,kind", DEFECTIVE)
def test_degenerate_captions_are_caught(text, kind):
    reason = find_defect(text, FRAME_PROMPT)
    assert reason is not None and reason.startswith(kind + ":"), reason


def test_token_limit_flag_makes_unfinished_output_a_cut_off():
    assert find_defect("A man runs along the beach while", hit_token_limit=True).startswith("cut_off")
    assert find_defect("A man runs along the beach.", hit_token_limit=True) is None


def test_checks_can_be_selected():
    assert find_defect("A man in a grey suit stands next to a", checks=["empty", "repetition"]) is None


def test_enforce_length_trims_whole_sentences_to_word_budget():
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(20))
    out, trimmed = enforce_length(text, 100, 226, estimate_t5_tokens)
    assert trimmed and len(out.split()) <= 100 and out.endswith(".")
    assert all(s.startswith("Sentence number") and s.endswith("words.") for s in split_sentences(out))
    assert len(split_sentences(out)) == 14


def test_enforce_length_respects_token_budget_with_a_counter():
    text = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota."
    out, trimmed = enforce_length(text, 100, 7, lambda s: len(s.split()))
    assert (out, trimmed) == ("Alpha beta gamma. Delta epsilon zeta.", True)
    out, trimmed = enforce_length("one two three four five six seven eight", 100, 4, lambda s: len(s.split()))
    assert out == "one two three four." and trimmed


def test_t5_estimate_is_conservative():
    # T5's SentencePiece averages about 1.3 tokens per English word, plus the end-of-sequence token.
    text = "A golden retriever runs across a green park, chasing a yellow ball thrown by a child."
    assert estimate_t5_tokens(text) >= round(1.3 * len(text.split())) + 1
    assert estimate_t5_tokens(" ".join(["word"] * 100) + ".") <= 226


def test_strip_opener():
    assert strip_opener("The video shows a dog running on grass.") == "A dog running on grass."
    assert strip_opener("In this video depicts a cat.") == "A cat."
    assert strip_opener("A dog runs.") == "A dog runs."


def test_keyframe_times_every_two_seconds_at_window_middles():
    cfg = KeyframeConfig()
    assert keyframe_times(10.0, 16.0, cfg) == [11.0, 13.0, 15.0]
    assert keyframe_times(0.0, 1.5, cfg) == [0.75]
    assert len(keyframe_times(0.0, 60.0, cfg)) == cfg.max_frames
    uniform = KeyframeConfig(mode="uniform", num_frames=4)
    assert keyframe_times(0.0, 8.0, uniform) == [1.0, 3.0, 5.0, 7.0]


def test_decode_frames_returns_the_frames_nearest_the_times(sample_corpus):
    """Frames for clips without scan keyframes: the frame shown nearest each time, in RGB, resized to
    the short side asked for."""
    import av
    import numpy as np

    from captioner.keyframes import decode_frames

    path = sample_corpus[0].path
    with av.open(path) as container:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    with open(path, "rb") as f:
        data = f.read()
    wanted = [0.0, 0.51, 1.0, 2.2]
    for t, image in zip(wanted, decode_frames(data, wanted)):
        np.testing.assert_array_equal(image, min(frames, key=lambda frame: abs(frame[0] - t))[1])
    [small] = decode_frames(data, [1.0], short_side=90)
    assert small.shape == (90, 160, 3)
