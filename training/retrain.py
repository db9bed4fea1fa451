"""Retraining from corrections: a new model version, judged against the running one, promoted only if it does not regress.

    slmnode models retrain [--recipe FILE] [--no-promote] [key=value ...]

One run: export the store's corrections into a new version folder (<models_folder>/<UTC time>), train
the recipe (retraining.recipe: the base data) with those corrections added, each seen
retraining.corrections_weight times; then judge the current version (the registry's active one, else
model.path) and the candidate on the same held-out examples: the recipe's dev split (never test), at
most retraining.eval_limit per task, plus the corrections themselves. The gate refuses the candidate
if any figure drops by more than retraining.gate.max_drop allows. The candidate is registered either
way, with its figures and the comparison, and promoted when the gate passes (unless asked not to).
"""

from __future__ import annotations

import logging
import random
import shutil
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from dicom_node.models import registry
from dicom_node.config import GATE_FIGURES, Settings
from dicom_node.cli.output import format_rows
from dicom_node.store.exchange import CORRECTION_FIELDS, correction_rows
from dicom_node.store.database import Store
from training import metrics
from training.data import Example, corrections_examples, recipe_examples
from training.evaluate import in_batches
from training.train import TrainConfig, load_config, train

log = logging.getLogger(__name__)

CORRECTIONS_FILE = "corrections.csv"
ROUNDING = 1e-9  # a figure equal up to float rounding has not dropped
NOTHING_TO_COMPARE = "no figure to compare: the recipe has no dev examples of its tasks and the store no corrections"


@dataclass(frozen=True)
class Comparison:
    """One figure of both versions, and whether the candidate keeps it within the allowed drop."""

    name: str
    current: float
    candidate: float
    allowed_drop: float

    @property
    def change(self) -> float:
        return self.candidate - self.current

    @property
    def passed(self) -> bool:
        return self.change >= -self.allowed_drop - ROUNDING

    def reason(self) -> str:
        figures = f"{self.name} {self.current:.3f} -> {self.candidate:.3f} ({self.change:+.3f})"
        if self.passed:
            return figures
        return f"{figures}: a drop of {-self.change:.3f}, more than the {self.allowed_drop:.3f} allowed"


@dataclass
class RetrainResult:
    current: str
    candidate: str
    folder: Path
    corrections: int  # distinct corrected descriptions the candidate learned from
    comparisons: list[Comparison]
    current_figures: dict[str, float]
    candidate_figures: dict[str, float]
    promoted: bool
    examples: dict[str, int] = field(default_factory=dict)  # held-out examples per task

    @property
    def passed(self) -> bool:
        """No figure dropped too far, and there was at least one to compare: no evidence is no pass."""
        return bool(self.comparisons) and all(c.passed for c in self.comparisons)

    @property
    def reasons(self) -> list[str]:
        """Why the gate refused (the figures that dropped too far), else every figure's change."""
        if not self.comparisons:
            return [NOTHING_TO_COMPARE]
        refused = [c.reason() for c in self.comparisons if not c.passed]
        return refused or [c.reason() for c in self.comparisons]


def retrain(
    store: Store,
    settings: Settings,
    recipe: str | None = None,
    overrides: Sequence[str] = (),
    promote: bool = True,
    who: str = "retrain",
) -> RetrainResult:
    """Train, judge, register and (if the gate passes and `promote`) promote a new version; see the module docstring."""
    retraining = settings.retraining
    current = current_version(store, settings, who)
    folder = new_version_folder(Path(retraining.models_folder))
    try:
        corrections_file = export_corrections(store, folder)
        config = retraining_config(recipe or retraining.recipe, overrides, folder, corrections_file,
                                   retraining.corrections_weight)
        held_out = evaluation_examples(config, retraining.eval_limit)
        corrected = corrections_examples(corrections_file)
        log.info("judging the current version %s", current.version)
        current_figures = figures(registry.load_version(current, settings.model), held_out, corrected, "current")
        log.info("training %s with %d corrections into %s", recipe or retraining.recipe, len(corrected), folder)
        train(config)
        shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # resume state: not part of the version
        candidate = registry.load_model(settings.model, str(folder))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-made version folders
        raise
    log.info("judging the candidate %s", candidate.version)
    candidate_figures = figures(candidate, held_out, corrected, "candidate")
    allowed = retraining.gate.max_drop
    comparisons = [
        Comparison(name, current_figures[name], candidate_figures[name], allowed.get(name, 0.0))
        for name in GATE_FIGURES  # in the order reports show them
        if name in current_figures and name in candidate_figures
    ]
    result = RetrainResult(
        current=current.version,
        candidate=candidate.version,
        folder=folder,
        corrections=len(corrected),
        comparisons=comparisons,
        current_figures=current_figures,
        candidate_figures=candidate_figures,
        promoted=False,
        examples={task: len(examples) for task, examples in held_out.items()},
    )
    verdict = "passed" if result.passed else "refused"
    registry.register(
        store,
        candidate.version,
        str(folder.resolve()),
        metrics={
            "figures": candidate_figures,
            "compared_with": {"version": current.version, "figures": current_figures},
            "gate": {"passed": result.passed, "reasons": result.reasons},
            "corrections": len(corrected),
            "held_out_examples": result.examples,
        },
        note=f"retrained from {len(corrected)} corrections; gate {verdict}",
    )
    if promote and result.passed:
        result.promoted = registry.promote(store, candidate.version, who, f"gate passed against {current.version}")
    return result


