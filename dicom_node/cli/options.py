"""What every `slmnode` command module shares: opening the store with a clear error, the output format option."""

from __future__ import annotations

import getpass

import click


def open_store(settings):
    from dicom_node.store.database import Store, StoreError
    from dicom_node.store.migrations import SchemaError

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

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="File to write (default: standard output).",
)

WHO_OPTION = click.option(
    "--who", default=lambda: getpass.getuser(), show_default="your login name", help="Who does it, for the history."
)
