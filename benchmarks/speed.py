"""Training speed on ML-1M, with each speed lever measured against the plain version in one run.

    .venv/bin/python benchmarks/speed.py [--data ../shared/data/ml-1m] [--quality-epochs 8] [--repeats 3] [--peer]

Config: the paper's (hidden 64, 2 layers, 2 heads, max length 200, mask 0.2), batch 128, BERT4Rec split.
Prints a table and writes benchmarks/results/speed.json. Reports:
  * this machine's fp32 (and bf16) matmul peak, from 2048³ matmuls; where bf16 is slower than fp32 (no native bf16:
    autocast is emulated) the bf16 variants are skipped and the report says so;
  * per training variant, over --repeats rounds in which the variants take turns (min / median / max): seconds per
    epoch, sequences/s, useful GFLOP/s (model FLOPs counted analytically over
    non-padding tokens, forward + backward = 3 × forward) and that as a share of the fp32 peak;
  * quality guard: the plain and the fast variant trained the same epochs with the same seed, validation NDCG@10;
  * peak RSS (inference speed is benchmarks/inference.py's);
  * with --peer: RecTools' BERT4Rec seconds per epoch via ../shared/bench/peer_rectools.py, in its own virtualenv
    (~/.cache/peers/rectools-venv, set up as that script's header says).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from repeats import summarize

from bert4rec.data import movielens, preprocess
from bert4rec.model.config import Bert4RecConfig
from bert4rec.training import loop as train
from bert4rec.training.recipe import load_recipe
from bert4rec.training.windows import TrainingWindows

HERE = Path(__file__).resolve().parent
VARIANTS = {
    # name: (TrainConfig changes, Bert4RecConfig changes)
    "plain (pad to 200, fp32, attention dropout)": ({"bucketing": False, "precision": "fp32"},
                                                    {"attention_dropout": 0.2}),
    "+ length buckets": ({"bucketing": True, "precision": "fp32"}, {"attention_dropout": 0.2}),
    "+ length buckets + bf16": ({"bucketing": True, "precision": "bf16"}, {"attention_dropout": 0.2}),
    "+ length buckets + fused SDPA + bf16": ({"bucketing": True, "precision": "bf16"}, {"attention_dropout": 0.0}),
    "fast: length buckets + fused SDPA (no attention dropout), fp32": ({"bucketing": True, "precision": "fp32"},
                                                                       {"attention_dropout": 0.0}),
}
PLAIN, FAST = next(iter(VARIANTS)), list(VARIANTS)[-1]


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10, budget_s: float = 5.0) -> float:
    """GFLOP/s of n x n matmuls: up to ``reps`` of them after a warm-up one, stopping once ``budget_s`` is spent (an
    emulated dtype, such as bf16 on a CPU without it, takes minutes per matmul)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    done, started = 0, time.perf_counter()
    while done < reps and (done == 0 or time.perf_counter() - started < budget_s):
        a @ b
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - started) / 1e9


def epoch_flops(windows: np.ndarray, config: Bert4RecConfig, mask_prob: float) -> float:
    """Analytic training FLOPs of one epoch over non-padding tokens (multiply-add = 2 FLOPs)."""
    h, inner, n_items = config.hidden_size, config.intermediate_size, config.num_items
    lengths = (windows != 0).sum(1).astype(np.float64)
    tokens = lengths.sum()
    per_token_layer = 2 * (4 * h * h + 2 * h * inner)  # Q, K, V, output projections and the feed-forward
    attention = 2 * 2 * h * (lengths**2).sum()  # QK^T and AV over real tokens, per layer
    head = mask_prob * tokens * 2 * (h * h + h * n_items)  # masked positions only
    forward = config.num_layers * (per_token_layer * tokens + attention) + head
    return 3 * forward


def run_variant(dataset, name: str, epochs: int, seed: int, out: Path) -> dict:
    train_changes, model_changes = VARIANTS[name]
    model_config, config = load_recipe("paper").build(
        dataset.vocab.num_items, model_changes,
        {"epochs": epochs, "valid_every": epochs, "seed": seed, "device": "cpu", **train_changes})
    result = train.fit(dataset, out, model_config, config, progress=False)
    seconds = [h["train_seconds"] for h in result["history"]]
    return {"seconds_per_epoch": float(np.median(seconds)), "epochs": epochs,
            "valid_NDCG@10": result["history"][-1].get("valid_NDCG@10"),
            "valid_HR@10": result["history"][-1].get("valid_HR@10"), "model_config": model_config}


