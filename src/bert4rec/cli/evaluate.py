"""``bert4rec evaluate``: exact evaluation of a model folder on its own dataset."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bert4rec.cli.main import ModelDirArgument, SeedOption, command, console
from bert4rec.cli.tables import metrics_table
from bert4rec.errors import Bert4RecError


@command("evaluate")
def evaluate_command(
    model_dir: ModelDirArgument,
    split: Annotated[str, typer.Option(help="valid (model selection) or test (report once).")] = "test",
    sampled: Annotated[bool, typer.Option(help="Also the paper's protocol: 100 negatives sampled by "
                                               "popularity (seeded).")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    seed: SeedOption = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Exact evaluation: full ranking over all items, history excluded; writes MODEL_DIR/metrics.json."""
    from bert4rec.evaluation.protocols import evaluate_folder
    from bert4rec.evaluation.splits import SPLITS

    if split not in SPLITS:
        raise Bert4RecError(f"--split must be one of {', '.join(SPLITS)}, not '{split}'")
    result = evaluate_folder(model_dir, split, device, sampled=sampled, seed=seed)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        console.print(metrics_table(result))
