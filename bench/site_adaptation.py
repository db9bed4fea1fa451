"""The retraining loop as a site lives it: correct a fifth of your descriptions, retrain, and see the rest.

    python -m bench.site_adaptation [--min-rows 40] [--fifth 0] [--out site.md] [key=value ...]

For each source of ../shared/data/series/real_public.csv with at least --min-rows descriptions (a
source stands for a site: one research protocol's naming), in a store of its own:
1. a fifth of its descriptions (spellings of one description kept together, per class) are corrected
   to their labels through the store, as a person would with `slmnode correct`;
2. `slmnode models retrain` runs (dicom_node.models.retrain with the node's defaults but the recipe:
   retrain_embedded, reading the data sets from $SLMNODE_DATA or ../shared/data, corrections weighted retraining.corrections_weight; key=value overrides it);
3. the other four fifths are scored: the rules, the shipped model, what the site sees at once after
   correcting (its store: a correction of any spelling wins, else the shipped model reading the
   corrections as labeled neighbours, slm/neighbours.py), the retrained candidate, and what the site
   sees after retraining (the same, with what runs: the candidate when the gate passed it, the shipped
   model when not).

Figures are accuracies on those four fifths, in the same run. The shipped model was trained on the
train part of real_public.csv (70 %), so its figures on that part are not held out: the "held-out"
columns score only descriptions of the recipe's dev and test parts, which no model trained on.
Run from the repository root; it trains one candidate per source (minutes each on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dicom_node.config import Settings
from dicom_node.models import choose
from dicom_node.models.retrain import retrain
from dicom_node.store import corrections, mappings
from dicom_node.store.database import Store
from dicom_node.store.tables import utcnow
from slm.harmonizer import description_key
from slm.neighbours import Neighbours
from slm.rules import RuleHarmonizer
from training.data import FIFTHS, REAL_SERIES, Example, fifths, series_csv_examples, site_sources, split_descriptions
from training.recipe import load_config

RECIPE = "retrain_embedded"  # the recipe of the README's figures: the embedded model's whole data plus the corrections

def accuracy(examples: list[Example], predicted: list[str]) -> float:
    return sum(e.answer == p for e, p in zip(examples, predicted)) / len(examples) if examples else float("nan")


def run_site(source: str, examples: list[Example], fifth: int, held_out_keys: set[str], folder: Path,
             overrides: list[str]) -> dict:
    parts = fifths(examples)
    corrected, rest = parts[fifth], [e for i, part in enumerate(parts) if i != fifth for e in part]
    settings = Settings.model_validate({
        "store": {"url": f"sqlite:///{folder / 'site.sqlite'}"},
        "model": {"device": "cpu"},
        "retraining": {"models_folder": str(folder / "models"), "recipe": RECIPE},
    })
    store = Store(settings.store.url)
    try:
        for example in corrected:
            corrections.add_correction(store, example.text, example.answer, "site", None, utcnow())
        texts = [e.text for e in rest]
        known = Neighbours(mappings.corrected_labels(store.engine))  # what the node's worker reads
        shipped = choose.load(choose.Choice(settings.model))
        runs = choose.pick_harmonizer(settings, choose.Choice(settings.model), shipped)  # before retraining
        rules = [p.label for p in RuleHarmonizer().harmonize(texts)]
        before = [p.label for p in shipped.harmonize(texts)]
        at_once = site_labels(store, texts, runs.harmonize(texts, known))
        result = retrain(store, settings, overrides=overrides, promote=True, who="site")
        candidate = choose.load(choose.Choice(settings.model.model_copy(update={"path": str(result.folder)})))
        running = choose.harmonizer(settings, choose.choose(settings, store))  # the candidate if the gate passed
        after = candidate.harmonize(texts)
        site = site_labels(store, texts, running.harmonize(texts, known))
    finally:
        store.close()
    unseen = [i for i, e in enumerate(rest) if description_key(e.text) in held_out_keys]

    def both(predicted: list[str]) -> tuple[float, float]:
        return accuracy(rest, predicted), accuracy([rest[i] for i in unseen], [predicted[i] for i in unseen])

    return {
        "source": source, "corrected": len(corrected), "scored": len(rest), "held_out": len(unseen),
        "rules": both(rules), "shipped": both(before), "at_once": both(at_once),
        "retrained": both([p.label for p in after]), "site": both(site), "candidate": result.candidate,
        "gate": "passed" if result.passed else "refused: " + "; ".join(result.reasons),
    }


def site_labels(store: Store, texts: list[str], predictions: list) -> list[str]:
    """What the site's store shows for each text once these predictions are its mappings: a correction
    of any spelling wins."""
    for text, prediction in zip(texts, predictions):
        mappings.add_mapping(store, text, prediction, utcnow())
    effective = {m.description: m.label for m in mappings.mappings(store.engine)}
    return [effective[text] for text in texts]


def table(results: list[dict]) -> str:
    def cell(pair: tuple[float, float]) -> str:
        whole, unseen = pair
        return f"{whole:.3f} ({unseen:.3f})" if unseen == unseen else f"{whole:.3f} (-)"

    lines = ["| source | corrected | scored (held-out) | rules | shipped model | site at once | retrained | "
             "site after retraining | gate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        name = r["source"].split(":")[-1]
        lines.append(f"| {name} | {r['corrected']} | {r['scored']} ({r['held_out']}) | {cell(r['rules'])} | "
                     f"{cell(r['shipped'])} | {cell(r['at_once'])} | {cell(r['retrained'])} | {cell(r['site'])} | {r['gate']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.site_adaptation", description=__doc__.split("\n")[0])
    parser.add_argument("--min-rows", type=int, default=40, help="sources with at least this many descriptions")
    parser.add_argument("--fifth", type=int, default=0, choices=range(FIFTHS), help="which fifth is corrected")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the retraining recipe")
    args = parser.parse_args(argv)
    recipe = load_config(RECIPE, ["output_dir=unused"])
    parts = split_descriptions(series_csv_examples(REAL_SERIES), recipe.data.series_holdout, recipe.data.seed)
    held_out_keys = {description_key(e.text) for e in parts["dev"] + parts["test"]}
    results = []
    for source, examples in site_sources(REAL_SERIES, args.min_rows).items():
        with tempfile.TemporaryDirectory() as folder:
            results.append(run_site(source, examples, args.fifth, held_out_keys, Path(folder), args.overrides))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    text = table(results)
    print("\n" + text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
