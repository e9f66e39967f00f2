"""``bert4rec quickstart``: the whole pipeline in one go, with the ``small`` recipe."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.data import load_dataset
from bert4rec.cli.main import command, console
from bert4rec.cli.tables import history_line, metrics_table, recs_table, stats_table, train_table

QUICKSTART_RECIPE = "small"
QUICKSTART_TITLES = ["Toy Story", "Matrix", "Shawshank Redemption"]


@command("quickstart")
def quickstart_command(
    out: Annotated[Path, typer.Option(help="Model folder to (re)create.")] = Path("quickstart-model"),
    data: Annotated[str, typer.Option(help="Dataset to use (release name, folder or file).")] = "ml-latest-small",
    epochs: Annotated[int | None, typer.Option(
        help="Epochs of the learning-rate schedule (default: the small recipe's).", show_default=False)] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Training-time budget in minutes (default: the small recipe's).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """The whole pipeline in one go: get ml-latest-small (local data home first, else download), prepare it,
    train a small model for a few minutes (the small recipe), evaluate it against the popularity baseline, and
    recommend."""
    from bert4rec.evaluation.protocols import evaluate_folder
    from bert4rec.serving.recommender import Recommender
    from bert4rec.training.loop import fit
    from bert4rec.training.recipe import load_recipe

    console.rule(f"1/4 data: {data}")
    dataset = load_dataset(data)
    console.print(stats_table(dataset.stats))
    console.rule("2/4 training")
    if out.exists():
        shutil.rmtree(out)
    recipe = load_recipe(QUICKSTART_RECIPE)
    overrides = {"device": device} | {name: value for name, value in (("epochs", epochs), ("max_minutes", max_minutes))
                                      if value is not None}
    model_config, config = recipe.build(dataset.vocab.num_items, training_overrides=overrides)
    result = fit(dataset, out, model_config, config, recipe=recipe.provenance({}, overrides))
    console.print(train_table(result, out))
    console.rule("3/4 evaluation on the test split")
    console.print(metrics_table(evaluate_folder(out, "test", result["device"])))
    console.rule("4/4 recommendations")
    recommender = Recommender.load(out, result["device"])
    user = int(dataset.user_ids[0])
    recs = recommender.recommend_user(user, 10)
    console.print(recs_table(recs, f"top 10 for user {user}"))
    console.print(history_line(recs), highlight=False)
    recs = recommender.recommend_titles(QUICKSTART_TITLES, 10)
    console.print(recs_table(recs, "top 10 after watching " + ", ".join(QUICKSTART_TITLES)))
    console.print(f"\nNext: bert4rec recommend {out} --movies \"Heat\" \"Fargo\"   |   "
                  f"bert4rec evaluate {out} --split valid", highlight=False)
