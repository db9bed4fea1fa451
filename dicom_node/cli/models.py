"""`slmnode models ...` and `slmnode reharmonize`: the registry of model versions and the retraining loop."""

from __future__ import annotations

import json

import click

from dicom_node.cli.options import FORMAT_OPTION, WHO_OPTION, open_store

NOTE_OPTION = click.option("--note", help="Why, for the history.")


@click.group()
def models() -> None:
    """Model versions: retrain from corrections, list, promote, roll back.

    The node runs the active version (the latest promotion or rollback); before any promotion it
    runs model.path. A running node switches within retraining.follow_seconds, without dropping
    associations.
    """


@models.command("list")
@FORMAT_OPTION
@click.pass_obj
def list_(settings, fmt) -> None:
    """List the registered versions, the active one marked, with their held-out figures."""
    from dicom_node.cli.output import format_rows
    from dicom_node.models import registry
    from dicom_node.store.times import iso

    found = registry.versions(open_store(settings))
    if not found and fmt == "table":
        click.echo(f"no model versions registered yet: the node runs model.path ({settings.model.path})")
        return
    rows = [
        {
            "version": v.version,
            "active": ("yes" if v.active else "") if fmt == "table" else v.active,
            "created": v.created_at.strftime("%Y-%m-%d %H:%M"),
            "promoted": v.promoted_at.strftime("%Y-%m-%d %H:%M") if v.promoted_at else "never",
            "figures": _figures_cell(v.metrics.get("figures", {})),
            "gate": _gate_cell(v.metrics.get("gate")),
            "note": v.note,
            "path": v.path,
            "adapter": v.adapter,
            "created_at": iso(v.created_at),
            "promoted_at": iso(v.promoted_at),
            "metrics": v.metrics if fmt == "json" else json.dumps(v.metrics),
        }
        for v in found
    ]
    columns = (
        ("version", "active", "created", "promoted", "figures", "gate", "note")
        if fmt == "table"
        else ("version", "active", "path", "adapter", "created_at", "promoted_at", "note", "metrics")
    )
    click.echo(format_rows(rows, columns, fmt), nl=False)


SHORT_NAMES = {
    "harmonization_accuracy": "harm",
    "corrections_accuracy": "corr",
    "labeling_macro_f1": "label",
    "impression_rouge_l": "impr",
}


def _figures_cell(figures: dict) -> str:
    return " ".join(f"{SHORT_NAMES.get(name, name)} {value:.3f}" for name, value in figures.items())


def _gate_cell(gate: dict | None) -> str:
    if not gate:
        return ""
    return "passed" if gate.get("passed") else "refused"


@models.command()
@click.option(
    "--recipe",
    help="Training recipe: a shipped one's name (retrain_harmonize, retrain_embedded) or a YAML file "
    "(default: retraining.recipe).",
)
@click.option("--no-promote", is_flag=True, help="Register the new version but leave the active one as it is.")
@WHO_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.pass_obj
def retrain(settings, recipe, no_promote, who, fmt, overrides) -> None:
    """Train a new version from the recipe's data plus the store's corrections, and promote it if it does not regress.

    Both versions (the active one and the new one) are judged on the recipe's held-out dev examples
    (at most retraining.eval_limit per task) and on the corrections; the new one is promoted only if
    no figure drops by more than retraining.gate.max_drop. KEY=VALUE pairs override the recipe
    (epochs=2, data.series_generated=500). Exits with status 1 when the gate refuses.

    Before the first retraining, model.path is registered and made active, so that a rollback has
    somewhere to go. Each version's folder is under retraining.models_folder, with the corrections
    it learned from (corrections.json).
    """
    from dicom_node.models.registry import RegistryError
    from slm.engine import ModelUnavailable
    from dicom_node.models.retrain import result_dict
    from dicom_node.models.retrain import retrain as run

    store = open_store(settings)
    try:
        result = run(store, settings, recipe, overrides, promote=not no_promote, who=who)
    except (ValueError, OSError, ModelUnavailable, RegistryError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(result_dict(result), indent=2))
    else:
        click.echo(_retrain_report(result, settings))
    if not result.passed:
        raise SystemExit(1)


def _retrain_report(result, settings) -> str:
    from dicom_node.cli.output import format_rows

    rows = [
        {
            "figure": c.name,
            "current": f"{c.current:.3f}",
            "candidate": f"{c.candidate:.3f}",
            "change": f"{c.change:+.3f}",
            "allowed drop": f"{c.allowed_drop:.3f}",
            "gate": "ok" if c.passed else "REFUSED",
        }
        for c in result.comparisons
    ]
    held_out = ", ".join(f"{n} {task}" for task, n in result.examples.items()) or "none"
    lines = [
        f"current:   {result.current}",
        f"candidate: {result.candidate} ({result.folder}, {result.corrections} corrections learned)",
        f"held-out examples: {held_out}",
        "",
        format_rows(rows, ("figure", "current", "candidate", "change", "allowed drop", "gate"), "table").rstrip(),
        "",
    ]
    if not result.passed:
        lines += ["gate refused: " + "; ".join(result.reasons)]
        lines += [f"{result.candidate} is registered, not promoted (`slmnode models promote` forces it)"]
    elif result.promoted:
        lines += [
            f"gate passed: {result.candidate} is now active; a running node switches to it within "
            f"{settings.retraining.follow_seconds:g} s (`slmnode reharmonize` maps stored descriptions again)"
        ]
    else:
        lines += [f"gate passed; not promoted (--no-promote): `slmnode models promote {result.candidate}`"]
    return "\n".join(lines)


@models.command()
@click.argument("version")
@NOTE_OPTION
@WHO_OPTION
@click.pass_obj
def promote(settings, version, note, who) -> None:
    """Make VERSION (from `slmnode models list`; a unique beginning is enough) the active version."""
    from dicom_node.models import registry

    store = open_store(settings)
    try:
        chosen = registry.get(store, version)
        changed = registry.promote(store, chosen.version, who, note)
    except registry.RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    gate = chosen.metrics.get("gate")
    if gate and not gate.get("passed"):
        click.echo(f"note: the gate refused this version: {'; '.join(gate.get('reasons', []))}")
    if not changed:
        click.echo(f"{chosen.version} is already the active version")
        return
    click.echo(
        f"{chosen.version} is now active; a running node switches to it within "
        f"{settings.retraining.follow_seconds:g} s"
    )


@models.command()
@NOTE_OPTION
@WHO_OPTION
@click.pass_obj
def rollback(settings, note, who) -> None:
    """Undo the latest promotion: the version active before it becomes active again."""
    from dicom_node.models import registry

    store = open_store(settings)
    try:
        version = registry.rollback(store, who, note)
    except registry.RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"rolled back: {version} is active again; a running node switches to it within "
        f"{settings.retraining.follow_seconds:g} s (`slmnode reharmonize` maps stored descriptions again)"
    )


@click.command()
@click.option("--all", "everything", is_flag=True, help="Queue every mapped description, whichever version mapped it.")
@click.pass_obj
def reharmonize(settings, everything) -> None:
    """Queue descriptions mapped by another model version than the active one, to be mapped again.

    The running node's worker maps them with the version it runs; until then they keep their
    labels. People's corrections still win over whatever the model says.
    """
    from dicom_node.models import choose, registry
    from dicom_node.store import mappings

    store = open_store(settings)
    try:
        version = choose.running_version(settings, store)
    except registry.RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    queued = mappings.requeue_descriptions(store, None if everything else version)
    which = "every mapped description" if everything else f"descriptions mapped by another version than {version}"
    click.echo(f"{queued} queued again ({which}); the running node's worker maps them with {version}")
