"""Querying and correcting the mapping store: `mappings`, `show`, `correct`, `export`, `import`."""

from __future__ import annotations

from pathlib import Path

import click

from dicom_node.cli.options import FORMAT_OPTION, OUTPUT_OPTION, WHO_OPTION, open_store
from slm.tasks import SERIES_LABELS


@click.command()
@click.option(
    "--label",
    type=click.Choice(SERIES_LABELS, case_sensitive=False),
    metavar="LABEL",
    help=f"Only this effective label: {', '.join(SERIES_LABELS)} (any case).",
)
@click.option("--below", type=click.FloatRange(0, 1), metavar="CONFIDENCE", help="Only model confidence below this.")
@click.option("--search", metavar="TEXT", help="Only descriptions containing TEXT (any case).")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    metavar="DATE",
    help="Only descriptions first seen on or after DATE (UTC, YYYY-MM-DD[THH:MM:SS]).",
)
@click.option("--unreviewed", is_flag=True, help="Only descriptions no one has corrected or confirmed.")
@FORMAT_OPTION
@click.pass_obj
def mappings(settings, label, below, search, since, unreviewed, fmt) -> None:
    """List series descriptions with their labels, filtered.

    The label is the latest correction's, else the model's; `slmnode correct` with the model's own
    label marks a mapping as reviewed. json and csv give the fields of `slmnode export mappings`.
    """
    from dicom_node.cli.output import format_rows
    from dicom_node.store import exchange
    from dicom_node.store import mappings as queries

    store = open_store(settings)
    found = queries.mappings(store.engine, label, below, search, since, unreviewed, settings.harmonizer.modalities)
    columns = ("description", "label", "source", "confidence", "series_count", "first_seen")
    fields = columns if fmt == "table" else exchange.MAPPING_FIELDS
    click.echo(format_rows(exchange.mapping_rows(found), fields, fmt), nl=False)


@click.command()
@click.option("--study", "study_uid", metavar="UID", help="Every series of this Study Instance UID.")
@click.option("--series", "series_uid", metavar="UID", help="This Series Instance UID.")
@FORMAT_OPTION
@click.pass_obj
def show(settings, study_uid, series_uid, fmt) -> None:
    """Show the mapping of a study's series, or of one series (UIDs in full, to paste back).

    Series of modalities outside harmonizer.modalities (MR) show "not harmonized".
    """
    from dataclasses import asdict

    from dicom_node.cli.output import format_rows
    from dicom_node.store import mappings as queries

    if (study_uid is None) == (series_uid is None):
        raise click.UsageError("give one of --study UID or --series UID")
    store = open_store(settings)
    found = queries.series_mappings(store.engine, study_uid, series_uid, modalities=settings.harmonizer.modalities)
    if not found:
        raise click.ClickException(f"no {'study' if study_uid else 'series'} {study_uid or series_uid} in the store")
    rows = [asdict(s) for s in found]
    columns = ("series_number", "modality", "description", "label", "source", "confidence", "instances", "series_uid")
    click.echo(format_rows(rows, columns if fmt == "table" else rows[0].keys(), fmt), nl=False)


@click.command()
@click.argument("description")
@click.argument("label", type=click.Choice(SERIES_LABELS, case_sensitive=False), metavar="LABEL")
@click.option("--note", help="Why, for the next person (and the next training run).")
@WHO_OPTION
@click.pass_obj
def correct(settings, description, label, note, who) -> None:
    """Set the label of DESCRIPTION (a stored Series Description) to LABEL.

    LABEL is one of T1, T2, FLAIR, DWI, ADC, SWI, Other (any case).

    The correction wins over the model from now on, also for series stored before it. Repeating
    the model's label marks the mapping as reviewed.
    """
    from dicom_node.store import corrections

    store = open_store(settings)
    try:
        similar = corrections.correct(store, description, label, who=who, note=note)
    except corrections.UnknownDescription as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{description.strip()!r} is now {label}")
    if similar:
        click.echo(f"{similar} similar stored descriptions the rules cannot read are queued to be mapped again with it")


@click.command()
@click.argument("what", type=click.Choice(["mappings", "corrections"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def export(settings, what, fmt, output) -> None:
    """Export every mapping or every correction, for scripts, training or another node."""
    from dicom_node.cli.output import format_rows
    from dicom_node.store import exchange
    from dicom_node.store import mappings as queries

    store = open_store(settings)
    if what == "mappings":
        rows, fields = exchange.mapping_rows(queries.mappings(store.engine)), exchange.MAPPING_FIELDS
    else:
        rows, fields = exchange.correction_rows(store), exchange.CORRECTION_FIELDS
    output.write(format_rows(rows, fields, fmt))


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_(settings, file) -> None:
    """Import a mappings or corrections export (CSV or JSON); importing twice changes nothing."""
    from dicom_node.store import exchange

    store = open_store(settings)
    try:
        result = exchange.import_file(store, file)
    except exchange.ExchangeError as exc:
        raise click.ClickException(str(exc)) from None
    skipped = f", {result.skipped} skipped (no model label of their own)" if result.skipped else ""
    click.echo(f"{file}: {result.kind}: {result.added} added, {result.unchanged} already there{skipped}")
