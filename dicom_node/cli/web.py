"""`slmnode web`: the review pages, the REST API and /metrics alone, on the node's store."""

from __future__ import annotations

import click

from dicom_node.config import ConfigError


@click.command()
@click.pass_obj
def web(settings) -> None:
    """Serve the web pages and the API until Ctrl-C, without the DICOM service.

    Address, port and TLS come from the web section of the configuration (web.enabled is for
    `slmnode serve`; this command serves whatever it says). Add users first: `slmnode users add`.
    """
    from dicom_node.preflight import StartError, check_web
    from dicom_node.store.database import StoreError
    from dicom_node.store.migrations import SchemaError
    from dicom_node.web.app import run_web

    try:
        check_web(settings)
        run_web(settings)
    except (ConfigError, StartError, SchemaError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the port taken since the check
        raise click.ClickException(str(exc)) from None
