"""The non-regression gate: the figures two model versions are judged on, and the comparison.

Both versions answer the same held-out examples: the recipe's dev split (never test), a fixed sample
of at most `limit` per task, plus the site's corrections. A figure may drop by at most its allowed
amount; no figure to compare is no pass. The registry side (which versions, promotion) is the node's:
dicom_node/models/retrain.py.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from training.data import Example, recipe_examples
from training.recipe import TrainConfig

GATE_FIGURES = ("harmonization_accuracy", "corrections_accuracy", "labeling_macro_f1", "impression_rouge_l")
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


def compare(current: dict[str, float], candidate: dict[str, float], max_drop: dict[str, float]) -> list[Comparison]:
    """The figures both versions have, in GATE_FIGURES order (the order reports show them)."""
    return [
        Comparison(name, current[name], candidate[name], max_drop.get(name, 0.0))
        for name in GATE_FIGURES
        if name in current and name in candidate
    ]


def passed(comparisons: list[Comparison]) -> bool:
    """No figure dropped too far, and there was at least one to compare: no evidence is no pass."""
    return bool(comparisons) and all(c.passed for c in comparisons)


def reasons(comparisons: list[Comparison]) -> list[str]:
    """Why the gate refused (the figures that dropped too far), else every figure's change."""
    if not comparisons:
        return [NOTHING_TO_COMPARE]
    refused = [c.reason() for c in comparisons if not c.passed]
    return refused or [c.reason() for c in comparisons]


def evaluation_examples(config: TrainConfig, limit: int | None) -> dict[str, list[Example]]:
    """The recipe's dev examples by task, at most `limit` of each: both versions are judged on these.

    A fixed random sample, not the first ones: dev descriptions come grouped by label.
    """
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in recipe_examples(config.data, "dev"):
        by_task[example.task].append(example)
    return {
        task: examples if limit is None or len(examples) <= limit else random.Random(0).sample(examples, limit)
        for task, examples in by_task.items()
    }


def figures(model, held_out: dict[str, list[Example]], corrected: list[Example], who: str) -> dict[str, float]:
    """The gate's figures for one model; a figure whose examples are missing is left out."""
    # Here, not at the top: scipy (through metrics) takes a second, and the node's config reads GATE_FIGURES.
    from training import metrics
    from training.evaluate import in_batches

    result: dict[str, float] = {}

    def harmonized(examples: list[Example], desc: str) -> float:
        predicted = [p.label for p in in_batches(model.harmonize, [e.text for e in examples], desc)]
        return metrics.harmonization_metrics([e.answer for e in examples], predicted)["accuracy"]

    if held_out.get("harmonize"):
        result["harmonization_accuracy"] = harmonized(held_out["harmonize"], f"{who}: harmonize")
    if corrected:
        result["corrections_accuracy"] = harmonized(corrected, f"{who}: corrections")
    if held_out.get("label"):
        examples = held_out["label"]
        predicted = in_batches(model.label, [e.text for e in examples], f"{who}: label")
        result["labeling_macro_f1"] = metrics.labeling_metrics([e.answer for e in examples], predicted)["macro_f1"]
    if held_out.get("impression"):
        examples = held_out["impression"]
        written = in_batches(model.impression, [e.text for e in examples], f"{who}: impression")
        rouge_l = metrics.rouge_per_report([e.answer for e in examples], written)["rougeL"]
        result["impression_rouge_l"] = statistics.fmean(rouge_l)
    return result


def rule_figures(held_out: dict[str, list[Example]]) -> dict[str, float]:
    """The rule harmonizer's and rule labeler's figures on the same examples (they write no impressions)."""
    from slm.report_rules import RuleLabeler
    from slm.rules import RuleHarmonizer

    rules = SimpleNamespace(harmonize=RuleHarmonizer().harmonize, label=RuleLabeler().label)
    return figures(rules, {task: held_out[task] for task in ("harmonize", "label") if held_out.get(task)}, [], "rules")


# What a model folder says of itself: its figures and the rules' on the same held-out examples, so that
# harmonizer.kind auto (dicom_node/models/choose.py) never runs a model the rules beat there.
FIGURES_FILE = "figures.json"


def write_figures(folder: Path, model: dict[str, float], rules: dict[str, float], held_out: dict[str, int]) -> Path:
    path = Path(folder) / FIGURES_FILE
    record = {"model": model, "rules": rules, "held_out_examples": held_out}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_figures(folder: Path | None) -> dict | None:
    """The figures.json of a model folder; None where there is none (a hub model, an older folder)."""
    path = Path(folder) / FIGURES_FILE if folder is not None else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None


def rules_do_better(record: dict | None, figure: str, margin: float = 0.0) -> bool:
    """Did the rules score more than `margin` above the model on `figure` (e.g. harmonization_accuracy),
    where both were judged? The margin is the gate's allowed drop: on 62 dev descriptions one answer is 0.016."""
    if not record or figure not in record.get("model", {}) or figure not in record.get("rules", {}):
        return False
    return record["rules"][figure] > record["model"][figure] + margin + ROUNDING


def main(argv: list[str] | None = None) -> None:
    """python -m training.gate MODEL_FOLDER [--limit N]: judge a model folder and the rules on its recipe's dev split."""
    import argparse

    from slm.engine import load_engine
    from training.recipe import load_config

    parser = argparse.ArgumentParser(prog="python -m training.gate", description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="at most N held-out examples per task (default: all)")
    args = parser.parse_args(argv)
    config = load_config(args.folder / "recipe.yaml", [f"output_dir={args.folder}"])
    held_out = evaluation_examples(config, args.limit)
    model = figures(load_engine(str(args.folder)), held_out, [], "model")
    path = write_figures(args.folder, model, rule_figures(held_out), {t: len(e) for t, e in held_out.items()})
    print(json.dumps(json.loads(path.read_text()), indent=2))


if __name__ == "__main__":
    main()
