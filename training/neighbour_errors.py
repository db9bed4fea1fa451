"""What labeled neighbours do to a model's harmonization, on dev data only: the check behind slm/neighbours.py.

    python -m training.neighbour_errors [--model slm/default_model] [--dialects 1000] [--misses]

Three ways of knowing a site's corrections, each scored without and with them (test descriptions are
never scored):
- the dev part of real_public.csv, with the train part's descriptions known;
- each source of real_public.csv with at least 40 descriptions as a site that corrected one fifth
  (training.data.fifths, as bench/site_adaptation.py), scored on the other four fifths without the
  test part, before any retraining;
- invented site dialects of a seed no model trained on (series_generator.dialects), one description
  of each site word known.
The rules are scored alongside; they read no neighbours.
"""

from __future__ import annotations

from collections import defaultdict

import click

from slm.harmonizer import description_key
from slm.neighbours import Neighbours
from slm.rules import RuleHarmonizer
from training.data import (
    REAL_SERIES, Example, dialect_examples, fifths, series_csv_examples, site_sources, split_descriptions,
)

DIALECT_SEED = 99  # the shipped recipe's dialects are seed 0's


def cases(series: str, dialects: int) -> list[tuple[str, list[Example], list[Example]]]:
    """(name, known, scored) for each check."""
    parts = split_descriptions(series_csv_examples(series), 0.3, 0)
    test_keys = {description_key(e.text) for e in parts["test"]}
    found = [("real dev part, train part known", parts["train"], parts["dev"])]
    for source, examples in site_sources(series, 40).items():
        corrected, *rest = fifths(examples)
        scored = [e for part in rest for e in part if description_key(e.text) not in test_keys]
        found.append((f"{source.split(':')[-1]}, a fifth known", corrected, scored))
    by_word: dict[tuple, list[Example]] = defaultdict(list)
    for example in dialect_examples(dialects, DIALECT_SEED):
        by_word[(example.uid, example.answer)].append(example)
    known = [examples[0] for examples in by_word.values()]
    found.append((f"dialects (seed {DIALECT_SEED}), one per word known", known,
                  [e for examples in by_word.values() for e in examples[1:]]))
    return found


@click.command()
@click.option("--model", "model_path", default="embedded", show_default=True, help="Folder, hub id or 'embedded'.")
@click.option("--dialects", type=int, default=1000, show_default=True, help="Dialect descriptions to generate.")
@click.option("--misses", is_flag=True, help="List the descriptions whose answer the neighbours changed.")
@click.option("--series", type=click.Path(dir_okay=False), default=str(REAL_SERIES), show_default=True)
def main(model_path: str, dialects: int, misses: bool, series: str) -> None:
    """Harmonization accuracy without and with known corrections, rules alongside."""
    from slm.engine import load_engine

    engine = load_engine(model_path)
    if not engine.neighbours:
        click.echo(f"note: {engine.version} was not trained with neighbours; it ignores them")
    rules = RuleHarmonizer()
    click.echo("| case | known | scored | rules | model | model, corrections known |\n|---|---:|---:|---:|---:|---:|")
    for name, known, scored in cases(series, dialects):
        texts = [e.text for e in scored]
        plain = engine.harmonize(texts)
        reading = engine.harmonize(texts, Neighbours((e.text, e.answer) for e in known))
        accuracy = [sum(p.label == e.answer for p, e in zip(answers, scored)) / len(scored)
                    for answers in (rules.harmonize(texts), plain, reading)]
        click.echo(f"| {name} | {len(known)} | {len(scored)} | " + " | ".join(f"{a:.3f}" for a in accuracy) + " |")
        if misses:
            for e, before, after in zip(scored, plain, reading):
                if before.label != after.label:
                    click.echo(f"changed\t{e.text!r}\tgold {e.answer}\twithout {before.label}\twith {after.label}")


if __name__ == "__main__":
    main()
