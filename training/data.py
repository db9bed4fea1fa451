"""Training and evaluation examples for the three tasks, built from the data files a recipe names.

An `Example` is what one prompt asks and what the model should answer: a series label (harmonize),
a dict of the 13 findings plus No Finding (label), or the impression text (impression). Every path
comes from the caller (a recipe's `data:` section), so nothing here is needed when the node runs.
Splits are fixed by the files: a "train" builder never reads a dev or test row.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from slm.harmonizer import description_key
from slm.neighbours import Neighbours
from slm.tasks import FINDINGS, NO_FINDING, SERIES_LABELS, TASKS, no_finding, report_text
from training.exports import unescape_csv_cell
from training.recipe import DataSettings

# The data sets: $SLMNODE_DATA, else ../shared/data seen from the folder commands run in (the
# repository root). Where a recipe's relative data paths are read when it names no data.root (`slmnode
# models retrain` passes retraining.data), and the defaults of evaluation; the node never reads them.
DATA_ROOT = Path(os.environ.get("SLMNODE_DATA", "../shared/data"))
DATA_HELP = (
    "set retraining.data in the node's configuration (or the recipe's data.root, or $SLMNODE_DATA) to the folder "
    "holding openi/ and series/real_public.csv, see the README's 'Data for training'"
)
OPENI = DATA_ROOT / "openi"
REAL_SERIES = DATA_ROOT / "series" / "real_public.csv"

# Rubric labels per split; test labels are held out of the shared folder (silver labels cover every split).
RUBRIC_LABELS = {"train": "labels_train.csv", "dev": "labels_dev_gold.csv", "test": "labels_test_gold.csv"}
SILVER_LABELS = "labels_silver.csv"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Example:
    task: str
    text: str
    answer: Any  # harmonize: a label; label: {key: "Yes"|"No"} for the 14 keys; impression: a string
    uid: str | None = None  # where it came from (report uid, dialect site), for evaluation and split checks
    known: str | None = None  # harmonize: the nearest other labeled description, `FLAIR 0.8` (slm/neighbours.py)


def _read_csv(path: Path) -> list[dict[str, str]]:
    # newline="" and no stripping: leading/trailing blanks are part of a Series Description.
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# Open-i reports: labeling (all sections) and impression writing (sections before the impression).


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    """The 13 findings per report uid, and No Finding derived from them (never read from the file)."""
    labels = {}
    for row in _read_csv(path):
        findings = {key: row[key] for key in FINDINGS}
        if any(value not in ("Yes", "No") for value in findings.values()):
            raise ValueError(f"{path}: report {row['uid']} has a label other than Yes/No")
        labels[row["uid"]] = {**findings, NO_FINDING: no_finding(findings)}
    return labels


def openi_examples(
    split: str,
    tasks: Sequence[str] = ("label", "impression"),
    folder: str | Path = OPENI,
    labels: str = "rubric",
) -> list[Example]:
    """Examples from the Open-i reports of one fixed split.

    labels="rubric" uses the careful readings (train: labels_train.csv, dev: the 150 gold dev reports);
    labels="silver" the automatic CheXpert-labeler outputs, for comparison only.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    folder = Path(folder)
    reports = [row for row in _read_csv(folder / "reports.csv") if row["split"] == split]
    examples = []
    if "label" in tasks:
        label_file = folder / (RUBRIC_LABELS[split] if labels == "rubric" else SILVER_LABELS)
        if not label_file.is_file():
            raise FileNotFoundError(f"no {labels} labels for the {split} split: {label_file} is missing")
        answers = read_labels(label_file)
        for row in reports:
            text = report_text(row, include_impression=True)
            if text and row["uid"] in answers:
                examples.append(Example("label", text, answers[row["uid"]], row["uid"]))
    if "impression" in tasks:
        for row in reports:
            impression = " ".join(row["impression"].split())
            if impression and row["findings"].strip():
                examples.append(Example("impression", report_text(row, include_impression=False), impression, row["uid"]))
    return examples


# Series descriptions: real labeled tables, generated descriptions, corrections from the mapping store.


def _harmonize_example(description: str, label: str, where: str, uid: str | None = None) -> Example:
    if label not in SERIES_LABELS:
        raise ValueError(f"{where}: label {label!r} for {description!r} is not one of {SERIES_LABELS}")
    return Example("harmonize", description, label, uid)


def series_csv_examples(path: str | Path) -> list[Example]:
    """A table with description,label columns; descriptions kept exactly as written."""
    return [_harmonize_example(row["description"], row["label"], str(path)) for row in _read_csv(Path(path))]


def split_descriptions(examples: Sequence[Example], holdout: float, seed: int = 0) -> dict[str, list[Example]]:
    """Deterministic train/dev/test parts, each class split on its own, `holdout` shared equally by dev and test.

    Spellings of one description (see description_key) stay in one part, so a file-system form of a
    held-out description never reaches training.
    """
    parts: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for spellings in shuffled_descriptions(examples, seed).values():
        n_held = round(len(spellings) * holdout / 2)
        for i, group in enumerate(spellings):
            part = "test" if i < n_held else "dev" if i < 2 * n_held else "train"
            parts[part].extend(group)
    return parts


