"""The rich tables the commands print: dataset statistics, a training summary, metrics and recommendations."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table


def stats_table(stats: dict) -> Table:
    table = Table(title="prepared dataset", show_header=False)
    lengths = stats["sequence_length"]
    rows = [
        ("source", stats["source"]),
        ("users", f"{stats['num_users']:,}"),
        ("items", f"{stats['num_items']:,}"),
        ("interactions", f"{stats['num_interactions']:,} (of {stats['num_raw_interactions']:,} loaded)"),
        ("users with valid/test targets", f"{stats['num_eval_users']:,}"),
        ("density", f"{stats['density']:.4%}"),
        ("sequence length min / median / p90 / max",
         f"{lengths['p0']:.0f} / {lengths['p50']:.0f} / {lengths['p90']:.0f} / {lengths['p100']:.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


def train_table(result: dict, out: Path) -> Table:
    table = Table(title="training summary", show_header=False)
    history = result["history"]
    best = next((h for h in history if h["epoch"] == result["best_epoch"]), {})
    rows = [("epochs run", str(result["epochs"]))]
    if result["holdout"] == "valid":
        rows += [("best epoch", str(result["best_epoch"])),
                 ("best validation NDCG@10", f"{best.get('valid_NDCG@10', float('nan')):.4f}"),
                 ("best validation HR@10", f"{best.get('valid_HR@10', float('nan')):.4f}")]
        if averaged := result.get("averaged"):
            verdict = "kept" if averaged["kept"] else "not kept"
            rows.append((f"average of epochs {', '.join(map(str, averaged['epochs']))}",
                         f"validation NDCG@10 {averaged['valid']['NDCG@10']:.4f} ({verdict})"))
    else:
        rows.append(("kept weights", f"last epoch (holdout {result['holdout']}: no validation)"))
    rows += [
        ("seconds per epoch (training)", f"{result['seconds_per_epoch']:.1f}"),
        ("training minutes", f"{result['train_seconds'] / 60:.1f}"),
        ("device", result["device"]),
        ("processes", str(result["processes"])),
        ("model folder", str(out)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def metrics_table(result: dict) -> Table:
    table = Table(title=f"{result['split']} split, {result['model']['users']:,} users")
    protocols = [p for p in ("full", "sampled_100") if p in result["model"]]
    table.add_column("metric")
    for protocol in protocols:
        label = "full ranking" if protocol == "full" else "100 sampled negatives"
        table.add_column(f"BERT4Rec\n{label}", justify="right")
        table.add_column(f"most popular\n{label}", justify="right")
    for metric in result["model"]["full"]:
        cells = []
        for protocol in protocols:
            cells += [f"{result['model'][protocol][metric]:.4f}", f"{result['most_popular'][protocol][metric]:.4f}"]
        table.add_row(metric, *cells)
    return table


def recs_table(recs, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (("#", "right"), ("movieId", "right"), ("title", "left"), ("year", "right"),
                          ("genres", "left"), ("score", "right")):
        table.add_column(name, justify=justify)
    for rank, item in enumerate(recs.items, 1):
        table.add_row(str(rank), str(item["movieId"]), escape(item["title"]), str(item["year"] or ""),
                      escape(", ".join(item["genres"])), f"{item['score']:.3f}")
    return table


def history_line(recs, limit: int = 5) -> str:
    titles = [h["title"] for h in recs.history[-limit:]]
    more = len(recs.history) - len(titles)
    return escape("most recently watched: " + "; ".join(reversed(titles)) + (f" (+{more:,} earlier)" if more else ""))
