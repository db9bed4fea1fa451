"""`slmnode predict`: the model (or the rules) over JSON Lines, as a batch job outside the node."""

from __future__ import annotations

import json
import sys

import click


PREDICT_TASKS = ("harmonize", "label", "impression")


@click.command()
@click.option("--task", type=click.Choice(PREDICT_TASKS), required=True, help="What to predict for each line.")
@click.option("--model", "model_path", help="Model folder or hub id (default: model.path, the embedded model).")
@click.option("--adapter", help="LoRA adapter folder, merged into the model (default: model.adapter).")
@click.option(
    "--harmonizer",
    "kind",
    type=click.Choice(["auto", "rules", "slm"]),
    help="--task harmonize only: auto (the model, else rules), rules or slm "
    "(default: harmonizer.kind, or slm when --model or --adapter is given).",
)
@click.option("--device", help="auto, cpu, cuda, cuda:1, ... (default: model.device).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Lines per batch (default: model.batch_size).")
@click.pass_obj
def predict(settings, task, model_path, adapter, kind, device, batch_size) -> None:
    """Predict for JSON Lines on stdin, one JSON line out per line in.

    Each line is an object with a "text": a Series Description (harmonize) or a report as
    "SECTION: ..." lines (label; impression, without its IMPRESSION line). The output keeps the
    line's fields and adds "label" and "confidence", or "labels" (13 findings and No Finding,
    Yes/No), or "impression", and "model_version". A line that is not such an object stops the
    command with its line number, after the output of the lines before it. A model trained with
    labeled neighbours reads the store's corrections, as in the node.
    """
    from dicom_node.models import choose
    from slm.engine import ModelUnavailable

    if kind and task != "harmonize":
        raise click.UsageError("--harmonizer applies to --task harmonize only")
    named = {"path": model_path, "adapter": adapter}
    if model_path or adapter:  # a model named here runs as named
        choice = choose.Choice(settings.model.model_copy(update={k: v for k, v in named.items() if v is not None}))
    else:  # as the node would: the registry's active version, else model.path
        choice = choose.stored_choice(settings)
    run = {k: v for k, v in {"device": device, "batch_size": batch_size}.items() if v is not None}
    choice = choose.Choice(choice.model.model_copy(update=run), choice.version)
    try:
        answer = _predictor(settings, choice, task, kind or ("slm" if model_path or adapter else None))
    except (ModelUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _predict_lines(sys.stdin, sys.stdout, answer, choice.model.batch_size)


def _predictor(settings, choice, task: str, kind: str | None):
    """A function from a batch of texts to the fields each output line gains."""
    from dicom_node.models import choose

    if task == "harmonize":
        from slm.neighbours import Neighbours

        harmonizer = choose.harmonizer(settings, choice, kind)
        known = Neighbours(choose.stored_corrections(settings))  # as the node's worker: the site's corrections
        return lambda texts: [
            {"label": p.label, "confidence": p.confidence, "model_version": p.model_version}
            for p in harmonizer.harmonize(texts, known)
        ]
    model = choose.load(choice)
    if task == "label":
        return lambda texts: [{"labels": labels, "model_version": model.version} for labels in model.label(texts)]
    return lambda texts: [{"impression": text, "model_version": model.version} for text in model.impression(texts)]


def _predict_lines(lines, out, answer, batch_size: int) -> None:
    """Answer batches of lines as they come, so a bad line stops the run after what came before it."""
    from tqdm import tqdm

    pending: list[dict] = []

    def flush() -> None:
        for record, fields in zip(pending, answer([record["text"] for record in pending])):
            out.write(json.dumps({**record, **fields}, ensure_ascii=False) + "\n")
        out.flush()
        progress.update(len(pending))
        pending.clear()

    with tqdm(unit=" lines", file=sys.stderr, disable=None) as progress:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                flush()
                raise click.ClickException(f"line {number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                flush()
                raise click.ClickException(f'line {number}: expected an object with a string "text"')
            pending.append(record)
            if len(pending) == batch_size:
                flush()
        flush()
