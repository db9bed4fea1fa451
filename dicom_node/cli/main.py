"""`slmnode`: one subcommand per thing a person wants to do with the node."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from dicom_node.cli.models import models, reharmonize
from dicom_node.cli.options import FORMAT_OPTION, OUTPUT_OPTION, WHO_OPTION, open_store
from dicom_node.cli.reports import reports
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


PREDICT_TASKS = ("harmonize", "label", "impression")


@cli.command()
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
    command with its line number, after the output of the lines before it.
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
        harmonizer = choose.harmonizer(settings, choice, kind)
        return lambda texts: [
            {"label": p.label, "confidence": p.confidence, "model_version": p.model_version}
            for p in harmonizer.harmonize(texts)
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


# ---- querying and correcting the mapping store ---------------------------------------------------


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
    from dicom_node.cli.output import format_rows
    from dicom_node.store import exchange
    from dicom_node.store import mappings as queries

    store = open_store(settings)
    found = queries.mappings(store.engine, label, below, search, since, unreviewed)
    columns = ("description", "label", "source", "confidence", "series_count", "first_seen")
    fields = columns if fmt == "table" else exchange.MAPPING_FIELDS
    click.echo(format_rows(exchange.mapping_rows(found), fields, fmt), nl=False)


@cli.command()
@click.option("--study", "study_uid", metavar="UID", help="Every series of this Study Instance UID.")
@click.option("--series", "series_uid", metavar="UID", help="This Series Instance UID.")
@FORMAT_OPTION
@click.pass_obj
def show(settings, study_uid, series_uid, fmt) -> None:
    """Show the mapping of a study's series, or of one series."""
    from dataclasses import asdict

    from dicom_node.cli.output import format_rows
    from dicom_node.store import mappings as queries

    if (study_uid is None) == (series_uid is None):
        raise click.UsageError("give one of --study UID or --series UID")
    store = open_store(settings)
    found = queries.series_mappings(store.engine, study_uid=study_uid, series_uid=series_uid)
    if not found:
        raise click.ClickException(f"no {'study' if study_uid else 'series'} {study_uid or series_uid} in the store")
    rows = [asdict(s) for s in found]
    columns = ("series_number", "modality", "description", "label", "source", "confidence", "instances", "series_uid")
    click.echo(format_rows(rows, columns if fmt == "table" else rows[0].keys(), fmt), nl=False)


@cli.command()
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
        corrections.correct(store, description, label, who=who, note=note)
    except corrections.UnknownDescription as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{description.strip()!r} is now {label}")


@cli.command()
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


@cli.command("import")
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



# ---- the DICOM service, and testing any DICOM node -----------------------------------------------


@cli.command()
@click.pass_obj
def serve(settings) -> None:
    """Run the node until Ctrl-C or SIGTERM: receive DICOM, record every series, harmonize descriptions.

    Everything comes from the configuration: AE title, address and port, allow-lists, TLS, storage
    mode, store URL and harmonizer. The first log line says what the node is running with.
    """
    from dicom_node.node import serve as run_node
    from dicom_node.store.database import StoreError
    from dicom_node.store.migrations import SchemaError

    expected = (ConfigError, SchemaError, StoreError)
    if settings.harmonizer.kind != "rules":  # importing the engine loads torch, which rules do without
        from slm.engine import ModelUnavailable

        expected += (ModelUnavailable,)
    try:
        run_node(settings)
    except expected as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the port is taken, the address is not ours, the storage folder is not writable
        raise click.ClickException(f"cannot start the node: {exc.strerror or exc}") from None


def _association_options(command):
    """HOST PORT and the options of an association to any node, shared by `echo` and `send`."""
    options = [
        click.argument("host"),
        click.argument("port", type=click.IntRange(1, 65535)),
        click.option("--aet", default="SLMSCU", show_default=True, help="Our (calling) AE title."),
        click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title."),
        click.option("--tls", is_flag=True, help="DICOM TLS (implied by any --tls-* option)."),
        click.option(
            "--tls-ca",
            type=click.Path(exists=True, dir_okay=False),
            help="CA certificates (PEM) that signed the peer's certificate (default: the system's).",
        ),
        click.option(
            "--tls-cert",
            type=click.Path(exists=True, dir_okay=False),
            help="Our certificate (PEM), for peers that require one.",
        ),
        click.option(
            "--tls-key", type=click.Path(exists=True, dir_okay=False), help="The private key (PEM) of --tls-cert."
        ),
        click.option("--tls-no-verify", is_flag=True, help="Accept any peer certificate (tests only)."),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            help="Seconds to wait for the peer.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _tls_args(host, tls, tls_ca, tls_cert, tls_key, tls_no_verify):
    import ssl

    from dicom_node.dicom.network import client_tls_context

    if not (tls or tls_ca or tls_cert or tls_key or tls_no_verify):
        return None
    try:
        return client_tls_context(tls_ca, tls_cert, tls_key, verify=not tls_no_verify), host
    except (OSError, ssl.SSLError) as exc:
        raise click.ClickException(f"cannot use the TLS certificate or key: {exc}") from None


@cli.command()
@_association_options
def echo(host, port, aet, aec, timeout, **tls) -> None:
    """C-ECHO the DICOM node at HOST PORT: is it there, and does it accept us?"""
    from dicom_node.dicom.sender import AssociationFailed, describe_status
    from dicom_node.dicom.sender import echo as send_echo

    try:
        status = send_echo(host, port, calling_aet=aet, called_aet=aec, tls=_tls_args(host, **tls), timeout=timeout)
    except AssociationFailed as exc:
        raise click.ClickException(str(exc)) from None
    if status is None:
        raise click.ClickException(f"{aec} at {host}:{port} did not answer the C-ECHO")
    click.echo(f"C-ECHO {aec} at {host}:{port}: {describe_status(status)}")
    if status != 0:
        sys.exit(1)


@cli.command()
@_association_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def send(host, port, paths, aet, aec, timeout, **tls) -> None:
    """C-STORE DICOM files (PATHS: files or folders, searched recursively) to HOST PORT over one association.

    Files go as they are on disk, compressed or not. Prints a summary of the peer's statuses and
    exits with status 1 if any DICOM instance was not stored; other files are skipped.
    """
    from collections import Counter

    from dicom_node.dicom.sender import AssociationFailed, find_files, send_files

    files = find_files(paths)
    try:
        outcomes = send_files(
            host,
            port,
            files,
            calling_aet=aet,
            called_aet=aec,
            tls=_tls_args(host, **tls),
            timeout=timeout,
            show_progress=True,
        )
    except AssociationFailed as exc:
        raise click.ClickException(str(exc)) from None
    for outcome in outcomes:
        if not outcome.stored and not outcome.skipped:
            click.echo(f"{outcome.path}: {_what_became_of(outcome)}", err=True)
    summary = Counter(_what_became_of(outcome) for outcome in outcomes).most_common()
    click.echo(f"{len(files)} files to {aec} at {host}:{port}: " + ", ".join(f"{n} {what}" for what, n in summary))
    if any(not outcome.stored and not outcome.skipped for outcome in outcomes):
        sys.exit(1)


def _what_became_of(outcome) -> str:
    from dicom_node.dicom.sender import describe_status

    if outcome.skipped:
        return "skipped (not DICOM instances)"
    return describe_status(outcome.status) if outcome.status is not None else f"not stored ({outcome.error})"


# Command groups of their own modules.
cli.add_command(reports)
cli.add_command(models)
cli.add_command(reharmonize)


def main() -> None:
    cli(prog_name="slmnode")

