"""``bert4rec recommend``: recommendations for a known user, a list of titles or movieIds, or every user."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.main import ModelDirArgument, command, console
from bert4rec.cli.tables import history_line, recs_table
from bert4rec.errors import Bert4RecError


@command("recommend")
def recommend_command(
    model_dir: ModelDirArgument,
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
    from bert4rec.serving.recommender import Filters, Recommender

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
    console.print(recs_table(recs, title))
    if recs.history:
        console.print(history_line(recs), highlight=False)


def _batch_recommend(recommender, users: str, out: Path, k: int, filters) -> None:
    from bert4rec.files import atomic_write

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
