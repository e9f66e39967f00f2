"""The training curves: per-epoch loss and validation NDCG@10, as a figure (for a notebook) or curves.png."""

from __future__ import annotations

from pathlib import Path

from bert4rec.files import atomic_write


def curves_figure(history: list[dict]):
    """A matplotlib Figure of the per-epoch loss and validation NDCG@10 (a notebook shows it as it is). Built
    without pyplot, so it neither needs nor changes a display backend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="tight")
    ax_loss, ax_ndcg = fig.subplots(1, 2)
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="cloze loss")
    validated = [h for h in history if "valid_NDCG@10" in h]
    ax_ndcg.plot([h["epoch"] for h in validated], [h["valid_NDCG@10"] for h in validated], "o-", color="tab:green")
    ax_ndcg.set(xlabel="epoch", ylabel="NDCG@10", title="validation NDCG@10 (full ranking)")
    for ax in (ax_loss, ax_ndcg):
        ax.grid(alpha=0.3)
    return fig


def plot_curves(history: list[dict], path: Path) -> None:
    fig = curves_figure(history)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))

