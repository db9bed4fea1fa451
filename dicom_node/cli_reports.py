"""`slmnode reports ...`: radiology reports in, the companion job run by hand, reports and results out."""

from __future__ import annotations

import click


@click.group()
def reports() -> None:
    """Radiology reports linked to received studies, with their labels and generated impressions."""
