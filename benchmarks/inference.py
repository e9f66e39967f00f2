"""Inference speed of a model folder: one user at a time, all users at once, and model scoring alone in PyTorch
and in ONNX Runtime.

    .venv/bin/python benchmarks/inference.py MODEL_DIR [--repeats 3] [--singles 200]

For example on an ML-1M model of the paper recipe (the speed depends on the model's shape and the catalogue, not on
how long it trained):

    .venv/bin/bert4rec train --data ../shared/data/ml-1m --recipe paper --epochs 1 --out runs/serve-paper-1ep
    .venv/bin/python benchmarks/inference.py runs/serve-paper-1ep

Each repeat measures, in turn: `recommend_user` for --singles users with at least 200 movies (the full catalogue
scored, seen movies excluded, k = 10; p50 and p99), `recommend_users` for every user in one call, and the model's
scoring of one 200-movie history alone, PyTorch eager against the exported ONNX graph (p50). Writes every repeat and
the min / median / max of each figure to benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from repeats import summarize

from bert4rec.model.inputs import inference_inputs
from bert4rec.serving.export import OnnxScorer, export_onnx
from bert4rec.serving.recommender import Recommender

HERE = Path(__file__).resolve().parent


def percentiles(laps: list[float], name: str) -> dict:
    return {f"{name}_p50_ms": 1000 * float(np.percentile(laps, 50)),
            f"{name}_p99_ms": 1000 * float(np.percentile(laps, 99))}


def timed(call, inputs) -> list[float]:
    call(inputs[0])  # warm-up
    laps = []
    for x in inputs:
        started = time.perf_counter()
        call(x)
        laps.append(time.perf_counter() - started)
    return laps


def one_repeat(recommender: Recommender, scorer: OnnxScorer, users: np.ndarray, histories: list[np.ndarray]) -> dict:
    figures = percentiles(timed(lambda user: recommender.recommend_user(int(user), 10), users), "single_user")
    started = time.perf_counter()
    recommender.recommend_users(None, 10)
    figures["all_users_s"] = time.perf_counter() - started
    with torch.inference_mode():
        torch_laps = timed(lambda x: recommender.model.score_last(torch.from_numpy(x)), histories)
    figures |= percentiles(torch_laps, "torch_scoring") | percentiles(timed(scorer.score_last, histories),
                                                                      "onnx_scoring")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--singles", type=int, default=200, help="users timed one at a time")
    parser.add_argument("--out", type=Path, default=HERE / "results/inference.json")
    args = parser.parse_args()

    recommender = Recommender.load(args.model_dir)
    seqs, max_len, mask = recommender.histories, recommender.model.config.max_len, recommender.vocab.mask
    rows = np.flatnonzero(seqs.lengths >= 200)[: args.singles]
    users = recommender.user_index.index.to_numpy()[rows]
    histories = [inference_inputs(seqs.tokens, seqs.offsets[[u]], seqs.offsets[[u + 1]], max_len, mask) for u in rows]
    scorer = OnnxScorer(export_onnx(args.model_dir, args.model_dir / "model.onnx"), threads=torch.get_num_threads())
    runs = []
    for repeat in range(args.repeats):
        runs.append(one_repeat(recommender, scorer, users, histories))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items()), flush=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads",
              "model_dir": str(args.model_dir), "items": recommender.vocab.num_items,
              "users": len(recommender.user_index), "single_user_calls": len(users), "repeats": args.repeats,
              **summarize(runs, runs[0]), "runs": runs,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
