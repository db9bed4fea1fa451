"""The DICOM service and testing any DICOM node: `serve`, `echo`, `send`."""

from __future__ import annotations

import sys

import click

from dicom_node.config import ConfigError


@click.command()
@click.pass_obj
def serve(settings) -> None:
    """Run the node until Ctrl-C or SIGTERM: receive DICOM, record every series, harmonize descriptions.

    Everything comes from the configuration: AE title, address and port, allow-lists, TLS, storage
    mode, store URL and harmonizer. The ready line (`slmnode ready: ...`) says what the node is running with.
    """
    from dicom_node.node import serve as run_node
    from dicom_node.preflight import StartError
    from dicom_node.store.database import StoreError
    from dicom_node.store.migrations import SchemaError

    try:
        run_node(settings)
    except (ConfigError, StartError, SchemaError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # what the preflight could not foresee (the port taken since)
        raise click.ClickException(f"cannot start the node: {exc.strerror or exc}") from None
    except Exception as exc:
        from slm.engine import ModelUnavailable  # only now: torch loads with it, and the preflight comes first

        if isinstance(exc, ModelUnavailable):
            raise click.ClickException(str(exc)) from None
        raise


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


@click.command()
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


@click.command()
@_association_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def send(host, port, paths, aet, aec, timeout, **tls) -> None:
    """C-STORE DICOM files (PATHS: files or folders, searched recursively) to HOST PORT over one association.

    Files go as they are on disk, compressed or not. Names each file not stored (with the peer's
    reason) or skipped (not a DICOM instance), prints a summary of the peer's statuses and exits with
    status 1 if any DICOM instance was not stored.
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
        if not outcome.stored:
            reason = f": {outcome.error}" if outcome.status is not None and outcome.error else ""
            click.echo(f"{outcome.path}: {_what_became_of(outcome)}{reason}", err=True)
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
