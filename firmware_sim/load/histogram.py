"""A latency histogram that is cheap to update and merges across processes.

Buckets grow geometrically (about 2% apart) from 10 microseconds to over 100 seconds,
so any percentile is known to within about 2% whatever the spread of values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

_MIN_S = 1e-5
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
BUCKETS = 820  # _MIN_S * 1.02**820 is about 11,000 s


class Histogram:
    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= _MIN_S else min(BUCKETS - 1, int(math.log(seconds / _MIN_S) / _LOG_GROWTH) + 1)
        self.counts[index] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def merge(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float | None:
        """The value at percentile `p` (0-100), in seconds: the upper edge of its bucket."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * p / 100.0))
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(self.max, _MIN_S * _GROWTH**i)
        return self.max

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict[str, object]:
        """Sparse form for pipes and JSON: only the buckets in use."""
        return {
            "buckets": {str(i): n for i, n in enumerate(self.counts) if n},
            "count": self.count,
            "total": self.total,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        hist = cls()
        for key, n in data.get("buckets", {}).items():
            hist.counts[int(key)] = int(n)
        hist.count = int(data.get("count", 0))
        hist.total = float(data.get("total", 0.0))
        hist.max = float(data.get("max", 0.0))
        return hist

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    def summary_ms(self) -> dict[str, float | int | None]:
        """Count, mean, p50, p90, p99, p99.9 and max in milliseconds."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000.0, 3)

        return {
            "count": self.count,
            "mean_ms": ms(self.mean),
            "p50_ms": ms(self.percentile(50)),
            "p90_ms": ms(self.percentile(90)),
            "p99_ms": ms(self.percentile(99)),
            "p999_ms": ms(self.percentile(99.9)),
            "max_ms": ms(self.max if self.count else None),
        }
