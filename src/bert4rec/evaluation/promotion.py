"""Whether a new model may replace the live one: its validation NDCG@10, as recorded in its folder, against the
live model's. One rule for the server's reload and for retraining's promotion."""

from __future__ import annotations

import json
from pathlib import Path

from bert4rec.files import HISTORY_FILE, METRICS_FILE

DEFAULT_MAX_DROP = 0.02  # the share of the live model's validation NDCG@10 a new model may lose and still go live


def recorded_validation(folder: Path) -> float | None:
    """Validation NDCG@10 as `bert4rec evaluate --split valid` recorded it, else the best of training's validations
    (the weights saved are the best by it), else None."""
    folder = Path(folder)
    try:
        return float(json.loads((folder / METRICS_FILE).read_text())["valid"]["full"]["NDCG@10"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        found = [json.loads(line).get("valid_NDCG@10") for line in (folder / HISTORY_FILE).read_text().splitlines()
                 if line.strip()]
    except (OSError, ValueError, AttributeError):
        return None
    found = [float(value) for value in found if isinstance(value, int | float)]
    return max(found) if found else None


def refusal(candidate: Path, live: Path | None, max_drop: float = DEFAULT_MAX_DROP) -> str | None:
    """Why the model in ``candidate`` may not replace the one in ``live`` (None: it may). Refused when its
    validation NDCG@10 is more than ``max_drop`` (a share) below the live one's, or unknown while the live one's is
    known; a live model without a recorded figure, or a ``max_drop`` of 1, lets any model through."""
    ours = recorded_validation(live) if live is not None else None
    if ours is None or max_drop >= 1:
        return None
    theirs = recorded_validation(candidate)
    if theirs is None:
        return (f"{candidate}: no validation result recorded, and the live model's is {ours:.4f}; run "
                "`bert4rec evaluate --split valid` on it first")
    if theirs < ours * (1 - max_drop):
        return (f"{candidate}: validation NDCG@10 {theirs:.4f} is more than {max_drop:.0%} below the live model's "
                f"{ours:.4f}")
    return None
