"""Bounded-memory streaming aggregates: the report never holds all rows of a manifest.

Every structure here has a size fixed by its configuration, not by the number of rows fed to it:

- :class:`Histogram`: fixed bins over a range decided before the pass (plus under/overflow, mean, min/max).
- :class:`TopCounter`: Misra-Gries heavy hitters (exact while the number of distinct keys stays
  within ``2 * capacity``; beyond that each count is under-estimated by at most N / capacity).
- :class:`DistinctCounter`: k-minimum-values distinct count over 64-bit hashes (exact up to ``k``
  distinct values, then an estimate with relative standard error about 1/sqrt(k)).
- :class:`SeenFilter`: a Bloom filter answering "was any of these keys seen before?" in a single pass,
  used for exact and near-duplicate rates (one-sided error: it can only over-report duplicates; the
  expected false-positive rate, from the share of bits set at the end, is reported next to the
  figure; with the default 2**27 bits and 4 hashes it stays below 0.01% for the exact filter up to
  2M distinct captions, and is ~1.6% for the near-duplicate filter (8 band keys per caption) at 1M
  distinct captions, ~15% at 2M: raise ``captions.bloom_bits_log2`` for larger sets).
- :class:`Reservoir` (seeded uniform sample) and :class:`WorstN` (bounded heap of the lowest scores).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from typing import Any, Hashable

import numpy as np

_MASK64 = (1 << 64) - 1
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hash64(text: str) -> int:
    """A deterministic 64-bit hash of a string (stable across processes, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array: a bijection that spreads bits well."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def combine64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hash of an ordered pair of uint64 hashes (for n-grams and MinHash bands)."""
    with np.errstate(over="ignore"):
        return mix64(a * np.uint64(0x9E3779B97F4A7C15) + mix64(b))


class Histogram:
    """Fixed-bin histogram over ``[lo, hi]``; values outside are counted as under/overflow."""

    def __init__(self, lo: float, hi: float, bins: int):
        if not hi > lo:
            hi = lo + 1.0
        self.lo, self.hi, self.bins = float(lo), float(hi), int(bins)
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.underflow = 0
        self.overflow = 0
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        self.n += int(values.size)
        self.total += float(values.sum())
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.underflow += int((values < self.lo).sum())
        self.overflow += int((values > self.hi).sum())
        inside = values[(values >= self.lo) & (values <= self.hi)]
        counts, _ = np.histogram(inside, bins=self.bins, range=(self.lo, self.hi))
        self.counts += counts

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)

    def quantile(self, q: float) -> float | None:
        """Quantile interpolated within the bins (resolution: one bin width)."""
        if self.n == 0:
            return None
        target = q * self.n - self.underflow
        if target <= 0:
            return self.lo if self.underflow == 0 else self.min
        cum = np.cumsum(self.counts)
        idx = int(np.searchsorted(cum, target))
        if idx >= self.bins:
            return self.hi if self.overflow == 0 else self.max
        before = cum[idx - 1] if idx > 0 else 0
        frac = (target - before) / max(self.counts[idx], 1)
        width = (self.hi - self.lo) / self.bins
        return float(self.lo + (idx + frac) * width)

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.n,
            "mean": self.total / self.n if self.n else None,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
            "p10": self.quantile(0.10),
            "median": self.quantile(0.50),
            "p90": self.quantile(0.90),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "range": [self.lo, self.hi],
            "counts": self.counts.tolist(),
            "underflow": self.underflow,
            "overflow": self.overflow,
        }


