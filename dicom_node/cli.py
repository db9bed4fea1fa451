"""`slmnode`: one subcommand per thing a person wants to do with the node."""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path

import click

from dicom_node.config import CONFIG_ENV, ConfigError, load_settings
from slm.tasks import SERIES_LABELS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    help=f"YAML configuration file (default: built-in defaults; env {CONFIG_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """A DICOM node that harmonizes MRI series descriptions with a small language model."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    handlers = [logging.StreamHandler()]
    if settings.logging.file:
        handlers.append(logging.FileHandler(settings.logging.file, encoding="utf-8"))
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )
    ctx.obj = settings


# ---- querying and correcting the mapping store ---------------------------------------------------


def _open_store(settings):
    from dicom_node.store import SchemaError, Store, StoreError

    try:
        return Store(settings.store.url)
    except (SchemaError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people; json or csv for scripts.",
)


@cli.command()
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
    from dicom_node import exchange, queries

    store = _open_store(settings)
    found = queries.mappings(store.engine, label, below, search, since, unreviewed)
    columns = ("description", "label", "source", "confidence", "series_count", "first_seen")
    fields = columns if fmt == "table" else exchange.MAPPING_FIELDS
    click.echo(exchange.format_rows(exchange.mapping_rows(found), fields, fmt), nl=False)


@cli.command()
@click.option("--study", "study_uid", metavar="UID", help="Every series of this Study Instance UID.")
@click.option("--series", "series_uid", metavar="UID", help="This Series Instance UID.")
@FORMAT_OPTION
@click.pass_obj
def show(settings, study_uid, series_uid, fmt) -> None:
    """Show the mapping of a study's series, or of one series."""
    from dataclasses import asdict

    from dicom_node import exchange, queries

    if (study_uid is None) == (series_uid is None):
        raise click.UsageError("give one of --study UID or --series UID")
    store = _open_store(settings)
    found = queries.series_mappings(store.engine, study_uid=study_uid, series_uid=series_uid)
    if not found:
        raise click.ClickException(f"no {'study' if study_uid else 'series'} {study_uid or series_uid} in the store")
    rows = [asdict(s) for s in found]
    columns = ("series_number", "modality", "description", "label", "source", "confidence", "instances", "series_uid")
    click.echo(exchange.format_rows(rows, columns if fmt == "table" else rows[0].keys(), fmt), nl=False)


@cli.command()
@click.argument("description")
@click.argument("label", type=click.Choice(SERIES_LABELS, case_sensitive=False), metavar="LABEL")
@click.option("--note", help="Why, for the next person (and the next training run).")
@click.option("--who", default=lambda: getpass.getuser(), show_default="your login name", help="Who corrects.")
@click.pass_obj
def correct(settings, description, label, note, who) -> None:
    """Set the label of DESCRIPTION (a stored Series Description) to LABEL.

    LABEL is one of T1, T2, FLAIR, DWI, ADC, SWI, Other (any case).

    The correction wins over the model from now on, also for series stored before it. Repeating
    the model's label marks the mapping as reviewed.
    """
    from dicom_node.store import UnknownDescription

    store = _open_store(settings)
    try:
        store.correct(description, label, who=who, note=note)
    except UnknownDescription as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{description.strip()!r} is now {label}")


@cli.command()
@click.argument("what", type=click.Choice(["mappings", "corrections"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="File to write (default: standard output).",
)
@click.pass_obj
def export(settings, what, fmt, output) -> None:
    """Export every mapping or every correction, for scripts, training or another node."""
    from dicom_node import exchange, queries

    store = _open_store(settings)
    if what == "mappings":
        rows, fields = exchange.mapping_rows(queries.mappings(store.engine)), exchange.MAPPING_FIELDS
    else:
        rows, fields = exchange.correction_rows(store), exchange.CORRECTION_FIELDS
    output.write(exchange.format_rows(rows, fields, fmt))


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_(settings, file) -> None:
    """Import a mappings or corrections export (CSV or JSON); importing twice changes nothing."""
    from dicom_node import exchange

    store = _open_store(settings)
    try:
        result = exchange.import_file(store, file)
    except exchange.ExchangeError as exc:
        raise click.ClickException(str(exc)) from None
    skipped = f", {result.skipped} skipped (no model label of their own)" if result.skipped else ""
    click.echo(f"{file}: {result.kind}: {result.added} added, {result.unchanged} already there{skipped}")



def main() -> None:
    cli(prog_name="slmnode")


if __name__ == "__main__":
    sys.exit(main())