def variant_summary(rows: list[dict], windows: int, flops: float, fp32_peak: float) -> dict:
    """A variant's seconds per epoch over the rounds (min / median / max), what they make of the model's FLOPs, and
    the quality guard of its first round."""
    for row in rows:
        row["sequences_per_s"] = windows / row["seconds_per_epoch"]
        row["useful_gflops"] = flops / row["seconds_per_epoch"] / 1e9
        row["share_of_fp32_peak"] = row["useful_gflops"] / fp32_peak
    return {**summarize(rows, ("seconds_per_epoch", "sequences_per_s", "useful_gflops", "share_of_fp32_peak")),
            "valid_NDCG@10": rows[0]["valid_NDCG@10"], "quality_epochs": rows[0]["epochs"],
            "model_config": {k: v for k, v in vars(rows[0]["model_config"]).items() if k != "num_items"},
            "rounds_seconds_per_epoch": [row["seconds_per_epoch"] for row in rows]}


def peer_rectools(ratings: Path) -> dict:
    python = Path.home() / ".cache/peers/rectools-venv/bin/python"
    script = HERE.parent.parent / "shared/bench/peer_rectools.py"
    if not python.exists() or not script.exists():
        return {"error": f"needs {python} and {script}; see the script's header"}
    done = subprocess.run([str(python), str(script), "--ratings", str(ratings), "--model", "bert4rec", "--epochs",
                           "1", "--no-val", "--no-full-rank"], capture_output=True, text=True)
    epochs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    seconds = [e.get("epoch_s") or e.get("seconds") for e in epochs if isinstance(e, dict)]
    return {"seconds_per_epoch": next((s for s in seconds if s), None), "returncode": done.returncode,
            "stderr_tail": done.stderr[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/ml-1m"))
    parser.add_argument("--quality-epochs", type=int, default=8, help="epochs of the plain and fast runs")
    parser.add_argument("--timing-epochs", type=int, default=1, help="epochs of the other variants")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every variant, taken in turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer", action="store_true", help="also time RecTools' BERT4Rec (slow)")
    parser.add_argument("--out", type=Path, default=HERE / "results/speed.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    peak = {"fp32_gflops": matmul_peak(torch.float32), "bf16_gflops": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 {peak['bf16_gflops']:.0f} GFLOP/s")
    dataset = preprocess.prepare(movielens.load(args.data))
    windows, _ = TrainingWindows(dataset, 200).draw(np.random.default_rng(0))
    paper_model, paper_training = load_recipe("paper").build(dataset.vocab.num_items)
    flops = epoch_flops(windows, paper_model, paper_training.mask_prob)
    # Without native bf16 (the matmul peak says) bf16 autocast is emulated, orders of magnitude slower: not measured.
    variants = [name for name in VARIANTS if VARIANTS[name][0]["precision"] != "bf16"
                or peak["bf16_gflops"] >= peak["fp32_gflops"]]
    rounds = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # the variants take turns: a host slowing down slows them all
            for name in variants:
                guard = repeat == 0 and name in (PLAIN, FAST)  # the first round also checks quality
                epochs = args.quality_epochs if guard else args.timing_epochs
                row = run_variant(dataset, name, epochs, args.seed, Path(tmp) / f"{repeat}-{name.replace(' ', '_')}")
                rounds[name].append(row)
                print(f"{name:58s} {row['seconds_per_epoch']:6.1f} s/epoch  NDCG@10 "
                      f"{row['valid_NDCG@10'] or float('nan'):.4f}", flush=True)
        second_seed = run_variant(dataset, FAST, args.quality_epochs, args.seed + 1, Path(tmp) / "seed2")
    results = {name: variant_summary(rows, len(windows), flops, peak["fp32_gflops"]) for name, rows in rounds.items()}
    results[FAST]["valid_NDCG@10_second_seed"] = second_seed["valid_NDCG@10"]
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "data": args.data, "windows_per_epoch": len(windows), "tokens_per_epoch": int((windows != 0).sum()),
        "analytic_tflops_per_epoch": flops / 1e12, "matmul_peak": peak, "training": results,
        "skipped": {name: "no native bf16 on this CPU (bf16 matmul peak below fp32's)"
                    for name in VARIANTS if name not in variants},
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if args.peer:
        report["peer_rectools"] = peer_rectools(Path(args.data) / "ratings.dat")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    plain, fast = results[PLAIN], results[FAST]
    print(f"\nspeed-up fast vs plain (medians): "
          f"{plain['seconds_per_epoch']['median'] / fast['seconds_per_epoch']['median']:.2f}x; "
          f"validation NDCG@10 after {args.quality_epochs} epochs: plain {plain['valid_NDCG@10']:.4f}, "
          f"fast {fast['valid_NDCG@10']:.4f} (second seed {fast['valid_NDCG@10_second_seed']:.4f})")
    print(f"peak RSS {report['peak_rss_gb']:.2f} GB")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
