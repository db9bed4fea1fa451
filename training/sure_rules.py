"""Who is right where a hinted model and the rules disagree, by how sure the rules are: the evidence behind
slm.hints.sure_rules_stand.

    python -m training.sure_rules [--model embedded] [--seeds 7,11,23] [--n 5000]

Scores generated descriptions of seeds the model was not trained on (the shipped recipes generate with
seed 0), grouped by the rule harmonizer's confidence: the rules, the model alone (the argmax of its
scores) and the model as it answers (with the rules' answer where they are sure), and, where the model
alone and the rules disagree, how often each is right. Generated text only: no real description is read.
"""

from __future__ import annotations

from collections import defaultdict

import click
import torch

from slm.rules import decide
from slm.tasks import SERIES_LABELS
from training.series_generator import generate

COLUMNS = ("descriptions", "rules right", "model alone right", "model as it answers right", "disagree",
           "model alone right there", "rules right there")


def tally(engine, samples: list[tuple[str, str, str]]) -> dict[float, dict[str, int]]:
    """COLUMNS counted per rule confidence."""
    texts = [text for text, _, _ in samples]
    alone = [SERIES_LABELS[int(scores.argmax())] for scores in engine.harmonize_scores(texts)]
    answers = [p.label for p in engine.harmonize(texts)]
    table: dict[float, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    for (text, gold, _), model, answer in zip(samples, alone, answers):
        reading = decide(text)
        row = table[reading.confidence]
        disagree = model != reading.label
        for column, count in zip(COLUMNS, (True, reading.label == gold, model == gold, answer == gold, disagree,
                                           disagree and model == gold, disagree and reading.label == gold)):
            row[column] += count
    return table


@click.command()
@click.option("--model", "model_path", default="embedded", show_default=True, help="Folder, hub id or 'embedded'.")
@click.option("--seeds", default="7,11,23", show_default=True, help="Generator seeds, comma-separated.")
@click.option("--n", default=5000, show_default=True, help="Descriptions per seed.")
def main(model_path: str, seeds: str, n: int) -> None:
    """Rules against a model, by the rules' confidence, on generated descriptions of unseen seeds."""
    from slm.engine import load_engine

    engine = load_engine(model_path)
    samples = [sample for seed in seeds.split(",") for sample in generate(n, int(seed), progress=True)]
    with torch.inference_mode():
        table = tally(engine, samples)
    click.echo(f"{len(samples)} generated descriptions (seeds {seeds}), model {engine.version}")
    click.echo("| rule confidence | " + " | ".join(COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS))
    total = dict.fromkeys(COLUMNS, 0)
    for confidence, row in sorted(table.items()):
        click.echo(f"| {confidence:.2f} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
        total = {c: total[c] + row[c] for c in COLUMNS}
    click.echo("| all | " + " | ".join(str(total[c]) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
