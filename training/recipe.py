"""Recipes: one YAML file names every hyperparameter of a training run.

The recipes ship inside the package (training/recipes/*.yaml), so an installed slmnode finds them by
name (`embedded`, `retrain_harmonize`) from any folder; a path to a YAML file of one's own works too.
Typed here and passed down as it is (the trainer, the data builder and retraining all read these
objects): a misspelt key is an error, and a default lives in one place.

    python -m training.train embedded epochs=2 lora.rank=32   # dotted overrides
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Recipe(BaseModel):
    # forbid: a misspelt hyperparameter is an error, not a silent default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(_Recipe):
    rank: int = Field(8, ge=1)
    alpha: float = 16.0
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]


class DataSettings(_Recipe):
    # Relative data paths (openi, series_csv) are read under root; None: training.data.DATA_ROOT.
    root: str | None = None
    tasks: list[str] = ["harmonize", "label", "impression"]
    openi: str | None = None
    series_csv: str | None = None
    series_holdout: float = Field(0.3, ge=0, lt=1)
    series_generated: int = Field(0, ge=0)
    corrections: list[str] = []
    corrections_weight: float = Field(1.0, gt=0)  # each correction is seen this many times per epoch
    weights: dict[str, float] = {}
    limit_per_task: int | None = None
    label_negative_fraction: float = Field(0.0, ge=0, le=1)
    # > 0: the model reads a description's nearest labeled neighbour (slm/neighbours.py), shown to this
    # share of the harmonize training examples; dialects: descriptions in invented site dialects to learn it on.
    neighbours: float = Field(0.0, ge=0, le=1)
    dialects: int = Field(0, ge=0)
    seed: int = 0


class TrainConfig(_Recipe):
    output_dir: str
    seed: int = 0
    base: str = "scratch"
    size: str = "embedded"
    vocab_size: int = 4000
    lora: LoraSettings | None = None
    rule_hints: bool = False  # the prompt carries the rules' reading of the input (slm/hints.py)
    data: DataSettings = DataSettings()
    max_length: int = Field(384, ge=16)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = None
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    group_by_length: bool = True
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float | None = 1.0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int | None = None
    dev_loss: bool = True
    save_every: int = Field(0, ge=0)
    checkpoint_dir: str | None = None
    export_epochs: list[int] = []
    save_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    resume: bool = False
    log_every: int = Field(10, ge=1)


RECIPES = files("training") / "recipes"  # the shipped recipes, a plain folder in any pip install


def recipe_file(recipe: str | os.PathLike) -> Path:
    """A recipe's YAML file: a path to one, else the shipped recipe of that name (`retrain_harmonize`)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = Path(str(RECIPES)) / f"{path.stem if path.suffix == '.yaml' else path.name}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in Path(str(RECIPES)).glob("*.yaml")))
    raise ValueError(f"recipe {recipe}: no such file, and no shipped recipe of that name (shipped: {names})")


def parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"override {item!r} is not key=value")
    return key.split("."), yaml.safe_load(value)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainConfig:
    """A recipe file plus dotted key=value overrides (values read as YAML: 3, 1e-4, [label], null)."""
    data = yaml.safe_load(recipe_file(path).read_text(encoding="utf-8")) or {}
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):  # e.g. lora.rank=32 where the recipe says lora: null
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None


def with_corrections(
    recipe: str | os.PathLike, overrides: Sequence[str], folder: Path, corrections_file: Path, corrections_weight: float
) -> TrainConfig:
    """The recipe retraining runs: output (and resume state) in `folder`, a site's corrections added.

    corrections_weight applies to every corrections file of the recipe; an override on the command
    line (data.corrections_weight=3) still wins.
    """
    config = load_config(recipe, [f"data.corrections_weight={corrections_weight}", *overrides])
    data = config.data.model_copy(update={"corrections": [*config.data.corrections, str(corrections_file)]})
    return config.model_copy(
        update={"output_dir": str(folder), "checkpoint_dir": str(folder / "checkpoint"), "resume": False, "data": data}
    )