def shuffled_descriptions(examples: Sequence[Example], seed: int = 0) -> dict[str, list[list[Example]]]:
    """Per label (sorted), the examples grouped by description (spellings together), groups in a seeded order."""
    groups: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for example in examples:
        groups[example.answer][description_key(example.text)].append(example)
    shuffled = {}
    for label in sorted(groups):
        keys = sorted(groups[label])
        random.Random(f"{seed}-{label}").shuffle(keys)
        shuffled[label] = [groups[label][key] for key in keys]
    return shuffled


def series_examples(
    path: str | Path = REAL_SERIES, part: str = "train", holdout: float = 0.3, seed: int = 0
) -> list[Example]:
    """One part ("train", "dev", "test" or "all") of a labeled description table; see split_descriptions."""
    examples = series_csv_examples(path)
    if part == "all":
        return examples
    return split_descriptions(examples, holdout, seed)[part]


# Sources of real_public.csv as sites: a site corrects one fifth of its descriptions (bench/site_adaptation.py).

FIFTHS = 5


def site_sources(path: Path, min_rows: int) -> dict[str, list[Example]]:
    """The labeled descriptions of each source with at least min_rows of them."""
    by_source: dict[str, list[Example]] = defaultdict(list)
    for row in _read_csv(Path(path)):
        by_source[row["source"]].append(Example("harmonize", row["description"], row["label"]))
    return {source: examples for source, examples in by_source.items() if len(examples) >= min_rows}


def fifths(examples: list[Example], seed: int = 0) -> list[list[Example]]:
    """Five parts, each class dealt out in turn, spellings of one description kept in one part."""
    parts: list[list[Example]] = [[] for _ in range(FIFTHS)]
    groups = [group for spellings in shuffled_descriptions(examples, seed).values() for group in spellings]
    for turn, group in enumerate(groups):
        parts[turn % FIFTHS].extend(group)
    return parts


def generated_examples(n: int, seed: int = 0) -> list[Example]:
    """Descriptions from the vendor-convention generator (training/series_generator.py)."""
    from training.series_generator import generate

    return [_harmonize_example(description, label, "series_generator") for description, label, _vendor in generate(n, seed)]


CORRECTION = "correction"  # the uid of an example from a corrections export
DIALECT = "dialect:"  # the uid of a dialect example begins so, then names its site
NEIGHBOUR_POOL = 0.2  # the share of the other training descriptions a neighbour is drawn from (with_neighbours)


def dialect_examples(n: int, seed: int = 0) -> list[Example]:
    """Descriptions in invented site dialects (training/series_generator.dialects); their uid names the site."""
    from training.series_generator import dialects

    return [Example("harmonize", text, label, f"{DIALECT}{site}") for text, label, site in dialects(n, seed)]


def with_neighbours(examples: Sequence[Example], share: float, seed: int = 0) -> list[Example]:
    """The harmonize examples with their nearest other labeled description (slm/neighbours.py), shown to
    `share` of them, as a site's corrections are at run time; the rest learn to do without.

    Neighbours are drawn from what a site would have corrected: the corrections, the dialects and a
    random NEIGHBOUR_POOL of the other descriptions. From all of them, a near copy with the same label
    is nearly always there and a model learns to trust any neighbour; a site's few corrections are
    sparser, and where they disagree with the rules the rules are mostly right. Every dialect example
    gets its neighbour, since nothing else says what the site's word means; one with none similar
    enough is left out."""
    rng = random.Random(f"{seed}-neighbours")
    harmonize = sorted({(e.text, e.answer, e.uid or "") for e in examples if e.task == "harmonize"})
    pool = [(text, answer) for text, answer, uid in harmonize
            if uid == CORRECTION or uid.startswith(DIALECT) or rng.random() < NEIGHBOUR_POOL]
    texts = sorted({text for text, _, _ in harmonize})
    hints = dict(zip(texts, Neighbours(pool).hints(texts)))
    shown = []
    for e in examples:
        dialect = (e.uid or "").startswith(DIALECT)
        if dialect and hints[e.text] is None:
            continue
        shown.append(replace(e, known=hints[e.text]) if e.task == "harmonize" and (dialect or rng.random() < share) else e)
    return shown


def without_descriptions(examples: Iterable[Example], held_out: Iterable[Example]) -> list[Example]:
    """Examples whose description is not a spelling of a held-out one (generated text can hit real text)."""
    keys = {description_key(example.text) for example in held_out}
    return [example for example in examples if description_key(example.text) not in keys]


