"""Percentiles of samples, and quantiles of Prometheus histograms (from their cumulative buckets)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[str, dict[float, float]]  # label value -> {upper bound: cumulative count}


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, min, p50, p95, p99, max and mean of ``values``."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def histogram_buckets(text: str, metric: str, label: str) -> Buckets:
    """Cumulative bucket counts of histogram ``metric`` by the value of ``label``."""
    found: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.name == metric + "_bucket":
                bound = float(sample.labels["le"])
                found.setdefault(sample.labels.get(label, ""), {})[bound] = sample.value
    return found


def counter_values(text: str, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of counter ``metric`` keyed by its sorted labels."""
    values: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == metric.removesuffix("_total"):
            for sample in family.samples:
                if sample.name == metric:
                    values[tuple(sorted(sample.labels.items()))] = sample.value
    return values


def diff_buckets(after: Mapping[float, float], before: Mapping[float, float] | None) -> dict[float, float]:
    return {bound: count - (before or {}).get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """Like Prometheus' histogram_quantile: linear interpolation inside the bucket holding the q-th observation.

    Above the last finite bound the answer is that bound (the histogram knows nothing more)."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_max(buckets: Mapping[float, float]) -> float:
    """The upper bound of the highest non-empty bucket (an upper bound of the maximum)."""
    previous = 0.0
    highest = math.nan
    for bound, count in sorted(buckets.items()):
        if count > previous:
            highest = bound
        previous = count
    return highest


def count_by(items: Iterable[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item)] = counts.get(str(item), 0) + 1
    return dict(sorted(counts.items()))
