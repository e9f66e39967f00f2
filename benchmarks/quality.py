"""Quality: train with a chosen config inside a time budget, select on validation, report test once.

    .venv/bin/python benchmarks/quality.py [--data ../shared/data/ml-1m] [--minutes 60] [--epochs 300]
        [--hidden 64] [--layers 2] [--heads 2] [--dropout 0.2] [--attention-dropout 0.0] [--mask-prob 0.2]
        [--last-item-fraction 0.1] [--lr 1e-3] [--batch-size 128] [--valid-every 5] [--rating-aware] [--time-aware]
        [--loss full|sampled] [--negatives 1024] [--exclude-seen] [--ema-decay 0|auto|D]
        [--holdout valid|test] [--shift-windows] [--seed 0] [--name NAME] [--out runs/quality-DATA-NAME]
        [--device cpu|cuda|mps|auto]

The BERT4Rec split of --data (for ML-1M: 6,040 users, 3,416 items, 999,611 interactions), full ranking with the
history excluded. The best epoch is chosen on validation NDCG@10; the test split is evaluated once, on that model.
With --holdout test the model also trains on the validation items (a final fit with settings that validated runs
chose): nothing is validated, the schedule's last weights are tested once.
Prints and writes benchmarks/results/quality-DATA-NAME.json (DATA: the data folder's name without dashes, e.g.
ml1m) with the config, epochs, minutes, validation and test metrics (full ranking and the paper's 100 sampled
negatives) and the most-popular baseline. Training and evaluation run on the CPU unless --device says otherwise
(the quality target is a CPU one; on CUDA training uses bf16 autocast).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from bert4rec import evaluate, movielens, preprocess, train
from bert4rec.model import Bert4Rec, Bert4RecConfig

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/ml-1m"))
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--attention-dropout", type=float, default=0.0)
    parser.add_argument("--mask-prob", type=float, default=0.2)
    parser.add_argument("--last-item-fraction", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--valid-every", type=int, default=5)
    parser.add_argument("--patience", type=int, default=0, help="0: never stop early")
    parser.add_argument("--rating-aware", action="store_true")
    parser.add_argument("--time-aware", action="store_true")
    parser.add_argument("--loss", choices=["full", "sampled"], default="full")
    parser.add_argument("--negatives", type=int, default=1024)
    parser.add_argument("--exclude-seen", action="store_true")
    parser.add_argument("--ema-decay", type=lambda v: None if v == "auto" else float(v), default=0.0,
                        help="0: no weight averaging; auto: the training default (horizon 5%% of all steps)")
    parser.add_argument("--holdout", choices=["valid", "test"], default="valid",
                        help="test: also train on the validation items; no validation, the last weights are tested")
    parser.add_argument("--shift-windows", action="store_true",
                        help="move all but each user's most recent window by a random amount each epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="default")
    parser.add_argument("--out", type=Path, default=None, help="model folder (default runs/quality-DATA-NAME)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps or auto")
    args = parser.parse_args()
    label = f"{Path(args.data).name.replace('-', '')}-{args.name}"
    out = args.out or Path("runs") / f"quality-{label}"

    started = time.perf_counter()
    dataset = preprocess.prepare(movielens.load(args.data))
    model_config = Bert4RecConfig(num_items=dataset.vocab.num_items, hidden_size=args.hidden,
                                  num_layers=args.layers, num_heads=args.heads, intermediate_size=4 * args.hidden,
                                  dropout=args.dropout, attention_dropout=args.attention_dropout,
                                  max_len=args.max_len, rating_aware=args.rating_aware,
                                  time_aware=args.time_aware)
    config = train.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, mask_prob=args.mask_prob,
                               last_item_fraction=args.last_item_fraction, valid_every=args.valid_every,
                               patience=args.patience or None, max_minutes=args.minutes, seed=args.seed,
                               device=args.device, loss=args.loss, negatives=args.negatives,
                               exclude_seen=args.exclude_seen, ema_decay=args.ema_decay,
                               holdout=args.holdout, shift_windows=args.shift_windows)
    result = train.fit(dataset, out, model_config, config, progress=False)
    device = torch.device(result["device"])  # the one training ran on
    best = Bert4Rec.load(out, device)
    test = evaluate.evaluate_model(best, dataset, "test", device, progress=False)
    evaluate.update_metrics_file(out / "metrics.json", "test", test)
    validation = next((h for h in result["history"] if h["epoch"] == result["best_epoch"]), {})
    report = {
        "name": args.name, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
                   + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        "epochs_run": result["epochs"], "best_epoch": result["best_epoch"],
        "train_minutes": result["train_seconds"] / 60, "wall_minutes": (time.perf_counter() - started) / 60,
        "seconds_per_epoch": result["seconds_per_epoch"],
        # The median resists other jobs slowing a few epochs; the curve shows whether a run was still improving.
        "median_seconds_per_epoch": statistics.median(h["train_seconds"] for h in result["history"]),
        "valid_curve": [[h["epoch"], h["valid_NDCG@10"]] for h in result["history"] if "valid_NDCG@10" in h],
        # With --ema-decay the curve above is the averaged weights'; this one the raw weights' beside them.
        "valid_raw_curve": [[h["epoch"], h["valid_raw_NDCG@10"]] for h in result["history"]
                            if "valid_raw_NDCG@10" in h],
        "valid": {k.removeprefix("valid_"): v for k, v in validation.items()
                  if k.startswith("valid_") and not k.startswith("valid_raw_")},  # the raw figure is in its curve
        "test": test,
    }
    if best.config.rating_aware:
        report["test_liked_targets"] = evaluate.evaluate_liked(best, dataset, "test", device)
    path = HERE / "results" / f"quality-{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    full, sampled, popular = test["model"]["full"], test["model"]["sampled_100"], test["most_popular"]["full"]
    chosen = (f"best epoch {result['best_epoch']}, validation NDCG@10 {report['valid']['NDCG@10']:.4f}"
              if validation else "trained on the validation items too, last weights kept")
    print(f"{args.name}: {result['epochs']} epochs ({report['train_minutes']:.1f} min training), {chosen}")
    print(f"test (full ranking): NDCG@10 {full['NDCG@10']:.4f}  HR@10 {full['HR@10']:.4f}  "
          f"(most popular {popular['NDCG@10']:.4f} / {popular['HR@10']:.4f}); "
          f"sampled-100 NDCG@10 {sampled['NDCG@10']:.4f}  HR@10 {sampled['HR@10']:.4f}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
