"""`slmnode reports ...`: radiology reports in, the companion job run by hand, reports and results out."""

from __future__ import annotations

import sys

import click

from dicom_node.cli.options import FORMAT_OPTION, OUTPUT_OPTION, open_store
from slm.tasks import LABEL_KEYS


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
    from dicom_node.reports.importers import import_reports
    from dicom_node.dicom.sender import find_files

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


# ---- reports out ---------------------------------------------------------------------------------


def _study_options(command):
    """--study and --accession, shared by `list` and `show`."""
    command = click.option(
        "--accession", metavar="NUMBER", help="Reports with this Accession Number (theirs or their linked study's)."
    )(command)
    return click.option(
        "--study",
        "study_uid",
        metavar="UID",
        help="Reports of this Study Instance UID (theirs or their linked study's).",
    )(command)


@reports.command("list")
@_study_options
@click.option(
    "--label",
    type=click.Choice(LABEL_KEYS, case_sensitive=False),
    metavar="FINDING",
    help="Only reports whose latest result says Yes to FINDING: one of the 13 CheXpert findings "
    'or "No Finding" (any case).',
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="DATE",
    help="Only reports dated on or after DATE (YYYY-MM-DD): the report's own date, else the day it was received.",
)
@click.option("--unprocessed", is_flag=True, help="Only reports no model has processed yet.")
@FORMAT_OPTION
@click.pass_obj
def list_(settings, study_uid, accession, label, since, unprocessed, fmt) -> None:
    """List reports: linked study, source, date, positive findings, generated impression, model version.

    A report links to a received study by Study Instance UID, else by Accession Number, whenever
    the study arrives. The table shortens long cells; json and csv keep everything.
    """
    from dicom_node.cli.output import format_rows
    from dicom_node.reports import queries as report_queries
    from dicom_node.models import choose

    store = open_store(settings)
    views = report_queries.reports(
        store.engine, study_uid=study_uid, accession=accession, label=label,
        since=since.date() if since else None, unprocessed=unprocessed, version=choose.choose(settings, store).version,
    )
    rows = [report_queries.list_row(view) for view in views]
    click.echo(format_rows(rows, report_queries.LIST_FIELDS, fmt), nl=False)


@reports.command()
@click.argument("report_id", type=int, required=False)
@_study_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people; json (an array) for scripts.")
@click.pass_obj
def show(settings, report_id, study_uid, accession, fmt) -> None:
    """Show one report (REPORT_ID, from `slmnode reports list`), or those of a study or accession:
    sections, labels, generated impression, model version, linked study and its series count."""
    import json

    from dicom_node.reports import queries as report_queries
    from dicom_node.models import choose

    if sum(given is not None for given in (report_id, study_uid, accession)) != 1:
        raise click.UsageError("give one of REPORT_ID, --study UID or --accession NUMBER")
    store = open_store(settings)
    views = report_queries.reports(
        store.engine, report_id=report_id, study_uid=study_uid, accession=accession, version=choose.choose(settings, store).version
    )
    if not views:
        asked = f"report {report_id}" if report_id is not None else f"report for {study_uid or accession}"
        raise click.ClickException(f"no {asked} in the store; see `slmnode reports list`")
    if fmt == "json":
        click.echo(json.dumps([report_queries.show_data(view) for view in views], ensure_ascii=False, indent=2))
    else:
        click.echo("\n".join(report_queries.show_text(view) for view in views), nl=False)


@reports.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def export(settings, fmt, output) -> None:
    """Export every report with its latest result: in CSV the 14 labels are columns, in JSON one object."""
    from dicom_node.cli.output import format_rows
    from dicom_node.reports import queries as report_queries
    from dicom_node.models import choose

    store = open_store(settings)
    views = report_queries.reports(store.engine, version=choose.choose(settings, store).version)
    rows = [report_queries.export_row(view, labels_as_columns=fmt == "csv") for view in views]
    fields = report_queries.EXPORT_FIELDS + (LABEL_KEYS if fmt == "csv" else ("labels",))
    output.write(format_rows(rows, fields, fmt))


# ---- the companion job, by hand --------------------------------------------------------------------


@reports.command()
@click.option("--limit", type=click.IntRange(min=1), help="Process at most this many reports (default: all pending).")
@click.pass_obj
def process(settings, limit) -> None:
    """Label the reports the configured model has not processed yet and write their impressions, now.

    The job the node runs every reports.interval_seconds, with the same model: the registry's
    active version when one was promoted, else model.path. Safe beside a running node or another
    `process`: each report is processed once.
    Exits with status 1 if the model failed on any report (they are retried later with backoff).
    """
    from tqdm import tqdm

    from dicom_node.jobs.reports import ReportJob
    from dicom_node.models import choose
    from slm.engine import ModelUnavailable

    store = open_store(settings)
    try:
        try:
            choice = choose.choose(settings, store)
            model = choose.pick_reader(settings, choice, choose.load(choice))
        except ModelUnavailable as exc:
            raise click.ClickException(f"no model to process reports with: {exc}") from None
        job = ReportJob(store, model, settings.reports)
        pending = job.count_pending()
        with tqdm(total=min(pending, limit or pending), unit=" reports", file=sys.stderr, disable=None) as progress:
            counts = job.run_until_done(limit, progress=progress.update)
    finally:
        store.close()
    click.echo(f"{counts.processed} reports processed, {counts.failed} failed (model {model.version})")
    if counts.failed:
        sys.exit(1)
