"""Evaluation: leave-one-out protocols (exact full ranking, and the paper's sampled negatives as a labelled extra)
and the ranking metrics."""
