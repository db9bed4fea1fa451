"""Where the rules miss, on the train split: the error analysis behind the rule hints a model reads.

    python -m training.rule_errors [--split train|dev] [--model slm/default_model] [--misses]

A hinted model copies the rule labeler's and the rule harmonizer's answers (slm/hints.py), so their
misses are the model's. This scores both rule sets per finding and per description on one split (train
to look at, dev to check; test is refused) and, with --model, the model on the same examples; --misses
lists every miss for reading. Series descriptions are split as the shipped recipe splits them.
"""

from __future__ import annotations

import click

from slm.report_rules import RuleLabeler
from slm.rules import decide
from slm.tasks import FINDINGS, LABEL_KEYS
from training import metrics
from training.data import OPENI, REAL_SERIES, Example, openi_examples, series_examples


def labeling_scores(examples: list[Example], predicted: list[dict[str, str]]) -> dict[str, float]:
    """Macro-F1 over the 14 keys, then each key's F1."""
    scores = metrics.labeling_metrics([e.answer for e in examples], predicted)
    return {"macro-F1": scores["macro_f1"], **{key: scores["per_label"][key]["f1"] for key in LABEL_KEYS}}


def label_misses(examples: list[Example], predicted: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    """(finding, report uid, gold, answer) for every finding answered unlike the gold label."""
    return [
        (key, e.uid or "", e.answer[key], p[key]) for e, p in zip(examples, predicted) for key in FINDINGS
        if e.answer[key] != p[key]
    ]


@click.command()
@click.option("--split", type=click.Choice(["train", "dev"]), default="train", show_default=True)
@click.option("--model", "model_path", default=None, help="Also score this model (folder, hub id or 'embedded').")
@click.option("--misses", is_flag=True, help="List every miss of the rules (finding, uid, gold, rules).")
@click.option("--openi", type=click.Path(file_okay=False), default=str(OPENI), show_default=True)
@click.option("--series", type=click.Path(dir_okay=False), default=str(REAL_SERIES), show_default=True)
def main(split: str, model_path: str | None, misses: bool, openi: str, series: str) -> None:
    """Score the rule labeler and harmonizer (and a model) on the train or dev split."""
    reports = openi_examples(split, ("label",), openi)
    descriptions = series_examples(series, split)
    answerers = {"rules": (RuleLabeler().label, lambda texts: [decide(t).label for t in texts])}
    if model_path:
        from slm.engine import load_engine

        engine = load_engine(model_path)
        answerers["model"] = (engine.label, lambda texts: [p.label for p in engine.harmonize(texts)])
    labels = {who: label([e.text for e in reports]) for who, (label, _) in answerers.items()}
    scores = {who: labeling_scores(reports, predicted) for who, predicted in labels.items()}
    click.echo(f"labeling, {len(reports)} {split} reports: F1")
    click.echo("| key | " + " | ".join(scores) + " |\n|---|" + "---|" * len(scores))
    for key in scores["rules"]:
        click.echo(f"| {key} | " + " | ".join(f"{s[key]:.3f}" for s in scores.values()) + " |")
    texts = [e.text for e in descriptions]
    for who, (_, harmonize) in answerers.items():
        right = sum(answer == e.answer for answer, e in zip(harmonize(texts), descriptions))
        click.echo(f"harmonization, {split} part ({len(texts)} descriptions), {who}: {right / len(texts):.3f} ({right})")
    if misses:
        for finding, uid, gold, answer in label_misses(reports, labels["rules"]):
            click.echo(f"miss\t{finding}\t{uid}\tgold {gold}\trules {answer}")
        for e in descriptions:
            if decide(e.text).label != e.answer:
                click.echo(f"miss\tseries\t{e.text!r}\tgold {e.answer}\trules {decide(e.text).label}")


if __name__ == "__main__":
    main()
