"""Judge a model on the three tasks, next to the baselines, and write the report.

    python -m training.evaluate --model PATH|embedded [--split dev|test] [--out docs/evaluation/dev]

Labeling is scored against the rubric labels of the split (dev: the 150 gold reports) and,
separately, against the automatic silver labels; the rule labeler and (on gold) the silver labels
themselves are the baselines. Harmonization is scored on real series descriptions held out of
training (the split the model's recipe used), against slm.rules.RuleHarmonizer. Impressions are
scored against the reports' own, with and without the "IMPRESSION:" prefix, against the most frequent
training impression. The test split is for the final run only.

The output folder holds report.md (tables and plots), figures.json (every figure), predictions.jsonl
(every answer, for reading errors) and the plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import click
import yaml
from tqdm.auto import tqdm

from slm.consensus import SAMPLES as IMPRESSION_SAMPLES
from slm.neighbours import Neighbours
from slm.tasks import IMPRESSION_MAX_TOKENS, LABEL_KEYS, SERIES_LABELS
from training import metrics
from slm.report_rules import RuleLabeler
from training.baselines import MostFrequentImpression, NearestImpression
from training.data import OPENI, REAL_SERIES, SILVER_LABELS, Example, openi_examples, read_labels, series_examples

SERIES_HOLDOUT, SERIES_SEED = 0.3, 0  # training.data's defaults, used when the model folder has no recipe


@dataclass
class EvaluationData:
    """What a model is judged on for one split."""

    split: str
    labels_gold: list[Example]  # rubric labels; empty where the split's are held out (test)
    labels_silver: list[Example]
    series: list[Example]
    known_series: list[Example]  # the train part: labeled descriptions a site might have corrected
    impressions: list[Example]
    train_impressions: list[Example]  # train reports and their impressions, for the baselines
    silver_by_uid: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def series_split(model_folder: Path | None) -> tuple[Path, float, int]:
    """The description table, holdout and seed the model was trained with (its recipe.yaml), else the defaults."""
    recipe = model_folder / "recipe.yaml" if model_folder else None
    if recipe is None or not recipe.is_file():
        return REAL_SERIES, SERIES_HOLDOUT, SERIES_SEED
    data = (yaml.safe_load(recipe.read_text()) or {}).get("data") or {}
    path = Path(data["series_csv"]) if data.get("series_csv") else REAL_SERIES
    return (path if path.is_file() else REAL_SERIES), data.get("series_holdout", SERIES_HOLDOUT), data.get("seed", SERIES_SEED)


def evaluation_data(
    split: str, model_folder: Path | None = None, openi: Path = OPENI, limit: int | None = None
) -> EvaluationData:
    """The examples of `split` for each task; `limit` keeps the first n of each (for quick runs)."""
    if split not in ("dev", "test"):
        raise ValueError(f"split must be dev or test, not {split!r}")
    notes = []
    try:
        gold = openi_examples(split, ["label"], openi)
    except FileNotFoundError as exc:
        gold = []
        notes.append(f"Labeling against rubric labels skipped: {exc}.")
    series_csv, holdout, seed = series_split(model_folder)
    notes.append(f"Series descriptions: the {split} part of {series_csv.name} (holdout {holdout}, seed {seed}).")
    cut = slice(None, limit)
    return EvaluationData(
        split=split,
        labels_gold=gold[cut],
        labels_silver=openi_examples(split, ["label"], openi, labels="silver")[cut],
        series=series_examples(series_csv, split, holdout, seed)[cut],
        known_series=series_examples(series_csv, "train", holdout, seed),
        impressions=openi_examples(split, ["impression"], openi)[cut],
        train_impressions=openi_examples("train", ["impression"], openi),
        silver_by_uid=read_labels(Path(openi) / SILVER_LABELS),
        notes=notes,
    )


def in_batches(answer: Callable[[list[str]], list], texts: Sequence[str], desc: str, size: int = 128) -> list:
    """answer(texts) with a progress bar: texts grouped by length (less padding), results in input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list = [None] * len(texts)
    with tqdm(total=len(texts), desc=desc, unit="text", leave=False, disable=None) as bar:
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for i, result in zip(chunk, answer([texts[i] for i in chunk])):
                results[i] = result
            bar.update(len(chunk))
    return results


