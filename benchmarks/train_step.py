"""Training-step speed levers at today's default ML-1M training config, each measured in one run.

    .venv/bin/python benchmarks/train_step.py [--data ../shared/data/ml-1m] [--steps 60] [--timed 240] [--repeats 3]

Config: the defaults (hidden 64, 2 layers, batch 16, ratings and time gaps read, seen items out of the loss, weight
averaging). One epoch's cloze samples in length-bucketed batches; every variant trains the same batches from the
same initial weights. Variants: the dropout (PyTorch's per-element Bernoulli draws, ``nn.Dropout``, or the model's
``BitsDropout``) crossed with the optimizer (AdamW's per-tensor loop, or fused). The variants take turns, one step
each on the same batch, so that a host that slows down mid-run slows them all alike; the timed steps run --repeats
times over. Writes each repeat and the min / median / max of each variant's ms per step (and its speed-up over the
first variant, repeat by repeat) to benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import types
from pathlib import Path

import numpy as np
import torch
from repeats import spread
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bert4rec.data import movielens, preprocess
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.inputs import IGNORE, cloze_samples, cloze_types
from bert4rec.model.modeling import Bert4Rec, BitsDropout
from bert4rec.training import loop as train
from bert4rec.training.windows import TrainingWindows, crop, length_bucketed_batches

HERE = Path(__file__).resolve().parent
VARIANTS = {  # name: (native dropout, fused optimizer)
    "before: nn.Dropout + AdamW per-tensor loop": (True, False),
    "BitsDropout + AdamW per-tensor loop": (False, False),
    "nn.Dropout + fused AdamW": (True, True),
    "now: BitsDropout + fused AdamW": (False, True),
}


class Trainer:
    """One variant's model, optimizer and weight average, stepping over shared batches."""

    def __init__(self, model_config: Bert4RecConfig, config: train.TrainConfig, native_dropout: bool, fused: bool):
        torch.manual_seed(0)
        self.model = Bert4Rec(model_config).train()
        if native_dropout:
            for module in self.model.modules():
                if isinstance(module, BitsDropout):
                    module.forward = types.MethodType(nn.Dropout.forward, module)
        self.optimizer = train.make_optimizer(self.model, config, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)
        self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(0.9998))
        self.grad_clip = config.grad_clip

    def step(self, inputs: torch.Tensor, labels: torch.Tensor, types_: torch.Tensor) -> None:
        loss = self.model(inputs, labels, types_, reduction="sum", exclude_seen=True) / int((labels != IGNORE).sum())
        train.optimizer_step(self.model, self.averaged, self.optimizer, self.scheduler, loss, self.grad_clip)


def time_steps(trainers: dict, batches: list) -> dict[str, float]:
    """Seconds each variant spent on ``batches``; the variants take turns on each batch, so that a host slowing
    down slows all of them alike."""
    seconds = dict.fromkeys(trainers, 0.0)
    for batch in batches:
        for name, trainer in trainers.items():
            started = time.perf_counter()
            trainer.step(*batch)
            seconds[name] += time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/ml-1m"))
    parser.add_argument("--steps", type=int, default=60, help="warm-up steps per variant")
    parser.add_argument("--timed", type=int, default=240, help="timed steps per variant")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the timed steps")
    parser.add_argument("--out", type=Path, default=HERE / "results/train_step.json")
    args = parser.parse_args()

    dataset = preprocess.prepare(movielens.load(args.data))
    model_config = Bert4RecConfig(num_items=dataset.vocab.num_items, rating_aware=True, time_aware=True)
    config = train.TrainConfig()
    rng = np.random.default_rng(0)
    windows, type_windows = TrainingWindows(dataset, model_config.max_len, True).draw(rng)
    samples = cloze_samples(windows, model_config.mask_token, config.mask_prob, config.last_item_fraction, rng)
    token_types = cloze_types(type_windows, samples.labels, rng)
    batches = []
    for batch_rows in length_bucketed_batches(samples.lengths, config.batch_size, rng)[: args.steps + args.timed]:
        lengths = samples.lengths[batch_rows]
        batches.append(tuple(torch.from_numpy(crop(a[batch_rows], lengths))
                             for a in (samples.inputs, samples.labels, token_types)))
    trainers = {name: Trainer(model_config, config, *flags) for name, flags in VARIANTS.items()}
    for trainer in trainers.values():  # warm-up round, not timed
        for batch in batches[: args.steps]:
            trainer.step(*batch)
    timed = len(batches) - args.steps
    repeats = [time_steps(trainers, batches[args.steps :]) for _ in range(args.repeats)]
    before = next(iter(VARIANTS))
    rows = {name: {"ms_per_step": spread([1000 * seconds[name] / timed for seconds in repeats]),
                   "speed_up": spread([seconds[before] / seconds[name] for seconds in repeats]),
                   "runs_ms_per_step": [1000 * seconds[name] / timed for seconds in repeats]}
            for name in VARIANTS}
    for name, row in rows.items():
        print(f"{name:45s} {row['ms_per_step']['median']:6.1f} ms/step  {row['speed_up']['median']:.2f}x")
    report = {"machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}, {torch.get_num_threads()} threads",
              "data": args.data, "warm_up_steps": args.steps, "timed_steps": timed,
              "steps_per_epoch": -(-len(windows) // config.batch_size), "repeats": args.repeats, "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
