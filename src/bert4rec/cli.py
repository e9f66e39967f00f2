"""The ``bert4rec`` command: thin typer commands over the library modules."""

from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bert4rec.errors import Bert4RecError

app = typer.Typer(
    help="BERT4Rec movie recommender: get MovieLens, prepare it, train, evaluate and recommend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def command(*args, **kwargs):
    """Register a command whose expected failures print one line and exit with status 2."""

    def wrap(func):
        @functools.wraps(func)
        def run(*a, **kw):
            try:
                return func(*a, **kw)
            except Bert4RecError as exc:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err_console.print("interrupted")
                raise typer.Exit(130) from None

        return app.command(*args, **kwargs)(run)

    return wrap


# ------------------------------------------------------------------------------------------------ data


class Engine(str, enum.Enum):
    auto = "auto"
    memory = "memory"
    duckdb = "duckdb"

DataOption = Annotated[str, typer.Option(
    "--data", help="A MovieLens release name (ml-1m, ml-latest-small, ...), a release folder or zip, a ratings "
                   ".parquet/.csv file, a folder holding ratings.parquet/csv and movies.parquet/csv, or a "
                   "partitioned parquet dataset (a folder of parquet files, movies.parquet/csv optional).")]
QuietOption = Annotated[bool, typer.Option(help="No progress bars.")]
UserColOption = Annotated[str, typer.Option(help="User id column of a custom ratings table.")]
ItemColOption = Annotated[str, typer.Option(help="Item (movie) id column of a custom ratings table.")]
RatingColOption = Annotated[str, typer.Option(help="Rating column of a custom ratings table ('' for none).")]
TimeColOption = Annotated[str, typer.Option(help="Timestamp column of a custom ratings table.")]
MinRatingOption = Annotated[float | None, typer.Option(
    help="Drop ratings below this value (default: keep all, as the BERT4Rec paper does).")]
MinUserOption = Annotated[int, typer.Option(help="Keep users with at least this many interactions.")]
MinItemOption = Annotated[int, typer.Option(help="Keep items with at least this many interactions.")]
SampleUsersOption = Annotated[float | None, typer.Option(
    help="Keep this fraction of users (whole users, seeded) for quick experiments.")]
SeedOption = Annotated[int, typer.Option(help="Random seed.")]


def _stats_table(stats: dict) -> Table:
    table = Table(title="prepared dataset", show_header=False)
    lengths = stats["sequence_length"]
    rows = [
        ("source", stats["source"]),
        ("users", f"{stats['num_users']:,}"),
        ("items", f"{stats['num_items']:,}"),
        ("interactions", f"{stats['num_interactions']:,} (of {stats['num_raw_interactions']:,} loaded)"),
        ("users with valid/test targets", f"{stats['num_eval_users']:,}"),
        ("density", f"{stats['density']:.4%}"),
        ("sequence length min / median / p90 / max",
         f"{lengths['p0']:.0f} / {lengths['p50']:.0f} / {lengths['p90']:.0f} / {lengths['p100']:.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


@command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="Release: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, "
                                             "ml-latest, ml-latest-small.")],
    cache_dir: Annotated[Path | None, typer.Option(
        help="Where zips are kept (default: $BERT4REC_CACHE_DIR, else the user cache folder).")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if the zip is cached.")] = False,
) -> None:
    """Download a MovieLens release zip from GroupLens into the cache (checked, then moved into place)."""
    from bert4rec.download import download

    path = download(name, cache_dir, force=force)
    console.print(f"{name}: {path}")


@command("prepare")
def prepare_command(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Output folder (replaced only once the new one is complete).")],
    min_rating: MinRatingOption = None,
    min_user: MinUserOption = 5,
    min_item: MinItemOption = 5,
    sample_users: SampleUsersOption = None,
    seed: SeedOption = 0,
    user_col: UserColOption = "userId",
    item_col: ItemColOption = "movieId",
    rating_col: RatingColOption = "rating",
    time_col: TimeColOption = "timestamp",
    as_json: Annotated[bool, typer.Option("--json", help="Print stats.json instead of a table.")] = False,
    engine: Annotated[Engine, typer.Option(
        help="memory: pandas, everything in RAM. duckdb: out of core, for a partitioned parquet dataset (a folder "
             "of parquet files) larger than memory; same result. auto: duckdb for such a folder, else memory.")
    ] = Engine.auto,
    memory_limit: Annotated[str, typer.Option(
        help="duckdb engine: memory for its buffers (e.g. 4GB); the rest spills to --temp-dir.")] = "4GB",
    temp_dir: Annotated[Path | None, typer.Option(
        help="duckdb engine: where to spill (default: the system's temporary folder).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Filter a dataset, sort each user's history by time and split it leave-one-out; write parquet + stats."""
    from bert4rec import movielens, preprocess

    columns = movielens.Columns(user_col, item_col, rating_col or None, time_col)
    params = preprocess.PrepareParams(min_rating, min_user, min_item, sample_users, seed)
    partitioned = movielens.is_partitioned(Path(data))
    if engine == Engine.duckdb and not partitioned:
        raise Bert4RecError(f"{data}: --engine duckdb reads a folder of parquet files (a partitioned dataset)")
    if engine == Engine.duckdb or (engine == Engine.auto and partitioned):
        from bert4rec.outofcore import prepare_partitioned

        stats = prepare_partitioned(Path(data), out, params, columns, memory_limit, temp_dir=temp_dir,
                                    progress=not quiet)
    else:
        dataset = preprocess.prepare(movielens.load(data, columns), params)
        preprocess.save_prepared(dataset, out)
        stats = dataset.stats
    if as_json:
        sys.stdout.write(json.dumps(stats, indent=2) + "\n")
    else:
        console.print(_stats_table(stats))
        console.print(f"written to {out}")


# ------------------------------------------------------------------------------------------------ training


def load_dataset(data: str, params=None, columns=None):
    """A prepared folder as it is, or any other dataset prepared on the fly with the given (or default) settings."""
    from bert4rec import movielens, preprocess

    if preprocess.is_prepared_dir(Path(data)):
        return preprocess.load_prepared(Path(data))
    raw = movielens.load(data, columns or movielens.Columns())
    return preprocess.prepare(raw, params or preprocess.PrepareParams())


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    from bert4rec import distributed
    from bert4rec.train import has_run

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
        import shutil

        shutil.rmtree(out)


def _train_table(result: dict, out: Path) -> Table:
    table = Table(title="training summary", show_header=False)
    history = result["history"]
    best = next((h for h in history if h["epoch"] == result["best_epoch"]), {})
    rows = [("epochs run", str(result["epochs"]))]
    if result["holdout"] == "valid":
        rows += [("best epoch", str(result["best_epoch"])),
                 ("best validation NDCG@10", f"{best.get('valid_NDCG@10', float('nan')):.4f}"),
                 ("best validation HR@10", f"{best.get('valid_HR@10', float('nan')):.4f}")]
    else:
        rows.append(("kept weights", f"last epoch (holdout {result['holdout']}: no validation)"))
    rows += [
        ("seconds per epoch (training)", f"{result['seconds_per_epoch']:.1f}"),
        ("training minutes", f"{result['train_seconds'] / 60:.1f}"),
        ("device", result["device"]),
        ("processes", str(result["processes"])),
        ("model folder", str(out)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


@command("train")
def train_command(
    data: Annotated[str | None, typer.Option(
        "--data", help="A prepared folder (bert4rec prepare), or any dataset --data of `prepare` accepts, "
                       "prepared on the fly with default settings. Not needed with --resume.")] = None,
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("model"),
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs.")] = 200,
    batch_size: Annotated[int, typer.Option(
        help="Sequences per batch (per process when distributed). The paper's 128 learns far less per epoch.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then linear decay).")] = 1e-3,
    mask_prob: Annotated[float, typer.Option(help="Cloze masking probability.")] = 0.2,
    last_item_fraction: Annotated[float, typer.Option(
        help="Fraction of samples that mask only their most recent item.")] = 0.1,
    hidden_size: Annotated[int, typer.Option(help="Hidden size.")] = 64,
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 2,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 2,
    max_len: Annotated[int, typer.Option(help="Longest history the model reads.")] = 200,
    dropout: Annotated[float, typer.Option(help="Dropout on embeddings and hidden layers.")] = 0.2,
    attention_dropout: Annotated[float, typer.Option(
        help="Dropout on attention probabilities (the paper: 0.2; > 0 disables fused attention, ~1.7x slower).")]
    = 0.0,
    valid_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 1,
    patience: Annotated[int, typer.Option(help="Stop after this many validations without improvement "
                                               "(0: never).")] = 10,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after the epoch that crosses this budget.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps.")]
    = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast on CUDA, fp32 elsewhere), bf16 or fp32.")]
    = "auto",
    rating_aware: Annotated[bool, typer.Option(
        "--rating-aware/--no-rating-aware",
        help="Read each interaction's rating (as a token type added to the movie) and learn to fill a [MASK] "
             "asked to be 'liked' (4+ stars): enables `recommend --liked`. Data without ratings reads as unrated.")]
    = True,
    time_aware: Annotated[bool, typer.Option(
        help="Read the time since the user's previous interaction (log-scale buckets, as a token type added to "
             "the movie): tells the model which movies belong to the current sitting.")] = False,
    loss: Annotated[str, typer.Option(
        help="full: exact softmax over every item (computed in chunks when the catalogue is large); sampled: the "
             "target against --negatives items drawn by popularity, log-Q corrected (faster on huge catalogues).")]
    = "full",
    negatives: Annotated[int, typer.Option(help="Negatives per batch for --loss sampled.")] = 1024,
    exclude_seen: Annotated[bool, typer.Option(
        help="Leave the other movies of a sample's window out of each masked slot's softmax, as recommending "
             "leaves out what the user has seen (right for data where nobody rates a movie twice).")] = True,
    ema_decay: Annotated[float | None, typer.Option(
        help="Validate and keep an exponential moving average of the weights with this decay per step; default: "
             "the decay whose horizon is 5% of all training steps (0.99982 on ML-1M, 200 epochs); 0: the raw "
             "weights.", show_default=False)] = None,
    holdout: Annotated[str, typer.Option(
        help="What training leaves out of each user's history. valid: the validation and test items (validation "
             "picks the kept epoch); test: only the test item, a final fit with settings validated runs chose "
             "(no validation, the last epoch kept; `evaluate --split test` still fair); none: nothing, a model "
             "to serve (not to evaluate).")] = "valid",
    shift_windows: Annotated[bool, typer.Option(
        help="Each epoch, move the windows that histories longer than --max-len are cut into (all but the most "
             "recent) by a random amount, so older movies meet different neighbours each time (augmentation).")]
    = True,
    seed: SeedOption = 0,
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out from its last checkpoint; with --data, start it if it never began.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing --out folder first.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train BERT4Rec; keeps the best model by validation NDCG@10 (with --holdout test or none, the last) and a
    checkpoint every epoch."""
    from bert4rec import distributed, train
    from bert4rec.model import Bert4RecConfig

    _check_out_dir(out, resume, overwrite)
    config = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, mask_prob=mask_prob,
                               last_item_fraction=last_item_fraction, valid_every=valid_every,
                               patience=patience or None, max_minutes=max_minutes, seed=seed, device=device,
                               precision=precision, loss=loss, negatives=negatives,
                               exclude_seen=exclude_seen, ema_decay=ema_decay, holdout=holdout,
                               shift_windows=shift_windows)
    if resume and train.has_run(out):
        result = train.fit(None, out, resume=True, progress=not quiet)
    else:
        if data is None and resume:
            raise Bert4RecError(f"{out}: nothing to resume (no training run there); give --data to start one")
        if data is None:
            raise Bert4RecError("--data is required (a prepared folder, a release name or a ratings file)")
        dataset = load_dataset(data)
        model_config = Bert4RecConfig(num_items=dataset.vocab.num_items, hidden_size=hidden_size, num_layers=layers,
                                      num_heads=heads, intermediate_size=4 * hidden_size, dropout=dropout,
                                      attention_dropout=attention_dropout, max_len=max_len,
                                      rating_aware=rating_aware, time_aware=time_aware)
        result = train.fit(dataset, out, model_config, config, progress=not quiet)
    if distributed.from_environment().main:
        console.print(_train_table(result, out))


def _metrics_table(result: dict) -> Table:
    table = Table(title=f"{result['split']} split, {result['model']['users']:,} users")
    protocols = [p for p in ("full", "sampled_100") if p in result["model"]]
    table.add_column("metric")
    for protocol in protocols:
        label = "full ranking" if protocol == "full" else "100 sampled negatives"
        table.add_column(f"BERT4Rec\n{label}", justify="right")
        table.add_column(f"most popular\n{label}", justify="right")
    for metric in result["model"]["full"]:
        cells = []
        for protocol in protocols:
            cells += [f"{result['model'][protocol][metric]:.4f}", f"{result['most_popular'][protocol][metric]:.4f}"]
        table.add_row(metric, *cells)
    return table


@command("evaluate")
def evaluate_command(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `bert4rec train`.")],
    split: Annotated[str, typer.Option(help="valid (model selection) or test (report once).")] = "test",
    sampled: Annotated[bool, typer.Option(help="Also the paper's protocol: 100 negatives sampled by "
                                               "popularity (seeded).")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    seed: SeedOption = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Exact evaluation: full ranking over all items, history excluded; writes MODEL_DIR/metrics.json."""
    from bert4rec import evaluate, preprocess
    from bert4rec.model import Bert4Rec
    from bert4rec.preprocess import DATASET_DIR
    from bert4rec.train import check_evaluable, pick_device

    if split not in evaluate.SPLITS:
        raise Bert4RecError(f"--split must be one of {', '.join(evaluate.SPLITS)}, not '{split}'")
    check_evaluable(model_dir, split)
    chosen = pick_device(device)
    model = Bert4Rec.load(model_dir, chosen)
    dataset = preprocess.load_prepared(model_dir / DATASET_DIR)
    result = evaluate.evaluate_model(model, dataset, split, str(chosen), sampled=sampled, seed=seed)
    evaluate.update_metrics_file(model_dir / "metrics.json", split, result)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        console.print(_metrics_table(result))


# ------------------------------------------------------------------------------------------------ recommending


def _recs_table(recs, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (("#", "right"), ("movieId", "right"), ("title", "left"), ("year", "right"),
                          ("genres", "left"), ("score", "right")):
        table.add_column(name, justify=justify)
    for rank, item in enumerate(recs.items, 1):
        table.add_row(str(rank), str(item["movieId"]), escape(item["title"]), str(item["year"] or ""),
                      escape(", ".join(item["genres"])), f"{item['score']:.3f}")
    return table


def _history_line(recs, limit: int = 5) -> str:
    titles = [h["title"] for h in recs.history[-limit:]]
    more = len(recs.history) - len(titles)
    return escape("most recently watched: " + "; ".join(reversed(titles)) + (f" (+{more:,} earlier)" if more else ""))


@command("recommend")
def recommend_command(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `bert4rec train`.")],
    more_titles: Annotated[list[str] | None, typer.Argument(
        help="More titles for --movies: `--movies \"Toy Story\" \"Heat\"`.", show_default=False)] = None,
    user: Annotated[int | None, typer.Option(help="A userId of the training data: recommend from their history.")]
    = None,
    movies: Annotated[list[str] | None, typer.Option(
        help="A history of titles, oldest first, matched forgivingly (\"toy story\", \"matrix 1999\").")] = None,
    movie_ids: Annotated[list[int] | None, typer.Option(help="A history of movieIds, oldest first (repeat).")]
    = None,
    users: Annotated[str | None, typer.Option(
        help="Batch mode: 'all' or comma-separated userIds; writes --out (parquet or csv).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output file for --users.")] = None,
    k: Annotated[int, typer.Option(help="How many movies to recommend.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Allow movies already in the history.")] = False,
    genre: Annotated[list[str] | None, typer.Option(help="Only movies of these genres (repeat).")] = None,
    year_min: Annotated[int | None, typer.Option(help="Only movies released in or after this year.")] = None,
    year_max: Annotated[int | None, typer.Option(help="Only movies released in or before this year.")] = None,
    exclude: Annotated[list[int] | None, typer.Option(help="Never recommend these movieIds (repeat).")] = None,
    liked: Annotated[bool, typer.Option(
        help="Only what the user would like (rate 4+): a model trained with --rating-aware asks for it.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or mps.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Recommend movies for a known user, a list of titles or movieIds, or all users at once."""
    from bert4rec.recommend import Filters, Recommender

    titles = list(movies or []) + list(more_titles or [])
    if more_titles and not movies:
        raise Bert4RecError(f"unexpected argument(s) {more_titles}: titles follow --movies")
    modes = [user is not None, bool(titles), bool(movie_ids), users is not None]
    if sum(modes) != 1:
        raise Bert4RecError("give exactly one of --user, --movies, --movie-ids or --users")
    if users is not None and out is None:
        raise Bert4RecError("--users needs --out FILE (.parquet or .csv)")
    filters = Filters(exclude_seen=not include_seen, exclude=exclude, genres=genre, year_min=year_min,
                      year_max=year_max, liked=liked)
    recommender = Recommender.load(model_dir, device)
    if users is not None:
        _batch_recommend(recommender, users, out, k, filters)
        return
    if user is not None:
        recs, title = recommender.recommend_user(user, k, filters), f"top {k} for user {user}"
    elif titles:
        recs, title = recommender.recommend_titles(titles, k, filters), f"top {k} after {len(titles)} titles"
    else:
        recs, title = recommender.recommend_history(movie_ids, k, filters), f"top {k} after {len(movie_ids)} movies"
    if as_json:
        sys.stdout.write(json.dumps(recs.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    if recs.fallback:
        title += " (no usable history: most popular movies)"
    console.print(_recs_table(recs, title))
    if recs.history:
        console.print(_history_line(recs), highlight=False)


def _batch_recommend(recommender, users: str, out: Path, k: int, filters) -> None:
    from bert4rec.fsutil import atomic_write

    if users.strip().lower() == "all":
        ids = None
    else:
        try:
            ids = [int(u) for u in users.split(",") if u.strip()]
        except ValueError:
            raise Bert4RecError(f"--users must be 'all' or comma-separated integer ids, not '{users}'") from None
    if out.suffix not in {".parquet", ".csv"}:
        raise Bert4RecError(f"--out must end in .parquet or .csv, not '{out.name}'")
    frame = recommender.recommend_users(ids, k, filters)
    writer = (lambda p: frame.to_parquet(p, index=False)) if out.suffix == ".parquet" else (
        lambda p: frame.to_csv(p, index=False))
    atomic_write(out, writer)
    console.print(f"{frame['userId'].nunique():,} users × top {k} written to {out}")


@command("serve")
def serve_command(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `bert4rec train`.")],
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    device: Annotated[str, typer.Option(help="cpu, cuda or mps.")] = "cpu",
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for the model (default: PyTorch's). Leave cores for the event loop under load.")] = None,
) -> None:
    """Serve the REST API (docs at /docs) and the web page (at /) for a trained model."""
    from bert4rec.server import serve

    if not 0 < port < 65536:
        raise Bert4RecError(f"--port must be between 1 and 65535, not {port}")
    console.print(f"serving {model_dir} on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    serve(str(model_dir), host, port, device, threads)


@command("export")
def export_command(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `bert4rec train`.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format for now).")] = False,
    out: Annotated[Path | None, typer.Option(help="Output file (default MODEL_DIR/model.onnx).")] = None,
) -> None:
    """Export the scoring path (history + [MASK] -> item scores) for ONNX Runtime; needs bert4rec[onnx]."""
    from bert4rec.export import export_onnx
    from bert4rec.model import Bert4RecConfig

    if not onnx:
        raise Bert4RecError("choose a format: --onnx")
    path = export_onnx(model_dir, out)
    types = " and 'token_type_ids' (the same shape)" if Bert4RecConfig.load(model_dir).reads_types else ""
    console.print(f"written {path} (input 'input_ids' [batch, length ≤ max_len]{types}, output 'scores' "
                  "[batch, items])")


# ------------------------------------------------------------------------------------------------ quickstart

QUICKSTART_TITLES = ["Toy Story", "Matrix", "Shawshank Redemption"]


@command("quickstart")
def quickstart_command(
    out: Annotated[Path, typer.Option(help="Model folder to (re)create.")] = Path("quickstart-model"),
    data: Annotated[str, typer.Option(help="Dataset to use (release name, folder or file).")] = "ml-latest-small",
    epochs: Annotated[int, typer.Option(help="Epochs of the learning-rate schedule.")] = 200,
    max_minutes: Annotated[float, typer.Option(help="Training-time budget in minutes.")] = 4.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """The whole pipeline in one go: get ml-latest-small (local data home first, else download), prepare it,
    train a small model for a few minutes, evaluate it against the popularity baseline, and recommend."""
    import shutil

    from bert4rec import evaluate, train
    from bert4rec.model import Bert4Rec, Bert4RecConfig
    from bert4rec.recommend import Recommender

    console.rule(f"1/4 data: {data}")
    dataset = load_dataset(data)
    console.print(_stats_table(dataset.stats))
    console.rule("2/4 training")
    if out.exists():
        shutil.rmtree(out)
    model_config = Bert4RecConfig(num_items=dataset.vocab.num_items, max_len=100, rating_aware=True)
    # BERT4Rec sits on a popularity-level plateau for its first epochs, so no early stopping here: the budget
    # and the schedule end the run, and the best validation epoch is kept.
    config = train.TrainConfig(epochs=epochs, max_minutes=max_minutes, valid_every=5, patience=None, device=device)
    result = train.fit(dataset, out, model_config, config)
    console.print(_train_table(result, out))
    console.rule("3/4 evaluation on the test split")
    chosen = train.pick_device(device)
    metrics = evaluate.evaluate_model(Bert4Rec.load(out, chosen), dataset, "test", str(chosen))
    evaluate.update_metrics_file(out / "metrics.json", "test", metrics)
    console.print(_metrics_table(metrics))
    console.rule("4/4 recommendations")
    recommender = Recommender.load(out, chosen)
    user = int(dataset.user_ids[0])
    recs = recommender.recommend_user(user, 10)
    console.print(_recs_table(recs, f"top 10 for user {user}"))
    console.print(_history_line(recs), highlight=False)
    recs = recommender.recommend_titles(QUICKSTART_TITLES, 10)
    console.print(_recs_table(recs, "top 10 after watching " + ", ".join(QUICKSTART_TITLES)))
    console.print(f"\nNext: bert4rec recommend {out} --movies \"Heat\" \"Fargo\"   |   "
                  f"bert4rec evaluate {out} --split valid", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