def _timed(answer: Callable, texts: Sequence[str], desc: str, seconds: dict) -> list:
    started = time.perf_counter()
    results = in_batches(answer, texts, desc)
    seconds[desc] = round(time.perf_counter() - started, 2)
    return results


def evaluate(engine, data: EvaluationData, harmonizer=None) -> tuple[dict, list[dict]]:
    """(figures, predictions): every metric and test, and every answer of the model and the baselines."""
    from slm.rules import RuleHarmonizer

    harmonizer = harmonizer or RuleHarmonizer()
    labeler = RuleLabeler()
    seconds: dict[str, float] = {}
    hinted = getattr(engine, "rule_hints", False)
    notes = data.notes + ([
        "Harmonization: the model as it answers, with the rules' answer where they are sure and it disagrees"
        " (slm.hints.sure_rules_stand).",
        "Labeling: the model as it answers, Yes wherever the rule labeler reads a finding as stated"
        " (slm.hints.stated_findings_stand).",
    ] if hinted else [])
    samples = getattr(engine, "impression_samples", 0)
    notes += [f"Impressions: the consensus of the greedy one and {samples} sampled ones (slm/consensus.py)."
              if samples else "Impressions: greedy."]
    figures: dict = {"split": data.split, "model_version": engine.version, "notes": notes, "seconds": seconds}
    predictions: list[dict] = []

    # Labeling: model and rule labeler on every report, scored against gold and against silver.
    reports = {e.uid: e.text for e in data.labels_gold + data.labels_silver}
    uids = list(reports)
    model_labels = dict(zip(uids, _timed(engine.label, [reports[u] for u in uids], "label", seconds)))
    rule_labels = dict(zip(uids, labeler.label([reports[u] for u in uids])))
    figures["labeling"] = {}
    for name, examples in (("gold", data.labels_gold), ("silver", data.labels_silver)):
        if not examples:
            continue
        gold = [e.answer for e in examples]
        model, rules = [model_labels[e.uid] for e in examples], [rule_labels[e.uid] for e in examples]
        section = {
            "n": len(examples),
            "model": metrics.labeling_metrics(gold, model),
            "rules": metrics.labeling_metrics(gold, rules),
            "mcnemar_model_vs_rules": metrics.mcnemar_labels(gold, model, rules),
        }
        silver_here = [e for e in examples if e.uid in data.silver_by_uid]
        if name == "gold" and silver_here:
            section["silver_labeler"] = metrics.labeling_metrics(
                [e.answer for e in silver_here], [data.silver_by_uid[e.uid] for e in silver_here]
            )
        figures["labeling"][name] = section
        predictions += [
            {"task": "label", "reference": name, "uid": e.uid, "gold": e.answer, "model": model_labels[e.uid],
             "rules": rule_labels[e.uid]}
            for e in examples
        ]

    # Harmonization on held-out real descriptions.
    if data.series:
        descriptions = [e.text for e in data.series]
        gold = [e.answer for e in data.series]
        answers = _timed(engine.harmonize, descriptions, "harmonize", seconds)
        model = [p.label for p in answers]
        rules = [p.label for p in harmonizer.harmonize(descriptions)]
        known = Neighbours([(e.text, e.answer) for e in data.known_series]) if engine.neighbours else None
        with_known = [p.label for p in engine.harmonize(descriptions, known)] if known is not None else None
        figures["harmonization"] = {
            "n": len(gold),
            "model": metrics.harmonization_metrics(gold, model),
            # As at a site that corrected the train part's descriptions: only a model with neighbours reads them.
            "model_with_known": {"known": len(known), **metrics.harmonization_metrics(gold, with_known)}
            if known is not None else None,
            "model_calibration": metrics.calibration([p.confidence for p in answers], [m == g for m, g in zip(model, gold)]),
            "rules": metrics.harmonization_metrics(gold, rules),
            "rules_version": harmonizer.version,
            "mcnemar_model_vs_rules": metrics.mcnemar(
                [m == g for m, g in zip(model, gold)], [r == g for r, g in zip(rules, gold)]
            ),
        }
        predictions += [
            {"task": "harmonize", "description": d, "gold": g, "model": m, "confidence": round(p.confidence, 4), "rules": r}
            for d, g, m, p, r in zip(descriptions, gold, model, answers, rules)
        ]

    # Impressions against the reports' own.
    if data.impressions:
        references = [e.answer for e in data.impressions]
        model = _timed(engine.impression, [e.text for e in data.impressions], "impression", seconds)
        train = data.train_impressions
        baseline = MostFrequentImpression([e.answer for e in train])
        constant = baseline.impression(references)
        nearest = NearestImpression([e.text for e in train], [e.answer for e in train]).impression(
            [e.text for e in data.impressions])
        rouge_l = metrics.rouge_per_report(references, model)["rougeL"]
        constant_rouge_l = metrics.rouge_per_report(references, constant)["rougeL"]
        nearest_rouge_l = metrics.rouge_per_report(references, nearest)["rougeL"]
        figures["impression"] = {
            "n": len(references),
            "model": metrics.impression_metrics(references, model),
            "most_frequent": metrics.impression_metrics(references, constant),
            "most_frequent_text": baseline.text,
            "nearest": metrics.impression_metrics(references, nearest),
            "t_test_rougeL_model_vs_most_frequent": metrics.paired_t_test(rouge_l, constant_rouge_l),
            "t_test_rougeL_model_vs_nearest": metrics.paired_t_test(rouge_l, nearest_rouge_l),
        }
        predictions += [
            {"task": "impression", "uid": e.uid, "gold": e.answer, "model": m, "rouge_l": round(r, 4)}
            for e, m, r in zip(data.impressions, model, rouge_l)
        ]
    return figures, predictions


