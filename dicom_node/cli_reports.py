"""`slmnode reports ...`: radiology reports in, the companion job run by hand, reports and results out."""

from __future__ import annotations

import sys

import click

from dicom_node.cli_options import open_store


@click.group()
def reports() -> None:
    """Radiology reports linked to received studies, with their labels and generated impressions."""


# ---- reports in ----------------------------------------------------------------------------------


@reports.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--study-uid",
    metavar="UID",
    help="Study Instance UID of the text files' reports (default: each file's 'Study Instance UID:' line).",
)
@click.option(
    "--accession",
    metavar="NUMBER",
    help="Accession Number of the text files' reports (default: each file's 'Accession Number:' line).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "text", "csv", "hl7"]),
    default="auto",
    show_default=True,
    help="auto: by suffix (.txt, .csv, .hl7, .oru), else HL7 when the file starts with an MSH segment.",
)
@click.pass_obj
def import_(settings, paths, study_uid, accession, fmt) -> None:
    """Import radiology reports from files (and every file in folders named): plain text, CSV, HL7 v2 ORU^R01.

    \b
    text: one report; sections by headings at line starts (INDICATION:, COMPARISON:, FINDINGS:,
          IMPRESSION: and the like), text before any heading counts as findings.
    csv:  one report per row; study_uid and/or accession_number, then indication, comparison,
          findings, impression and/or text; optional report_id, report_date.
    hl7:  one report per ORU^R01 message (MLLP framing allowed): accession from OBR-18 (else
          OBR-3, OBR-2), Study Instance UID from ZDS-1 or an OBX 113014, text from TX/FT/ST OBX.

    Importing a file again adds nothing. Patient identifiers are kept only with
    store.keep_patient_identifiers. Prints a summary, and each refused file, row or message on
    stderr with the reason; exits with status 1 if any was refused.
    """
    from dicom_node.report_import import import_reports
    from dicom_node.sender import find_files

    store = open_store(settings)
    try:
        summary = import_reports(
            store, find_files(paths), study_uid, accession, settings.store.keep_patient_identifiers, fmt
        )
    finally:
        store.close()
    click.echo(f"{summary.added} reports added, {summary.already_there} already there, {len(summary.refused)} refused")
    for where, why in summary.refused:
        click.echo(f"refused {where}: {why}", err=True)
    if summary.refused:
        sys.exit(1)
