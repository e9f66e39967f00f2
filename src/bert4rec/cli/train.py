"""``bert4rec train``. Every option's default is the one in ``Bert4RecConfig`` or ``TrainConfig``; a ``--recipe``
replaces the defaults it names, and options given on the command line override both."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.data import load_dataset
from bert4rec.cli.main import command, console
from bert4rec.cli.tables import train_table
from bert4rec.errors import Bert4RecError
from bert4rec.model.config import Bert4RecConfig
from bert4rec.training.config import WARM_SCHEDULE_SHARE, TrainConfig

DATA, MODEL, TRAINING, RUN = "Data", "Model", "Training", "Run and output"
# Option name -> the config field it sets
MODEL_OPTIONS = {"hidden_size": "hidden_size", "layers": "num_layers", "heads": "num_heads", "max_len": "max_len",
                 "dropout": "dropout", "attention_dropout": "attention_dropout", "rating_aware": "rating_aware",
                 "time_aware": "time_aware", "genre_aware": "genre_aware", "year_aware": "year_aware"}
TRAINING_OPTIONS = ("epochs", "batch_size", "lr", "mask_prob", "last_item_fraction", "valid_every", "patience",
                    "max_minutes", "device", "precision", "loss", "negatives", "exclude_seen", "ema_decay",
                    "average_last", "holdout", "shift_windows", "seed", "init_from")


def _default(config: type, name: str):
    return next(f.default for f in fields(config) if f.name == name)


def model_default(option: str):
    return _default(Bert4RecConfig, MODEL_OPTIONS[option])


def training_default(option: str):
    return _default(TrainConfig, option)


@command("train")
def train_command(
    ctx: typer.Context,
    data: Annotated[str | None, typer.Option(
        "--data", rich_help_panel=DATA,
        help="A prepared folder (bert4rec prepare), or any dataset --data of `prepare` accepts (an event store's "
             "URL too), prepared on the fly with default settings. Not needed with --resume.")] = None,
    recipe: Annotated[str | None, typer.Option(
        rich_help_panel=DATA,
        help="Start from a named recipe (paper, ml-1m-best, small) or a recipe .toml file; the options given "
             "here override it.", show_default=False)] = None,
    hidden_size: Annotated[int, typer.Option(help="Hidden size (the feed-forward width is 4x).",
                                             rich_help_panel=MODEL)] = model_default("hidden_size"),
    layers: Annotated[int, typer.Option(help="Transformer layers.", rich_help_panel=MODEL)] = model_default("layers"),
    heads: Annotated[int, typer.Option(help="Attention heads.", rich_help_panel=MODEL)] = model_default("heads"),
    max_len: Annotated[int, typer.Option(help="Longest history the model reads.",
                                         rich_help_panel=MODEL)] = model_default("max_len"),
    dropout: Annotated[float, typer.Option(help="Dropout on embeddings and hidden layers.",
                                           rich_help_panel=MODEL)] = model_default("dropout"),
    attention_dropout: Annotated[float, typer.Option(
        help="Dropout on attention probabilities (the paper: 0.2; above 0 it disables fused attention, which is "
             "much slower).", rich_help_panel=MODEL)] = model_default("attention_dropout"),
    rating_aware: Annotated[bool, typer.Option(
        "--rating-aware/--no-rating-aware", rich_help_panel=MODEL,
        help="Read each interaction's rating (as a token type added to the movie) and learn to fill a [MASK] "
             "asked to be 'liked' (4+ stars): enables `recommend --liked`. Data without ratings reads as unrated.")]
    = model_default("rating_aware"),
    time_aware: Annotated[bool, typer.Option(
        "--time-aware/--no-time-aware", rich_help_panel=MODEL,
        help="Read the time since the user's previous interaction (log-scale buckets, as a token type added to "
             "the movie): tells the model which movies belong to the current sitting.")]
    = model_default("time_aware"),
    genre_aware: Annotated[bool, typer.Option(
        "--genre-aware/--no-genre-aware", rich_help_panel=MODEL,
        help="Add each movie's genres (the mean of their learned embeddings) to its embedding, where the model "
             "reads it and where it scores it: movies with few ratings borrow from their genre mates.")]
    = model_default("genre_aware"),
    year_aware: Annotated[bool, typer.Option(
        "--year-aware/--no-year-aware", rich_help_panel=MODEL,
        help="Add each movie's release-year bucket (five years wide, from the title) to its embedding, as "
             "--genre-aware does its genres.")]
    = model_default("year_aware"),
    epochs: Annotated[int, typer.Option(help="Epochs of the learning-rate schedule (the most that run).",
                                        rich_help_panel=TRAINING)] = training_default("epochs"),
    batch_size: Annotated[int, typer.Option(
        help="Sequences per batch (per process when distributed). The paper's 128 learns far less per epoch.",
        rich_help_panel=TRAINING)] = training_default("batch_size"),
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then linear decay).",
                                      rich_help_panel=TRAINING)] = training_default("lr"),
    mask_prob: Annotated[float, typer.Option(help="Cloze masking probability.",
                                             rich_help_panel=TRAINING)] = training_default("mask_prob"),
    last_item_fraction: Annotated[float, typer.Option(
        help="Fraction of samples that mask only their most recent item.", rich_help_panel=TRAINING)]
    = training_default("last_item_fraction"),
    loss: Annotated[str, typer.Option(
        help="full: exact softmax over every item (computed in chunks when the catalogue is large); sampled: the "
             "target against --negatives items drawn by popularity, log-Q corrected (faster on huge catalogues).",
        rich_help_panel=TRAINING)] = training_default("loss"),
    negatives: Annotated[int, typer.Option(help="Negatives per batch for --loss sampled.",
                                           rich_help_panel=TRAINING)] = training_default("negatives"),
    exclude_seen: Annotated[bool, typer.Option(
        help="Leave the other movies of a sample's window out of each masked slot's softmax, as recommending "
             "leaves out what the user has seen (right for data where nobody rates a movie twice).",
        rich_help_panel=TRAINING)] = training_default("exclude_seen"),
    ema_decay: Annotated[float | None, typer.Option(
        help="Validate and keep an exponential moving average of the weights with this decay per step; default: "
             "the decay whose horizon is 5% of all training steps; 0: the raw weights.", show_default=False,
        rich_help_panel=TRAINING)] = training_default("ema_decay"),
    average_last: Annotated[int, typer.Option(
        help="Checkpoint averaging: at the end, average the weights kept at the last N validations and keep the "
             "average if it validates better than the best epoch (0: off).",
        rich_help_panel=TRAINING)] = training_default("average_last"),
    shift_windows: Annotated[bool, typer.Option(
        help="Each epoch, move the windows that histories longer than --max-len are cut into (all but the most "
             "recent) by a random amount, so older movies meet different neighbours each time (augmentation).",
        rich_help_panel=TRAINING)] = training_default("shift_windows"),
    holdout: Annotated[str, typer.Option(
        help="What training leaves out of each user's history. valid: the validation and test items (validation "
             "picks the kept epoch); test: only the test item, a final fit with settings validated runs chose "
             "(no validation, the last epoch kept; `evaluate --split test` still fair); none: nothing, a model "
             "to serve (not to evaluate).", rich_help_panel=TRAINING)] = training_default("holdout"),
    init_from: Annotated[str | None, typer.Option(
        help="Start from this trained model folder instead of random weights (a warm start): movies it knew keep "
             "their weights, new ones start from the movies sharing their genres. Same model settings needed. "
             f"Trains for {WARM_SCHEDULE_SHARE:.0%} of the recipe's epochs unless --epochs is given.",
        rich_help_panel=TRAINING)] = training_default("init_from"),
    valid_every: Annotated[int, typer.Option(help="Validate every N epochs (and on the last).",
                                             rich_help_panel=TRAINING)] = training_default("valid_every"),
    patience: Annotated[int, typer.Option(help="Stop after this many validations without improvement (0: never).",
                                          rich_help_panel=TRAINING)] = training_default("patience"),
    max_minutes: Annotated[float | None, typer.Option(help="Stop after the epoch that crosses this budget.",
                                                      rich_help_panel=TRAINING)] = training_default("max_minutes"),
    seed: Annotated[int, typer.Option(help="Random seed.", rich_help_panel=TRAINING)] = training_default("seed"),
    device: Annotated[str, typer.Option(help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps.",
                                        rich_help_panel=RUN)] = training_default("device"),
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast on CUDA, fp32 elsewhere), bf16 or fp32.",
                                           rich_help_panel=RUN)] = training_default("precision"),
    out: Annotated[Path, typer.Option(help="Model folder to write.", rich_help_panel=RUN)] = Path("model"),
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out from its last checkpoint; with --data, start it if it never began.",
        rich_help_panel=RUN)] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing --out folder first.",
                                            rich_help_panel=RUN)] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.", rich_help_panel=RUN)] = False,
) -> None:
    """Train BERT4Rec; keeps the best model by validation NDCG@10 (with --holdout test or none, the last) and a
    checkpoint every epoch."""
    from bert4rec.training import distributed, loop
    from bert4rec.training.recipe import Recipe, load_recipe

    _check_out_dir(out, resume, overwrite)
    if resume and loop.has_run(out):
        result = loop.fit(None, out, resume=True, progress=not quiet)
    else:
        if data is None and resume:
            raise Bert4RecError(f"{out}: nothing to resume (no training run there); give --data to start one")
        if data is None:
            raise Bert4RecError("--data is required (a prepared folder, a release name or a ratings file)")
        chosen = load_recipe(recipe) if recipe else Recipe("defaults")
        given = {name for name in ctx.params if _given(ctx, name)}
        model_overrides = {MODEL_OPTIONS[name]: ctx.params[name] for name in given & set(MODEL_OPTIONS)}
        training_overrides = {name: ctx.params[name] for name in given & set(TRAINING_OPTIONS)}
        if init_from is not None:  # the model keeps the shape of the one it starts from, unless told otherwise
            from bert4rec.training.warm_start import shape_of, short_schedule

            model_overrides = shape_of(Path(init_from)) | model_overrides
            training_overrides = short_schedule(chosen, training_overrides)
        dataset = load_dataset(data, progress=not quiet)
        model_config, config = chosen.build(dataset.vocab.num_items, model_overrides, training_overrides)
        provenance = chosen.provenance(model_overrides, training_overrides) if recipe else None
        result = loop.fit(dataset, out, model_config, config, progress=not quiet, recipe=provenance)
    if distributed.from_environment().main:
        console.print(train_table(result, out))


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was given on the command line (rather than left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    from bert4rec.training import distributed
    from bert4rec.training.loop import has_run

    if not distributed.from_environment().main:
        return  # under torchrun, rank 0 alone checks and prepares the folder
    if resume and has_run(out):
        return
    if resume and out.exists() and any(out.iterdir()):
        raise Bert4RecError(f"{out}: nothing to resume (not a training folder)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise Bert4RecError(f"{out} already exists and is not empty: pass --resume to continue that run or "
                            "--overwrite to start again")
    if out.exists() and overwrite:
        shutil.rmtree(out)
