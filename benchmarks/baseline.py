"""The most-popular baseline on each dataset's BERT4Rec split, under the current evaluation protocol.

    .venv/bin/python benchmarks/baseline.py [--data ../shared/data/ml-1m ../shared/data/ml-100k ...]

For each data folder: prepare it as quality.py does, then rank every user's validation and test target by
training-split popularity (full ranking with the history excluded, and the paper's 100 popularity-sampled
negatives, seed 0), ties broken fairly (see bert4rec.evaluation.metrics). Writes
benchmarks/results/baseline-DATA.json (DATA: the folder's name without dashes), which the docs' most-popular rows
are generated from. No model; seconds per dataset.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bert4rec.data import movielens, preprocess
from bert4rec.evaluation.protocols import evaluate_scorer, popularity_scorer, training_popularity
from bert4rec.evaluation.splits import SPLITS
from bert4rec.model.config import Bert4RecConfig

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(SHARED / n) for n in ("ml-1m", "ml-100k", "ml-latest-small")])
    for folder in parser.parse_args().data:
        dataset = preprocess.prepare(movielens.load(folder))
        scorer = popularity_scorer(training_popularity(dataset))
        report = {"data": folder, "scorer": "most popular (training split)"}
        report |= {split: evaluate_scorer(scorer, dataset, split, Bert4RecConfig.max_len) for split in SPLITS}
        path = HERE / "results" / f"baseline-{Path(folder).name.replace('-', '')}.json"
        path.write_text(json.dumps(report, indent=2))
        test = report["test"]["full"]
        print(f"{path.name}: test NDCG@10 {test['NDCG@10']:.4f}, HR@10 {test['HR@10']:.4f}")


if __name__ == "__main__":
    main()
