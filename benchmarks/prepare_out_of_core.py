"""Benchmark the out-of-core prepare (DuckDB) on a synthetic partitioned parquet dataset larger than memory.

    .venv/bin/python benchmarks/prepare_out_of_core.py [--rows 200000000] [--files 200] [--users 1000000]
        [--items 87000] [--memory-limit 4GB] [--work-dir DIR] [--keep] [--repeats 3] [--out FILE.json]

Writes the table as --files parquet files, one per "day" (a user's interactions are spread over many files,
timestamps at one-second resolution so that some tie), then, in a fresh process per repeat, runs
``outofcore.prepare_partitioned`` and reports rows/s and that process's peak RSS (DuckDB's native memory
included): each repeat, and the min / median / max of each figure. Target on the 2-core, 24 GiB machine: 200M
interactions with under 8 GB peak RSS. For scale: benchmarks/prepare.py measures the in-memory path's peak RSS on 32M
rows, which grows in proportion to the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from repeats import summarize

WORKER = """
import json, resource, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from bert4rec.data.outofcore import prepare_partitioned
folder, out, memory_limit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
stats = prepare_partitioned(folder, out, memory_limit=memory_limit, temp_dir=out.parent, progress=False)
seconds = time.perf_counter() - started
rows = pq.ParquetFile(out / "interactions.parquet").metadata.num_rows
print(json.dumps({"prepare_s": seconds, "rows_written": rows,
                  "stats": {k: stats[k] for k in ("num_users", "num_items", "num_interactions", "num_eval_users")},
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _draw(cdf: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(count)), len(cdf) - 1)


def write_partitions(folder: Path, rows: int, files: int, users: int, items: int, seed: int = 0) -> None:
    """One file per day; long-tailed user activity and item popularity; users spread over all the days."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.2, users)
    user_cdf = np.cumsum(activity / activity.sum())
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    item_cdf = np.cumsum(popularity / popularity.sum())
    user_ids = rng.permutation(users).astype(np.int64) + 1  # ids not in activity order
    for day, count in enumerate(np.diff(np.linspace(0, rows, files + 1).astype(np.int64))):
        table = pa.table({
            "userId": user_ids[_draw(user_cdf, count, rng)],
            "movieId": _draw(item_cdf, count, rng).astype(np.int64) + 1,
            "rating": (rng.integers(1, 11, count) / 2).astype(np.float32),
            "timestamp": 1_600_000_000 + day * 86_400 + rng.integers(0, 86_400, count),
        })
        part = folder / f"day={day:04d}"
        part.mkdir(parents=True)
        pq.write_table(table, part / "part-0.parquet")


def run_worker(data: Path, out: Path, memory_limit: str) -> dict:
    """One timed out-of-core prepare in a fresh process (so that its peak RSS is its own); its output removed."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-c", WORKER, str(data), str(out), memory_limit],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["output_gb"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e9
    shutil.rmtree(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=87_000)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the data, spill and output go")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the generated data in --work-dir")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes timed, one after another")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prepare_out_of_core.json"))
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bert4rec-ooc-"))
    data = work / f"synthetic-{args.rows}-{args.files}-{args.users}-{args.items}"
    generate_s = 0.0
    if not data.exists():
        started = time.perf_counter()
        write_partitions(data.with_suffix(".tmp"), args.rows, args.files, args.users, args.items)
        data.with_suffix(".tmp").rename(data)
        generate_s = time.perf_counter() - started
    input_gb = sum(p.stat().st_size for p in data.rglob("*.parquet")) / 1e9
    runs = [run_worker(data, work / "prepared", args.memory_limit) for _ in range(args.repeats)]
    if not args.keep:
        shutil.rmtree(work if args.work_dir is None else data)
    for run in runs:
        run["rows_per_s"] = args.rows / run["prepare_s"]
    result = {
        "rows": args.rows, "files": args.files, "users": args.users, "items": args.items,
        "memory_limit": args.memory_limit, "generate_s": generate_s, "input_gb": input_gb,
        "output_gb": runs[0]["output_gb"], "stats": runs[0]["stats"], "repeats": args.repeats,
        **summarize(runs, ("prepare_s", "rows_per_s", "peak_rss_gb")), "runs": runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
                   f"Python {platform.python_version()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"out-of-core prepare of {args.rows:,} rows in {args.files} parquet files ({input_gb:.1f} GB) — "
          f"{result['machine']}")
    for name in ("prepare_s", "peak_rss_gb"):
        figure = result[name]
        print(f"  {name:12s} median {figure['median']:8.2f}  (min {figure['min']:.2f}, max {figure['max']:.2f})")
    print(f"  output    {result['output_gb']:8.1f} GB   {result['stats']}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
