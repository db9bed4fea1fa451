"""`slmnode routes`: what the routing rules forwarded, what waits and what failed, by destination."""

from __future__ import annotations

from dataclasses import asdict

import click

from dicom_node.cli.options import FORMAT_OPTION, open_store

COLUMNS = ("rule", "destination", "pending", "retrying", "sent", "failed", "last_sent_at", "last_error")


@click.command()
@FORMAT_OPTION
@click.pass_obj
def routes(settings, fmt) -> None:
    """Show the outgoing queue of each routing rule: pending (never tried), retrying (waiting after a
    failed try), sent, failed (refused by the destination routing.max_attempts times), the latest error."""
    from dicom_node.cli.output import format_rows
    from dicom_node.store import routes as queue
    from dicom_node.store.times import iso

    store = open_store(settings)
    try:
        rows = [{**asdict(route), "last_sent_at": iso(route.last_sent_at)} for route in queue.summary(store.engine)]
    finally:
        store.close()
    queued = {row["rule"] for row in rows}
    for rule in settings.routing.rules:  # a rule that has matched nothing yet is shown too
        if rule.name not in queued:
            empty = queue.RouteSummary(rule.name, queue.destination(rule), 0, 0, 0, 0, None, None)
            rows.append(asdict(empty))
    click.echo(format_rows(rows, COLUMNS, fmt), nl=False)
