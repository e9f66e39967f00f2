"""Warm start: a model for a grown catalogue that begins from a trained one (``bert4rec train --init-from``).

Every movie the old model knew keeps its embedding and output bias (under its new token); a movie it never saw
starts from the mean of the old movies that share a genre with it, or of all old movies when none does (a movie
with no genres listed shares none); every other weight (positions, token types, the layers, the head) is copied.
Training then goes on from there.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bert4rec.data.item_features import genre_names, genre_weights
from bert4rec.data.preprocess import PreparedDataset, load_prepared
from bert4rec.errors import Bert4RecError
from bert4rec.files import DATASET_DIR
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.training.config import WARM_SCHEDULE_SHARE, TrainConfig
from bert4rec.training.recipe import Recipe

EMBEDDINGS = "bert.embeddings.word_embeddings.weight"  # (PAD + items + MASK, H)
BIAS = "item_bias"  # (items,)
CHUNK = 1024  # new movies whose starting weights are computed together
SHAPED_BY = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_len", "rating_aware", "time_aware",
             "genre_aware", "year_aware", "genres")
CATALOGUE_FEATURES = ("item_genres", "item_years")  # buffers that follow the catalogue, not the old model


def short_schedule(recipe: Recipe, overrides: dict) -> dict:
    """The training settings given over ``recipe`` for a warm start: ``overrides``, with WARM_SCHEDULE_SHARE of the
    recipe's epochs unless they name the epochs."""
    if "epochs" in overrides:
        return overrides
    return overrides | {"epochs": max(1, math.ceil(WARM_SCHEDULE_SHARE * recipe.training.get("epochs",
                                                                                           TrainConfig.epochs)))}


def set_catalogue_features(model: Bert4Rec, dataset: PreparedDataset) -> None:
    """Give a feature-aware model its catalogue's genres and years (nothing for a model that reads neither)."""
    config = model.config
    if config.reads_features:
        genres, years = dataset.item_features(config.genres if config.genre_aware else None, config.year_aware)
        model.set_item_features(None if genres is None else torch.from_numpy(genres),
                                None if years is None else torch.from_numpy(years))


def warm_start(model: Bert4Rec, source: Path, dataset: PreparedDataset) -> int:
    """Load into ``model`` (built for ``dataset``'s catalogue) the weights of the model folder ``source``, as the
    module says. Returns how many of the catalogue's movies are new to the old model."""
    source = Path(source)
    old = Bert4Rec.load(source)
    old_data = load_prepared(source / DATASET_DIR)
    _check_same_shape(old, model, source)
    old_ids, new_ids = old_data.vocab.item_ids, dataset.vocab.item_ids
    known = old_data.vocab.known(new_ids)
    old_rows = np.searchsorted(old_ids, new_ids[known])  # the old row of each known movie
    state, weights = model.state_dict(), old.state_dict()
    for name, value in weights.items():
        if name not in (EMBEDDINGS, BIAS, *CATALOGUE_FEATURES):
            state[name] = value
    embeddings, bias = weights[EMBEDDINGS], weights[BIAS]
    items = embeddings[1 : old_data.vocab.num_items + 1]  # (old items, H)
    new_rows = torch.from_numpy(np.flatnonzero(known))
    state[EMBEDDINGS][0], state[EMBEDDINGS][-1] = embeddings[0], embeddings[-1]  # PAD and MASK
    state[EMBEDDINGS][1 + new_rows] = items[torch.from_numpy(old_rows)]
    state[BIAS][new_rows] = bias[torch.from_numpy(old_rows)]
    unseen = torch.from_numpy(np.flatnonzero(~known))
    mates = _genre_mates(old_data.movies["genres"], dataset.movies["genres"][~known])
    for start in range(0, len(unseen), CHUNK):  # (chunk, old movies) at a time: catalogues can be large
        weights_of = mates(start, start + CHUNK)
        rows = unseen[start : start + CHUNK]
        state[EMBEDDINGS][1 + rows] = weights_of @ items
        state[BIAS][rows] = weights_of @ bias
    model.load_state_dict(state)
    return int((~known).sum())


def shape_of(source: Path) -> dict:
    """The settings that shape the weights of the model in ``source``: what a warm start from it must keep."""
    config = Bert4RecConfig.load(Path(source))
    return {name: getattr(config, name) for name in SHAPED_BY}


def _genre_mates(old_genres: pd.Series, new_genres: pd.Series):
    """A function of a range of new movies giving, for each, weights over the old movies that average those sharing
    a genre with it (all old movies where none does)."""
    old_listed, new_listed = list(old_genres), list(new_genres)
    names = genre_names(old_listed + new_listed)
    old_onehot = torch.from_numpy(genre_weights(old_listed, names) > 0).float()  # (old, G)

    def weights(start: int, stop: int) -> torch.Tensor:
        new_onehot = torch.from_numpy(genre_weights(new_listed[start:stop], names) > 0).float()
        shares = (new_onehot @ old_onehot.T) > 0  # (new, old)
        shares[~shares.any(1)] = True
        shares = shares.float()
        return shares / shares.sum(1, keepdim=True)

    return weights


def _check_same_shape(old: Bert4Rec, new: Bert4Rec, source: Path) -> None:
    differ = [f"{name} {getattr(old.config, name)} there, {getattr(new.config, name)} here" for name in SHAPED_BY
              if getattr(old.config, name) != getattr(new.config, name)]
    if differ:
        raise Bert4RecError(f"--init-from {source}: a warm start needs the same model settings; "
                            f"{'; '.join(differ)}")
