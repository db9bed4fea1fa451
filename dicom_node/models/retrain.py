"""Retraining from corrections: a new model version, judged against the running one, promoted only if it does not regress.

    slmnode models retrain [--recipe FILE] [--no-promote] [key=value ...]

One run: export the store's corrections into a new version folder (<models_folder>/<UTC time>), train
the recipe (retraining.recipe, a shipped name or a file: the base data, read under retraining.data
when it names a data set; a fine-tuning recipe starts from the running version)
with those corrections added, each seen
retraining.corrections_weight times; then judge the current version (the registry's active one, else
model.path) and the candidate on the same held-out examples: the recipe's dev split (never test), at
most retraining.eval_limit per task, plus the corrections themselves. The gate refuses the candidate
if any figure drops by more than retraining.gate.max_drop allows. The candidate is registered either
way, with its figures and the comparison, and promoted when the gate passes (unless asked not to).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from dicom_node.config import Settings
from dicom_node.models import choose, registry
from dicom_node.store.database import Store
from dicom_node.store.exchange import CORRECTION_FIELDS, correction_rows, encode_rows
from training import gate
from training.data import check_paths, corrections_examples
from training.recipe import TrainConfig, load_config, with_corrections
from training.train import train

log = logging.getLogger(__name__)

CORRECTIONS_FILE = "corrections.json"


@dataclass
class RetrainResult:
    current: str
    candidate: str
    folder: Path
    corrections: int  # distinct corrected descriptions the candidate learned from
    comparisons: list[gate.Comparison]
    current_figures: dict[str, float]
    candidate_figures: dict[str, float]
    promoted: bool
    examples: dict[str, int] = field(default_factory=dict)  # held-out examples per task

    @property
    def passed(self) -> bool:
        return gate.passed(self.comparisons)

    @property
    def reasons(self) -> list[str]:
        return gate.reasons(self.comparisons)


def retrain(
    store: Store,
    settings: Settings,
    recipe: str | None = None,
    overrides: Sequence[str] = (),
    promote: bool = True,
    who: str = "retrain",
    progress: Callable[[str], None] = lambda phase: None,
) -> RetrainResult:
    """Train, judge, register and (if the gate passes and `promote`) promote a new version; see the module docstring.
    `progress` hears each phase as it begins (the web page shows it)."""
    retraining = settings.retraining
    progress("exporting corrections")
    check_paths(with_data(load_config(recipe or retraining.recipe, overrides), retraining.data).data)
    current = current_version(store, settings, who)
    folder = new_version_folder(Path(retraining.models_folder))
    try:
        corrections_file = export_corrections(store, folder)
        config = from_running(
            with_data(
                with_corrections(recipe or retraining.recipe, overrides, folder, corrections_file,
                                 retraining.corrections_weight),
                retraining.data,
            ),
            current,
        )
        held_out = gate.evaluation_examples(config, retraining.eval_limit)
        corrected = corrections_examples(corrections_file)
        log.info("judging the current version %s", current.version)
        progress(f"judging the current version {current.version}")
        current_model = choose.load(choose.Choice.of(current, settings.model))
        current_figures = gate.figures(current_model, held_out, corrected, "current")
        log.info("training %s with %d corrections into %s", recipe or retraining.recipe, len(corrected), folder)
        progress(f"training on {len(corrected)} corrections")
        train(config)
        shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # resume state: not part of the version
        candidate = choose.load(choose.Choice(settings.model.model_copy(update={"path": str(folder), "adapter": None})))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-made version folders
        raise
    log.info("judging the candidate %s", candidate.version)
    progress(f"judging the candidate {candidate.version}")
    candidate_figures = gate.figures(candidate, held_out, corrected, "candidate")
    rules_figures = gate.rule_figures(held_out)  # what harmonizer.kind auto weighs the candidate against
    gate.write_figures(folder, candidate_figures, rules_figures, {task: len(e) for task, e in held_out.items()})
    comparisons = gate.compare(current_figures, candidate_figures, retraining.gate.max_drop)
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
            "rules_figures": rules_figures,
        },
        note=f"retrained from {len(corrected)} corrections; gate {verdict}",
    )
    if promote and result.passed:
        result.promoted = registry.promote(store, candidate.version, who, f"gate passed against {current.version}")
    return result


def with_data(config: TrainConfig, data: str | None) -> TrainConfig:
    """The recipe's relative data paths read under retraining.data, unless the recipe names its own data.root."""
    if data is None or config.data.root is not None:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"root": data})})


def from_running(config: TrainConfig, current: registry.RegisteredVersion) -> TrainConfig:
    """A fine-tuning recipe goes on from the running version, so what earlier retrainings learned stays.

    A scratch recipe trains anew, and a version that is a LoRA adapter keeps the recipe's base (an
    adapter is not a base to fine-tune in full). A version that reads no labeled neighbours (an earlier
    model, slm/neighbours.py) is fine-tuned without them, and without the dialects that only they explain.
    """
    if config.base == "scratch" or current.adapter:
        return config
    from slm.engine import model_folder
    from slm.hints import reads_hints

    data = config.data
    if not reads_hints(model_folder(current.path), "neighbours"):
        data = data.model_copy(update={"neighbours": 0.0, "dialects": 0})
    return config.model_copy(update={"base": current.path, "data": data})


def current_version(store: Store, settings: Settings, who: str) -> registry.RegisteredVersion:
    """The registry's active version; before the first retraining, model.path registered and promoted,
    so that a rollback has somewhere to go."""
    active = registry.active(store)
    if active is not None:
        return active
    model = settings.model
    path, adapter = _lasting(model.path), _lasting(model.adapter) if model.adapter else None
    version = choose.load(choose.Choice(model.model_copy(update={"path": path, "adapter": adapter}))).version
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
    """The store's corrections as `slmnode export corrections --format json` writes them, kept with the
    version. JSON, not CSV: its text is what people wrote, where a CSV export escapes formula cells."""
    path = folder / CORRECTIONS_FILE
    path.write_text(encode_rows(correction_rows(store), CORRECTION_FIELDS, "json"), encoding="utf-8")
    return path


def result_dict(result: RetrainResult) -> dict:
    """The result for JSON output."""
    return {
        **{k: v for k, v in asdict(result).items() if k != "comparisons"},
        "folder": str(result.folder),
        "passed": result.passed,
        "reasons": result.reasons,
        "comparisons": [{**asdict(c), "change": c.change, "passed": c.passed} for c in result.comparisons],
    }