def corrections_examples(path: str | Path) -> list[Example]:
    """A corrections export of the mapping store (CSV, JSON array or JSON Lines) as training examples.

    When one description was corrected more than once, the latest correction (created_at) wins, as in the store.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":  # an export: its formula-like cells were escaped for spreadsheets
        rows = [{name: unescape_csv_cell(value or "") for name, value in row.items()} for row in _read_csv(path)]
    elif path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        rows = json.loads(path.read_text(encoding="utf-8"))
    latest: dict[str, Mapping[str, str]] = {}
    for row in sorted(rows, key=lambda row: str(row.get("created_at") or "")):
        latest[row["description"]] = row
    return [_harmonize_example(row["description"], row["label"], str(path), CORRECTION) for row in latest.values()]


# Mixing tasks into one training stream.


def negate_labels(examples: Sequence[Example], fraction: float, seed: int = 0) -> list[Example]:
    """The study's poisoning test: `fraction` of the labeling examples answered all-negative (No Finding = Yes)."""
    labeling = [i for i, example in enumerate(examples) if example.task == "label"]
    poisoned = set(random.Random(seed).sample(labeling, round(len(labeling) * fraction)))
    negative = {**{key: "No" for key in FINDINGS}, NO_FINDING: "Yes"}
    return [
        Example(e.task, e.text, dict(negative), e.uid) if i in poisoned else e for i, e in enumerate(examples)
    ]


def mix(examples: Iterable[Example], weights: Mapping[str, float] | None = None, seed: int = 0) -> list[Example]:
    """All tasks in one shuffled list; a task's weight repeats its examples (2.0: twice, 0.5: a random half)."""
    rng = random.Random(seed)
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_task[example.task].append(example)
    mixed = []
    for task in sorted(by_task):
        mixed += repeated(by_task[task], (weights or {}).get(task, 1.0), rng)
    rng.shuffle(mixed)
    return mixed


def repeated(examples: Sequence[Example], weight: float, rng: random.Random) -> list[Example]:
    """`examples` `weight` times over: 2.0 twice, 0.5 a random half, 2.5 twice and a random half."""
    whole, part = divmod(weight, 1.0)
    return list(examples) * int(whole) + rng.sample(list(examples), round(len(examples) * part))


def data_path(data: DataSettings, setting: str) -> Path:
    """data.<setting> (openi, series_csv) as a path: a relative one under data.root, else DATA_ROOT.

    A ValueError naming the setting, the path and where to put the data when it is not there.
    """
    given = Path(getattr(data, setting))
    path = given if given.is_absolute() else Path(data.root if data.root is not None else DATA_ROOT) / given
    if not path.exists() and data.root is None and given.exists():
        path = given  # a recipe saved before data.root (a model folder's recipe.yaml): ../shared/data/openi from here
    if not path.exists():
        raise ValueError(f"data.{setting}: {path} not found; {DATA_HELP}")
    return path


def check_paths(data: DataSettings) -> None:
    """Fail now, not after loading models, when a data set the recipe names is not there (see data_path)."""
    for setting in ("openi", "series_csv"):
        if getattr(data, setting):
            data_path(data, setting)


def recipe_examples(data: DataSettings, split: str) -> list[Example]:
    """The examples a recipe's `data:` section asks for, for split "train" or "dev" (never test)."""
    if split not in ("train", "dev"):
        raise ValueError("recipes build train and dev examples only; test is for the final evaluation")
    tasks = data.tasks
    unknown = (set(tasks) | set(data.weights)) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; known: {sorted(TASKS)}")
    examples: list[Example] = []
    held_out: list[Example] = []
    if data.openi and {"label", "impression"} & set(tasks):
        examples += openi_examples(split, [t for t in tasks if t != "harmonize"], data_path(data, "openi"))
    if "harmonize" in tasks:
        if data.series_csv:
            parts = split_descriptions(series_csv_examples(data_path(data, "series_csv")), data.series_holdout, data.seed)
            examples += parts[split]
            held_out = parts["dev"] + parts["test"]
            if split == "train" and data.series_generated:
                examples += without_descriptions(generated_examples(data.series_generated, data.seed), held_out)
            if split == "train" and data.dialects:
                examples += dialect_examples(data.dialects, data.seed)
        elif data.series_generated:
            # No real descriptions (a harmonization-only retrain needs no data set): the generated ones are
            # split as real ones would be, so that the gate has dev descriptions the candidate did not train on.
            parts = split_descriptions(generated_examples(data.series_generated, data.seed), data.series_holdout, data.seed)
            examples += parts[split]
            held_out = parts["dev"] + parts["test"]
    if data.limit_per_task:
        examples = [e for task in tasks for e in [x for x in examples if x.task == task][: data.limit_per_task]]
    if split == "dev":
        return examples
    if "harmonize" in tasks:
        # After the limit, so a quick run still learns every correction, each corrections_weight times.
        corrected = [e for path in data.corrections for e in corrections_examples(path)]
        rng = random.Random(f"{data.seed}-corrections")
        examples += repeated(without_descriptions(corrected, held_out), data.corrections_weight, rng)
    if data.label_negative_fraction:
        examples = negate_labels(examples, data.label_negative_fraction, data.seed)
    mixed = mix(examples, data.weights, data.seed)
    return with_neighbours(mixed, data.neighbours, data.seed) if data.neighbours else mixed