class TopCounter:
    """Misra-Gries heavy-hitter counter holding at most ``2 * capacity`` keys.

    Exact while the number of distinct keys stays within ``2 * capacity``. When the table overflows
    it is pruned to the ``capacity`` largest counts, subtracting the largest dropped count from all
    (amortised O(log capacity) per item); each reported count is then an under-estimate by at most
    ``n / capacity``, and every key with a true count above that is still listed.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.counts: dict[Hashable, int] = {}
        self.n = 0
        self.pruned = 0

    def add(self, key: Hashable, count: int = 1) -> None:
        self.n += count
        self.counts[key] = self.counts.get(key, 0) + count
        if len(self.counts) > 2 * self.capacity:
            self._prune()

    def _prune(self) -> None:
        values = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
        floor = int(np.partition(values, len(values) - self.capacity - 1)[len(values) - self.capacity - 1])
        self.counts = {k: v - floor for k, v in self.counts.items() if v > floor}
        self.pruned += 1

    @property
    def exact(self) -> bool:
        return self.pruned == 0

    def most_common(self, k: int) -> list[tuple[Hashable, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:k]


class DistinctCounter:
    """K-minimum-values sketch of the number of distinct 64-bit hashes."""

    def __init__(self, k: int = 65536):
        self.k = int(k)
        self.smallest = np.empty(0, dtype=np.uint64)

    def add(self, hashes: np.ndarray) -> None:
        hashes = np.asarray(hashes, dtype=np.uint64)
        if not self.exact:  # only values below the current k-th smallest can enter
            hashes = hashes[hashes < self.smallest[-1]]
        if len(hashes) == 0:
            return
        merged = np.unique(np.concatenate([self.smallest, np.asarray(hashes, dtype=np.uint64)]))
        self.smallest = merged[: self.k]

    @property
    def exact(self) -> bool:
        return len(self.smallest) < self.k

    def estimate(self) -> float:
        if self.exact:
            return float(len(self.smallest))
        kth = float(self.smallest[-1]) / float(1 << 64)
        return (self.k - 1) / kth


class SeenFilter:
    """Bloom filter over 64-bit keys: flags rows any of whose keys appeared in an earlier row.

    ``bits_log2`` fixes the memory (2**bits_log2 bits); ``hashes`` bit positions per key.
    """

    def __init__(self, bits_log2: int = 26, hashes: int = 4):
        self.bits_log2 = int(bits_log2)
        self.hashes = int(hashes)
        self.words = np.zeros((1 << self.bits_log2) // 64, dtype=np.uint64)

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        h1 = mix64(keys)
        h2 = mix64(h1 ^ np.uint64(0x632BE59BD9B4E019)) | np.uint64(1)
        steps = np.arange(self.hashes, dtype=np.uint64)
        with np.errstate(over="ignore"):
            pos = h1[:, None] + steps[None, :] * h2[:, None]
        return pos >> np.uint64(64 - self.bits_log2)

    def _contains(self, keys: np.ndarray) -> np.ndarray:
        pos = self._positions(keys)
        bits = (self.words[pos >> np.uint64(6)] >> (pos & np.uint64(63))) & np.uint64(1)
        return bits.all(axis=1)

    def _insert(self, keys: np.ndarray) -> None:
        pos = self._positions(keys).ravel()
        np.bitwise_or.at(self.words, pos >> np.uint64(6), np.uint64(1) << (pos & np.uint64(63)))

    def seen_before(self, keys: np.ndarray) -> np.ndarray:
        """``keys`` is (rows, keys_per_row) uint64; returns for each row whether any key was seen
        in an earlier row (earlier batches, or earlier in this batch), then records all keys."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.ndim == 1:
            keys = keys[:, None]
        rows, per_row = keys.shape
        if rows == 0:
            return np.zeros(0, dtype=bool)
        flat = keys.ravel()
        # keys present in the sketch already, or whose first occurrence in this batch is in an earlier row
        in_filter = self._contains(flat).reshape(rows, per_row)
        _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
        first_row = (first // per_row)[inverse.ravel()].reshape(rows, per_row)
        earlier_in_batch = first_row < np.arange(rows)[:, None]
        # a key already in the filter has all its bits set: inserting it again would change nothing
        self._insert(np.unique(flat[~in_filter.ravel()]))
        return (in_filter | earlier_in_batch).any(axis=1)

    def fill(self) -> float:
        """Share of the filter's bits that are set (counted in 1 MiB chunks: no large temporary)."""
        octets = self.words.view(np.uint8)
        ones = sum(int(_POPCOUNT8[octets[i : i + (1 << 20)]].sum(dtype=np.int64)) for i in range(0, len(octets), 1 << 20))
        return ones / (8.0 * len(octets))

    def false_positive_rate(self, keys_per_row: int = 1) -> float:
        """Expected chance that a row of ``keys_per_row`` new, unseen keys is flagged now: each key's
        ``hashes`` bits are all set with probability fill ** hashes (from the filter's actual state)."""
        p_key = self.fill() ** self.hashes
        return 1.0 - (1.0 - p_key) ** keys_per_row


class Reservoir:
    """Uniform random sample of ``size`` items from a stream (Algorithm R, seeded)."""

    def __init__(self, size: int, seed: int):
        self.size = int(size)
        self.rng = random.Random(seed)
        self.items: list[Any] = []
        self.seen = 0

    def wants(self) -> int | None:
        """Advance the stream by one; return the slot the item goes to, or None to skip it."""
        self.seen += 1
        if len(self.items) < self.size:
            return len(self.items)
        j = self.rng.randrange(self.seen)
        return j if j < self.size else None

    def put(self, slot: int, item: Any) -> None:
        if slot == len(self.items):
            self.items.append(item)
        else:
            self.items[slot] = item


class WorstN:
    """The ``size`` items with the lowest score (ties broken by key for determinism)."""

    def __init__(self, size: int):
        self.size = int(size)
        self._heap: list[tuple[float, str, Any]] = []  # max-heap via negated score

    def would_take(self, score: float, key: str) -> bool:
        if len(self._heap) < self.size:
            return True
        worst_kept = self._heap[0]
        return (-score, key) > (worst_kept[0], worst_kept[1])

    def push(self, score: float, key: str, item: Any) -> None:
        entry = (-score, key, item)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        elif (entry[0], entry[1]) > (self._heap[0][0], self._heap[0][1]):
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[Any]:
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], e[1]))]
