"""Summaries of repeated measurements: what the docs print as "median (min–max)"."""

from __future__ import annotations

import numpy as np


def spread(values: list[float]) -> dict:
    """The min, median and max of one figure over the repeats."""
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def summarize(runs: list[dict], names) -> dict:
    """``{name: spread}`` of each named figure over ``runs`` (one dict per repeat)."""
    return {name: spread([run[name] for run in runs]) for name in names}
