"""Quality: train a recipe inside its time budget, select on validation, report test once.

    .venv/bin/python benchmarks/quality.py --recipe ml-1m-best --name NAME [--data ../shared/data/ml-1m]
        [any setting of the recipe to override: --epochs 190 --batch-size 16 --no-time-aware --ema-decay 0 ...]
        [--out runs/quality-DATA-NAME] [--device cpu|cuda|mps|auto]

The recipe (default ``paper``; see ``bert4rec/training/recipes/``) sets the model and training; every flag given
overrides it (``--help`` lists them). The BERT4Rec split of --data (for ML-1M: 6,040 users, 3,416 items, 999,611
interactions), full ranking with the history excluded. The best epoch is chosen on validation NDCG@10; the test
split is evaluated once, on that model. With --holdout test the model also trains on the validation items (a final
fit with settings that validated runs chose): nothing is validated, the schedule's last weights are tested once.
Prints and writes benchmarks/results/quality-DATA-NAME.json (DATA: the data folder's name without dashes, e.g.
ml1m) with the recipe, the settings, epochs, minutes, validation and test metrics (full ranking and the paper's 100
sampled negatives) and the most-popular baseline. Training and evaluation run on the CPU unless --device says
otherwise (the quality target is a CPU one; on CUDA training uses bf16 autocast).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bert4rec.data import movielens, preprocess
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.protocols import evaluate_folder, evaluate_liked
from bert4rec.model.modeling import Bert4Rec
from bert4rec.training.loop import fit
from bert4rec.training.recipe import load_recipe

HERE = Path(__file__).resolve().parent
# Flag -> (config section, setting): what a flag overrides. The report's "args" keep these flag names.
SETTINGS = {
    "hidden": ("model", "hidden_size"), "layers": ("model", "num_layers"), "heads": ("model", "num_heads"),
    "max_len": ("model", "max_len"), "dropout": ("model", "dropout"),
    "attention_dropout": ("model", "attention_dropout"), "rating_aware": ("model", "rating_aware"),
    "time_aware": ("model", "time_aware"), "genre_aware": ("model", "genre_aware"),
    "year_aware": ("model", "year_aware"),
    "epochs": ("training", "epochs"), "minutes": ("training", "max_minutes"), "batch_size": ("training", "batch_size"),
    "lr": ("training", "lr"), "mask_prob": ("training", "mask_prob"),
    "last_item_fraction": ("training", "last_item_fraction"), "valid_every": ("training", "valid_every"),
    "patience": ("training", "patience"), "loss": ("training", "loss"), "negatives": ("training", "negatives"),
    "exclude_seen": ("training", "exclude_seen"), "ema_decay": ("training", "ema_decay"),
    "average_last": ("training", "average_last"),
    "holdout": ("training", "holdout"), "shift_windows": ("training", "shift_windows"), "seed": ("training", "seed"),
}
FLAGS = {"int": ("epochs", "hidden", "layers", "heads", "max_len", "batch_size", "valid_every", "patience",
                 "negatives", "seed", "average_last"),
         "float": ("minutes", "dropout", "attention_dropout", "mask_prob", "last_item_fraction", "lr"),
         "bool": ("rating_aware", "time_aware", "genre_aware", "year_aware", "exclude_seen", "shift_windows")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="paper", help="a recipe name or .toml file (default: paper)")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/ml-1m"))
    for kind, names in FLAGS.items():
        for name in names:
            flag = "--" + name.replace("_", "-")
            if kind == "bool":
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
            else:
                parser.add_argument(flag, type=int if kind == "int" else float, default=None)
    parser.add_argument("--loss", choices=["full", "sampled"], default=None)
    parser.add_argument("--ema-decay", type=lambda v: v if v == "auto" else float(v), default=None,
                        help="0: no weight averaging; auto: the training default (horizon 5%% of all steps)")
    parser.add_argument("--holdout", choices=["valid", "test"], default=None,
                        help="test: also train on the validation items; no validation, the last weights are tested")
    parser.add_argument("--name", default="default")
    parser.add_argument("--out", type=Path, default=None, help="model folder (default runs/quality-DATA-NAME)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps or auto")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    label = f"{Path(args.data).name.replace('-', '')}-{args.name}"
    out = args.out or Path("runs") / f"quality-{label}"
    recipe = load_recipe(args.recipe)
    overrides = {"model": {}, "training": {"device": args.device}}
    for flag, (section, setting) in SETTINGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[section][setting] = None if value == "auto" else value

    started = time.perf_counter()
    dataset = preprocess.prepare(movielens.load(args.data))
    model_config, config = recipe.build(dataset.vocab.num_items, overrides["model"], overrides["training"])
    result = fit(dataset, out, model_config, config, progress=False,
                 recipe=recipe.provenance(overrides["model"], overrides["training"]))
    device = torch.device(result["device"])  # the one training ran on
    test = evaluate_folder(out, "test", result["device"], progress=False)
    validation = next((h for h in result["history"] if h["epoch"] == result["best_epoch"]), {})
    averaged = result["averaged"]
    if averaged and averaged["kept"]:  # the tested model is the average: its validation is the one to report
        validation = {f"valid_{k}": v for k, v in averaged["valid"].items()}
    resolved = {"model": asdict(model_config), "training": asdict(config)}
    report = {
        "name": args.name, "recipe": args.recipe,
        "args": {"data": args.data, "name": args.name, "recipe": args.recipe, "device": args.device}
                | {flag: resolved[section][setting] for flag, (section, setting) in SETTINGS.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
                   + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        "epochs_run": result["epochs"], "best_epoch": result["best_epoch"],
        "train_minutes": result["train_seconds"] / 60, "wall_minutes": (time.perf_counter() - started) / 60,
        "seconds_per_epoch": result["seconds_per_epoch"],
        # The median resists other jobs slowing a few epochs; the curve shows whether a run was still improving.
        "median_seconds_per_epoch": statistics.median(h["train_seconds"] for h in result["history"]),
        "valid_curve": [[h["epoch"], h["valid_NDCG@10"]] for h in result["history"] if "valid_NDCG@10" in h],
        # With weight averaging the curve above is the averaged weights'; this one the raw weights' beside them.
        "valid_raw_curve": [[h["epoch"], h["valid_raw_NDCG@10"]] for h in result["history"]
                            if "valid_raw_NDCG@10" in h],
        "valid": {k.removeprefix("valid_"): v for k, v in validation.items()
                  if k.startswith("valid_") and not k.startswith("valid_raw_")},  # the raw figure is in its curve
        # Checkpoint averaging (--average-last): the epochs averaged, their validation and whether it was kept.
        "averaged": averaged,
        "test": test,
    }
    if model_config.rating_aware:
        report["test_liked_targets"] = evaluate_liked(Bert4Rec.load(out, device), dataset, "test", device)
    path = HERE / "results" / f"quality-{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print_summary(report, path)


def print_summary(report: dict, path: Path) -> None:
    test = report["test"]
    full, sampled, popular = test["model"]["full"], test["model"]["sampled_100"], test["most_popular"]["full"]
    chosen = (f"best epoch {report['best_epoch']}, validation NDCG@10 {report['valid']['NDCG@10']:.4f}"
              if report["valid"] else "trained on the validation items too, last weights kept")
    if report["averaged"] and report["averaged"]["kept"]:
        chosen = (f"the average of epochs {report['averaged']['epochs']} (best single epoch "
                  f"{report['best_epoch']}), validation NDCG@10 {report['valid']['NDCG@10']:.4f}")
    print(f"{report['name']}: {report['epochs_run']} epochs ({report['train_minutes']:.1f} min training), {chosen}")
    print(f"test (full ranking): NDCG@10 {full['NDCG@10']:.4f}  HR@10 {full['HR@10']:.4f}  "
          f"(most popular {popular['NDCG@10']:.4f} / {popular['HR@10']:.4f}); "
          f"sampled-100 NDCG@10 {sampled['NDCG@10']:.4f}  HR@10 {sampled['HR@10']:.4f}")
    print(f"written to {path}")


if __name__ == "__main__":
    try:
        main()
    except Bert4RecError as exc:  # a mistake in the command (an --out that exists, an unknown recipe): one line
        raise SystemExit(f"error: {exc}") from None