def current_version(store: Store, settings: Settings, who: str) -> registry.RegisteredVersion:
    """The registry's active version; before the first retraining, model.path registered and promoted,
    so that a rollback has somewhere to go."""
    active = registry.active(store)
    if active is not None:
        return active
    model = settings.model
    path, adapter = _lasting(model.path), _lasting(model.adapter) if model.adapter else None
    version = registry.load_model(model, path, adapter).version
    registry.register(store, version, path, adapter, None, "the configured model (model.path)")
    registry.promote(store, version, who, "the model running before the first retraining")
    return registry.get(store, version)


def _lasting(path: str) -> str:
    """A local folder as an absolute path (the node may run elsewhere); "embedded" and hub ids as they are."""
    return str(Path(path).resolve()) if path != "embedded" and Path(path).is_dir() else path


def new_version_folder(models_folder: Path) -> Path:
    """<models_folder>/<UTC time>, made now; -2, -3... when two runs start in the same second."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    models_folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = models_folder / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise OSError(f"{models_folder}: no free folder name for {stamp}")


def export_corrections(store: Store, folder: Path) -> Path:
    """The store's corrections as the CSV `slmnode export corrections` writes, kept with the version."""
    path = folder / CORRECTIONS_FILE
    path.write_text(format_rows(correction_rows(store), CORRECTION_FIELDS, "csv"), encoding="utf-8")
    return path


def retraining_config(
    recipe: str, overrides: Sequence[str], folder: Path, corrections_file: Path, corrections_weight: float
) -> TrainConfig:
    """The recipe with its output (and resume state) in `folder` and the store's corrections added.

    corrections_weight applies to every corrections file of the recipe; an override on the command
    line (data.corrections_weight=3) still wins.
    """
    config = load_config(recipe, [f"data.corrections_weight={corrections_weight}", *overrides])
    data = config.data.model_copy(update={"corrections": [*config.data.corrections, str(corrections_file)]})
    return config.model_copy(
        update={"output_dir": str(folder), "checkpoint_dir": str(folder / "checkpoint"), "resume": False, "data": data}
    )


def evaluation_examples(config: TrainConfig, limit: int | None) -> dict[str, list[Example]]:
    """The recipe's dev examples by task, at most `limit` of each: both versions are judged on these.

    A fixed random sample, not the first ones: dev descriptions come grouped by label.
    """
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in recipe_examples(config.data.model_dump(), "dev"):
        by_task[example.task].append(example)
    return {
        task: examples if limit is None or len(examples) <= limit else random.Random(0).sample(examples, limit)
        for task, examples in by_task.items()
    }


def figures(engine, held_out: dict[str, list[Example]], corrected: list[Example], who: str) -> dict[str, float]:
    """The gate's figures for one engine; a figure whose examples are missing is left out."""
    result: dict[str, float] = {}

    def harmonized(examples: list[Example], desc: str) -> float:
        predicted = [p.label for p in in_batches(engine.harmonize, [e.text for e in examples], desc)]
        return metrics.harmonization_metrics([e.answer for e in examples], predicted)["accuracy"]

    if held_out.get("harmonize"):
        result["harmonization_accuracy"] = harmonized(held_out["harmonize"], f"{who}: harmonize")
    if corrected:
        result["corrections_accuracy"] = harmonized(corrected, f"{who}: corrections")
    if held_out.get("label"):
        examples = held_out["label"]
        predicted = in_batches(engine.label, [e.text for e in examples], f"{who}: label")
        result["labeling_macro_f1"] = metrics.labeling_metrics([e.answer for e in examples], predicted)["macro_f1"]
    if held_out.get("impression"):
        examples = held_out["impression"]
        written = in_batches(engine.impression, [e.text for e in examples], f"{who}: impression")
        rouge_l = metrics.rouge_per_report([e.answer for e in examples], written)["rougeL"]
        result["impression_rouge_l"] = statistics.fmean(rouge_l)
    return result


def result_dict(result: RetrainResult) -> dict:
    """The result for JSON output."""
    return {
        **{k: v for k, v in asdict(result).items() if k != "comparisons"},
        "folder": str(result.folder),
        "passed": result.passed,
        "reasons": result.reasons,
        "comparisons": [{**asdict(c), "change": c.change, "passed": c.passed} for c in result.comparisons],
    }
