"""Benchmark training losses on an ML-32M-sized catalogue (87,000 items): memory and seconds per step.

    .venv/bin/python benchmarks/large_catalog.py [--items 87000] [--batch-size 128] [--max-len 200] [--steps 5]
        [--repeats 3] [--out FILE.json]

Synthetic histories (full-length, so every batch has ~batch x max_len x 0.2 masked positions), the default model
(hidden 64, 2 layers), AdamW. Each variant runs in a fresh process, which reports its seconds per training step
(after one warm-up step) and its peak RSS; "eval" scores 2,048 users against the whole catalogue as full-ranking
evaluation and recommendation do. The variants take turns, --repeats times over; the report has every run and the
min / median / max of each figure. Variants:
  full-unchunked  exact softmax, all (positions x items) logits at once (what the loss did before chunking)
  full            exact softmax in chunks of positions (the default; same loss and gradients)
  sampled-1024 / sampled-8192   sampled softmax with that many popularity negatives, log-Q corrected
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from repeats import summarize

VARIANTS = ("full-unchunked", "full", "sampled-1024", "sampled-8192", "eval")

WORKER = """
import functools, json, resource, sys, time
import numpy as np, torch
from bert4rec.evaluation.protocols import EvalSet, full_ranking_ranks
from bert4rec.model.scoring import model_scorer
from bert4rec.model.losses import SampledSoftmax, full_softmax
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.model.inputs import cloze_samples
variant, items, batch_size, max_len, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    int(sys.argv[5])
torch.manual_seed(0)
rng = np.random.default_rng(0)
model = Bert4Rec(Bert4RecConfig(num_items=items, max_len=max_len, rating_aware=False))
popularity = 1.0 / np.arange(1, items + 1) ** 0.9
windows = rng.choice(items, size=(batch_size, max_len), p=popularity / popularity.sum()) + 1
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
before = rss()
if variant == "eval":
    users = 2048
    tokens = (rng.choice(items, size=users * max_len, p=popularity / popularity.sum()) + 1).astype(np.int64)
    starts = np.arange(users) * max_len
    data = EvalSet(tokens, starts, starts + max_len - 1, tokens[starts + max_len - 1] - 1)
    model.eval()
    started = time.perf_counter()
    full_ranking_ranks(model_scorer(model), data, max_len, model.config.mask_token)
    print(json.dumps({"seconds_per_1000_users": (time.perf_counter() - started) / users * 1000,
                      "rss_before_gb": before, "peak_rss_gb": rss()}))
    sys.exit()
if variant == "full-unchunked":
    loss_fn = functools.partial(full_softmax, budget=1 << 62)
elif variant == "full":
    loss_fn = full_softmax
else:
    loss_fn = SampledSoftmax(popularity, int(variant.split("-")[1]))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
times = []
for step in range(steps + 1):
    samples = cloze_samples(windows, model.config.mask_token, 0.2, 0.0, rng)
    started = time.perf_counter()
    loss = model(torch.from_numpy(samples.inputs), torch.from_numpy(samples.labels), loss=loss_fn)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    times.append(time.perf_counter() - started)
masked = int((samples.labels != -100).sum())
print(json.dumps({"seconds_per_step": float(np.median(times[1:])), "masked_positions": masked,
                  "loss": float(loss), "rss_before_gb": before, "peak_rss_gb": rss()}))
"""


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """One variant in a fresh process (so that its peak RSS is its own)."""
    done = subprocess.run([sys.executable, "-c", WORKER, variant, str(args.items), str(args.batch_size),
                           str(args.max_len), str(args.steps)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{variant}: {done.stderr.strip().splitlines()[-1]}")
    result = json.loads(done.stdout)
    result["extra_rss_gb"] = result["peak_rss_gb"] - result["rss_before_gb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=87_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/large_catalog.json"))
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {__import__('torch').__version__}"
    print(f"{args.items:,} items, batch {args.batch_size} x {args.max_len}, mask 0.2 — {machine}")
    runs = {variant: [] for variant in args.variants}
    for _ in range(args.repeats):
        for variant in args.variants:
            runs[variant].append(result := run_variant(variant, args))
            extra = result["peak_rss_gb"] - result["rss_before_gb"]
            timing = (f"{result['seconds_per_step']:6.2f} s/step" if "seconds_per_step" in result
                      else f"{result['seconds_per_1000_users']:6.2f} s/1000 users")
            print(f"  {variant:15s} {timing}   peak RSS {result['peak_rss_gb']:5.2f} GB "
                  f"(+{extra:.2f} GB over the model and data)", flush=True)
    results = {variant: summarize(rows, [k for k in rows[0] if k != "masked_positions"]) | {"runs": rows}
               for variant, rows in runs.items()}
    report = {"items": args.items, "batch_size": args.batch_size, "max_len": args.max_len, "machine": machine,
              "repeats": args.repeats, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
