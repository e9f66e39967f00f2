"""The leave-one-out splits: which item of each user's history each split asks for, and what training may hold
out. Plain constants, so that settings and the CLI can read them without loading a model."""

from __future__ import annotations

# Each split's target: the user's last item (test) or the one before it (valid), counted from the end.
TARGET_FROM_END = {"valid": 2, "test": 1}
SPLITS = tuple(TARGET_FROM_END)
# What training leaves out of each user's sequence (users with fewer than MIN_EVAL_LENGTH items are never held out):
# valid: the validation and test items, so validation picks the kept epoch; test: only the test item, for a final
# fit whose settings earlier validated runs chose; none: nothing, a model to serve rather than to evaluate.
HOLDOUT_ITEMS = TARGET_FROM_END | {"none": 0}  # a holdout keeps out its split's target and all after


def trained_on(holdout: str, split: str) -> bool:
    """Whether training with ``holdout`` saw the targets of ``split``, which would make its figures void."""
    return HOLDOUT_ITEMS[holdout] < TARGET_FROM_END[split]