# --- the report ---------------------------------------------------------------------------------------------


def _plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_label_f1(section: dict, path: Path) -> None:
    plt = _plots()
    systems = [(name, section[key]) for name, key in (("model", "model"), ("rule labeler", "rules"),
                                                       ("silver labels", "silver_labeler")) if key in section]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(systems)
    for k, (name, figures) in enumerate(systems):
        ax.bar([i + k * width for i in range(len(LABEL_KEYS))], [figures["per_label"][key]["f1"] for key in LABEL_KEYS],
               width, label=f"{name} (macro {figures['macro_f1']:.3f})")
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(LABEL_KEYS))])
    ax.set_xticklabels(LABEL_KEYS, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(section: dict, path: Path) -> None:
    plt = _plots()
    classes = section["model"]["classes"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, (name, key) in zip(axes, (("model", "model"), ("rules", "rules"))):
        matrix = section[key]["confusion"]
        ax.imshow(matrix, cmap="Blues")
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                if count:
                    ax.text(j, i, count, ha="center", va="center", fontsize=8,
                            color="white" if count > max(map(max, matrix)) / 2 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{name}: accuracy {section[key]['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(model_folder: Path | None, out: Path) -> bool:
    """loss.png from the model folder's loss.csv (written by training.train), drawn by training.train.save_curves."""
    import csv

    source = model_folder / "loss.csv" if model_folder else None
    if source is None or not source.is_file():
        return False
    from training.train import save_curves

    with open(source, newline="") as f:
        rows = [dict(row, step=int(row["step"]), loss=float(row["loss"])) for row in csv.DictReader(f)]
    save_curves(rows, out)
    return True


def _f(x: float) -> str:
    return f"{x:.3f}"


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else "< 1e-4"


def _p_is(x: float) -> str:
    return f"p = {x:.2g}" if x >= 1e-4 else "p < 1e-4"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _labeling_lines(name: str, section: dict, plot: str | None) -> list[str]:
    systems = [(label, section[key]) for label, key in (("model", "model"), ("rule labeler", "rules"),
                                                          ("silver labels", "silver_labeler")) if key in section]
    lines = [f"### Against the {name} labels ({section['n']} reports)", ""]
    lines += _table(["", "macro-F1 (14)", "macro-F1 (13 findings)", "micro-F1"],
                    [[label, _f(m["macro_f1"]), _f(m["macro_f1_findings"]), _f(m["micro_f1"])] for label, m in systems])
    lines += ["", "Per label (F1; support = reports with the finding; McNemar: b = model right and rule labeler "
              "wrong, c = the reverse):", ""]
    header = ["label", "support"] + [f"F1 {label}" for label, _ in systems] + ["b", "c", "McNemar p"]
    rows = []
    for key in LABEL_KEYS:
        test = section["mcnemar_model_vs_rules"][key]
        rows.append([key, section["model"]["per_label"][key]["support"]]
                    + [_f(m["per_label"][key]["f1"]) for _, m in systems] + [test["b"], test["c"], _p(test["p_value"])])
    lines += _table(header, rows)
    return lines + (["", f"![per-label F1]({plot})"] if plot else []) + [""]


def report_markdown(figures: dict, title: str, curves: bool) -> str:
    lines = [f"# {title}", "", f"Model `{figures['model_version']}`, {figures['split']} split, "
             f"written {figures['created']}.", ""]
    lines += [f"- {note}" for note in figures["notes"]] + [""]
    lines += ["F1 convention: a label with no gold positives and no predicted positives scores F1 = 1 (agreement "
              "on its absence); otherwise F1 = 2TP / (2TP + FP + FN). McNemar: exact binomial below 25 discordant "
              "pairs, else chi-square with continuity correction.", ""]

    if figures["labeling"]:
        lines += ["## Labeling (13 CheXpert findings + No Finding)", ""]
        for name, section in figures["labeling"].items():
            lines += _labeling_lines(name, section, "labeling_f1.png" if name == "gold" else None)

    if "harmonization" in figures:
        h = figures["harmonization"]
        test = h["mcnemar_model_vs_rules"]
        lines += ["## Harmonization (held-out real series descriptions)", ""]
        lines += _table(["", "accuracy", "macro-F1"],
                        [["model", _f(h["model"]["accuracy"]), _f(h["model"]["macro_f1"])],
                         [f"rules ({h['rules_version']})", _f(h["rules"]["accuracy"]), _f(h["rules"]["macro_f1"])]])
        known = h.get("model_with_known")
        if known:
            lines += ["", f"With the {known['known']} descriptions of the train part known as corrections (labeled "
                      f"neighbours, as at a site that corrected them), the model scores {_f(known['accuracy'])} "
                      f"(macro-F1 {_f(known['macro_f1'])})."]
        lines += ["", f"{h['n']} descriptions. McNemar model vs rules: b = {test['b']} (model right, rules wrong), "
                  f"c = {test['c']}, {_p_is(test['p_value'])} ({test['method']}).", ""]
        lines += _table(["class", "support", "F1 model", "F1 rules"],
                        [[c, h["model"]["per_class"][c]["support"], _f(h["model"]["per_class"][c]["f1"]),
                          _f(h["rules"]["per_class"][c]["f1"])] for c in SERIES_LABELS])
        lines += ["", "![confusion matrices](harmonization_confusion.png)", ""]
        calibration = h["model_calibration"]
        sure = calibration["at_least_0.9"]
        lines += ["Calibration of the model's confidence (reliability table): does a confidence mean what it says?", ""]
        lines += _table(["confidence", "answers", "mean confidence", "accuracy"],
                        [[f"{b['low']:.2f}-{b['high']:.2f}", b["n"], _f(b["confidence"]), _f(b["accuracy"])]
                         for b in calibration["bins"]])
        lines += ["", f"Expected calibration error {calibration['ece']:.3f}. Answered with confidence >= 0.9: "
                  f"{sure['n']}, of which {_f(sure['accuracy']) if sure['n'] else '-'} right.", ""]

    if "impression" in figures:
        i = figures["impression"]
        test, against_nearest = i["t_test_rougeL_model_vs_most_frequent"], i["t_test_rougeL_model_vs_nearest"]
        lines += ["## Impression", "", f"{i['n']} reports. Without the prefix is the figure to read; the study scored "
                  "texts that both begin with \"IMPRESSION:\", which adds a shared token to every pair.", ""]
        rows = []
        for label, key in (("model", "model"), (f"most frequent (\"{i['most_frequent_text']}\")", "most_frequent"),
                           ("nearest training report's impression (TF-IDF)", "nearest")):
            for prefix in ("without_prefix", "with_prefix"):
                m = i[key][prefix]
                rows.append([label, prefix.replace("_", " "), _f(m["rouge1"]), _f(m["rouge2"]), _f(m["rougeL"]),
                             _f(m["bleu"])])
        lines += _table(["", "scored", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU"], rows)
        lines += ["", f"Paired t-test on per-report ROUGE-L (without prefix), model minus most frequent: mean "
                  f"difference {test['mean_difference']:+.3f}, t = {test['t']:.2f}, {_p_is(test['p_value'])}; model "
                  f"minus nearest: {against_nearest['mean_difference']:+.3f}, t = {against_nearest['t']:.2f}, "
                  f"{_p_is(against_nearest['p_value'])}.", ""]

    if curves:
        lines += ["## Training curves", "", "![loss](loss.png)", ""]
    seconds = ", ".join(f"{task} {s:.1f} s" for task, s in figures["seconds"].items())
    lines += [f"Model time: {seconds}.", ""]
    return "\n".join(lines)


def write_report(figures: dict, predictions: list[dict], out: Path, model_folder: Path | None, title: str) -> Path:
    """report.md, figures.json, predictions.jsonl and the plots in `out`; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {"created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **figures}
    if "gold" in figures["labeling"]:
        plot_label_f1(figures["labeling"]["gold"], out / "labeling_f1.png")
    if "harmonization" in figures:
        plot_confusion(figures["harmonization"], out / "harmonization_confusion.png")
    curves = training_curves(model_folder, out)
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in predictions:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    report = out / "report.md"
    report.write_text(report_markdown(figures, title, curves))
    return report


def model_folder_of(path: str, adapter: str | None) -> Path | None:
    """Where the model's recipe and loss curves are, if it is a local folder."""
    from slm.engine import model_folder

    return model_folder(adapter or path)


@click.command()
@click.option("--model", "path", default="embedded", show_default=True,
              help='A model folder, a hub id, or "embedded" (the model shipped in slm/default_model).')
@click.option("--adapter", default=None, help="A LoRA adapter folder merged into --model.")
@click.option("--split", type=click.Choice(["dev", "test"]), default="dev", show_default=True,
              help="test is for the final run only.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default docs/evaluation/<split>).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--impression-max-tokens", default=IMPRESSION_MAX_TOKENS, show_default=True,
              help="Bound on a generated impression.")
@click.option("--impression-samples", default=IMPRESSION_SAMPLES, show_default=True,
              help="Impressions sampled besides the greedy one, the consensus written (0: greedy alone).")
@click.option("--limit", type=int, default=None, help="Only the first N examples of each task (a quick look).")
def main(path: str, adapter: str | None, split: str, out: Path | None, device: str, batch_size: int,
         impression_max_tokens: int, impression_samples: int, limit: int | None):
    """Evaluate a model on the three tasks next to the baselines and write a Markdown report."""
    from slm.engine import ModelUnavailable, load_engine

    try:
        engine = load_engine(path, adapter=adapter, device=device, batch_size=batch_size,
                             impression_max_tokens=impression_max_tokens, impression_samples=impression_samples)
    except ModelUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    folder = model_folder_of(path, adapter)
    data = evaluation_data(split, folder, limit=limit)
    figures, predictions = evaluate(engine, data)
    out = out or Path("docs") / "evaluation" / split
    report = write_report(figures, predictions, out, folder, f"Evaluation of {path}{f' + {adapter}' if adapter else ''}")
    click.echo(f"report written to {report}")


if __name__ == "__main__":
    main()
