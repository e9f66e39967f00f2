"""Recipes: named, versioned settings for the model and its training, kept as TOML files in
``bert4rec/training/recipes/`` (or any TOML file of the same layout). A recipe sets only what it names; every
other setting keeps its default from ``Bert4RecConfig`` or ``TrainConfig``, and settings given on the command line
override the recipe.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from bert4rec.errors import Bert4RecError
from bert4rec.files import read_versioned
from bert4rec.model.config import Bert4RecConfig
from bert4rec.training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

VERSION = 1
SECTIONS = {"model": Bert4RecConfig, "training": TrainConfig}


@dataclass
class Recipe:
    name: str
    description: str = ""
    model: dict = field(default_factory=dict)  # Bert4RecConfig settings (num_items comes from the data)
    training: dict = field(default_factory=dict)  # TrainConfig settings

    def build(self, num_items: int, model_overrides: dict | None = None,
              training_overrides: dict | None = None) -> tuple[Bert4RecConfig, TrainConfig]:
        """The model and training configs: defaults, then this recipe, then the overrides."""
        try:
            model = Bert4RecConfig(num_items=num_items, **(self.model | (model_overrides or {})))
            training = TrainConfig(**(self.training | (training_overrides or {})))
            model.validate()
            training.validate()
        except (TypeError, ValueError) as exc:  # a value of the wrong type
            raise Bert4RecError(f"recipe '{self.name}': invalid setting ({exc})") from None
        return model, training

    def provenance(self, model_overrides: dict, training_overrides: dict) -> dict:
        """What train_config.json records: the recipe and the settings given over it."""
        return {"name": self.name, "version": VERSION, "overrides": model_overrides | training_overrides}


def recipe_names() -> list[str]:
    """The recipes that come with bert4rec."""
    folder = resources.files("bert4rec.training").joinpath("recipes")
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe that comes with bert4rec, by name, or a TOML file of the same layout, by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        label, name = path, path.stem
        try:
            text = path.read_text()
        except OSError as exc:
            raise Bert4RecError(f"{path}: cannot read the recipe ({exc.strerror})") from None
    elif name_or_path in recipe_names():
        label, name = f"recipe '{name_or_path}'", name_or_path
        text = resources.files("bert4rec.training").joinpath(f"recipes/{name_or_path}.toml").read_text()
    else:
        raise Bert4RecError(f"unknown recipe '{name_or_path}' (recipes: {', '.join(recipe_names())}; or give the "
                            "path of a .toml file)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Bert4RecError(f"{label}: not valid TOML ({exc})") from None
    body = read_versioned(Path(str(label)), "recipe", VERSION, "missing", data=data)
    return Recipe(name, str(body.pop("description", "")), *_sections(body, label))


def _sections(body: dict, label) -> tuple[dict, dict]:
    unknown = sorted(set(body) - set(SECTIONS))
    if unknown:
        raise Bert4RecError(f"{label}: unknown section '{unknown[0]}' (sections: {', '.join(SECTIONS)})")
    sections = []
    for section, config in SECTIONS.items():
        settings = body.get(section, {})
        names = {f.name for f in fields(config)} - {"num_items"}
        wrong = sorted(set(settings) - names)
        if wrong:
            raise Bert4RecError(f"{label}: [{section}] has no setting '{wrong[0]}'")
        sections.append(dict(settings))
    return sections[0], sections[1]
