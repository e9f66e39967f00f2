"""Print README's quality tables (markdown) from benchmarks/results/quality-*.json.

    .venv/bin/python benchmarks/quality_table.py [PATTERN ...]     # default: every quality-*.json

Columns: the settings that differ from the paper config, epochs run, best epoch, median seconds per epoch
(robust to other jobs slowing a few epochs on a shared machine; "—" where a report predates that field),
validation NDCG@10 / HR@10 of the selected epoch, test NDCG@10 / HR@10 (full ranking) and test sampled-100 NDCG@10.
A --holdout test run trains on the validation items and validates nothing: its best epoch and validation cells
read "—".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER = {"hidden": 64, "layers": 2, "heads": 2, "max_len": 200, "dropout": 0.2, "attention_dropout": 0.0,
         "mask_prob": 0.2, "last_item_fraction": 0.1, "lr": 1e-3, "batch_size": 128, "loss": "full",
         "rating_aware": False, "time_aware": False, "exclude_seen": False, "ema_decay": 0.0, "holdout": "valid",
         "shift_windows": False,
         "seed": 0}


def changes(args: dict) -> str:
    differ = [f"{k.replace('_', '-')} {v}" for k, v in args.items() if k in PAPER and v != PAPER[k]]
    if args.get("loss") == "sampled":
        differ.append(f"negatives {args['negatives']}")
    return ", ".join(differ) or "paper config"


def main() -> None:
    patterns = sys.argv[1:] or ["quality-*.json"]
    paths = sorted({p for pattern in patterns for p in (HERE / "results").glob(pattern)})
    print("| data | run | settings | epochs (best) | s / epoch | valid NDCG@10 | valid HR@10 | test NDCG@10 | "
          "test HR@10 | test sampled-100 NDCG@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        report = json.loads(path.read_text())
        test = report["test"]["model"]
        median = report.get("median_seconds_per_epoch")  # absent from the reports of runs whose history was lost
        valid = [f"{report['valid'][k]:.4f}" if report["valid"] else "—" for k in ("NDCG@10", "HR@10")]
        print(f"| {Path(report['args']['data']).name} | {report['name']} | {changes(report['args'])} | "
              f"{report['epochs_run']} ({report['best_epoch'] or '—'}) | {f'{median:.1f}' if median else '—'} | "
              f"{valid[0]} | {valid[1]} | "
              f"{test['full']['NDCG@10']:.4f} | {test['full']['HR@10']:.4f} | {test['sampled_100']['NDCG@10']:.4f} |")


if __name__ == "__main__":
    main()
