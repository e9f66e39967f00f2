"""bert4rec: a BERT4Rec movie recommender — MovieLens data, training, exact evaluation, CLI, Python and REST APIs.

The public API, importable from here (loaded on first use, so that ``import bert4rec`` stays light):

    from bert4rec import Recommender, Filters                  # serving
    from bert4rec import Bert4Rec, Bert4RecConfig              # the model
    from bert4rec import TrainConfig, fit, load_recipe         # training
    from bert4rec import prepare, load_dataset, evaluate_model # data and evaluation
    from bert4rec import EventStore, Event                     # the event store
"""

from __future__ import annotations

from importlib import import_module

from bert4rec.errors import (
    AmbiguousTitleError,
    Bert4RecError,
    ChangedFileError,
    DataError,
    DownloadError,
    InvalidRequestError,
    ModelFolderError,
    StoreError,
    TitleNotFoundError,
    UnknownItemError,
    UnknownUserError,
)

__version__ = "0.1.0"

# Public name -> the module that defines it
_LAZY = {
    "Recommender": "bert4rec.serving.recommender",
    "Recommendations": "bert4rec.serving.recommender",
    "Filters": "bert4rec.serving.recommender",
    "Bert4Rec": "bert4rec.model.modeling",
    "Bert4RecConfig": "bert4rec.model.config",
    "TrainConfig": "bert4rec.training.config",
    "fit": "bert4rec.training.loop",
    "load_recipe": "bert4rec.training.recipe",
    "prepare": "bert4rec.data.preprocess",
    "PrepareParams": "bert4rec.data.preprocess",
    "load_prepared": "bert4rec.data.preprocess",
    "load_dataset": "bert4rec.data.movielens",
    "evaluate_model": "bert4rec.evaluation.protocols",
    "EventStore": "bert4rec.store.events",
    "Event": "bert4rec.store.events",
}
_RENAMED = {"load_dataset": "load"}  # movielens.load, exported under a name that says what it loads

__all__ = [
    "AmbiguousTitleError", "Bert4RecError", "ChangedFileError", "DataError", "DownloadError", "InvalidRequestError",
    "ModelFolderError", "StoreError", "TitleNotFoundError", "UnknownItemError", "UnknownUserError", "__version__",
    *_LAZY,
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'bert4rec' has no attribute '{name}'")
    value = getattr(import_module(_LAZY[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
