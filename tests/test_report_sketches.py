"""The report's bounded streaming aggregates and text helpers, against plain Python computations."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from captioner.report import metrics
from captioner.report.sketches import DistinctCounter, Histogram, Reservoir, SeenFilter, TopCounter, WorstN


def test_histogram_counts_and_summary():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 10, 5000)
    h = Histogram(0, 10, 20)
    for chunk in np.array_split(values, 7):
        h.add(chunk)
    h.add(np.array([-1.0, 11.0, np.nan]))
    assert h.counts.tolist() == np.histogram(values, bins=20, range=(0, 10))[0].tolist()
    assert (h.underflow, h.overflow, h.n) == (1, 1, 5002)
    assert h.summary()["mean"] == pytest.approx((values.sum() + 10.0) / 5002)
    assert abs(h.quantile(0.5) - np.median(values)) < 0.5  # one bin width


def test_top_counter_exact_then_bounded():
    rng = random.Random(0)
    stream = ["heavy"] * 3000 + ["medium"] * 1500 + [f"rare{rng.randrange(10**9)}" for _ in range(20000)]
    rng.shuffle(stream)
    counter = TopCounter(capacity=100)
    for key in stream:
        counter.add(key)
    assert not counter.exact and len(counter.counts) <= 200
    truth = collections.Counter(stream)
    top = dict(counter.most_common(2))
    assert list(top) == ["heavy", "medium"]
    for key, count in top.items():  # Misra-Gries: under-estimate by at most n / capacity
        assert truth[key] - len(stream) / 100 <= count <= truth[key]
    small = TopCounter(capacity=100)
    for key in ["a", "b", "a", "c", "a", "b"]:
        small.add(key)
    assert small.exact and small.most_common(2) == [("a", 3), ("b", 2)]


def test_distinct_counter_exact_then_estimated():
    rng = np.random.default_rng(1)
    exact = DistinctCounter(k=1024)
    values = rng.integers(0, 2**63, 500, dtype=np.uint64)
    exact.add(np.concatenate([values, values[:100]]))
    assert exact.exact and exact.estimate() == 500
    sketch = DistinctCounter(k=4096)
    values = rng.integers(0, 2**63, 200_000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    for chunk in np.array_split(np.concatenate([values, values[:50_000]]), 13):
        sketch.add(chunk)
    assert not sketch.exact
    assert sketch.estimate() == pytest.approx(200_000, rel=0.05)


def test_seen_filter_flags_later_occurrences_across_and_within_batches():
    f = SeenFilter(bits_log2=16, hashes=4)
    first = f.seen_before(np.array([[1, 2], [3, 4], [5, 2]], dtype=np.uint64))
    assert first.tolist() == [False, False, True]  # row 2 shares key 2 with row 0
    second = f.seen_before(np.array([[9, 10], [11, 3], [9, 12]], dtype=np.uint64))
    assert second.tolist() == [False, True, True]
    assert f.false_positive_rate(2) < 1e-6


def test_seen_filter_false_positive_rate_matches_its_bound():
    rng = np.random.default_rng(2)
    f = SeenFilter(bits_log2=16, hashes=4)
    keys = rng.integers(0, 2**63, 8000, dtype=np.uint64)
    for chunk in np.array_split(np.concatenate([keys, keys[:3000]]), 5):  # repeats are not new keys
        f.seen_before(chunk)
    expected = f.false_positive_rate(1)  # from the bits set; theory: (1 - e^(-4 * 8000 / 2^16))^4 = 2.2%
    fresh = rng.integers(0, 2**63, 20000, dtype=np.uint64) | np.uint64(1 << 63)  # disjoint from keys
    measured = f.seen_before(fresh).mean()
    assert expected == pytest.approx(0.0222, rel=0.05) and measured == pytest.approx(expected, rel=0.2)


def test_reservoir_is_seeded_and_uniform():
    def draw(seed):
        r = Reservoir(5, seed)
        for i in range(1000):
            slot = r.wants()
            if slot is not None:
                r.put(slot, i)
        return r.items

    assert draw(3) == draw(3) and draw(3) != draw(4)
    hits = collections.Counter(i // 100 for seed in range(400) for i in draw(seed))
    assert min(hits.values()) > 120 and max(hits.values()) < 280  # 200 expected per tenth


def test_worst_n_keeps_lowest_scores():
    w = WorstN(3)
    scores = {f"c{i}": s for i, s in enumerate([0.5, 0.1, 0.9, 0.05, 0.3, 0.2])}
    for key, score in scores.items():
        if w.would_take(score, key):
            w.push(score, key, key)
    assert w.items() == ["c3", "c1", "c5"]


def test_text_helpers():
    assert metrics.words("The dog's BALL, 3 times!") == ["the", "dog's", "ball", "3", "times"]
    assert metrics.nouns(metrics.words("Two puppies chase red boxes near the old church")) == {"puppy", "box", "church"}
    assert metrics.leading_phrase("cannot decode: moov atom not found at 0x12") == "cannot decode"
    assert metrics.leading_phrase("timeout after 30 s") == "timeout after N s"
    assert metrics.leading_phrase(None) == "(no reason given)"
    assert metrics.degenerate_reason([], 5, 0.3) == "empty"
    assert metrics.degenerate_reason("a b c".split(), 5, 0.3) == "too_short"
    assert metrics.degenerate_reason(("x y z " * 5).split(), 5, 0.3) == "repetitive"
    assert metrics.degenerate_reason("a dog runs on the grass".split(), 5, 0.3) is None
