"""Ablations as commands: the study's epoch trajectory and its poisoning test, each a table of dev figures.

    python -m training.ablations epochs --recipe study --epochs 2,5,20,100
    python -m training.ablations poison --recipe study --fractions 0,0.25,0.5,0.75,1.0

Every variant is the recipe with one setting changed, trained by training.train.train and judged by
training.evaluate on the dev split (never test). In the poisoning test a fraction of the labeling
examples is answered all-negative (training.data.negate_labels); labeling should fall with it while
harmonization and impression, trained on untouched examples, should not move.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import click

from slm.tasks import IMPRESSION_MAX_TOKENS, NO_FINDING

COLUMNS = (
    ("labeling macro-F1 (14)", "macro_f1"),
    ("macro-F1 (13)", "macro_f1_findings"),
    ("No Finding predicted", "no_finding_rate"),
    ("harmonization accuracy", "harmonization_accuracy"),
    ("ROUGE-L", "rougeL"),
    ("ROUGE-L with prefix", "rougeL_with_prefix"),
    ("BLEU", "bleu"),
)


def summary(figures: dict) -> dict:
    """The figures one ablation row shows; labeling against gold labels where the split has them, else silver."""
    row: dict = {}
    labeling = figures["labeling"].get("gold") or figures["labeling"].get("silver")
    if labeling:
        model = labeling["model"]
        predicted_none = model["per_label"][NO_FINDING]["tp"] + model["per_label"][NO_FINDING]["fp"]
        row.update(macro_f1=model["macro_f1"], macro_f1_findings=model["macro_f1_findings"],
                   no_finding_rate=predicted_none / model["n"])
    if "harmonization" in figures:
        row["harmonization_accuracy"] = figures["harmonization"]["model"]["accuracy"]
    if "impression" in figures:
        impression = figures["impression"]["model"]
        row.update(rougeL=impression["without_prefix"]["rougeL"], rougeL_with_prefix=impression["with_prefix"]["rougeL"],
                   bleu=impression["without_prefix"]["bleu"])
    return row


def evaluate_folder(folder: Path, limit: int | None, title: str,
                    impression_max_tokens: int = IMPRESSION_MAX_TOKENS) -> dict:
    """Dev figures of one trained model folder; its full report is written to folder/evaluation."""
    from slm.engine import load_engine
    from training.evaluate import evaluate, evaluation_data, write_report

    engine = load_engine(str(folder), impression_max_tokens=impression_max_tokens)
    figures, predictions = evaluate(engine, evaluation_data("dev", folder, limit=limit))
    write_report(figures, predictions, folder / "evaluation", folder, title)
    return summary(figures)


def train_variant(recipe: str, changes: Sequence[str], output_dir: Path) -> Path:
    """The recipe with `changes` (key=value overrides), trained into output_dir."""
    from training.recipe import load_config
    from training.train import train

    try:
        return train(load_config(recipe, [*changes, f"output_dir={output_dir}"]))
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(f"{output_dir.name}: {exc}") from None


def table_markdown(title: str, variant_name: str, rows: Sequence[dict]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join([variant_name] + [name for name, _ in COLUMNS]) + " |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        cells = [str(row["variant"])] + [f"{row[key]:.3f}" if key in row else "" for _, key in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(workdir: Path, title: str, variant_name: str, rows: Sequence[dict]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "table.json").write_text(json.dumps(list(rows), indent=1))
    path = workdir / "table.md"
    path.write_text(table_markdown(title, variant_name, rows))
    return path


def _numbers(text: str, kind: type) -> list:
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of {kind.__name__} values") from None


@click.group()
def cli():
    """Ablations of a training recipe, judged on the dev split."""


COMMON_OPTIONS = (
    click.option("--recipe", required=True,
                 help="A training recipe: a shipped name (training/recipes/) or a YAML file."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                 help="Recipe overrides applied to every variant (as for training.train)."),
    click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Where the variants' model folders and the table go (default runs/ablations/<command>)."),
    click.option("--limit", type=int, default=None, help="Evaluate on the first N dev examples of each task only."),
    click.option("--impression-max-tokens", default=IMPRESSION_MAX_TOKENS, show_default=True,
                 help="Bound on a generated impression."),
)


def _common(command):
    for option in reversed(COMMON_OPTIONS):  # decorators apply inside out; --help lists them in this order
        command = option(command)
    return command


def tabulate(variants: Iterable[tuple[str, Callable[[], Path]]], workdir: Path, title: str, variant_name: str,
             **evaluation) -> list[dict]:
    """Make each variant's model folder, evaluate it, and rewrite the table after each (a partial table survives)."""
    rows = []
    for name, make in variants:
        rows.append({"variant": name, **evaluate_folder(make(), title=f"{title}: {name}", **evaluation)})
        write_table(workdir, title, variant_name, rows)
    click.echo(table_markdown(title, variant_name, rows))
    return rows


@cli.command()
@_common
@click.option("--epochs", "epochs_list", default="2,5,20,100", show_default=True, help="Epoch counts, comma-separated.")
@click.option("--one-run", is_flag=True,
              help="Train once for the most epochs and export the others on the way (cheaper; their learning-rate "
                   "schedule is the longest run's, not their own).")
def epochs(recipe, workdir, overrides, limit, impression_max_tokens, epochs_list, one_run):
    """Train for each number of epochs and tabulate the dev figures (the study: 2, 5, 20, 100)."""
    counts = sorted(set(_numbers(epochs_list, int)))
    workdir = workdir or Path("runs/ablations/epochs")
    if one_run:
        folder = train_variant(recipe, [*overrides, f"epochs={counts[-1]}", f"export_epochs={counts[:-1]}"],
                               workdir / "run")
        variants = [(f"{n} epochs", lambda n=n: folder / f"epoch-{n}") for n in counts[:-1]]
        variants.append((f"{counts[-1]} epochs", lambda: folder))
    else:
        variants = [(f"{n} epochs", lambda n=n: train_variant(recipe, [*overrides, f"epochs={n}"], workdir / f"epochs-{n}"))
                    for n in counts]
    tabulate(variants, workdir, f"Epochs ablation of {recipe}", "epochs", limit=limit,
             impression_max_tokens=impression_max_tokens)


@cli.command()
@_common
@click.option("--fractions", default="0,0.25,0.5,0.75,1.0", show_default=True,
              help="Fractions of labeling examples answered all-negative, comma-separated (0 is the clean run).")
def poison(recipe, workdir, overrides, limit, impression_max_tokens, fractions):
    """Train with a fraction of the labeling examples set to all-negative; the other tasks should not move."""
    values = _numbers(fractions, float)
    if any(not 0 <= f <= 1 for f in values):
        raise click.BadParameter("fractions must lie in [0, 1]")
    workdir = workdir or Path("runs/ablations/poison")
    variants = [(f"{f:g}", lambda f=f: train_variant(recipe, [*overrides, f"data.label_negative_fraction={f}"],
                                                     workdir / f"negative-{f:g}")) for f in values]
    tabulate(variants, workdir, f"Poisoning test of {recipe}", "labeling examples set negative", limit=limit,
             impression_max_tokens=impression_max_tokens)


if __name__ == "__main__":
    cli()
