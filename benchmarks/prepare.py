"""Benchmark `prepare` on a synthetic ratings table with ML-32M's shape.

    .venv/bin/python benchmarks/prepare.py [--rows 32000000] [--users 200000] [--items 87000] [--repeats 3]
        [--out FILE.json]

Generates the table (long-tailed item popularity, log-normal user activity, per-user increasing timestamps with
ties) as ratings.parquet in a temporary folder, then, in a fresh process per repeat, times reading it, preparing it
and writing the prepared folder, and reports rows/s and that process's peak RSS: each repeat, and the min / median
/ max of each figure. Target on the 2-core machine: 32M rows in under
60 s with under 6 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from repeats import summarize

WORKER = """
import json, resource, sys, time
from pathlib import Path
from bert4rec.data import movielens, preprocess
folder = Path(sys.argv[1])
t0 = time.perf_counter()
raw = movielens.load(folder / "ratings.parquet")
t1 = time.perf_counter()
dataset = preprocess.prepare(raw)
t2 = time.perf_counter()
preprocess.save_prepared(dataset, folder / "prepared")
t3 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "prepare_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t0,
                  "stats": {k: dataset.stats[k] for k in ("num_users", "num_items", "num_interactions")},
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def synthetic_ratings(rows: int, users: int, items: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(mean=0.0, sigma=1.2, size=users)
    counts = np.maximum(1, np.round(activity / activity.sum() * rows)).astype(np.int64)
    counts[-1] += rows - counts.sum()
    if counts[-1] < 1:  # rounding overshoot: trim the largest users instead
        counts[-1] = 1
        excess = counts.sum() - rows
        counts[np.argmax(counts)] -= excess
    user = np.repeat(rng.permutation(users).astype(np.int64) + 1, counts)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9  # Zipf-like long tail
    item = rng.choice(items, size=rows, p=popularity / popularity.sum()).astype(np.int64) + 1
    start = rng.integers(1_000_000_000, 1_700_000_000, size=users)
    # seconds between ratings: often 0 (ties, as in MovieLens' batch rating sessions), sometimes days
    gaps = np.where(rng.random(rows) < 0.3, 0, rng.exponential(3600.0, rows)).astype(np.int64)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    cum = np.cumsum(gaps)
    timestamps = np.repeat(start, counts) + cum - np.repeat(cum[first], counts)
    shuffle = rng.permutation(rows)  # files are not sorted by user
    rating = (rng.integers(1, 11, rows) / 2).astype(np.float32)
    return pd.DataFrame({"userId": user[shuffle], "movieId": item[shuffle], "rating": rating,
                         "timestamp": timestamps[shuffle]})


def run_worker(folder: Path) -> dict:
    """One timed read → prepare → write, in a fresh process (so that its peak RSS is its own)."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=87_000)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes timed, one after another")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prepare.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        synthetic_ratings(args.rows, args.users, args.items).to_parquet(folder / "ratings.parquet")
        generate_s = time.perf_counter() - t0
        runs = [run_worker(folder) for _ in range(args.repeats)]
    for run in runs:
        run["rows_per_s"] = args.rows / run["total_s"]
    result = {
        "rows": args.rows, "users": args.users, "items": args.items, "generate_s": generate_s,
        "stats": runs[0]["stats"], "repeats": args.repeats,
        **summarize(runs, ("read_s", "prepare_s", "write_s", "total_s", "rows_per_s", "peak_rss_gb")), "runs": runs,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                   f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"prepare on {args.rows:,} synthetic rows ({args.users:,} users, {args.items:,} items) — {result['machine']}")
    for name in ("read_s", "prepare_s", "write_s", "total_s", "peak_rss_gb"):
        figure = result[name]
        print(f"  {name:12s} median {figure['median']:7.2f}  (min {figure['min']:.2f}, max {figure['max']:.2f})")
    print(f"  kept     {result['stats']}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
