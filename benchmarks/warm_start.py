"""Warm start against a fresh model: does starting from last period's model reach a fresh model's quality sooner?

    .venv/bin/python benchmarks/warm_start.py [--data ../shared/data/ml-1m] [--recipe ml-1m-best] [--epochs 30]
        [--warm-epochs 3 6] [--holdout-share 0.1] [--device auto]

The last --holdout-share of time (every event after the cut-off date that leaves that share after it) is hidden,
with the movies first rated in it. A model is trained on the rest (the stale model: the recipe, --epochs). Then, on
all the data, (a) the stale model is warm-started (`train --init-from`: known movies keep their weights, new ones
start from their genre mates) for each of --warm-epochs, and (b) a fresh model is trained for --epochs. Each is
selected on validation, as every run is, and tested once, full ranking with the history excluded. The stale model is
tested too, on all the data, as it would serve: it cannot recommend the new movies (their scores are -inf).

Reports test NDCG@10 / HR@10 and training minutes of each, the share of test targets that are new movies, HR@10
on those targets, and the share of users whose ten recommendations (after their whole history) hold a new movie;
writes benchmarks/results/warm-start-DATA.json. Target: the warm start reaches at least 97% of the fresh model's
test NDCG@10 in at most a fifth of its training minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bert4rec.data import movielens, preprocess
from bert4rec.evaluation import metrics
from bert4rec.evaluation.protocols import EvalSet, full_ranking_ranks
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.model.scoring import model_scorer
from bert4rec.serving.recommender import Recommender
from bert4rec.training.loop import fit
from bert4rec.training.recipe import load_recipe
from bert4rec.training.warm_start import BIAS, set_catalogue_features, warm_start

HERE = Path(__file__).resolve().parent


def split_in_time(raw: movielens.RawDataset, share: float) -> tuple[movielens.RawDataset, int]:
    """The dataset without its last ``share`` of events (by time), and the cut-off timestamp."""
    cut = int(np.quantile(raw.ratings["timestamp"].to_numpy(), 1 - share))
    return dataclasses.replace(raw, ratings=raw.ratings[raw.ratings["timestamp"] < cut]), cut


def train(dataset, folder: Path, recipe: str, epochs: int, device: str, init_from: Path | None = None) -> float:
    model_config, config = load_recipe(recipe).build(
        dataset.vocab.num_items, None, {"epochs": epochs, "device": device, "max_minutes": None,
                                        "init_from": str(init_from) if init_from else None})
    started = time.perf_counter()
    fit(dataset, folder, model_config, config, progress=False)
    return (time.perf_counter() - started) / 60


def test_ranks(model: Bert4Rec, dataset, device: str) -> tuple[metrics.Ranks, np.ndarray]:
    """Test ranks of every user, and each user's target (0-based item column)."""
    data = EvalSet.for_split(dataset.sequences(), dataset.eval_users(), "test")
    ranks = full_ranking_ranks(model_scorer(model.eval(), device), data, model.config.max_len, dataset.vocab.mask)
    return ranks, data.targets


def report(model: Bert4Rec, dataset, new: np.ndarray, minutes: float | None, device: str) -> dict:
    ranks, targets = test_ranks(model, dataset, device)
    on_new = np.isin(targets, new)
    subset = metrics.Ranks(ranks.above[on_new], ranks.tied[on_new])
    return {"test_NDCG@10": metrics.ndcg(ranks, 10), "test_HR@10": metrics.hit_rate(ranks, 10),
            "new_movie_targets_HR@10": metrics.hit_rate(subset, 10) if on_new.any() else None,
            "users_with_a_new_movie_in_top10": new_in_top10(model, dataset, new), "minutes": minutes}


def new_in_top10(model: Bert4Rec, dataset, new: np.ndarray) -> float:
    """The share of users whose ten recommendations now (after their whole history) hold a new movie."""
    top = Recommender(model, dataset).recommend_users(k=10)
    holds_new = np.isin(top["movieId"].to_numpy(), dataset.vocab.item_ids[new])
    return float(pd.Series(holds_new).groupby(top["userId"].to_numpy()).any().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/ml-1m")
    parser.add_argument("--recipe", default="ml-1m-best")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the stale and of the fresh model")
    parser.add_argument("--warm-epochs", type=int, nargs="+", default=[3, 6], help="each a warm start's schedule")
    parser.add_argument("--holdout-share", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)

    raw = movielens.load(args.data)
    before, cut = split_in_time(raw, args.holdout_share)
    old, everything = preprocess.prepare(before), preprocess.prepare(raw)
    new_movies = np.flatnonzero(~old.vocab.known(everything.vocab.item_ids))  # item columns of `everything`
    with tempfile.TemporaryDirectory(prefix="warm-start-") as folder:
        stale_dir, fresh_dir = Path(folder) / "stale", Path(folder) / "fresh"
        stale_minutes = train(old, stale_dir, args.recipe, args.epochs, device)
        runs = {f"warm-{epochs}": (Path(folder) / f"warm-{epochs}",
                                   train(everything, Path(folder) / f"warm-{epochs}", args.recipe, epochs, device,
                                         init_from=stale_dir)) for epochs in args.warm_epochs}
        runs["fresh"] = fresh_dir, train(everything, fresh_dir, args.recipe, args.epochs, device)
        # The stale model as it would serve the new data: new movies unknown to it, never recommended.
        stale = Bert4Rec(dataclasses.replace(Bert4RecConfig.load(stale_dir), num_items=everything.vocab.num_items))
        set_catalogue_features(stale, everything)
        warm_start(stale, stale_dir, everything)
        with torch.no_grad():
            stale.state_dict()[BIAS][torch.from_numpy(new_movies)] = float("-inf")
        rows = {"stale": report(stale, everything, new_movies, stale_minutes, device)}
        for name, (folder_of, minutes) in runs.items():
            rows[name] = report(Bert4Rec.load(folder_of), everything, new_movies, minutes, device)
    targets_new = float(np.isin(EvalSet.for_split(everything.sequences(), everything.eval_users(), "test").targets,
                                new_movies).mean())
    result = {
        "data": str(args.data), "recipe": args.recipe, "epochs": args.epochs, "warm_epochs": args.warm_epochs,
        "holdout_share": args.holdout_share, "cut_off_timestamp": cut, "new_movies": len(new_movies),
        "test_targets_new_share": targets_new, "device": device, **rows,
        "warm_over_fresh": {name: {"NDCG@10": rows[name]["test_NDCG@10"] / rows["fresh"]["test_NDCG@10"],
                                   "minutes": rows[name]["minutes"] / rows["fresh"]["minutes"]}
                            for name in rows if name.startswith("warm-")},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    out = args.out or HERE / "results" / f"warm-start-{args.data.name.replace('-', '')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
